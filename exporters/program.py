"""`LoihiProgram`: the integer layers exactly as they are written to a lava-dl netx file.

It is the single source of truth for what runs on the chip: the netx writer, the emulator, the Lava
runner, the resource estimate and the energy estimate all read it, so they cannot disagree.

One small dataclass per layer kind (the ``nir`` style), each owning its validation, output shape
and fan-out rules:

- `InputLayer`: the input population. Without a neuron the sample arrives as spike trains; with a
  neuron the image is the bias current of input neurons (``bias_mant = round(w * x * input_scale + b)``
  with the layer's netx ``weight``/``bias`` transform, ``w = 1, b = 0`` for our own files).
  ``in_file=False`` marks a network whose file starts directly with a synaptic layer (lava-dl's
  dense-first form): the input is spike trains whose size is the first layer's weight columns.
- `ConvLayer`: ``(Cout, Cin/groups, kH, kW)`` weights, PyTorch cross-correlation semantics.
- `DenseLayer`: ``(Nout, Nin)`` weights; ``flatten_input=True`` reads a spatial map flattened in
  torch ``C, H, W`` order (netx's ``flatten`` layer).
- `ReadoutLayer`: a dense synapse into netx's default non-spiking integrator (a netx ``dense``
  without ``neuron`` group); its membrane sums the weighted input and serves as the readout.
- `RecurrentDenseLayer`: a `DenseLayer` whose neurons' spikes also feed back into them through
  ``(N, N)`` recurrent weights (netx ``dense_rec``, Lava's ``RecurrentDense``).

Conventions (torch order throughout; the netx writer/reader convert): shapes are ``(C, H, W)``
for spatial layers and ``(N,)`` for dense layers; ``bias`` is the neuron's ``bias_mant`` (Loihi
multiplies it by ``2**6``), per neuron or per channel. Neuron parameters (`LoihiNeuron`) are
scalars, or one value per channel (``shape[0]``: per neuron for dense layers) — the forms netx
broadcasts along the channel axis of its W,H,C neurons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Literal, Union

import numpy as np
import torch
import torch.nn.functional as F

# Bit widths of Loihi's CUBA neuron and synapse fields (lava-nc PyLifModelBitAcc, netx utils).
WEIGHT_MIN, WEIGHT_MAX = -256, 254  # lossless mixed-sign range of netx optimize_weight_bits
WEIGHT_MAX_EXCITATORY = 255  # all-positive weights above this silently become zeros (lava-dl#170)
VTH_MAX = 2**17 - 1  # vThMant: 17 bits
BIAS_MAX = 2**12 - 1  # bias_mant: 13 bits signed
BIAS_MIN = -(2**12)
DECAY_MAX = 4096  # iDecay / vDecay: 12-bit fraction, 4096 = full decay
STATE_BITS = 24  # u and v are 24-bit registers


class LayerKind(str, Enum):
    """The one vocabulary of layer kinds (each layer class's ``kind`` is one of these values). A ``str``
    enum: ``LayerKind.CONV == "conv"`` and JSON files keep the plain names."""

    INPUT = "input"
    CONV = "conv"
    DENSE = "dense"
    DENSE_REC = "dense_rec"
    READOUT = "readout"

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def _missing_(cls, value: object) -> LayerKind | None:
        # LayerCounts (hardware_sims.counts) names the readout "dense_readout" in its files; one kind.
        return cls.READOUT if value == "dense_readout" else None

    @classmethod
    def of(cls, layer: Any) -> LayerKind:
        """The kind of a program layer (a readout is READOUT whatever its class's base kind)."""
        if getattr(layer, "is_readout", False) and layer.kind != "input":
            return cls.READOUT
        return cls(layer.kind)


InputKind = Literal["spikes", "bias"]
NeuronParam = Union[int, np.ndarray]


class ProgramError(ValueError):
    """A LoihiProgram field is outside what Loihi 2 / netx can hold."""


def _neuron_param(name: str, value: Any) -> NeuronParam:
    """A scalar int, or a 1-D int64 array when the values differ per channel / neuron."""
    arr = np.asarray(value)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ProgramError(f"neuron {name} must be integers, got {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ProgramError(f"neuron {name} must be integers, got non-integer values")
    flat = arr.astype(np.int64).reshape(-1)
    if flat.size == 0:
        raise ProgramError(f"neuron {name} is empty")
    if flat.size == 1 or np.all(flat == flat[0]):
        return int(flat[0])
    return flat


@dataclass(frozen=True, eq=False)
class LoihiNeuron:
    """Loihi CUBA neuron parameters as netx stores them (``neuron`` group, type ``CUBA``).

    Each parameter is an int, or an array with one value per channel (per neuron for dense
    layers); uniform arrays collapse to an int, so ``neuron.v_th_mant`` is an int whenever it can be.
    """

    v_th_mant: NeuronParam  # threshold mantissa; spike when v > v_th_mant << 6
    i_decay: NeuronParam  # current decay, 0..4096 (4096: no current memory)
    v_decay: NeuronParam  # voltage decay, 0..4096 (0: no leak)

    def __post_init__(self) -> None:
        for name in ("v_th_mant", "i_decay", "v_decay"):
            object.__setattr__(self, name, _neuron_param(name, getattr(self, name)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LoihiNeuron):
            return NotImplemented
        return all(
            np.array_equal(np.asarray(getattr(self, k)), np.asarray(getattr(other, k)))
            for k in ("v_th_mant", "i_decay", "v_decay")
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def is_uniform(self) -> bool:
        """True when every parameter is one scalar for the whole layer."""
        return all(isinstance(getattr(self, k), int) for k in ("v_th_mant", "i_decay", "v_decay"))

    def validate(self, where: str, shape: tuple[int, ...] | None = None) -> None:
        """Ranges of every value, and (given the layer shape) that arrays have one value per channel."""
        for name, label, hi in (
            ("v_th_mant", "vThMant", VTH_MAX),
            ("i_decay", "iDecay", DECAY_MAX),
            ("v_decay", "vDecay", DECAY_MAX),
        ):
            arr = np.asarray(getattr(self, name))
            lo_v, hi_v = int(arr.min()), int(arr.max())
            if lo_v < 0 or hi_v > hi:
                bits = "17 bits" if name == "v_th_mant" else "12 bits"
                raise ProgramError(f"{where}: {label} {lo_v}..{hi_v} outside 0..{hi} ({bits})")
            if shape is not None and arr.ndim == 1 and arr.size != shape[0]:
                raise ProgramError(
                    f"{where}: {label} has {arr.size} values but the layer has {shape[0]} channels; netx takes "
                    "a scalar or one value per channel (per neuron for dense layers)"
                )

    def per_neuron(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vThMant, iDecay, vDecay) broadcast to one int64 value per neuron, torch C,H,W flat order."""
        n = int(np.prod(shape))
        per_channel = n // int(shape[0])
        out = []
        for name in ("v_th_mant", "i_decay", "v_decay"):
            value = getattr(self, name)
            if isinstance(value, int):
                out.append(np.full(n, value, dtype=np.int64))
            else:
                out.append(np.repeat(np.asarray(value, dtype=np.int64), per_channel))
        return out[0], out[1], out[2]


# netx's default neuron for a dense layer without a neuron group (hdf5.Network.create_dense).
# vThMant 1 << 17 exceeds the 17-bit field, so the readout neuron is plain numbers, not a LoihiNeuron.
READOUT_I_DECAY, READOUT_V_DECAY, READOUT_V_TH_MANT = 0, 4096, 1 << 17


def common_power_of_two(w: np.ndarray) -> int:
    """Largest n <= 8 with every weight a multiple of 2**n (netx's ``while n > 0 and any(w % 2**n)``), in one pass:
    the trailing zero bits shared by all weights are those of their bitwise OR (two's complement)."""
    bits = int(np.bitwise_or.reduce(w.reshape(-1))) & 0xFF
    if bits == 0:
        return 8
    return (bits & -bits).bit_length() - 1


def netx_weight_bits(weight: np.ndarray) -> tuple[int, int, str]:
    """(num_weight_bits, weight_exponent, sign_mode) as lava-dl 0.6.0's netx packing counts them.

    A line-by-line mirror of ``lava.lib.dl.netx.utils.optimize_weight_bits`` (which prints and
    clips instead of failing, and needs torch/slayer to import): Loihi's synapse holds 8 bits, so
    a layer is storable only when this returns <= 8 bits. Mixed sign: 8 bits or fewer exactly for
    multiples of 2**n in [-128 * 2**n, 127 * 2**n] that netx does not clip, i.e. any integer in
    [-128, 127] or even integers in [-256, 254]. One sign: [0, 255] or [-256, -1]. An all-zero
    matrix would crash netx (division by zero): reported as sign mode "zero" with 0 bits; mixed
    weights netx would clip are reported with 99 bits.
    """
    w = np.asarray(weight, dtype=np.int64)
    if w.size == 0 or not np.any(w):
        return 0, 0, "zero"
    max_w, min_w = int(w.max()), int(w.min())
    if min_w < 0 < max_w or (min_w < 0 and max_w == 0):
        # netx clips (with a printed warning), never storable as is: the top only with negative
        # weights beside it, the bottom only with positive ones (all <= 0 down to -257 is not clipped)
        if max_w > 254 or (min_w < -256 and max_w > 0):
            return 99, 0, "mixed (clipped by netx)"
        sign_mode, is_signed = "mixed", 1
        scales = [127 / max_w] if max_w > 0 else []
        scale = min(scales + [-128 / min_w])
    elif max_w < 0:
        sign_mode, is_signed, scale = "inhibitory", 0, -256 / min_w
    else:
        sign_mode, is_signed, scale = "excitatory", 0, 255 / max_w
    scale_bits = int(np.floor(np.log2(scale))) + is_signed
    n = common_power_of_two(w)
    n -= is_signed
    return 8 - scale_bits - n, -scale_bits, sign_mode


def _check_weight(where: str, weight: Any) -> np.ndarray:
    if weight is None:
        raise ProgramError(f"{where}: synaptic layer without weights")
    w = np.asarray(weight)
    if not np.issubdtype(w.dtype, np.integer):
        raise ProgramError(f"{where}: weights must be integers, got {w.dtype}")
    lo, hi = (0, WEIGHT_MAX_EXCITATORY) if w.min(initial=0) >= 0 else (WEIGHT_MIN, WEIGHT_MAX)
    if w.size and (w.min() < lo or w.max() > hi):
        raise ProgramError(
            f"{where}: weights {w.min()}..{w.max()} outside netx's lossless {lo}..{hi}"
        )
    bits, _, sign_mode = netx_weight_bits(w)
    if bits > 8:
        # Lava's CPU models keep such weights, so parity cannot catch them; the chip cannot store them.
        raise ProgramError(
            f"{where}: {sign_mode} weights {w.min()}..{w.max()} need {bits} bits as lava-dl packs them, Loihi's "
            "synapse holds 8: mixed-sign weights must be even in [-256, 254] or lie in [-128, 127] "
            "(re-export with neurocxr, which quantises to those grids)"
        )
    return w


def _bias_full(name: str, shape: tuple[int, ...], bias: np.ndarray | None) -> np.ndarray:
    if bias is None:
        return np.zeros(shape, dtype=np.int64)
    b = np.asarray(bias, dtype=np.int64)
    if b.shape == tuple(shape):
        return b
    if b.size == int(np.prod(shape)):
        return b.reshape(shape)
    if len(shape) == 3 and b.shape == (shape[0],):
        return np.broadcast_to(b[:, None, None], shape).copy()
    raise ProgramError(f"layer {name}: bias shape {b.shape} fits neither {shape} nor per-channel")


def _check_bias(where: str, name: str, shape: tuple[int, ...], bias: np.ndarray | None) -> None:
    if bias is None:
        return
    b = np.asarray(bias)
    if not np.issubdtype(b.dtype, np.integer):
        raise ProgramError(f"{where}: bias must be integers, got {b.dtype}")
    if b.size and (b.min() < BIAS_MIN or b.max() > BIAS_MAX):
        raise ProgramError(
            f"{where}: bias {b.min()}..{b.max()} outside {BIAS_MIN}..{BIAS_MAX} (13 bits)"
        )
    _bias_full(name, shape, bias)


def as_pair(x: Any) -> tuple[int, int]:
    """An int or an (H, W) pair (list, tuple, array) as an (H, W) pair of ints: the one reader of
    kernel sizes, strides, paddings and dilations for NIR nodes, netx files and programs."""
    arr = np.asarray(x).reshape(-1)
    if arr.size == 1:
        return int(arr[0]), int(arr[0])
    if arr.size == 2:
        return int(arr[0]), int(arr[1])
    raise ValueError(f"{x!r} is not an int or an (H, W) pair")


@dataclass(eq=False)
class InputLayer:
    """The input population: spike trains (no neuron) or input neurons driven by the image as bias."""

    name: str
    shape: tuple[int, ...]
    neuron: LoihiNeuron | None = None
    # netx input transform (file's input-layer `weight`/`bias`): bias_mant = w * x + b per pixel
    transform_weight: float = 1.0
    transform_bias: float = 0.0
    in_file: bool = (
        True  # False: the file starts with a synaptic layer (lava-dl's dense-first form)
    )
    quant: dict[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = LayerKind.INPUT.value
    is_readout: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)

    @property
    def num_neurons(self) -> int:
        return int(np.prod(self.shape))

    @property
    def is_spike_input(self) -> bool:
        return self.neuron is None

    def output_shape(self, in_shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
        return self.shape

    def validate(self, where: str, in_shape: tuple[int, ...] | None = None) -> None:
        if not self.shape or any(s < 1 for s in self.shape) or len(self.shape) not in (1, 3):
            raise ProgramError(
                f"{where}: input shape {self.shape} must be (N,) or (C, H, W) with positive sizes"
            )
        if self.neuron is not None:
            self.neuron.validate(where, self.shape)
        elif (self.transform_weight, self.transform_bias) != (1.0, 0.0):
            raise ProgramError(
                f"{where}: an input transform needs input neurons (spike input is passed as given)"
            )
        if not self.in_file and self.neuron is not None:
            raise ProgramError(
                f"{where}: an input without a layer in the file cannot have input neurons"
            )

    def quantise(self, images: np.ndarray, input_scale: float) -> np.ndarray:
        """Images -> integer bias_mant of the input neurons: ``round(w * x * input_scale + b)``."""
        x = np.asarray(images, dtype=np.float64) * float(input_scale)
        if (self.transform_weight, self.transform_bias) != (1.0, 0.0):
            x = x * float(self.transform_weight) + float(self.transform_bias)
        return np.rint(x).astype(np.int64)


class _Synaptic:
    """Shared behaviour of the synaptic layers (conv, dense, readout): no dataclass fields here."""

    name: str
    shape: tuple[int, ...]
    weight: np.ndarray
    bias: np.ndarray | None
    is_readout: ClassVar[bool] = False

    @property
    def num_neurons(self) -> int:
        return int(np.prod(self.shape))

    @property
    def num_synapses(self) -> int:
        """Non-zero weights, as stored in synaptic memory."""
        return int(np.count_nonzero(np.asarray(self.weight)))

    @property
    def fan_in(self) -> int:
        """Synapses per output neuron (structural)."""
        return int(np.prod(np.asarray(self.weight).shape[1:]))

    def bias_full(self) -> np.ndarray:
        """Bias broadcast to the layer's output shape (zeros when there is none)."""
        return _bias_full(self.name, self.shape, self.bias)


@dataclass(eq=False)
class ConvLayer(_Synaptic):
    """A 2-D convolution (torch cross-correlation) into CUBA neurons."""

    name: str
    shape: tuple[int, ...]  # (Cout, Ho, Wo)
    neuron: LoihiNeuron
    weight: np.ndarray  # (Cout, Cin/groups, kH, kW) int64
    bias: np.ndarray | None = None  # bias_mant per channel (Cout,) or per neuron
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    quant: dict[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = LayerKind.CONV.value

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        self.stride, self.padding, self.dilation = (
            as_pair(self.stride),
            as_pair(self.padding),
            as_pair(self.dilation),
        )
        self.groups = int(self.groups)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, int, int]:
        if len(in_shape) != 3:
            raise ProgramError(
                f"layer {self.name}: conv needs a (C, H, W) input, got {tuple(in_shape)}"
            )
        _, h, w = in_shape
        kh, kw = np.asarray(self.weight).shape[2:4]
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        return int(np.asarray(self.weight).shape[0]), int(oh), int(ow)

    def validate(self, where: str, in_shape: tuple[int, ...]) -> None:
        if self.neuron is None:
            raise ProgramError(f"{where}: netx cannot build a conv layer without neuron")
        w = _check_weight(where, self.weight)
        if w.ndim != 4:
            raise ProgramError(
                f"{where}: conv weight must be 4-D (Cout, Cin/groups, kH, kW), got {w.shape}"
            )
        if (
            min(self.stride) < 1
            or min(self.dilation) < 1
            or min(self.padding) < 0
            or self.groups < 1
        ):
            raise ProgramError(f"{where}: stride/dilation/groups must be >= 1 and padding >= 0")
        if len(in_shape) != 3:
            raise ProgramError(f"{where}: conv needs a (C, H, W) input, got {tuple(in_shape)}")
        if (
            in_shape[0] % self.groups
            or w.shape[0] % self.groups
            or w.shape[1] * self.groups != in_shape[0]
        ):
            raise ProgramError(
                f"{where}: weight {w.shape} with groups={self.groups} does not fit {in_shape[0]} input channels"
            )
        expected = self.output_shape(in_shape)
        if min(expected[1:]) < 1:
            raise ProgramError(
                f"{where}: kernel {w.shape[2:]} does not fit the input {tuple(in_shape)}"
            )
        if tuple(self.shape) != expected:
            raise ProgramError(
                f"{where}: shape {self.shape} but the convolution of {tuple(in_shape)} gives {expected}"
            )
        self.neuron.validate(where, self.shape)
        _check_bias(where, self.name, self.shape, self.bias)

    def fanout(self, in_shape: tuple[int, ...], *, all_weights: bool = False) -> np.ndarray:
        """Per input position (C, H, W): synapses with a non-zero weight it reaches (border-correct).

        ``all_weights=True`` counts every weight (NeuroBench's dense ops: all-ones weights; taps on
        the zero padding are not operations).
        """
        w_np = np.asarray(self.weight)
        w = torch.as_tensor(np.ones_like(w_np) if all_weights else (w_np != 0), dtype=torch.float64)
        cout, ho, wo = self.shape
        ones = torch.ones((1, cout, ho, wo), dtype=torch.float64)
        _, h, wd = in_shape
        kh, kw = w.shape[2], w.shape[3]
        base_h = (ho - 1) * self.stride[0] - 2 * self.padding[0] + self.dilation[0] * (kh - 1) + 1
        base_w = (wo - 1) * self.stride[1] - 2 * self.padding[1] + self.dilation[1] * (kw - 1) + 1
        out_pad = (h - base_h, wd - base_w)
        if not (
            0 <= out_pad[0] < max(self.stride[0], self.dilation[0])
            and 0 <= out_pad[1] < max(self.stride[1], self.dilation[1])
        ):
            # sizes that conv_transpose2d cannot reach directly: compute from a larger map and crop
            fan = F.conv_transpose2d(
                ones, w, stride=self.stride, padding=0, dilation=self.dilation, groups=self.groups
            )
            fan = fan[
                :, :, self.padding[0] : self.padding[0] + h, self.padding[1] : self.padding[1] + wd
            ]
            full = torch.zeros((1, fan.shape[1], h, wd), dtype=torch.float64)
            full[:, :, : fan.shape[2], : fan.shape[3]] = fan
            fan = full
        else:
            fan = F.conv_transpose2d(
                ones,
                w,
                stride=self.stride,
                padding=self.padding,
                output_padding=out_pad,
                dilation=self.dilation,
                groups=self.groups,
            )
        return np.rint(fan[0].numpy()).astype(np.int64)

    def dense_ops_per_step(self, in_shape: tuple[int, ...]) -> int:
        return int(self.fanout(in_shape, all_weights=True).sum())


@dataclass(eq=False)
class DenseLayer(_Synaptic):
    """A fully connected synapse into CUBA neurons."""

    name: str
    shape: tuple[int, ...]  # (Nout,)
    neuron: LoihiNeuron
    weight: np.ndarray  # (Nout, Nin) int64
    bias: np.ndarray | None = None  # bias_mant per neuron
    flatten_input: bool = False  # a netx `flatten` layer stands before this layer
    quant: dict[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = LayerKind.DENSE.value

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int]:
        return (int(np.asarray(self.weight).shape[0]),)

    def validate(self, where: str, in_shape: tuple[int, ...]) -> None:
        if self.neuron is None and not self.is_readout:
            raise ProgramError(f"{where}: a dense layer without neuron is a ReadoutLayer")
        w = _check_weight(where, self.weight)
        n_in = int(np.prod(in_shape))
        if w.ndim != 2 or w.shape[0] != self.num_neurons or len(self.shape) != 1:
            raise ProgramError(
                f"{where}: dense weight {w.shape} does not match {self.num_neurons} neurons"
            )
        if w.shape[1] != n_in:
            raise ProgramError(
                f"{where}: dense weight has {w.shape[1]} columns but the input has {n_in} values"
            )
        if len(in_shape) > 1 and not self.flatten_input:
            raise ProgramError(
                f"{where}: dense layer reads a {tuple(in_shape)} map; set flatten_input=True"
            )
        if not np.any(w):
            raise ProgramError(
                f"{where}: all-zero dense weights cannot be packed by netx (division by zero)"
            )
        if self.neuron is not None:
            self.neuron.validate(where, self.shape)
        _check_bias(where, self.name, self.shape, self.bias)

    def fanout(self, in_shape: tuple[int, ...], *, all_weights: bool = False) -> np.ndarray:
        """Per input position: the non-zero weights in its column (every weight with ``all_weights``)."""
        w = np.asarray(self.weight)
        if all_weights:
            return np.full(w.shape[1], w.shape[0], dtype=np.int64)
        return np.count_nonzero(w, axis=0).astype(np.int64)

    def dense_ops_per_step(self, in_shape: tuple[int, ...]) -> int:
        return int(np.asarray(self.weight).size)


@dataclass(eq=False)
class ReadoutLayer(DenseLayer):
    """A dense synapse into netx's default non-spiking integrator (a ``dense`` without ``neuron``).

    Its neurons never spike; ``u`` sums ``a_in << 6`` without decay and the readout is ``v = u``.
    Construct as ``ReadoutLayer(name, shape, weight, bias=None, flatten_input=False)``.
    """

    name: str
    shape: tuple[int, ...]
    weight: np.ndarray  # type: ignore[assignment]
    bias: np.ndarray | None = None
    flatten_input: bool = False
    quant: dict[str, Any] = field(default_factory=dict)
    neuron: None = field(default=None, init=False)  # type: ignore[assignment]

    kind: ClassVar[str] = LayerKind.READOUT.value
    is_readout: ClassVar[bool] = True


@dataclass(eq=False)
class RecurrentDenseLayer(DenseLayer):
    """A dense synapse into CUBA neurons whose own spikes feed back through ``weight_rec`` (netx ``dense_rec``).

    netx builds it as ``RecurrentDense``: the input synapse ``weight`` (Nout, Nin) and the recurrent
    synapse ``weight_rec`` (Nout, Nout) both drive the neurons' ``a_in``; each delivers one step late,
    so the neurons receive ``W s_in[t] + R s_self[t-1]`` (slayer's ``Recurrent`` block). netx packs
    the two matrices as one (``optimize_weight_bits`` of ``hstack(weight, weight_rec)``: one weight
    exponent and bit count), so the 8-bit rules apply to them together. Construct as
    ``RecurrentDenseLayer(name, shape, neuron, weight, bias=None, flatten_input=False, weight_rec=R)``.
    """

    # (Nout, Nout) int64
    weight_rec: np.ndarray = field(default=None, kw_only=True)  # type: ignore[arg-type]

    kind: ClassVar[str] = LayerKind.DENSE_REC.value

    @property
    def joint_weight(self) -> np.ndarray:
        """``hstack(weight, weight_rec)``: the matrix netx packs for both synapses."""
        return np.hstack([np.asarray(self.weight), np.asarray(self.weight_rec)])

    @property
    def num_synapses(self) -> int:
        """Non-zero weights of both synapses, as stored in synaptic memory."""
        return int(
            np.count_nonzero(np.asarray(self.weight))
            + np.count_nonzero(np.asarray(self.weight_rec))
        )

    @property
    def fan_in(self) -> int:
        """Synapses per neuron: its input columns plus one recurrent synapse per neuron of the layer."""
        return int(np.asarray(self.weight).shape[1] + np.asarray(self.weight_rec).shape[1])

    def dense_ops_per_step(self, in_shape: tuple[int, ...]) -> int:
        """Every input and recurrent weight, each step (what a non-event-driven accelerator computes)."""
        return int(np.asarray(self.weight).size + np.asarray(self.weight_rec).size)

    def recurrent_fanout(self, *, all_weights: bool = False) -> np.ndarray:
        """Per neuron of this layer: the non-zero recurrent weights its spike reaches (every weight
        with ``all_weights``)."""
        r = np.asarray(self.weight_rec)
        if all_weights:
            return np.full(r.shape[1], r.shape[0], dtype=np.int64)
        return np.count_nonzero(r, axis=0).astype(np.int64)

    def validate(self, where: str, in_shape: tuple[int, ...]) -> None:
        if self.neuron is None:
            raise ProgramError(
                f"{where}: a recurrent dense layer needs spiking neurons (netx dense_rec with a neuron group)"
            )
        if self.weight_rec is None:
            raise ProgramError(
                f"{where}: recurrent dense layer without recurrent weights (weight_rec)"
            )
        r = np.asarray(self.weight_rec)
        if not np.issubdtype(r.dtype, np.integer):
            raise ProgramError(f"{where}: recurrent weights must be integers, got {r.dtype}")
        if r.shape != (self.num_neurons, self.num_neurons):
            raise ProgramError(
                f"{where}: recurrent weight {r.shape} must be ({self.num_neurons}, {self.num_neurons}): "
                "every neuron of the layer to every neuron of the layer"
            )
        super().validate(where, in_shape)
        # netx packs input and recurrent weights together: one 8-bit grid for both
        _check_weight(
            f"{where} (input and recurrent weights packed together, as netx does)",
            self.joint_weight,
        )


SynapticLayer = Union[ConvLayer, DenseLayer, ReadoutLayer, RecurrentDenseLayer]
Layer = Union[InputLayer, ConvLayer, DenseLayer, ReadoutLayer, RecurrentDenseLayer]


@dataclass
class LoihiProgram:
    """A Loihi 2 network: what `netx.hdf5.Network` would build, in integers.

    A chain of layers, each reading the previous one; a `RecurrentDenseLayer` also reads its own
    spikes of the previous step (netx holds no other recurrence, branches or skips).

    ``input_kind``:
      - ``"spikes"``: the sample arrives as binary spike trains ``[T, C, H, W]`` on the first
        synaptic layer (rate or latency coding); ``layers[0]`` is an `InputLayer` without neuron.
      - ``"bias"``: the image is the bias current of input neurons (``layers[0]`` has a neuron);
        per sample ``bias_mant = round(image * input_scale)`` (times the layer's transform).
    """

    input_shape: tuple[int, ...]
    input_kind: InputKind
    layers: list[Layer]
    num_steps: int  # time steps per sample the float model was trained with
    input_scale: float = 1.0  # for input_kind == "bias"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def input_layer(self) -> InputLayer:
        layer = self.layers[0]
        if not isinstance(layer, InputLayer):
            raise ProgramError("a LoihiProgram starts with an InputLayer")
        return layer

    @property
    def synaptic_layers(self) -> list[SynapticLayer]:
        return [layer for layer in self.layers if not isinstance(layer, InputLayer)]

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.layers[-1].shape)

    @property
    def has_readout(self) -> bool:
        return isinstance(self.layers[-1], ReadoutLayer)

    @property
    def is_recurrent(self) -> bool:
        """True when some layer feeds its own spikes back (a `RecurrentDenseLayer`)."""
        return any(isinstance(layer, RecurrentDenseLayer) for layer in self.layers)

    @property
    def num_synaptic_layers(self) -> int:
        return len(self.synaptic_layers)

    def layer_input_shapes(self) -> list[tuple[int, ...]]:
        """For each layer, the shape of what it reads (the previous layer's output; the input's own shape)."""
        shapes: list[tuple[int, ...]] = []
        prev = tuple(self.input_shape)
        for layer in self.layers:
            shapes.append(prev)
            prev = tuple(layer.shape)
        return shapes

    def quantise_input(self, images: np.ndarray) -> np.ndarray:
        """Image batch in [0, 1] -> integer bias_mant of the input neurons (input_kind 'bias')."""
        if self.input_kind != "bias":
            raise ProgramError(
                "quantise_input applies only to programs whose input is a bias current"
            )
        bias = self.input_layer.quantise(images, self.input_scale)
        if bias.min(initial=0) < BIAS_MIN or bias.max(initial=0) > BIAS_MAX:
            raise ProgramError(
                f"input bias {bias.min()}..{bias.max()} outside {BIAS_MIN}..{BIAS_MAX}: "
                "images must lie in [0, 1] (or lower the input scale)"
            )
        return bias

    def validate(self) -> None:
        """Raise ProgramError naming the first layer whose integers do not fit Loihi / netx."""
        if not self.layers or not isinstance(self.layers[0], InputLayer):
            raise ProgramError("a LoihiProgram starts with an InputLayer")
        first = self.layers[0]
        if tuple(first.shape) != tuple(self.input_shape):
            raise ProgramError(
                f"input_shape {tuple(self.input_shape)} differs from the input layer's {first.shape}"
            )
        if (self.input_kind == "bias") != (first.neuron is not None):
            raise ProgramError(
                "input_kind 'bias' needs an input layer with a neuron, 'spikes' one without"
            )
        if len(self.layers) < 2:
            raise ProgramError("a LoihiProgram needs at least one synaptic layer")
        for i, (layer, in_shape) in enumerate(zip(self.layers, self.layer_input_shapes())):
            where = f"layer {i} ({layer.name})"
            if isinstance(layer, InputLayer):
                if i != 0:
                    raise ProgramError(f"{where}: input layers only come first")
                layer.validate(where)
                continue
            if not isinstance(layer, (ConvLayer, DenseLayer)):
                raise ProgramError(f"{where}: {type(layer).__name__} is not a LoihiProgram layer")
            if isinstance(layer, ReadoutLayer) and i != len(self.layers) - 1:
                raise ProgramError(f"{where}: only the last layer may be a non-spiking readout")
            layer.validate(where, in_shape)
