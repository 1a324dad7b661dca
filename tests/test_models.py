"""Every registered model builds, runs at 28x28 with the right shapes, and the Norse and published
variants compute what their documentation says."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neurocxr.models import (
    MODEL_REGISTRY,
    ModelConfig,
    SpikingSequential,
    build_model,
    is_snn,
    model_info,
)
from neurocxr.models.base import is_neuron
from neurocxr.models.published import SlimiCnnGruSnn

EXPECTED_MODELS = {"snn_conv", "snn_norse", "gatti2025", "slimi2025", "cnn_small", "resnet18"}
T, B = 4, 3


def _direct(images: torch.Tensor, steps: int = T) -> torch.Tensor:
    return images.unsqueeze(0).expand(steps, *images.shape).contiguous()


def test_registry_holds_all_models_with_honest_flags() -> None:
    assert EXPECTED_MODELS <= set(MODEL_REGISTRY)
    assert {n for n in EXPECTED_MODELS if model_info(n).kind == "cnn"} == {"cnn_small", "resnet18"}
    deployable = {n for n in EXPECTED_MODELS if model_info(n).loihi_deployable}
    assert deployable == {"snn_conv", "snn_norse", "gatti2025"}
    assert "AvgPool" in model_info("gatti2025").description


@pytest.mark.parametrize("name", sorted(EXPECTED_MODELS))
def test_output_shapes_at_28(name: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(name=name, num_steps=T)
    model = build_model(config).eval()
    images = torch.rand(B, 1, 28, 28)
    with torch.no_grad():
        if is_snn(config):
            out = model(_direct(images), record=True)
            assert out.logits.shape == (B, 2)
            assert out.readout_steps.shape == (T, B, 2)
            assert out.spikes and all(s.shape[:2] == (T, B) for s in out.spikes)
            assert all(torch.isin(s, torch.tensor([0.0, 1.0])).all() for s in out.spikes)
            assert isinstance(model, SlimiCnnGruSnn if name == "slimi2025" else SpikingSequential)
        else:
            logits = model(images)
            assert logits.shape == (B, 2)
    assert torch.isfinite(out.logits if is_snn(config) else logits).all()


def test_snn_conv_at_64_pixels() -> None:
    model = build_model(ModelConfig(name="snn_conv", image_size=64, num_steps=2)).eval()
    with torch.no_grad():
        out = model(_direct(torch.rand(2, 1, 64, 64), 2))
    assert out.logits.shape == (2, 2)
    linear = [m for m in model.layers if isinstance(m, nn.Linear)][0]
    assert linear.in_features == 32 * 16 * 16


def test_snn_norse_spikes_equal_snn_conv_with_the_same_weights() -> None:
    """tau_mem = dt/(1-beta) and v_th = (1-beta)*threshold make LIFBoxCell step like snnTorch Leaky."""
    torch.manual_seed(1)
    config = ModelConfig(name="snn_conv", encoding="rate", num_steps=8, beta=0.9, threshold=0.5)
    snntorch_model = build_model(config).eval()
    norse_model = build_model(ModelConfig(**{**config.to_dict(), "name": "snn_norse"})).eval()
    synaptic = {
        k: v for k, v in snntorch_model.state_dict().items() if k in norse_model.state_dict()
    }
    assert set(synaptic) == set(norse_model.state_dict())  # Norse keeps its neuron parameters out
    norse_model.load_state_dict(synaptic)
    x = (torch.rand(8, 4, 1, 28, 28) < 0.4).float()
    with torch.no_grad():
        a = snntorch_model(x, record=True)
        b = norse_model(x, record=True)
    assert a.spikes is not None and b.spikes is not None
    total = sum(s.sum() for s in a.spikes)
    assert total > 100  # the comparison is not between two silent networks
    for sa, sb in zip(a.spikes, b.spikes):
        assert (sa != sb).float().mean() < 1e-3  # float rounding may flip a spike at the threshold
    assert torch.allclose(a.logits, b.logits, atol=0.05)


def test_snn_norse_input_neurons_fire_like_snn_conv_input_neurons() -> None:
    conv = build_model(ModelConfig(name="snn_conv", num_steps=16)).eval()
    norse = build_model(ModelConfig(name="snn_norse", num_steps=16)).eval()
    pixels = 0.05 + 0.95 * torch.rand(1, 1, 28, 28)  # the darkest pixels are documented to differ
    x = _direct(pixels, 16)
    with torch.no_grad():
        s_conv = conv(x, record=True).spikes[0]
        s_norse = norse(x, record=True).spikes[0]
    assert s_conv.sum() > 1000
    assert (s_conv != s_norse).float().mean() < 0.01


def test_gatti2025_layers_follow_the_paper_with_avgpool() -> None:
    model = build_model(ModelConfig(name="gatti2025", num_steps=2))
    convs = [m.out_channels for m in model.layers if isinstance(m, nn.Conv2d)]
    linears = [m.out_features for m in model.layers if isinstance(m, nn.Linear)]
    assert convs == [8, 64, 128] and linears == [128, 64, 8]
    assert any(
        isinstance(m, nn.AvgPool2d) and m.kernel_size == 2 and m.stride == 2 for m in model.layers
    )
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    # input neurons + 3 conv + 3 fc neuron layers; readout without bias
    assert sum(is_neuron(m) for m in model.layers) == 7
    assert model.readout is not None and model.readout.bias is None


def test_slimi2025_readout_steps_end_at_logits_and_spikes_are_mean_aggregated() -> None:
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(name="slimi2025", num_steps=5, channels=(8, 16, 32), extra={"gru_hidden": 16})
    ).eval()
    assert model.gru.bidirectional and model.gru.num_layers == 2 and model.gru.hidden_size == 16
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = _direct(torch.rand(2, 1, 28, 28), 5)
    with torch.no_grad():
        out = model(x, record=True)
        assert torch.equal(out.readout_steps[-1], out.logits)
        assert torch.allclose(model.head(out.spikes[0].mean(0)), out.logits, atol=1e-6)
    with pytest.raises(ValueError, match="expects"):
        model(torch.rand(2, 1, 28, 28))


def test_resnet18_stem_depends_on_image_size() -> None:
    small = build_model(ModelConfig(name="resnet18", image_size=28))
    assert (
        small.conv1.in_channels == 1
        and small.conv1.kernel_size == (3, 3)
        and small.conv1.stride == (1, 1)
    )
    assert isinstance(small.maxpool, nn.Identity)
    large = build_model(ModelConfig(name="resnet18", image_size=128))
    assert large.conv1.kernel_size == (7, 7) and isinstance(large.maxpool, nn.MaxPool2d)
    with torch.no_grad():
        assert large.eval()(torch.rand(1, 1, 128, 128)).shape == (1, 2)


def test_cnn_small_matches_snn_conv_size() -> None:
    cnn = build_model(ModelConfig(name="cnn_small"))
    snn = build_model(ModelConfig(name="snn_conv"))
    n_cnn = sum(p.numel() for p in cnn.parameters())
    n_snn = sum(p.numel() for p in snn.parameters())
    assert abs(n_cnn - n_snn) <= 2  # only the CNN's output bias differs


@pytest.mark.parametrize(
    "name", sorted(n for n, info in MODEL_REGISTRY.items() if info.loihi_deployable)
)
def test_every_model_marked_deployable_exports_to_a_loihi_program(name: str) -> None:
    """`loihi_deployable=True` is a promise: the model goes through NIR to a valid LoihiProgram."""
    from neurocxr.exporters.loihi import nir_to_program
    from neurocxr.exporters.nir import to_nir

    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, num_steps=4)).eval()
    program = nir_to_program(to_nir(model, input_shape=(1, 28, 28)))
    program.validate()
    assert program.input_kind == "bias" and program.has_readout


@pytest.mark.parametrize(
    "name",
    sorted(
        n for n, info in MODEL_REGISTRY.items() if info.kind == "snn" and not info.loihi_deployable
    ),
)
def test_snns_marked_not_deployable_are_refused_by_name(name: str) -> None:
    from neurocxr.errors import ExportError
    from neurocxr.exporters.nir import to_nir

    model = build_model(ModelConfig(name=name, num_steps=2, channels=(4, 8, 8))).eval()
    with pytest.raises(ExportError) as err:
        to_nir(model, input_shape=(1, 28, 28))
    assert "Loihi" in str(err.value) or "NIR" in str(err.value)
