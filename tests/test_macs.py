"""The one MAC counter (`neurocxr.energy.macs.torch_layer_traffic`) against torch's own
`FlopCounterMode` on every CNN the project builds."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import neurocxr.models  # noqa: F401  (registers the built-in models)
from neurocxr.energy.estimate import count_cnn_macs
from neurocxr.energy.macs import torch_layer_traffic
from neurocxr.models.base import MODEL_REGISTRY, ModelConfig, build_model

CNNS = sorted(name for name, info in MODEL_REGISTRY.items() if info.kind == "cnn")


def test_every_cnn_is_listed() -> None:
    assert {"cnn_small", "medspectralnet"} <= set(CNNS)


@pytest.mark.parametrize("name", CNNS)
def test_mac_counter_equals_flop_counter(name: str) -> None:
    """FlopCounterMode counts 2 FLOPs per multiply-accumulate of every conv, linear and matrix
    product, padding taps included; our counter with ``include_padding=True`` must give exactly half.
    (A model that multiplied activations together outside Conv/Linear modules would fail here.)"""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name)).eval()
    size = model.config.image_size  # type: ignore[attr-defined]
    shape = (1, 1, size, size)
    ours = sum(row.macs for row in torch_layer_traffic(model, shape, include_padding=True))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(shape))
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    assert ours == flops // 2, f"{name}: ours {ours} MACs, torch {flops // 2}"
    assert ours == sum(count_cnn_macs(model, shape, include_padding=True).values())
