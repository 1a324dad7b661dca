"""Quantisation-aware fine-tuning: the exporter's fixed-point weights and thresholds in the forward pass.

The Loihi exporter (`neurocxr.exporters.loihi.nir_to_program`) chooses, per synaptic layer, a
scale ``s`` and an 8-bit weight grid (multiples of ``weight_step`` in ``weight_range``), and turns
weights, biases and thresholds into integers ``round(w * s)`` on that grid. Fine-tuning with those
integers (divided back by ``s``) in the forward pass, and straight-through gradients to the float
weights, makes the float model compute what the chip computes; `FakeQuantiser.finalise` then
leaves the weights exactly on the chip's grid so that exporting them changes nothing.

The scales and grids come from running the exporter itself on the current model (`refresh`), so
this module never re-implements the exporter's choice; it only maps program layers back to the
torch layers they came from (the k-th conv/linear of a `SpikingSequential`, then its readout),
including the gain of an average pool fused into the layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from neurocxr.errors import NeurocxrError
from neurocxr.exporters.loihi import nir_to_program
from neurocxr.exporters.nir import to_nir
from neurocxr.exporters.program import BIAS_MAX, BIAS_MIN
from neurocxr.models.base import ModelConfig, SpikingSequential, is_neuron


class _FakeQuant(nn.Module):
    """Parametrization ``w -> w + (q(w) - w).detach()`` with ``q(w) = clip(round(w k / step) step) / k``."""

    def __init__(self, lo: float, hi: float) -> None:
        super().__init__()
        self.register_buffer(
            "k", torch.zeros(())
        )  # integers per float unit (scale x fused gains); 0 = off
        self.register_buffer("step", torch.ones(()))
        self.register_buffer("lo", torch.tensor(float(lo)))
        self.register_buffer("hi", torch.tensor(float(hi)))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if float(self.k) <= 0:
            return w
        q = torch.clamp(torch.round(w * self.k / self.step) * self.step, self.lo, self.hi) / self.k
        return w + (q - w).detach()


def _synaptic_layers(model: SpikingSequential) -> list[tuple[nn.Module, float, nn.Module | None]]:
    """(synaptic layer, gain of the pooling fused into it, the neuron it feeds or None) in program order."""
    out: list[tuple[nn.Module, float, nn.Module | None]] = []
    gain = 1.0
    layers = list(model.layers)
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.AvgPool2d):
            k = (
                layer.kernel_size
                if isinstance(layer.kernel_size, tuple)
                else (layer.kernel_size,) * 2
            )
            gain /= float(k[0] * k[1])
        elif isinstance(layer, (nn.Conv2d, nn.Linear)):
            neuron = next(
                (
                    m
                    for m in layers[i + 1 :]
                    if is_neuron(m) or isinstance(m, (nn.Conv2d, nn.Linear))
                ),
                None,
            )
            out.append((layer, gain, neuron if neuron is not None and is_neuron(neuron) else None))
            gain = 1.0
    if model.readout is not None:
        out.append((model.readout, gain, None))
    return out


class FakeQuantiser:
    """Puts the exporter's integer weights/biases/thresholds into ``model``'s forward pass.

    Usage: ``fq = FakeQuantiser(model, config); fq.refresh()`` (and again every few batches while
    training, since the exporter's scale follows the largest weight); ``fq.finalise()`` at the end.
    Only snnTorch-style neurons with ``threshold``/``beta`` buffers get their threshold and decay
    snapped; neuron gains other than 1 are refused (the exporter folds them into the weights).
    """

    def __init__(self, model: nn.Module, config: ModelConfig) -> None:
        if not isinstance(model, SpikingSequential):
            raise NeurocxrError(
                f"quantisation-aware training needs a SpikingSequential SNN, got {type(model).__name__}"
            )

        self.model, self.config = model, config
        self.layers = _synaptic_layers(model)
        self.weight_q: list[_FakeQuant] = []
        self.bias_q: list[_FakeQuant | None] = []
        for layer, _, _ in self.layers:
            wq = _FakeQuant(-256, 255)
            parametrize.register_parametrization(layer, "weight", wq)
            self.weight_q.append(wq)
            if getattr(layer, "bias", None) is not None:
                bq = _FakeQuant(BIAS_MIN, BIAS_MAX)
                parametrize.register_parametrization(layer, "bias", bq)
                self.bias_q.append(bq)
            else:
                self.bias_q.append(None)
        self.program: Any = None

    def export(self) -> Any:
        """The LoihiProgram the exporter makes of the model as it is now."""

        shape = (self.config.in_channels, self.config.image_size, self.config.image_size)
        was_training = self.model.training
        self.model.eval()
        try:
            return nir_to_program(to_nir(self.model, input_shape=shape))
        finally:
            self.model.train(was_training)

    @torch.no_grad()
    def refresh(self) -> None:
        """Export the model, then set every layer's fake quantiser to the program's scale and grid,
        and every neuron's threshold (vThMant / s) and decay (1 - vDecay / 4096) to the chip's."""
        program = self.export()
        synaptic = [layer for layer in program.layers if layer.kind != "input"]
        if len(synaptic) != len(self.layers):
            raise NeurocxrError(
                f"the exported program has {len(synaptic)} synaptic layers, the model {len(self.layers)}; "
                "cannot map the exporter's quantisation back onto the model"
            )
        for (_layer, pool_gain, neuron), prog_layer, wq, bq in zip(
            self.layers, synaptic, self.weight_q, self.bias_q
        ):
            quant = prog_layer.quant
            gain = float(quant.get("input_gain", 1.0) or 1.0)
            k = float(quant["scale"]) * pool_gain * gain
            lo, hi = quant.get("weight_range", (-256, 255))
            wq.k.fill_(k)
            wq.step.fill_(float(quant.get("weight_step", 1)))
            wq.lo.fill_(float(lo))
            wq.hi.fill_(float(hi))
            if bq is not None:
                bq.k.fill_(float(quant["scale"]) * gain)
            if neuron is not None and prog_layer.neuron is not None:
                self._snap_neuron(neuron, prog_layer.neuron, float(quant["scale"]))
        self.program = program

    @staticmethod
    def _snap_neuron(neuron: nn.Module, chip: Any, scale: float) -> None:
        thr = getattr(neuron, "threshold", None)
        if isinstance(thr, torch.Tensor):
            thr.fill_(chip.v_th_mant / scale)
        beta = getattr(neuron, "beta", None)
        if isinstance(beta, torch.Tensor) and chip.v_decay is not None:
            beta.fill_(1.0 - chip.v_decay / 4096.0)

    @torch.no_grad()
    def finalise(self) -> Any:
        """Refresh once more, then bake the quantised weights in (remove the parametrizations).
        Returns the program exported from the final model."""
        self.refresh()
        for layer, _, _ in self.layers:
            for name in ("weight", "bias"):
                if parametrize.is_parametrized(layer, name):
                    parametrize.remove_parametrizations(layer, name, leave_parametrized=True)
        self.program = self.export()
        return self.program


def weights_on_chip_grid(model: nn.Module, program: Any) -> float:
    """Largest |w x k - integer| over all synaptic weights: 0 when the float weights are exactly the
    program's integers divided by the layer's scale (x fused pooling gain)."""
    layers = _synaptic_layers(model)  # type: ignore[arg-type]
    synaptic = [layer for layer in program.layers if layer.kind != "input"]
    worst = 0.0
    for (layer, pool_gain, _), prog_layer in zip(layers, synaptic):
        k = (
            float(prog_layer.quant["scale"])
            * pool_gain
            * float(prog_layer.quant.get("input_gain", 1.0) or 1.0)
        )
        w = layer.weight.detach().double() * k
        if pool_gain == 1.0:
            ref = torch.as_tensor(prog_layer.weight, dtype=torch.float64).reshape(w.shape)
            worst = max(worst, float((w - ref).abs().max()))
        else:  # fused kernels are spread copies of the pooled weight: compare with the rounded values
            worst = max(worst, float((w - torch.round(w)).abs().max()))
    return worst
