"""Magnitude pruning of an SNN's synapses, for the energy a chip charges per synaptic event.

A spike on Loihi costs one synaptic op per *stored* synapse it reaches, and weights that are zero
are not stored (`neurocxr.hardware_sims.counts`: fan-out to non-zero weights; the energy report
charges those). Dense fine-tuned networks spend most of their dynamic energy on synaptic ops (a
converted 6-conv VGG at T = 8: about 85 %), so zeroing the weights that matter least lowers the
energy roughly in proportion, with the accuracy recovered by training on.

`WeightPruner` zeroes, in every conv/linear layer but the readout (a few hundred weights that
carry the decision), the fraction ``s(t)`` of weights with the smallest magnitude, per layer so that
layers with different scales (a converted network's are data-normalised) are pruned alike. ``s``
rises along the cubic schedule of Zhu & Gupta (2017, "To prune, or not to prune") from 0 to the
target over ``ramp_steps`` optimiser steps and stays there; the mask is re-applied after every
step, so the forward pass never sees a pruned weight grow back. Pruned weights sit at exactly
0.0, which the exporter's 8-bit grid keeps at 0, so the chip stores none of them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from neurocxr.errors import ConfigError
from neurocxr.models.base import SpikingSequential


def _weight_tensor(layer: nn.Module) -> torch.Tensor:
    """The float weight the optimiser updates (under a QAT parametrisation, its original)."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original  # type: ignore[union-attr,return-value]
    return layer.weight  # type: ignore[return-value]


def prunable_layers(model: nn.Module) -> list[nn.Module]:
    """The conv/linear layers of a `SpikingSequential` that pruning thins: all but the readout."""
    if not isinstance(model, SpikingSequential):
        raise ConfigError(
            f"pruning acts on a SpikingSequential SNN (the chip's synapses), got {type(model).__name__}"
        )
    return [m for m in model.layers if isinstance(m, (nn.Conv2d, nn.Linear))]


def cubic_sparsity(step: int, ramp_steps: int, target: float) -> float:
    """Zhu & Gupta's schedule: ``target x (1 - (1 - step/ramp_steps)^3)``, ``target`` after the ramp."""
    if ramp_steps <= 0 or step >= ramp_steps:
        return target
    return target * (1.0 - (1.0 - max(step, 0) / ramp_steps) ** 3)


class WeightPruner:
    """Per-layer magnitude masks that grow to ``target`` over ``ramp_steps`` optimiser steps."""

    def __init__(self, model: nn.Module, target: float, ramp_steps: int) -> None:
        if not 0.0 < target < 1.0:
            raise ConfigError(f"prune must be a fraction in (0, 1), got {target!r}")
        self.layers = prunable_layers(model)
        self.target = float(target)
        self.ramp_steps = max(1, int(ramp_steps))
        self.steps = 0
        self.masks = [torch.ones_like(_weight_tensor(m), dtype=torch.bool) for m in self.layers]

    @property
    def sparsity(self) -> float:
        """The fraction the schedule asks for now."""
        return cubic_sparsity(self.steps, self.ramp_steps, self.target)

    @property
    def reached(self) -> bool:
        """True once the masks hold the target fraction (epochs before that are not eligible as best)."""
        return self.steps >= self.ramp_steps

    @torch.no_grad()
    def _update_masks(self) -> None:
        fraction = self.sparsity
        for i, layer in enumerate(self.layers):
            w = _weight_tensor(layer)
            # at least one weight stays: an all-zero layer silences the rest of the chain
            k = min(int(round(fraction * w.numel())), w.numel() - 1)
            if k <= 0:
                continue
            # the k smallest magnitudes go; masked weights are 0, so a mask only ever grows
            magnitude = (w.abs() * self.masks[i]).flatten()
            cut = torch.kthvalue(magnitude, k).values
            mask = magnitude > cut
            # ties at the cut: keep exactly numel - k (the larger index wins, deterministically)
            short = int(w.numel() - k - int(mask.sum()))
            if short > 0:
                ties = torch.nonzero(magnitude == cut).flatten()
                mask[ties[-short:]] = True
            self.masks[i] = mask.view_as(w) & self.masks[i]

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the pruned weights (after an optimiser step moved them)."""
        for layer, mask in zip(self.layers, self.masks):
            _weight_tensor(layer).mul_(mask)

    def step(self) -> None:
        """One optimiser step done: advance the schedule, update the masks, zero the pruned weights."""
        self.steps += 1
        if self.steps <= self.ramp_steps:
            self._update_masks()
        self.apply()

    def finish(self) -> None:
        """Jump to the target (a run that stopped before the end of the ramp) and apply it."""
        self.steps = max(self.steps, self.ramp_steps)
        self._update_masks()
        self.apply()

    def measured_sparsity(self) -> float:
        """Fraction of zero weights in the pruned layers, as the chip will see them."""
        zeros = sum(int((_weight_tensor(m) == 0).sum()) for m in self.layers)
        total = sum(_weight_tensor(m).numel() for m in self.layers)
        return zeros / max(total, 1)
