"""A differentiable estimate of what one inference costs on a neuromorphic chip, for training.

The energy report charges, per sample (`neurocxr.energy.estimate.estimate_energy` on counts
from the emulator):

    dynamic = sum over synaptic layers (spikes arriving x fan-out of each spike) x E_synop
            + sum over neuron layers (neurons x time steps) x E_update

with E_synop / E_update taken from a device profile (`neurocxr.energy.profiles`). This module
computes the same quantity from the float model's spikes during training, so that adding
``lambda x chip_cost`` to the loss lowers the energy the report will show:

- the spikes are the model's own (surrogate-gradient) spikes, so the synaptic term is
  differentiable; neuron updates do not depend on the weights (a constant, included so the value
  is the estimate in joules, not a proxy);
- the fan-out of a spike is the chip's: border-correct for convolutions (computed per layer from
  its pattern of non-zero weights, so pruned synapses cost nothing; `ChipCostModel.refresh` after
  pruning), and with a preceding average/sum pool fused into the synapse as the exporter fuses it
  (each pre-pool spike reaches every tap its pooled pixel reaches). The chip also skips weights
  quantised to zero, so this is an upper bound that is tight for trained float weights;
- the input layer: with direct encoding the input neurons are a neuron layer like any other;
  with a spike-train encoding (rate, latency, regular) the encoded input spikes arrive at the
  first synaptic layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neurocxr.energy.profiles import resolve_profile
from neurocxr.errors import NeurocxrError
from neurocxr.models.base import SpikingSequential, is_neuron


@dataclass(frozen=True)
class SynapticStage:
    """One synaptic layer as the chip sees it: which spikes feed it and each spike's fan-out."""

    name: str
    source: int  # index into the spike list: -1 = encoded input, k = k-th neuron layer
    fanout: torch.Tensor  # per input position (shape of the source's spike map without T, B)


def _fanout_map(layer: nn.Module, pool: tuple[int, int], in_shape: tuple[int, ...]) -> torch.Tensor:
    """Non-zero synapses reached by one spike at each position of a map of shape ``in_shape``."""
    present = (layer.weight.detach() != 0).to(torch.float64)
    with torch.enable_grad():
        x = torch.zeros((1,) + tuple(in_shape), dtype=torch.float64, requires_grad=True)
        h = x
        if pool != (1, 1):
            h = F.avg_pool2d(h, pool) * (
                pool[0] * pool[1]
            )  # sum pool: every pre-pool spike counts once
        if isinstance(layer, nn.Conv2d):
            out = F.conv2d(
                h, present, None, layer.stride, layer.padding, layer.dilation, layer.groups
            )
        elif isinstance(layer, nn.Linear):
            out = F.linear(h.flatten(1), present)
        else:  # pragma: no cover - callers pass synaptic layers only
            raise TypeError(type(layer).__name__)
        (grad,) = torch.autograd.grad(out.sum(), x)
    return torch.round(grad[0]).float()


def synaptic_stages(
    model: nn.Module, input_shape: tuple[int, ...]
) -> tuple[list[SynapticStage], list[int]]:
    """The chip's synaptic layers of a `SpikingSequential` and the neuron count of each neuron layer.

    Walks the layer list once with a probe input to learn every map's shape.
    """
    if not isinstance(model, SpikingSequential):
        raise NeurocxrError(
            f"the chip-cost regulariser needs a SpikingSequential SNN, got {type(model).__name__}"
        )
    stages: list[SynapticStage] = []
    neuron_sizes: list[int] = []
    source, pool = -1, (1, 1)
    h = torch.zeros((1,) + tuple(input_shape))
    source_shape: tuple[int, ...] = tuple(input_shape)
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            if is_neuron(layer):
                neuron_sizes.append(int(h[0].numel()))
                source, pool, source_shape = len(neuron_sizes) - 1, (1, 1), tuple(h.shape[1:])
                continue
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                fan = _fanout_map(layer, pool, source_shape)
                stages.append(
                    SynapticStage(f"{i}:{type(layer).__name__}", source, fan.reshape(source_shape))
                )
                pool = (1, 1)
            elif isinstance(layer, (nn.AvgPool2d,)):
                k = (
                    layer.kernel_size
                    if isinstance(layer.kernel_size, tuple)
                    else (layer.kernel_size,) * 2
                )
                pool = (pool[0] * int(k[0]), pool[1] * int(k[1]))
            h = layer(h)
        if model.readout is not None:
            fan = _fanout_map(model.readout, pool, source_shape)
            stages.append(SynapticStage("readout", source, fan.reshape(source_shape)))
            neuron_sizes.append(
                int(model.readout.out_features)
            )  # the readout is simulated every step too
    return stages, neuron_sizes


