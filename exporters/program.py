"""`LoihiProgram`: the integer layers exactly as they are written to a lava-dl netx file.

It is the single source of truth for what runs on the chip: the netx writer, the emulator, the Lava
runner, the resource estimate and the energy estimate all read it, so they cannot disagree.

Conventions (torch order throughout; the netx writer/reader convert):
- shapes are ``(C, H, W)`` for spatial layers and ``(N,)`` for dense layers;
- conv weights are ``(Cout, Cin/groups, kH, kW)`` with PyTorch cross-correlation semantics;
- dense weights are ``(Nout, Nin)``; a dense layer with ``flatten_input=True`` reads its input
  flattened in torch ``C, H, W`` order (netx's ``flatten`` layer);
- ``bias`` is the neuron's ``bias_mant`` (Loihi multiplies it by ``2**6``), per neuron or per channel;
- a layer with ``neuron=None`` is a non-spiking accumulator (netx ``dense`` without a ``neuron``
  group): its membrane sums the weighted input over time and serves as the count readout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

# Bit widths of Loihi's CUBA neuron and synapse fields (lava-nc PyLifModelBitAcc, netx utils).
WEIGHT_MIN, WEIGHT_MAX = -256, 254  # lossless mixed-sign range of netx optimize_weight_bits
WEIGHT_MAX_EXCITATORY = 255  # all-positive weights above this silently become zeros (lava-dl#170)
VTH_MAX = 2**17 - 1  # vThMant: 17 bits
BIAS_MAX = 2**12 - 1  # bias_mant: 13 bits signed
BIAS_MIN = -(2**12)
DECAY_MAX = 4096  # iDecay / vDecay: 12-bit fraction, 4096 = full decay
STATE_BITS = 24  # u and v are 24-bit registers

LayerKind = Literal["input", "conv", "dense"]
InputKind = Literal["spikes", "bias"]


class ProgramError(ValueError):
    """A LoihiProgram field is outside what Loihi 2 / netx can hold."""


@dataclass(frozen=True)
class LoihiNeuron:
    """Loihi CUBA neuron parameters as netx stores them (``neuron`` group, type ``CUBA``)."""

    v_th_mant: int  # threshold mantissa; spike when v > v_th_mant << 6
    i_decay: int  # current decay, 0..4096 (4096: no current memory)
    v_decay: int  # voltage decay, 0..4096 (0: no leak)

    def validate(self, where: str) -> None:
        if not 0 <= self.v_th_mant <= VTH_MAX:
            raise ProgramError(f"{where}: vThMant {self.v_th_mant} outside 0..{VTH_MAX} (17 bits)")
        for name, value in (("iDecay", self.i_decay), ("vDecay", self.v_decay)):
            if not 0 <= value <= DECAY_MAX:
                raise ProgramError(f"{where}: {name} {value} outside 0..{DECAY_MAX} (12 bits)")


@dataclass
class LoihiLayer:
    """One netx layer: a synapse (conv or dense) feeding a population of neurons, or the input."""

    kind: LayerKind
    name: str
    shape: tuple[int, ...]  # output shape, torch order
    neuron: LoihiNeuron | None
    weight: np.ndarray | None = None  # int64; None for the input layer
    bias: np.ndarray | None = None  # int64 bias_mant, per neuron (== shape) or per channel (C,)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    flatten_input: bool = False  # a netx `flatten` layer stands before this dense layer
    # How the float layer became integers: scale s (weight = round(W * s)), errors, clipping.
    quant: dict[str, Any] = field(default_factory=dict)

    @property
    def num_neurons(self) -> int:
        return int(np.prod(self.shape))

    @property
    def is_readout(self) -> bool:
        return self.neuron is None

    def bias_full(self) -> np.ndarray:
        """Bias broadcast to the layer's output shape (zeros when there is none)."""
        if self.bias is None:
            return np.zeros(self.shape, dtype=np.int64)
        b = np.asarray(self.bias, dtype=np.int64)
        if b.shape == tuple(self.shape):
            return b
        if len(self.shape) == 3 and b.shape == (self.shape[0],):
            return np.broadcast_to(b[:, None, None], self.shape).copy()
        raise ProgramError(f"layer {self.name}: bias shape {b.shape} fits neither {self.shape} nor per-channel")


