"""The seed papers' systems (issue 10 item 1): resnet18_sa, medspectralnet, resnet50 (MC dropout),
slimi2025's latency decoding, and the Double SGAN balance. Tiny sizes and synthetic data only."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neurocxr.models import ModelConfig, build_model, model_info
from neurocxr.models.papers import (
    BasicBlockSA,
    ContextGate,
    SpatialAttention,
    SpectralFlow,
    dropout_modules,
    enable_mc_dropout,
)

# Small widths keep every test fast; the registered defaults are what benchmarks/seeds.py trains.
SMALL = {
    "resnet18_sa": {"width": 4},
    "medspectralnet": {"widths": [4, 8, 8]},
    "resnet50": {"width": 2},
}


def small(name: str, **kwargs) -> nn.Module:
    return build_model(ModelConfig(name=name, extra=dict(SMALL[name]), **kwargs))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_seed_cnn_builds_by_name_and_gives_logits(name: str) -> None:
    info = model_info(name)
    assert info.kind == "cnn" and not info.loihi_deployable
    model = small(name).eval()
    out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 2) and torch.isfinite(out).all()


def test_default_sizes_are_the_documented_ones() -> None:
    widths = {n: build_model(ModelConfig(name=n)) for n in SMALL}
    assert widths["resnet18_sa"].stem[0].out_channels == 16
    assert widths["resnet50"].stem[0].out_channels == 8
    assert widths["resnet50"].fc.in_features == 8 * 8 * 4  # last stage 8w, bottleneck expansion 4
    assert [
        m.high[0].in_channels
        for m in widths["medspectralnet"].modules()
        if isinstance(m, SpectralFlow)
    ] == [32, 64, 128]


def test_resnet18_sa_has_spatial_attention_in_every_block() -> None:
    model = small("resnet18_sa")
    blocks = [m for m in model.modules() if isinstance(m, BasicBlockSA)]
    assert len(blocks) == 8  # 2-2-2-2
    assert all(isinstance(b.attention, SpatialAttention) for b in blocks)
    # 28 px adaptation: 3x3 stride-1 stem, no max pool
    assert model.stem[0].kernel_size == (3, 3) and model.stem[0].stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_spatial_attention_is_mean_max_conv_sigmoid() -> None:
    sa = SpatialAttention()
    x = torch.randn(2, 5, 6, 6)
    manual = torch.sigmoid(
        sa.conv(torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True).values], 1))
    )
    assert torch.allclose(sa.attention(x), manual)
    assert torch.allclose(sa(x), x * manual)


def test_spectral_flow_streams_and_context_gate() -> None:
    block = SpectralFlow(6, 14).eval()
    x = torch.randn(2, 6, 14, 14)
    high, low = block.streams(x)
    assert high.shape == low.shape == x.shape
    # The high-frequency stream sees x minus its local mean: a constant image gives a constant high map.
    flat = torch.full((1, 6, 14, 14), 3.0)
    h_flat, _ = block.streams(flat)
    assert torch.allclose(h_flat, h_flat[..., :1, :1].expand_as(h_flat), atol=1e-5)
    gate = ContextGate(6)
    g = gate.gate(high, low)
    assert g.shape == (2, 6, 1, 1) and bool(((g > 0) & (g < 1)).all())
    assert torch.allclose(gate(high, low), g * high + (1 - g) * low)
    assert block(x).shape == x.shape


@pytest.mark.parametrize("name", sorted(SMALL))
def test_one_training_step_on_synthetic_images_lowers_the_loss(name: str) -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(16) % 2
    x = (0.3 + 0.4 * y.float()).view(-1, 1, 1, 1) + 0.05 * torch.rand(
        16, 1, 28, 28, generator=gen
    )  # class = brightness
    torch.manual_seed(0)
    model = small(name).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same dropout masks before and after the step
        return F.cross_entropy(model(x), y)

    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    after = loss()
    assert torch.isfinite(after) and float(after) < float(before)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_onnx_export_matches_pytorch(name: str, tmp_path: Path) -> None:
    from neurocxr.energy.macs import onnx_macs
    from neurocxr.exporters.onnx import check_onnx_equivalence, export_onnx

    model = small(name).eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)).numpy()
    check = check_onnx_equivalence(model, path, images)
    assert check.within_tolerance and check.argmax_agreement == 1.0
    assert sum(onnx_macs(path).values()) > 0


def test_resnet50_dropout_for_monte_carlo() -> None:
    model = build_model(ModelConfig(name="resnet50", extra={"width": 2, "block_dropout": 0.1}))
    found = dropout_modules(model)
    assert (
        isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.3
    )  # default before the classifier
    assert sum(isinstance(m, nn.Dropout2d) for m in found) == 4  # one per stage
    assert enable_mc_dropout(model) == 5
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    x = torch.rand(2, 1, 28, 28)
    torch.manual_seed(0)
    passes = torch.stack([model(x) for _ in range(6)])
    assert passes.std(0).max() > 0  # dropout active at test time
    model.eval()
    assert torch.equal(model(x), model(x))
    explicit = build_model(ModelConfig(name="resnet50", dropout=0.5, extra={"width": 2}))
    assert explicit.dropout.p == 0.5 and len(dropout_modules(explicit)) == 1


def test_bad_seed_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="width"):
        build_model(ModelConfig(name="resnet18_sa", extra={"width": 0}))
    with pytest.raises(ValueError, match="widths"):
        build_model(ModelConfig(name="medspectralnet", extra={"widths": [8, -1]}))
    with pytest.raises(ValueError, match="block_dropout"):
        build_model(ModelConfig(name="resnet50", extra={"block_dropout": 1.5}))


def test_slimi_cnn_decodes_latency_coding() -> None:
    from neurocxr.data.encoding import direct_encode, latency_encode
    from neurocxr.models.published import time_weighted_image

    x = torch.tensor([[[[0.0, 0.3, 0.6, 1.0]]]])
    assert torch.allclose(time_weighted_image(direct_encode(x, 8)), x)
    decoded = time_weighted_image(latency_encode(x, 8)).flatten()
    assert decoded[0] == 0 and bool((decoded[1:] > decoded[:-1]).all())  # brighter stays brighter
    model = build_model(
        ModelConfig(
            name="slimi2025",
            encoding="latency",
            num_steps=4,
            channels=(4, 4, 4),
            extra={"gru_hidden": 8},
        )
    )
    from neurocxr.models.loaded import forward_model

    assert forward_model(model, torch.rand(2, 1, 28, 28), model.config).shape == (2, 2)


# ---------------------------------------------------------------------------------------------
# Double SGAN

TINY_GAN = dict(steps=2, batch_size=4, width=16, z_dim=8)


def test_sgan_layers_are_spectrally_normalised_with_self_attention() -> None:
    from torch.nn.utils import parametrize

    from neurocxr.training.gan import DoubleSgan, SelfAttention, SganConfig

    gan = DoubleSgan(SganConfig(**TINY_GAN))
    for part in (gan.generator, gan.d14, gan.d28):
        weighted = [m for m in part.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert weighted and all(parametrize.is_parametrized(m, "weight") for m in weighted)
    assert sum(isinstance(m, SelfAttention) for m in gan.generator.modules()) == 2  # one per stage
    stage1, stage2 = gan.generator(torch.randn(3, 8))
    assert stage1.shape == (3, 1, 14, 14) and stage2.shape == (3, 1, 28, 28)


def test_sgan_trains_and_samples_images_of_the_right_shape() -> None:
    from neurocxr.training.gan import SganConfig, train_sgan

    gan, log = train_sgan(torch.rand(10, 1, 28, 28), SganConfig(**TINY_GAN))
    assert log and all(np.isfinite([r["d_loss"], r["g_loss"]]).all() for r in log)
    images = gan.sample(5, seed=1)
    assert images.shape == (5, 1, 28, 28) and float(images.min()) >= 0 and float(images.max()) <= 1
    assert torch.equal(images, gan.sample(5, seed=1))


def test_balance_with_sgan_balances_training_and_writes_a_png_grid(
    medmnist_npz, tmp_path: Path
) -> None:
    from PIL import Image

    from neurocxr.data.datasets import load_npz
    from neurocxr.training.gan import SganConfig, balance_with_sgan

    splits = load_npz(medmnist_npz(counts={"train": (4, 11), "val": (2, 3), "test": (2, 3)}))
    balanced, record = balance_with_sgan(splits, SganConfig(**TINY_GAN), tmp_path, prefix="m")
    assert balanced.train.class_counts() == {"NORMAL": 11, "PNEUMONIA": 11}
    assert record["generated"] == 7 and record["real_normal"] == 4
    assert balanced.val is splits.val and balanced.test is splits.test
    with Image.open(tmp_path / record["samples_png"]) as png:
        assert png.mode == "L" and png.size == (
            8 * 29 - 1,
            8 * 29 - 1,
        )  # 8x8 grid of 28 px, 1 px gaps
    assert (tmp_path / record["generator_weights"]).is_file()


def test_train_with_balance_sgan_through_the_api(medmnist_npz, tmp_path: Path, monkeypatch) -> None:
    import neurocxr.training.gan as gan_module
    from neurocxr.api import train
    from neurocxr.models.checkpoint import load_checkpoint

    monkeypatch.setattr(
        gan_module, "SganConfig", functools.partial(gan_module.SganConfig, **TINY_GAN)
    )
    data = medmnist_npz(counts={"train": (4, 12), "val": (3, 3), "test": (2, 2)})
    result = train(
        "cnn_small", data=str(data), out=tmp_path / "run", epochs=1, batch_size=8, balance="sgan"
    )
    assert result["sgan"]["generated"] == 8
    assert Path(result["sgan"]["samples_png"]).is_file()
    meta = load_checkpoint(result["checkpoint"]).metadata
    assert meta["balance"] == "sgan" and meta["sgan"]["generated"] == 8


def test_unknown_balance_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from neurocxr.api import train
    from neurocxr.errors import NeurocxrError

    with pytest.raises(NeurocxrError, match="balance"):
        train("cnn_small", data="synthetic", out=tmp_path / "run", balance="smote")
    assert not (tmp_path / "run").exists()
