"""NeuroBench-style operation counts measured on the PyTorch SNN itself.

Definitions follow NeuroBench 2.3 (see ../../shared/docs/energy.md):
- effective synaptic ops of a Conv/Linear layer = the layer applied with binarised weights
  (W != 0) to binarised input (x != 0), bias excluded, summed over time steps, per sample (this is
  the real fan-out of every non-zero input, border-correct for padded convolutions);
- dense ops = the same with all-ones weights and inputs (what a non-event-driven accelerator does);
- ops are ACs when every input value is in {-1, 0, 1}, else MACs;
- activation sparsity = zero outputs / all outputs of a neuron layer over steps and samples;
- neuron updates = neurons x time steps.

One entry per synaptic layer (Conv/Linear, including the readout), holding the neuron layer that
follows it; neurons that come before any synaptic layer (direct-encoding input neurons) make an
``input`` entry. Without pooling between layers, the entries line up one to one with the layers
of the LoihiProgram exported from the same model, and the counts equal the emulator's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurocxr.errors import NeurocxrError
from neurocxr.hardware_sims.results import LayerCounts
from neurocxr.models import neurons as neuron_lib
from neurocxr.models.base import SpikingSequential, is_neuron


def _apply(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The layer's linear map with ``weight`` instead of its own and no bias."""
    if isinstance(layer, nn.Linear):
        return F.linear(x, weight)
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(x, weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    if isinstance(layer, nn.Conv1d):
        return F.conv1d(x, weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    raise TypeError(type(layer).__name__)


def _is_synaptic(layer: nn.Module) -> bool:
    return isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d))


class _Entry:
    def __init__(self, name: str, kind: str, layer: nn.Module | None, batch: int) -> None:
        self.name = name
        self.kind = kind
        self.layer = layer
        zeros = lambda: np.zeros(batch, dtype=np.int64)  # noqa: E731
        self.input_spikes = zeros()
        self.input_abs_sum = np.zeros(
            batch, dtype=np.float64
        )  # sum of |input| (KerasSpiking's rate)
        self.input_size = 0
        self.synaptic_ops = zeros()
        self.dense_synaptic_ops = zeros()
        self.output_spikes = zeros()
        self.neuron_updates = zeros()
        self.active_neuron_updates = (
            zeros()
        )  # neuron-steps with input or state != 0 (Loihi's "active")
        self.has_neuron = False
        self.num_neurons = 0
        self.fan_in = 0
        self.num_synapses = 0
        self.all_ternary = True  # every input value in {-1, 0, 1}

    def count_synapses(self, x: torch.Tensor) -> None:
        assert self.layer is not None
        w = self.layer.weight.detach()
        batch = x.shape[0]
        nonzero_in = (x != 0).to(w.dtype)
        eff = _apply(self.layer, nonzero_in, (w != 0).to(w.dtype))
        dense = _apply(self.layer, torch.ones_like(nonzero_in), torch.ones_like(w))
        self.synaptic_ops += eff.reshape(batch, -1).sum(1).round().to(torch.int64).numpy()
        self.dense_synaptic_ops += dense.reshape(batch, -1).sum(1).round().to(torch.int64).numpy()
        self.input_spikes += nonzero_in.reshape(batch, -1).sum(1).to(torch.int64).numpy()
        self.input_abs_sum += x.detach().abs().reshape(batch, -1).sum(1).double().numpy()
        self.input_size = int(x[0].numel())
        if self.all_ternary and not bool(torch.all((x == 0) | (x.abs() == 1))):
            self.all_ternary = False
        self.fan_in = int(np.prod(w.shape[1:]))
        self.num_synapses = int((w != 0).sum())
        if not self.has_neuron:
            self.num_neurons = int(eff[0].numel())

    def count_neurons(self, spikes: torch.Tensor, active: torch.Tensor | None = None) -> None:
        batch = spikes.shape[0]
        self.has_neuron = True
        self.num_neurons = int(spikes[0].numel())
        self.output_spikes += (spikes != 0).reshape(batch, -1).sum(1).to(torch.int64).numpy()
        self.neuron_updates += self.num_neurons
        if active is None:
            self.active_neuron_updates += self.num_neurons
        else:
            self.active_neuron_updates += active.reshape(batch, -1).sum(1).to(torch.int64).numpy()

    def as_dict(self, time_steps: int) -> dict[str, Any]:
        slots = float(self.neuron_updates.sum())
        return {
            "name": self.name,
            "kind": self.kind,
            "num_neurons": self.num_neurons,
            "has_neuron": self.has_neuron,
            "fan_in": self.fan_in,
            "num_synapses": self.num_synapses,
            "time_steps": time_steps,
            "input_spikes": self.input_spikes,
            "output_spikes": self.output_spikes,
            "synaptic_ops": self.synaptic_ops,
            "dense_synaptic_ops": self.dense_synaptic_ops,
            "neuron_updates": self.neuron_updates,
            "active_neuron_updates": self.active_neuron_updates,
            "op_type": ("AC" if self.all_ternary else "MAC") if self.layer is not None else None,
            "input_abs_sum": self.input_abs_sum,
            "input_size": self.input_size,
            "activation_sparsity": (1.0 - float(self.output_spikes.sum()) / slots)
            if slots
            else None,
        }