@dataclass
class LoihiProgram:
    """A feed-forward Loihi 2 network: what `netx.hdf5.Network` would build, in integers.

    ``input_kind``:
      - ``"spikes"``: the sample arrives as binary spike trains ``[T, C, H, W]`` on the first
        synaptic layer (rate or latency coding); ``layers[0]`` is an ``input`` layer without neuron.
      - ``"bias"``: the image is the bias current of input neurons (``layers[0]`` is an ``input``
        layer with a neuron); per sample ``bias_mant = round(image * input_scale)``.
    """

    input_shape: tuple[int, ...]
    input_kind: InputKind
    layers: list[LoihiLayer]
    num_steps: int  # time steps per sample the float model was trained with
    input_scale: float = 1.0  # for input_kind == "bias"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def synaptic_layers(self) -> list[LoihiLayer]:
        return [layer for layer in self.layers if layer.kind != "input"]

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layers[-1].shape

    @property
    def has_readout(self) -> bool:
        return self.layers[-1].is_readout

    @property
    def num_synaptic_layers(self) -> int:
        return len(self.synaptic_layers)

    def quantise_input(self, images: np.ndarray) -> np.ndarray:
        """Image batch in [0, 1] -> integer bias_mant of the input neurons (input_kind 'bias')."""
        if self.input_kind != "bias":
            raise ProgramError("quantise_input applies only to programs whose input is a bias current")
        bias = np.rint(np.asarray(images, dtype=np.float64) * self.input_scale).astype(np.int64)
        if bias.min(initial=0) < BIAS_MIN or bias.max(initial=0) > BIAS_MAX:
            raise ProgramError(
                f"input bias {bias.min()}..{bias.max()} outside {BIAS_MIN}..{BIAS_MAX}: "
                "images must lie in [0, 1]"
            )
        return bias

    def validate(self) -> None:
        """Raise ProgramError naming the first layer whose integers do not fit Loihi / netx."""
        if not self.layers or self.layers[0].kind != "input":
            raise ProgramError("a LoihiProgram starts with an 'input' layer")
        if (self.input_kind == "bias") != (self.layers[0].neuron is not None):
            raise ProgramError("input_kind 'bias' needs an input layer with a neuron, 'spikes' one without")
        for i, layer in enumerate(self.layers):
            where = f"layer {i} ({layer.name})"
            if layer.neuron is not None:
                layer.neuron.validate(where)
            elif layer.kind != "input" and i != len(self.layers) - 1:
                raise ProgramError(f"{where}: only the last layer may be a non-spiking readout")
            if layer.kind == "input":
                if i != 0:
                    raise ProgramError(f"{where}: 'input' layers only come first")
                continue
            if layer.weight is None:
                raise ProgramError(f"{where}: {layer.kind} layer without weights")
            w = np.asarray(layer.weight)
            if not np.issubdtype(w.dtype, np.integer):
                raise ProgramError(f"{where}: weights must be integers, got {w.dtype}")
            lo, hi = (0, WEIGHT_MAX_EXCITATORY) if w.min(initial=0) >= 0 else (WEIGHT_MIN, WEIGHT_MAX)
            if w.size and (w.min() < lo or w.max() > hi):
                raise ProgramError(f"{where}: weights {w.min()}..{w.max()} outside netx's lossless {lo}..{hi}")
            if layer.bias is not None:
                b = np.asarray(layer.bias)
                if b.size and (b.min() < BIAS_MIN or b.max() > BIAS_MAX):
                    raise ProgramError(f"{where}: bias {b.min()}..{b.max()} outside {BIAS_MIN}..{BIAS_MAX} (13 bits)")
                layer.bias_full()
            if layer.kind == "conv" and w.ndim != 4:
                raise ProgramError(f"{where}: conv weight must be 4-D (Cout, Cin/groups, kH, kW), got {w.shape}")
            if layer.kind == "dense" and (w.ndim != 2 or w.shape[0] != layer.num_neurons):
                raise ProgramError(f"{where}: dense weight {w.shape} does not match {layer.num_neurons} neurons")