@dataclass
class ChipCost:
    """Per-sample differentiable chip energy (J) and its parts."""

    energy_j: torch.Tensor  # [B]
    synaptic_ops: torch.Tensor  # [B]
    neuron_updates: float


class ChipCostModel:
    """Chip cost of one model on one device profile; build once, call on every batch.

    ``profile``: a name from `neurocxr.energy.profiles` (or a DeviceProfile). It must be an
    event-driven (spiking) profile: on a non-spiking device every synapse is computed every step,
    so spikes do not change the cost and there is nothing to regularise.
    """

    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, ...],
        num_steps: int,
        profile: object = "loihi2",
    ) -> None:

        self.profile = resolve_profile(profile)  # type: ignore[arg-type]
        if not self.profile.spiking:
            raise NeurocxrError(
                f"profile '{self.profile.name}' is not event-driven: its energy does not depend on spikes, so a "
                "chip-cost regulariser on it would do nothing; choose a neuromorphic profile such as 'loihi2'"
            )
        self.input_shape = tuple(input_shape)
        self.stages, self.neuron_sizes = synaptic_stages(model, self.input_shape)
        self.num_neuron_layers = len(self.neuron_sizes) - (
            1 if getattr(model, "readout", None) is not None else 0
        )
        self.num_steps = int(num_steps)

    def refresh(self, model: nn.Module) -> None:
        """Recount the fan-outs from ``model``'s weights now (after pruning zeroed some)."""
        self.stages, _ = synaptic_stages(model, self.input_shape)

    def neuron_updates(self, num_steps: int | None = None) -> float:
        return float(sum(self.neuron_sizes)) * (self.num_steps if num_steps is None else num_steps)

    def __call__(self, encoded_input: torch.Tensor, spikes: list[torch.Tensor]) -> ChipCost:
        """``encoded_input`` [T, B, ...] and the model's recorded ``spikes`` (forward(record=True))."""
        if len(spikes) != self.num_neuron_layers:
            raise NeurocxrError(
                f"got spikes of {len(spikes)} neuron layers, the model has {self.num_neuron_layers} "
                "(call the model with record=True)"
            )
        synops = torch.zeros(
            encoded_input.shape[1], dtype=torch.float32, device=encoded_input.device
        )
        for stage in self.stages:
            src = encoded_input if stage.source < 0 else spikes[stage.source]
            per_position = src.sum(0).reshape(src.shape[1], -1)  # spikes over the run, per sample
            synops = synops + per_position @ stage.fanout.reshape(-1).to(per_position)
        steps = int(encoded_input.shape[0])
        updates = self.neuron_updates(steps)
        energy = (
            synops * self.profile.energy_per_synop_j
            + updates * self.profile.energy_per_neuron_update_j
        )
        return ChipCost(energy, synops, updates)


def chip_cost_of(
    model: nn.Module, encoded_input: torch.Tensor, profile: object = "loihi2"
) -> tuple[torch.Tensor, ChipCost]:
    """Run ``model`` on ``encoded_input`` with recording; return (logits, cost). For one-off use;
    training builds one `ChipCostModel` and reuses it."""
    cost_model = ChipCostModel(
        model, tuple(encoded_input.shape[2:]), encoded_input.shape[0], profile
    )
    out = model(encoded_input, record=True)
    return out.logits, cost_model(encoded_input, out.spikes or [])
