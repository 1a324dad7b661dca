"""ONNX export of CNN baselines: validity, numerical equivalence with PyTorch, MAC counts, refusals."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from neurocxr.energy.macs import onnx_macs
from neurocxr.errors import DataError, ExportError
from neurocxr.exporters.onnx import (
    benchmark_onnx,
    check_onnx_equivalence,
    export_onnx,
    onnx_session,
    run_onnx,
)
from neurocxr.models import MODEL_REGISTRY, ModelConfig, build_model


def _local_cnn() -> nn.Module:
    """A small CNN in the shape of the cnn_small baseline (used when it is not registered)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 2),
    )


def _randomise_batchnorm(model: nn.Module) -> None:
    """Give BatchNorm non-trivial running statistics so eval-mode export is really exercised."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)


@pytest.fixture()
def cnn() -> nn.Module:
    torch.manual_seed(0)
    model = (
        build_model(ModelConfig(name="cnn_small"))
        if "cnn_small" in MODEL_REGISTRY
        else _local_cnn()
    )
    with torch.no_grad():
        _randomise_batchnorm(model)
    return model.eval()


@pytest.fixture()
def images() -> np.ndarray:
    return np.random.default_rng(1).random((5, 1, 28, 28), dtype=np.float32)


def _torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        y = model(torch.from_numpy(x))
    return (y[0] if isinstance(y, (tuple, list)) else y).numpy()


def test_export_is_valid_onnx_and_matches_pytorch_at_batch_1_and_5(cnn, images, tmp_path):
    path = export_onnx(cnn, tmp_path / "cnn.onnx")
    assert path == tmp_path / "cnn.onnx" and path.is_file()
    onnx.checker.check_model(str(path), full_check=True)
    # The batch dimension is symbolic: one file serves every batch size.
    input_dim0 = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert input_dim0.dim_param == "batch"
    for batch in (images[:1], images):
        got = run_onnx(path, batch)
        want = _torch_logits(cnn, batch)
        assert got.shape == want.shape == (batch.shape[0], 2)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
    report = check_onnx_equivalence(cnn, path, images)
    assert report.within_tolerance is True
    assert report.num_samples == 5
    assert report.argmax_agreement == 1.0
    assert 0.0 <= report.max_abs_diff <= 1e-4 + 1e-3 * np.abs(_torch_logits(cnn, images)).max()


def test_no_temporary_files_left_and_training_mode_restored(tmp_path, images):
    model = _local_cnn().train()
    export_onnx(model, tmp_path / "m.onnx")
    assert model.training, "export must restore the model's training mode"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_fixed_batch_export_is_run_in_padded_chunks(cnn, images, tmp_path):
    path = export_onnx(
        cnn, tmp_path / "fixed.onnx", input_shape=(2, 1, 28, 28), dynamic_batch=False
    )
    assert onnx_session(path).get_inputs()[0].shape == [2, 1, 28, 28]
    got = run_onnx(path, images)  # 5 images through a batch-2 graph: chunks 2, 2, 1 (+1 padding)
    np.testing.assert_allclose(got, _torch_logits(cnn, images), atol=1e-4, rtol=1e-3)
    with pytest.raises(ExportError, match="fixed batch of 2"):
        benchmark_onnx(path, images, batch_sizes=(1,), repeats=1)


def test_existing_file_kept_with_overwrite_false_and_replaced_whole_otherwise(cnn, tmp_path):
    target = tmp_path / "cnn.onnx"
    target.write_bytes(b"user data")
    with pytest.raises(ExportError, match="overwrite=True"):
        export_onnx(cnn, target, overwrite=False)
    assert target.read_bytes() == b"user data"
    export_onnx(cnn, target)
    onnx.checker.check_model(str(target))
    # A failing export leaves the previous file untouched.
    before = target.read_bytes()
    with pytest.raises(ExportError, match="torch.onnx.export failed"):
        export_onnx(
            cnn, target, input_shape=(1, 3, 28, 28)
        )  # wrong channel count for the first conv
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.onnx"]


def test_snn_is_refused_with_pointer_to_nir_and_loihi(tmp_path):
    snn = build_model(ModelConfig(name="snn_conv"))
    with pytest.raises(ExportError, match="NIR") as info:
        export_onnx(snn, tmp_path / "snn.onnx")
    assert "Loihi" in str(info.value)
    assert not (tmp_path / "snn.onnx").exists()
    # A plain module that merely contains neuron layers is an SNN too.
    wrapped = nn.Sequential(*snn.layers)
    with pytest.raises(ExportError, match="spiking"):
        export_onnx(wrapped, tmp_path / "wrapped.onnx")


def test_equivalence_check_raises_when_the_models_differ(cnn, images, tmp_path):
    path = export_onnx(cnn, tmp_path / "cnn.onnx")
    with torch.no_grad():
        last_linear = [m for m in cnn.modules() if isinstance(m, nn.Linear)][-1]
        last_linear.bias.add_(0.5)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        check_onnx_equivalence(cnn, path, images)


def test_onnx_macs_equal_a_hand_count(tmp_path):
    torch.manual_seed(0)
    tiny = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # 28x28 out: 4*28*28 outputs x 1*3*3
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, groups=2),  # (28-3)//2+1 = 13: 6*13*13 outputs x (4/2)*3*3
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 13 * 13, 10),  # 10 outputs x 1014
        nn.Linear(10, 2, bias=False),  # 2 x 10
    )
    path = export_onnx(tiny, tmp_path / "tiny.onnx")
    # Padded conv 3x3 on 28x28: taps inside the image per axis = 27 + 28 + 27 = 82 -> 82^2 per channel;
    # the padding taps (4*28*28*9 - 4*82^2) multiply zeros and are not counted (neurocxr.energy.macs).
    expected = [4 * 82 * 82, 6 * 13 * 13 * 2 * 9, 10 * 1014, 2 * 10]
    macs = onnx_macs(path)
    assert list(macs.values()) == expected
    assert sum(macs.values()) == 26896 + 18252 + 10140 + 20  # bias-free Linear exports as MatMul
    padded = [4 * 28 * 28 * 9, 6 * 13 * 13 * 2 * 9, 10 * 1014, 2 * 10]
    assert list(onnx_macs(path, include_padding=True).values()) == padded
    # A fixed batch of 3 triples every count; the dynamic batch counts per sample.
    fixed = export_onnx(
        tiny, tmp_path / "tiny3.onnx", input_shape=(3, 1, 28, 28), dynamic_batch=False
    )
    assert list(onnx_macs(fixed).values()) == [3 * m for m in expected]


def test_onnx_macs_and_count_cnn_macs_are_one_counter(cnn, tmp_path):
    """The PyTorch hook counter and the ONNX graph counter give the same numbers, padding or not."""
    from neurocxr.energy.estimate import count_cnn_macs

    torch.manual_seed(0)
    odd = nn.Sequential(
        nn.Conv2d(1, 3, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.Conv2d(3, 6, 3, padding=2, dilation=2, groups=3),
        nn.ReLU(),
        nn.Conv2d(6, 4, 3, padding="same"),
        nn.Flatten(),
        nn.Linear(4 * 14 * 14, 2),
    )
    for name, model in (("odd", odd), ("cnn_small", cnn)):
        path = export_onnx(model, tmp_path / f"{name}.onnx")
        for include_padding in (False, True):
            torch_count = count_cnn_macs(model, (1, 1, 28, 28), include_padding=include_padding)
            onnx_count = onnx_macs(path, include_padding=include_padding)
            assert list(torch_count.values()) == list(onnx_count.values()), (name, include_padding)
        assert sum(onnx_macs(path).values()) < sum(onnx_macs(path, include_padding=True).values())


def test_benchmark_reports_latency_and_consistent_throughput(cnn, images, tmp_path):
    path = export_onnx(cnn, tmp_path / "cnn.onnx")
    results = benchmark_onnx(path, images, batch_sizes=(1, 8), warmup=1, repeats=3, threads=1)
    assert [r["batch_size"] for r in results] == [1, 8]  # 8 > 5 images: the batch is tiled
    for r in results:
        assert r["latency_min_s"] <= r["latency_s"] <= r["latency_max_s"]
        assert r["latency_s"] > 0
        assert r["throughput_sps"] == pytest.approx(r["batch_size"] / r["latency_s"])
        assert r["latency_per_sample_s"] == pytest.approx(r["latency_s"] / r["batch_size"])
        assert r["provider"] in ("CPUExecutionProvider", "CUDAExecutionProvider")


def test_bad_inputs_give_neurocxr_errors(cnn, tmp_path):
    path = export_onnx(cnn, tmp_path / "cnn.onnx")
    with pytest.raises(DataError, match="expects"):
        run_onnx(path, np.zeros((2, 1, 32, 32), dtype=np.float32))
    with pytest.raises(DataError, match=r"\[B, C, H, W\]"):
        run_onnx(path, np.zeros((28, 28), dtype=np.float32))
    with pytest.raises(ExportError, match="not found"):
        onnx_session(tmp_path / "missing.onnx")
    with pytest.raises(ExportError, match="input_shape"):
        export_onnx(cnn, tmp_path / "x.onnx", input_shape=(1, 28, 28))


def test_resnet18_baseline_exports_and_matches(tmp_path, images):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="resnet18")).eval()
    path = export_onnx(model, tmp_path / "resnet18.onnx")
    result = check_onnx_equivalence(model, path, images[:2])
    assert result.argmax_agreement == 1.0


def _real_data_path() -> Path | None:
    value = os.environ.get("NEUROCXR_DATA")
    if not value:
        return None
    p = Path(value)
    p = p / "pneumoniamnist.npz" if p.is_dir() else p
    return p if p.is_file() else None


@pytest.mark.skipif(
    _real_data_path() is None, reason="NEUROCXR_DATA unset or pneumoniamnist.npz not found there"
)
def test_equivalence_on_real_pneumoniamnist_images(cnn, tmp_path):
    with np.load(_real_data_path()) as data:
        x = (data["test_images"][:64].astype(np.float32) / 255.0)[:, None]
    path = export_onnx(cnn, tmp_path / "cnn.onnx")
    result = check_onnx_equivalence(cnn, path, x)
    assert result.num_samples == 64 and result.argmax_agreement == 1.0
