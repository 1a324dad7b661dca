"""Write and read lava-dl netx HDF5 files for a `LoihiProgram`.

The layout is what ``lava.lib.dl.netx.hdf5.Network`` (lava-dl 0.6.0) reads through its
``NetDict``: ``/layer/0 .. /layer/{n-1}``, each with a ``type`` string dataset (written as slayer
does: shape ``(1,)``, ``S`` dtype), ``shape`` in torch order (netx reverses it to W,H,C),
integer ``weight``/``bias`` (netx reads them with ``.astype(int)``), conv ``stride``/``padding``/
``dilation`` as (H, W) arrays (netx reverses them) and scalar ``groups``, and a ``neuron`` group
(``type`` 'CUBA', ``vThMant``, ``iDecay``, ``vDecay``, ``refDelay``, ``gradedSpike``).

Conv weights: netx does ``w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)`` and Lava's conv then
undoes exactly that (``w[:, ::-1, ::-1].transpose(0, 3, 2, 1)``) before a torch cross-correlation,
so the file holds the plain PyTorch ``(Cout, Cin/groups, kH, kW)`` weight, unflipped.

A dense layer that reads a spatial map gets a ``flatten`` layer before it (netx flattens in
torch C,H,W order). The readout is a ``dense`` without ``neuron`` group (netx builds it as a
non-leaky integrator). Our own metadata (num_steps, input_scale, layer names, quantisation
notes) lives in the ``/neurocxr`` group, which netx ignores.

Files users bring (written by lava-dl's slayer ``export_hdf5``, current or older) are read as netx
0.6's ``hdf5.Network`` builds them; the tables ``NETX_*`` below list, field by field, what netx reads
(we read), what it ignores (we ignore, with a note in ``metadata['read_notes']``) and what it reads
to build something the emulator does not model (we refuse by name):
- a file may start directly with a ``dense`` layer (no ``input`` layer): the input is spike trains
  whose size is the weight's column count; a conv-first file without input shape is refused (netx
  cannot build it either);
- ``vThMant``/``iDecay``/``vDecay`` may be arrays: one value per channel (per neuron for dense
  layers), which netx broadcasts along the channel axis of its W,H,C neurons;
- ``dense_rec`` layers (slayer's ``Recurrent`` blocks) become `RecurrentDenseLayer`: ``weight`` and
  ``weight_rec`` packed together as netx packs them (`netx_recurrent_weights`);
- training-only neuron fields of slayer's files (``scaleRho``, ``tauRho``, ``theta``, ``wgtExp``,
  the norm's ``weight_exp``), ``gradedSpike``/``refDelay`` (not read for CUBA neurons: unary spikes,
  no refractory period), slayer's shape descriptors (``inFeatures``, ``kernelSize``, ...) and a conv's
  ``delay`` are not read by netx: Lava runs without them, and so does the emulator;
- ``messageBits`` (graded spikes) is refused: netx 0.6 cannot load it (its ``NetDict`` has no such
  key, so ``hdf5.Network`` fails while building), and lava-nc 0.10's CUBA neuron (``LIF``) would
  send unary spikes anyway;
- an ``input`` layer with neurons may carry a scalar ``weight``/``bias`` transform: netx keeps it
  as ``Input.transform`` (default weight 64, bias 0) for the host to apply; here it becomes the
  image encoding ``bias_mant = round(weight * x * input_scale + bias)``;
- anything else (other neuron types, a dense layer's delays, complex weights, pool/average/concat
  layers, 3-D convs, unknown layer types) is refused by name with an ExportError / UnsupportedLayerError.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from neurocxr.errors import ExportError, UnsupportedLayerError
from neurocxr.fileio import atomic_write, dumps_json
from neurocxr.validation import missing_file_message

from .program import (
    ConvLayer,
    DenseLayer,
    InputLayer,
    LoihiNeuron,
    LoihiProgram,
    ProgramError,
    ReadoutLayer,
    RecurrentDenseLayer,
    as_pair,
    common_power_of_two,
)

__all__ = [
    "write_netx",
    "read_netx",
    "netx_dense_weights",
    "netx_recurrent_weights",
    "DEFAULT_NUM_STEPS",
    "NETX_DEFAULT_INPUT_WEIGHT",
    "NETX_LAYER_FIELDS",
    "NETX_NEURON_READ",
    "NETX_NEURON_IGNORED",
    "NETX_NEURON_REFUSED",
    "NETX_LAYER_IGNORED",
    "NETX_LAYER_REFUSED",
    "NETX_TYPES_REFUSED",
]

DEFAULT_NUM_STEPS = 16  # used by read_netx when a file has no /neurocxr metadata
NETX_DEFAULT_INPUT_WEIGHT = 64  # netx create_input: transform weight when the input layer has none

# What lava-dl 0.6's netx reader (netx/hdf5.py Network._create / create_* / get_neuron_params) does
# with every field a slayer exporter writes. We read what it reads, ignore (with a read note) what
# it ignores, and refuse by name what it reads to build something this emulator does not model.
NETX_LAYER_FIELDS: dict[str, tuple[str, ...]] = {  # per layer type, the datasets netx reads
    "input": ("type", "shape", "neuron", "weight", "bias"),
    "conv": (
        "type",
        "shape",
        "weight",
        "bias",
        "stride",
        "padding",
        "dilation",
        "groups",
        "neuron",
    ),
    "dense": ("type", "shape", "weight", "bias", "neuron"),
    "dense_rec": ("type", "shape", "weight", "weight_rec", "bias", "neuron"),
    "flatten": ("type",),
}
NETX_NEURON_READ = ("type", "vThMant", "iDecay", "vDecay")  # CUBA / LOIHI neurons
NETX_NEURON_IGNORED: dict[
    str, str
] = {  # in slayer's files (current or older), never read by netx for CUBA
    "refDelay": "no refractory period in Lava's CUBA neuron",
    "gradedSpike": "Lava's CUBA neuron sends unary spikes",
    "scaleRho": "training-only (slayer's surrogate-gradient scale)",
    "tauRho": "training-only (slayer's surrogate-gradient width)",
    "theta": "training-only (slayer's float threshold; the chip uses vThMant)",
    "wgtExp": "training-only (older slayer's weight exponent; netx derives its own when packing)",
    "weight_exp": "slayer's weight-scale norm exponent: netx does not read it, so Lava runs without that scaling",
}
NETX_NEURON_REFUSED: dict[str, str] = {
    "messageBits": (
        "graded spikes: lava-dl 0.6's netx cannot load it (its NetDict has no messageBits key, so Lava "
        "fails to build the network) and lava-nc 0.10's CUBA neuron sends unary spikes anyway"
    ),
}
NETX_LAYER_IGNORED: dict[str, str] = {  # layer datasets netx never reads
    "inFeatures": "slayer restates the weight's shape",
    "outFeatures": "slayer restates the weight's shape",
    "inChannels": "slayer restates the weight's shape",
    "outChannels": "slayer restates the weight's shape",
    "kernelSize": "slayer restates the weight's shape",
}
NETX_LAYER_REFUSED: dict[str, str] = {  # read by netx and changing what Lava runs; not emulated
    "delay": "synaptic delays (netx builds DelayDense)",
    "weight/real": "complex weights (netx builds ComplexDense for resonate-and-fire neurons)",
    "weight/imag": "complex weights (netx builds ComplexDense for resonate-and-fire neurons)",
}
NETX_TYPES_REFUSED: dict[str, str] = {
    "pool": "netx raises NotImplementedError",
    "average": "netx raises NotImplementedError",
    "concat": "netx raises NotImplementedError",
    "convT": "netx raises NotImplementedError",
    "unpool": "netx raises NotImplementedError",
    "dense_comp": "netx 0.6 calls a create_complex_dense it does not define",
}


def netx_dense_weights(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """Effective dense weights and exponent as netx + Lava's PyDenseModelBitAcc use them.

    Repeats ``netx.utils.optimize_weight_bits`` (shift by scale_bits, num_weight_bits,
    weight_exponent) and Lava's ``clip_weights(num_bits=8)`` / ``truncate_weights`` with the sign
    mode Lava re-derives from the shifted weights. Returns ``(W', weight_exp)``; the synapse
    computes ``(W' @ s) << weight_exp`` (right shift when negative).
    """
    shifted, num_weight_bits, weight_exp = _netx_pack(weight)
    return _lava_truncate(shifted, num_weight_bits), weight_exp


def netx_recurrent_weights(
    weight: np.ndarray, weight_rec: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(W', R', weight_exp)`` of a ``dense_rec`` layer as netx + Lava's two Dense synapses use them.

    netx's ``create_dense(rec=True)`` packs ``hstack(weight, weight_rec)`` with one
    ``optimize_weight_bits`` and splits it again; each of RecurrentDense's two synapses then gets that
    exponent and bit count, and Lava derives each one's sign mode from its own shifted weights.
    """
    w = np.asarray(weight).astype(np.int64)
    r = np.asarray(weight_rec).astype(np.int64)
    shifted, num_weight_bits, weight_exp = _netx_pack(np.hstack([w, r]))
    return (
        _lava_truncate(shifted[:, : w.shape[1]], num_weight_bits),
        _lava_truncate(shifted[:, w.shape[1] :], num_weight_bits),
        weight_exp,
    )


def _netx_pack(weight: np.ndarray) -> tuple[np.ndarray, int, int]:
    """netx ``optimize_weight_bits``: (weights shifted by scale_bits, num_weight_bits, weight_exponent)."""
    w = np.asarray(weight).astype(np.int64)
    max_w, min_w = int(w.max()), int(w.min())
    if max_w > 254 and min_w < 0:
        w = np.clip(w, -256, 254)
        max_w = int(w.max())
    if min_w < -256 and max_w > 0:
        w = np.clip(w, -256, 254)
        min_w = int(w.min())
    if max_w == 0 and min_w == 0:
        raise ExportError(
            "a dense layer with all-zero weights cannot be packed by netx (division by zero)"
        )
    if max_w < 0:
        is_signed, scale = 0, -256 / min_w
    elif min_w >= 0:
        is_signed, scale = 0, 255 / max_w
    else:
        is_signed = 1
        scale = min(127 / max_w if max_w != 0 else np.inf, -128 / min_w)
    scale_bits = int(np.floor(np.log2(scale))) + is_signed
    n = common_power_of_two(w)
    n -= is_signed
    num_weight_bits = 8 - scale_bits - n
    weight_exp = -scale_bits
    shifted = (
        np.left_shift(w.astype(np.int32), scale_bits).astype(np.int64)
        if scale_bits >= 0
        else np.zeros_like(w)
    )
    return shifted, int(num_weight_bits), int(weight_exp)


def _lava_truncate(shifted: np.ndarray, num_weight_bits: int) -> np.ndarray:
    """Lava's PyDenseModelBitAcc: sign mode from the shifted weights, clip to 8 bits, truncate."""
    if shifted.min(initial=0) >= 0:
        mode = "excitatory"
    elif shifted.max(initial=0) <= 0:
        mode = "inhibitory"
    else:
        mode = "mixed"
    mixed = int(mode == "mixed")
    if mode == "inhibitory":
        shifted = -shifted
    shifted = np.clip(shifted, -(2**8) * mixed, 2**8 - 1)
    trunc_bits = 8 - num_weight_bits + mixed
    shifted = (shifted >> trunc_bits) << trunc_bits
    if mode == "inhibitory":
        shifted = -shifted
    return shifted.astype(np.int64)


def _write_str(group: h5py.Group, key: str, value: str) -> None:
    # slayer's convention: a (1,) fixed-length bytes dataset; NetDict decodes value[0].
    group.create_dataset(key, (1,), f"S{max(len(value), 1)}", [value.encode("ascii")])


def _write_neuron(group: h5py.Group, neuron: LoihiNeuron) -> None:
    ng = group.create_group("neuron")
    _write_str(ng, "type", "CUBA")
    ng.create_dataset("vThMant", data=np.asarray(neuron.v_th_mant, dtype=np.int64))
    ng.create_dataset("iDecay", data=np.asarray(neuron.i_decay, dtype=np.int64))
    ng.create_dataset("vDecay", data=np.asarray(neuron.v_decay, dtype=np.int64))
    ng.create_dataset("refDelay", data=np.int64(1))
    ng.create_dataset("gradedSpike", data=np.bool_(False))


def write_netx(program: LoihiProgram, path: str | os.PathLike[str]) -> Path:
    """Write ``program`` as a netx HDF5 file, atomically (temp file + ``os.replace``).

    Raises ExportError when the program does not fit Loihi/netx (after ``program.validate()``)
    or has a structure netx cannot express.
    """
    try:
        program.validate()
    except ProgramError as exc:
        raise ExportError(f"cannot write netx file: {exc}") from exc

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            _write_layers(f, program)
            meta = f.create_group("neurocxr")
            meta.attrs["format"] = "neurocxr-netx-1"
            meta.attrs["num_steps"] = int(program.num_steps)
            meta.attrs["input_scale"] = float(program.input_scale)
            meta.attrs["input_kind"] = program.input_kind
            meta.attrs["input_shape"] = np.asarray(program.input_shape, dtype=np.int64)
            meta.attrs["layer_names"] = json.dumps([layer.name for layer in program.layers])
            meta.attrs["layer_quant"] = dumps_json(
                [layer.quant for layer in program.layers], indent=None
            )
            meta.attrs["metadata"] = dumps_json(program.metadata, indent=None)

    path = atomic_write(path, write)
    return path


def _write_input(root: h5py.Group, index: int, layer: InputLayer) -> int:
    if not layer.in_file:  # dense-first network: nothing stands before the first synaptic layer
        return index
    g = root.create_group(str(index))
    _write_str(g, "type", "input")
    g.create_dataset("shape", data=np.asarray(layer.shape, dtype=np.int64))
    if layer.neuron is not None:
        _write_neuron(g, layer.neuron)
        if (layer.transform_weight, layer.transform_bias) != (1.0, 0.0):
            g.create_dataset("weight", data=np.float64(layer.transform_weight))
            g.create_dataset("bias", data=np.float64(layer.transform_bias))
    g.attrs["name"] = layer.name
    return index + 1


def _write_conv(root: h5py.Group, index: int, layer: ConvLayer) -> int:
    g = root.create_group(str(index))
    _write_str(g, "type", "conv")
    g.create_dataset("shape", data=np.asarray(layer.shape, dtype=np.int64))
    g.create_dataset("weight", data=np.asarray(layer.weight, dtype=np.int64))
    g.create_dataset("stride", data=np.asarray(layer.stride, dtype=np.int64))
    g.create_dataset("padding", data=np.asarray(layer.padding, dtype=np.int64))
    g.create_dataset("dilation", data=np.asarray(layer.dilation, dtype=np.int64))
    g.create_dataset("groups", data=np.int64(layer.groups))
    if layer.bias is not None:
        g.create_dataset("bias", data=np.asarray(layer.bias, dtype=np.int64))
    _write_neuron(g, layer.neuron)
    g.attrs["name"] = layer.name
    return index + 1


def _write_dense(root: h5py.Group, index: int, layer: DenseLayer, in_shape: tuple[int, ...]) -> int:
    if layer.flatten_input:
        fg = root.create_group(str(index))
        _write_str(fg, "type", "flatten")
        fg.create_dataset("shape", data=np.asarray([int(np.prod(in_shape))], dtype=np.int64))
        index += 1
    g = root.create_group(str(index))
    recurrent = isinstance(layer, RecurrentDenseLayer)
    _write_str(g, "type", "dense_rec" if recurrent else "dense")
    g.create_dataset("shape", data=np.asarray(layer.shape, dtype=np.int64))
    g.create_dataset("weight", data=np.asarray(layer.weight, dtype=np.int64))
    if recurrent:  # netx create_dense(rec=True) reads 'weight_rec' (Nout, Nout)
        g.create_dataset("weight_rec", data=np.asarray(layer.weight_rec, dtype=np.int64))
    if layer.bias is not None:
        g.create_dataset("bias", data=np.asarray(layer.bias, dtype=np.int64))
    if layer.neuron is not None:  # a ReadoutLayer has none: netx builds its default integrator
        _write_neuron(g, layer.neuron)
    g.attrs["name"] = layer.name
    return index + 1


def _write_layers(f: h5py.File, program: LoihiProgram) -> None:
    root = f.create_group("layer")
    index = 0
    for layer, in_shape in zip(program.layers, program.layer_input_shapes()):
        if isinstance(layer, InputLayer):
            index = _write_input(root, index, layer)
        elif isinstance(layer, ConvLayer):
            index = _write_conv(root, index, layer)
        elif isinstance(layer, DenseLayer):  # ReadoutLayer and RecurrentDenseLayer included
            index = _write_dense(root, index, layer, in_shape)
        else:  # pragma: no cover - validate() admits only these types
            raise ExportError(f"layer {layer.name}: {type(layer).__name__} has no netx form")


def _scalar(x: Any) -> int:
    arr = np.asarray(x)
    return int(arr.reshape(-1)[0])


def _read_str(group: h5py.Group, key: str) -> str:
    value = group[key]
    value = value[0] if len(value.shape) > 0 else value[()]
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _read_neuron(group: h5py.Group, where: str, notes: list[str]) -> LoihiNeuron | None:
    if "neuron" not in group:
        return None
    ng = group["neuron"]
    ntype = _read_str(ng, "type")
    if ntype not in ("CUBA", "LOIHI"):
        raise UnsupportedLayerError(
            f"{where}: neuron type {ntype!r} is not supported (only CUBA/LOIHI spiking neurons; "
            "SDNN and resonate-and-fire neurons are not emulated) - re-export with CUBA neurons"
        )
    for key, why in NETX_NEURON_REFUSED.items():
        if key in ng:
            raise UnsupportedLayerError(
                f"{where}: neuron field {key!r} is not supported: {why} - remove it to run "
                "the network with unary spikes"
            )
    if "gradedSpike" in ng and bool(np.asarray(ng["gradedSpike"][()]).reshape(-1)[0]):
        notes.append(
            f"{where}: gradedSpike is true, but netx does not read it for CUBA neurons: Lava (and this "
            "emulator) send unary spikes, unlike slayer's float model with graded spikes"
        )
    if "refDelay" in ng and np.any(np.asarray(ng["refDelay"][()]) != 1):
        notes.append(
            f"{where}: refDelay {np.asarray(ng['refDelay'][()]).tolist()} is not read by netx for CUBA "
            "neurons: no refractory period, as Lava runs it"
        )
    ignored = [
        key
        for key in ng.keys()
        if key not in NETX_NEURON_READ and key not in ("refDelay", "gradedSpike")
    ]
    if ignored:
        # netx reads only vThMant/iDecay/vDecay of a CUBA neuron: Lava runs the network without these
        notes.append(
            f"{where}: neuron fields ignored as netx ignores them: "
            + "; ".join(
                f"{key} ({NETX_NEURON_IGNORED.get(key, 'not read by netx for CUBA neurons: Lava runs without it')})"
                for key in sorted(ignored)
            )
        )
    try:
        values = {key: np.asarray(ng[key][()]) for key in ("vThMant", "iDecay", "vDecay")}
    except KeyError as exc:
        raise ExportError(f"{where}: neuron group lacks {exc.args[0]!r}") from exc
    try:
        return LoihiNeuron(
            v_th_mant=values["vThMant"], i_decay=values["iDecay"], v_decay=values["vDecay"]
        )
    except ProgramError as exc:
        raise ExportError(f"{where}: {exc}") from exc


def _read_array(g: h5py.Group, key: str, where: str, notes: list[str]) -> np.ndarray:
    arr = np.asarray(g[key][()])
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ExportError(f"{where}: {key} has dtype {arr.dtype}, not numbers")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ExportError(f"{where}: {key} holds NaN or inf")
        if not np.all(arr == np.round(arr)):
            notes.append(
                f"{where}: non-integer {key} truncated toward zero as netx's astype(int) does"
            )
    return arr.astype(np.int64)


def read_netx(
    path: str | os.PathLike[str], *, num_steps: int | None = None, input_scale: float | None = None
) -> LoihiProgram:
    """Read a netx HDF5 file (ours or slayer's) back into a `LoihiProgram`.

    Accepts ``input`` (with a neuron -> bias input, without -> spike input; or none at all before a
    first ``dense`` layer), ``conv`` (4-D or slayer's 5-D ``(Cout, Cin, kH, kW, 1)`` weights),
    ``flatten`` and ``dense`` layers with CUBA or LOIHI neurons (scalar or per-channel parameters),
    and a final ``dense`` without neuron as readout (module docstring). ``num_steps`` /
    ``input_scale`` override the file's metadata (files without it default to 16 steps and scale 1).
    Anything unsupported raises UnsupportedLayerError naming it; an unreadable, truncated or foreign
    file raises ExportError.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(missing_file_message(path, "netx file"))
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ExportError(
            f"{path} is not a readable HDF5 file (truncated or not HDF5): {exc}"
        ) from exc
    try:
        with f:
            program = _read_program(f, path, num_steps, input_scale)
    except (ExportError, UnsupportedLayerError):
        raise
    except (
        KeyError,
        ValueError,
        TypeError,
        IndexError,
        OSError,
        RuntimeError,
        json.JSONDecodeError,
    ) as exc:
        raise ExportError(
            f"{path} is not a netx network file we can read ({type(exc).__name__}: {exc}); "
            "was it written by lava-dl's export_hdf5 or neurocxr?"
        ) from exc
    try:
        program.validate()
    except ProgramError as exc:
        raise ExportError(f"{path}: {exc}") from exc
    return program


def _layer_type(g: h5py.Group, where: str) -> str:
    """The layer's netx type; refused (one line) when netx cannot build it or would skip it."""
    if "type" not in g:
        raise ExportError(f"{where}: no 'type' dataset")
    ltype = _read_str(g, "type")
    if ltype in NETX_TYPES_REFUSED:
        raise UnsupportedLayerError(
            f"{where}: layer type {ltype!r} is not supported - lava-dl netx itself cannot build it "
            f"({NETX_TYPES_REFUSED[ltype]}); fold pooling into the next conv/dense before exporting"
        )
    if ltype not in NETX_LAYER_FIELDS:
        raise UnsupportedLayerError(
            f"{where}: unknown layer type {ltype!r} (netx reads input, conv, dense, dense_rec and flatten, and "
            "would skip this layer without a word, changing the network)"
        )
    return ltype


def _check_refused_fields(g: h5py.Group, ltype: str, where: str) -> None:
    for key, why in NETX_LAYER_REFUSED.items():
        if key in g and not (
            key == "delay" and ltype == "conv"
        ):  # netx does not read a conv's delay
            raise UnsupportedLayerError(
                f"{where}: {ltype} layer with {key!r} is not supported: {why}, which the "
                "emulator does not model - export the network without it"
            )


def _implicit_input(ltype: str, weight: np.ndarray, where: str, notes: list[str]) -> InputLayer:
    """The spike input of a file without input layer, sized by a first dense layer's columns."""
    if ltype == "conv":
        raise UnsupportedLayerError(
            f"{where}: the file starts with a conv layer and no input layer, so the input shape is unknown "
            "(netx cannot build it either: 'Input shape could not be inferred'); add "
            "an input layer with a shape"
        )
    if weight.ndim != 2:
        raise ExportError(f"{where}: a first dense layer needs a 2-D weight to give the input size")
    n_in = int(weight.shape[1])
    notes.append(
        f"{where}: no input layer: the input is spike trains of {n_in} values (the weight's columns)"
    )
    return InputLayer("input", (n_in,), None, in_file=False)


@dataclass
class _LayerGroup:
    """One conv/dense/dense_rec group of a netx file, its datasets read but not yet checked."""

    g: h5py.Group
    where: str  # "<file> layer <i>", for messages
    name: str
    shape: tuple[int, ...] | None
    neuron: Any
    weight: np.ndarray
    bias: np.ndarray | None
    quant: dict[str, Any]


def _conv_from_file(layer: _LayerGroup, in_shape: tuple[int, ...], flatten_next: bool) -> ConvLayer:
    g, where, weight = layer.g, layer.where, layer.weight
    if weight.ndim == 5:
        if weight.shape[-1] != 1:
            raise UnsupportedLayerError(f"{where}: 3-D conv weight {weight.shape} is not supported")
        weight = weight[..., 0]
    if weight.ndim != 4:
        raise ExportError(f"{where}: conv weight must be 4-D, got {weight.shape}")
    if layer.neuron is None:
        raise ExportError(f"{where}: conv layer without neuron group (netx requires one)")
    if flatten_next:
        raise UnsupportedLayerError(f"{where}: a conv layer after flatten")
    conv = ConvLayer(
        layer.name,
        layer.shape or (1, 1, 1),
        layer.neuron,
        weight,
        layer.bias,
        stride=as_pair(g["stride"][()]) if "stride" in g else (1, 1),
        padding=as_pair(g["padding"][()]) if "padding" in g else (0, 0),
        dilation=as_pair(g["dilation"][()]) if "dilation" in g else (1, 1),
        groups=_scalar(g["groups"][()]) if "groups" in g else 1,
        quant=layer.quant,
    )
    out_shape = conv.output_shape(in_shape)
    if layer.shape is None or int(np.prod(layer.shape)) == int(np.prod(out_shape)):
        conv.shape = out_shape  # slayer may store the shape in another order
    return conv


def _dense_from_file(layer: _LayerGroup, ltype: str, flatten: bool, notes: list[str]) -> Any:
    """A DenseLayer, a RecurrentDenseLayer (dense_rec) or, without neuron, the ReadoutLayer."""
    where, neuron = layer.where, layer.neuron
    n_out = int(np.prod(layer.shape)) if layer.shape is not None else int(layer.weight.shape[0])
    weight = layer.weight.reshape(n_out, -1) if layer.weight.ndim == 1 else layer.weight
    if ltype == "dense_rec":
        if "weight_rec" not in layer.g:
            raise ExportError(f"{where}: dense_rec layer without 'weight_rec'")
        if neuron is None:
            raise UnsupportedLayerError(
                f"{where}: dense_rec layer without neuron group: netx would feed the "
                "spikes of a non-spiking integrator back, which never spikes"
            )
        weight_rec = _read_array(layer.g, "weight_rec", where, notes)
        if weight_rec.ndim == 1:  # netx: weight_rec.reshape(shape[0], -1)
            weight_rec = weight_rec.reshape(n_out, -1)
        return RecurrentDenseLayer(
            layer.name,
            (n_out,),
            neuron,
            weight,
            layer.bias,
            flatten_input=flatten,
            quant=layer.quant,
            weight_rec=weight_rec,
        )
    if neuron is None:
        return ReadoutLayer(
            layer.name, (n_out,), weight, layer.bias, flatten_input=flatten, quant=layer.quant
        )
    return DenseLayer(
        layer.name, (n_out,), neuron, weight, layer.bias, flatten_input=flatten, quant=layer.quant
    )


def _program_settings(
    meta: Any,
    layers: list[Any],
    num_steps: int | None,
    input_scale: float | None,
    notes: list[str],
) -> tuple[int, float, dict[str, Any]]:
    """(num_steps, input_scale, metadata): the arguments over our /neurocxr metadata over defaults."""
    metadata: dict[str, Any] = {}
    if meta is not None and "num_steps" in meta:
        steps_file = int(meta["num_steps"])
        scale_file = float(meta.get("input_scale", 1.0))
        metadata = json.loads(meta["metadata"]) if "metadata" in meta else {}
    else:
        steps_file, scale_file = DEFAULT_NUM_STEPS, 1.0
        if num_steps is None or (input_scale is None and layers[0].neuron is not None):
            notes.append(
                f"no /neurocxr metadata: num_steps defaults to {DEFAULT_NUM_STEPS} and input_scale to 1.0 unless "
                "given; pass the values the model was trained with"
            )
    if notes:
        metadata = dict(metadata)
        metadata["read_notes"] = notes
    steps = int(num_steps) if num_steps is not None else steps_file
    scale = float(input_scale) if input_scale is not None else scale_file
    return steps, scale, metadata


def _read_program(
    f: h5py.File, path: Path, num_steps: int | None, input_scale: float | None
) -> LoihiProgram:
    notes: list[str] = []
    if "layer" not in f or not isinstance(f["layer"], h5py.Group):
        raise ExportError(f"{path} has no /layer group: not a netx network file")
    meta = f["neurocxr"].attrs if "neurocxr" in f else None
    ours = meta is not None and "num_steps" in meta
    names: list[str] = (
        json.loads(meta["layer_names"]) if meta is not None and "layer_names" in meta else []
    )
    quants: list[dict[str, Any]] = (
        json.loads(meta["layer_quant"]) if meta is not None and "layer_quant" in meta else []
    )
    root = f["layer"]
    count = len(root)
    if count == 0:
        raise ExportError(f"{path}: /layer is empty")
    layers: list[Any] = []
    flatten_next = False

    def name_of(pos: int, g: h5py.Group, default: str) -> str:
        return str(names[pos] if pos < len(names) else (g.attrs.get("name") or default))

    def quant_of(pos: int) -> dict[str, Any]:
        return quants[pos] if pos < len(quants) and isinstance(quants[pos], dict) else {}

    for idx in range(count):
        key = str(idx)
        if key not in root:
            raise ExportError(
                f"{path}: /layer/{key} missing (netx layers must be numbered 0..{count - 1})"
            )
        g = root[key]
        where = f"{path.name} layer {idx}"
        ltype = _layer_type(g, where)
        _note_ignored_layer_fields(g, ltype, where, notes)
        if ltype == "flatten":
            flatten_next = True
            continue
        neuron = _read_neuron(g, where, notes)
        pos = len(layers)
        shape = (
            tuple(int(s) for s in np.asarray(g["shape"][()]).reshape(-1)) if "shape" in g else None
        )
        if ltype == "input":
            if layers:
                raise ExportError(f"{where}: an input layer may only come first")
            if shape is None:
                raise ExportError(f"{where}: input layer without shape")
            layers.append(
                _read_input(
                    g, where, name_of(pos, g, "input"), shape, neuron, ours, notes, quant_of(pos)
                )
            )
            continue
        _check_refused_fields(g, ltype, where)
        if "weight" not in g:
            raise ExportError(f"{where}: {ltype} layer without 'weight'")
        weight = _read_array(g, "weight", where, notes)
        bias = _read_array(g, "bias", where, notes) if "bias" in g else None
        if not layers:
            layers.append(_implicit_input(ltype, weight, where, notes))
            pos = 1
        layer = _LayerGroup(
            g, where, name_of(pos, g, f"{ltype}{idx}"), shape, neuron, weight, bias, quant_of(pos)
        )
        in_shape = tuple(layers[-1].shape)
        if ltype == "conv":
            layers.append(_conv_from_file(layer, in_shape, flatten_next))
        else:
            layers.append(_dense_from_file(layer, ltype, flatten_next or len(in_shape) > 1, notes))
            flatten_next = False
    if not any(not isinstance(layer, InputLayer) for layer in layers):
        raise ExportError(f"{path}: no conv or dense layer")
    steps, scale, metadata = _program_settings(meta, layers, num_steps, input_scale, notes)
    return LoihiProgram(
        input_shape=tuple(layers[0].shape),
        input_kind="bias" if layers[0].neuron is not None else "spikes",
        layers=layers,
        num_steps=steps,
        input_scale=scale,
        metadata=metadata,
    )


def _note_ignored_layer_fields(g: h5py.Group, ltype: str, where: str, notes: list[str]) -> None:
    """Note the layer's datasets netx does not read (slayer's shape descriptors are expected, so unnoted)."""
    read = set(NETX_LAYER_FIELDS[ltype]) | set(NETX_LAYER_REFUSED) | {"weight"}
    skipped = [key for key in g.keys() if key not in read and key not in NETX_LAYER_IGNORED]
    if ltype == "conv" and "delay" in g:
        skipped.append("delay")
    if ltype == "flatten":
        skipped = [
            key for key in skipped if key != "shape"
        ]  # netx flattens by the next layer's weight
    if skipped:
        notes.append(
            f"{where}: {ltype} fields not read by netx, ignored as Lava ignores them: {', '.join(sorted(skipped))}"
        )


def _read_input(
    g: h5py.Group,
    where: str,
    name: str,
    shape: tuple[int, ...],
    neuron: LoihiNeuron | None,
    ours: bool,
    notes: list[str],
    quant: dict[str, Any],
) -> InputLayer:
    """An input layer; a netx transform (scalar weight/bias, netx reads them with int()) applies to bias input."""
    has_transform = "weight" in g or "bias" in g
    if neuron is None:
        if has_transform:
            notes.append(
                f"{where}: input weight/bias ignored as netx does: without neurons the input is spikes"
            )
        return InputLayer(name, shape, None, quant=quant)

    def scalar(key: str, default: float) -> float:
        if key not in g:
            return default
        arr = np.asarray(g[key][()]).reshape(-1)
        if arr.size != 1:
            raise UnsupportedLayerError(
                f"{where}: input {key} with {arr.size} values; netx reads a scalar transform"
            )
        return float(int(arr[0]))  # netx: int(layer_config[key])

    weight = scalar("weight", 1.0 if ours else float(NETX_DEFAULT_INPUT_WEIGHT))
    bias = scalar("bias", 0.0)
    if not ours:
        notes.append(
            f"{where}: input neurons take the image as bias_mant = round({weight:g} * x * input_scale + {bias:g}) "
            f"(netx's input transform{'' if has_transform else ', default weight 64'})"
        )
    return InputLayer(
        name, shape, neuron, transform_weight=weight, transform_bias=bias, quant=quant
    )