def _state_tensors(state: Any) -> list[torch.Tensor]:
    """The tensors inside a neuron state (a tensor, a tuple of them, or a Norse state namedtuple)."""
    if state is None:
        return []
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, (tuple, list)):
        return [t for part in state for t in _state_tensors(part)]
    return []


def _active_mask(current: torch.Tensor, state: Any) -> torch.Tensor:
    """Neurons whose update this step is "active" in Loihi's sense (Davies 2018 Table 2: active vs
    inactive updates): they receive a non-zero input current (synaptic input or bias) or carry a
    non-zero state from the previous step. The others only confirm an all-zero state."""
    active = current != 0
    for t in _state_tensors(state):
        if t.shape == current.shape:
            active = active | (t != 0)
    return active


def neurobench_counts(model: SpikingSequential, x: torch.Tensor) -> list[dict[str, Any]]:
    """Per-layer NeuroBench-style counts of ``model`` run on ``x`` [T, B, ...] (per-sample arrays).

    Each dict: name, kind ("input" / "conv" / "dense"), num_neurons, has_neuron, fan_in,
    num_synapses, time_steps, input_spikes, output_spikes, synaptic_ops, dense_synaptic_ops,
    neuron_updates, active_neuron_updates (int64 arrays of length B), op_type ("AC"/"MAC"; None for the input entry),
    activation_sparsity, input_abs_sum (float64 per sample: sum of |input| over steps) and
    input_size (input elements per step).
    """
    if not isinstance(model, SpikingSequential):
        raise NeurocxrError(
            f"neurobench_counts needs a SpikingSequential SNN, got {type(model).__name__}"
        )
    if x.dim() < 3:
        raise NeurocxrError(f"SNN input must be [T, B, ...], got shape {tuple(x.shape)}")
    steps, batch = int(x.shape[0]), int(x.shape[1])
    modules = list(model.layers) + ([model.readout] if model.readout is not None else [])
    names = [f"layers.{i}" for i in range(len(model.layers))] + (
        ["readout"] if model.readout is not None else []
    )
    # Build one entry per synaptic layer (and one for input neurons before any synapse).
    owner: list[_Entry | None] = []
    entries: list[_Entry] = []
    current: _Entry | None = None
    for name, m in zip(names, modules):
        if _is_synaptic(m):
            kind = "dense" if isinstance(m, nn.Linear) else "conv"
            current = _Entry(name, kind, m, batch)
            entries.append(current)
        elif is_neuron(m):
            if current is None:
                current = _Entry(name, "input", None, batch)
                entries.append(current)
            elif getattr(current, "_neuron_module", None) is not None:
                raise NeurocxrError(
                    f"{name}: two neuron layers without a synaptic layer between them"
                )
            current._neuron_module = m  # type: ignore[attr-defined]
        owner.append(current)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            states: list[Any] = [None] * len(model.layers)
            for t in range(steps):
                h = x[t]
                for i, layer in enumerate(model.layers):
                    entry = owner[i]
                    if is_neuron(layer):
                        active = _active_mask(h, states[i])
                        h, states[i] = neuron_lib.step(layer, h, states[i])
                        assert entry is not None
                        entry.count_neurons(h, active)
                    else:
                        if _is_synaptic(layer):
                            assert entry is not None
                            entry.count_synapses(h)
                        h = layer(h)
                if model.readout is not None:
                    entry = owner[-1]
                    assert entry is not None
                    entry.count_synapses(h)
    finally:
        model.train(was_training)
    return [e.as_dict(steps) for e in entries]


def to_layer_counts(entries: list[dict[str, Any]]) -> list[LayerCounts]:
    """Turn neurobench_counts output into LayerCounts, so estimate_energy can use it."""
    out = [
        LayerCounts(
            name=e["name"],
            kind=e["kind"],
            num_neurons=e["num_neurons"],
            fan_in=e["fan_in"],
            num_synapses=e["num_synapses"],
            time_steps=e["time_steps"],
            input_spikes=e["input_spikes"],
            output_spikes=e["output_spikes"],
            synaptic_ops=e["synaptic_ops"],
            dense_synaptic_ops=e["dense_synaptic_ops"],
            neuron_updates=e["neuron_updates"],
        )
        for e in entries
    ]
    for counts, e in zip(out, entries):
        if e.get("active_neuron_updates") is not None:
            # read by neurocxr.energy.timing.split_updates (LayerCounts has no field for it yet)
            counts.active_neuron_updates = e["active_neuron_updates"]  # type: ignore[attr-defined]
    return out


def static_metrics(model: nn.Module) -> dict[str, float]:
    """NeuroBench static metrics: footprint (bytes of parameters + buffers) and connection
    sparsity (fraction of zero weights in Conv/Linear layers)."""
    footprint = sum(p.numel() * p.element_size() for p in model.parameters())
    footprint += sum(b.numel() * b.element_size() for b in model.buffers())
    total = zeros = 0
    for m in model.modules():
        if _is_synaptic(m):
            total += m.weight.numel()
            zeros += int((m.weight == 0).sum())
    return {
        "footprint_bytes": float(footprint),
        "connection_sparsity": zeros / total if total else 0.0,
    }
