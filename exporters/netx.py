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
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from neurocxr.errors import ExportError, UnsupportedLayerError
from neurocxr.fileio import atomic_write

from .program import LoihiLayer, LoihiNeuron, LoihiProgram, ProgramError

__all__ = ["write_netx", "read_netx", "DEFAULT_NUM_STEPS"]

DEFAULT_NUM_STEPS = 16  # used by read_netx when a file has no /neurocxr metadata
_NETX_UNSUPPORTED = {"pool", "average", "concat", "convT", "unpool", "dense_rec", "dense_comp"}


def _write_str(group: h5py.Group, key: str, value: str) -> None:
    # slayer's convention: a (1,) fixed-length bytes dataset; NetDict decodes value[0].
    group.create_dataset(key, (1,), f"S{max(len(value), 1)}", [value.encode("ascii")])


def _write_neuron(group: h5py.Group, neuron: LoihiNeuron) -> None:
    ng = group.create_group("neuron")
    _write_str(ng, "type", "CUBA")
    ng.create_dataset("vThMant", data=np.int64(neuron.v_th_mant))
    ng.create_dataset("iDecay", data=np.int64(neuron.i_decay))
    ng.create_dataset("vDecay", data=np.int64(neuron.v_decay))
    ng.create_dataset("refDelay", data=np.int64(1))
    ng.create_dataset("gradedSpike", data=np.bool_(False))


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    except (TypeError, ValueError):
        return str(value)


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
            meta.attrs["layer_quant"] = json.dumps([_jsonable(layer.quant) for layer in program.layers])
            meta.attrs["metadata"] = json.dumps(_jsonable(program.metadata))

    path = atomic_write(path, write)
    return path


def _write_layers(f: h5py.File, program: LoihiProgram) -> None:
    root = f.create_group("layer")
    index = 0
    prev_shape: tuple[int, ...] = tuple(program.input_shape)
    for i, layer in enumerate(program.layers):
        if layer.kind == "input":
            g = root.create_group(str(index))
            _write_str(g, "type", "input")
            g.create_dataset("shape", data=np.asarray(layer.shape, dtype=np.int64))
            if layer.neuron is not None:
                _write_neuron(g, layer.neuron)
        elif layer.kind == "conv":
            if len(prev_shape) != 3:
                raise ExportError(f"layer {i} ({layer.name}): conv needs a (C, H, W) input, got {prev_shape}")
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
            if layer.neuron is None:
                raise ExportError(f"layer {i} ({layer.name}): netx cannot build a conv layer without neuron")
            _write_neuron(g, layer.neuron)
        elif layer.kind == "dense":
            if len(prev_shape) > 1 and not layer.flatten_input:
                raise ExportError(
                    f"layer {i} ({layer.name}): dense layer reads a {prev_shape} map; set flatten_input=True"
                )
            if layer.flatten_input:
                fg = root.create_group(str(index))
                _write_str(fg, "type", "flatten")
                fg.create_dataset("shape", data=np.asarray([int(np.prod(prev_shape))], dtype=np.int64))
                index += 1
            g = root.create_group(str(index))
            _write_str(g, "type", "dense")
            g.create_dataset("shape", data=np.asarray(layer.shape, dtype=np.int64))
            g.create_dataset("weight", data=np.asarray(layer.weight, dtype=np.int64))
            if layer.bias is not None:
                g.create_dataset("bias", data=np.asarray(layer.bias, dtype=np.int64))
            if layer.neuron is not None:
                _write_neuron(g, layer.neuron)
        else:  # pragma: no cover - LayerKind is closed
            raise ExportError(f"layer {i} ({layer.name}): unknown kind {layer.kind!r}")
        g.attrs["name"] = layer.name
        prev_shape = tuple(layer.shape)
        index += 1


def _scalar(x: Any) -> int:
    arr = np.asarray(x)
    return int(arr.reshape(-1)[0])


def _pair(x: Any) -> tuple[int, int]:
    arr = np.asarray(x).reshape(-1)
    if arr.size == 1:
        return int(arr[0]), int(arr[0])
    return int(arr[0]), int(arr[1])


def _read_str(group: h5py.Group, key: str) -> str:
    value = group[key]
    value = value[0] if len(value.shape) > 0 else value[()]
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _read_neuron(group: h5py.Group, where: str) -> LoihiNeuron | None:
    if "neuron" not in group:
        return None
    ng = group["neuron"]
    ntype = _read_str(ng, "type")
    if ntype not in ("CUBA", "LOIHI"):
        raise UnsupportedLayerError(
            f"{where}: neuron type {ntype!r} is not supported (only CUBA/LOIHI spiking neurons; "
            "SDNN and resonate-and-fire neurons are not emulated) - re-export with CUBA neurons"
        )
    try:
        return LoihiNeuron(
            v_th_mant=_scalar(ng["vThMant"][()]),
            i_decay=_scalar(ng["iDecay"][()]),
            v_decay=_scalar(ng["vDecay"][()]),
        )
    except KeyError as exc:
        raise ExportError(f"{where}: neuron group lacks {exc.args[0]!r}") from exc


def read_netx(path: str | os.PathLike[str]) -> LoihiProgram:
    """Read a netx HDF5 file (ours or slayer's) back into a `LoihiProgram`.

    Accepts ``input`` (with a neuron -> bias input, without -> spike input), ``conv`` (4-D or
    slayer's 5-D ``(Cout, Cin, kH, kW, 1)`` weights), ``flatten`` and ``dense`` layers with CUBA or
    LOIHI neurons, and a final ``dense`` without neuron as readout. Layer types that netx itself
    cannot build raise UnsupportedLayerError naming them.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"netx file {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ExportError(f"{path} is not a readable HDF5 file: {exc}") from exc
    notes: list[str] = []
    with f:
        if "layer" not in f:
            raise ExportError(f"{path} has no /layer group: not a netx network file")
        meta = f["neurocxr"].attrs if "neurocxr" in f else None
        names: list[str] = json.loads(meta["layer_names"]) if meta is not None and "layer_names" in meta else []
        quants: list[dict[str, Any]] = (
            json.loads(meta["layer_quant"]) if meta is not None and "layer_quant" in meta else []
        )
        root = f["layer"]
        count = len(root)
        layers: list[LoihiLayer] = []
        flatten_next = False
        input_shape: tuple[int, ...] | None = None
        for idx in range(count):
            key = str(idx)
            if key not in root:
                raise ExportError(f"{path}: /layer/{key} missing (netx layers must be numbered 0..{count - 1})")
            g = root[key]
            where = f"{path.name} layer {idx}"
            ltype = _read_str(g, "type")
            if ltype in _NETX_UNSUPPORTED:
                raise UnsupportedLayerError(
                    f"{where}: layer type {ltype!r} is not supported - lava-dl netx itself cannot build it "
                    "(hdf5.Network raises NotImplementedError or it needs features the emulator lacks); "
                    "fold pooling into the next conv/dense before exporting"
                )
            if ltype == "flatten":
                flatten_next = True
                continue
            neuron = _read_neuron(g, where)
            pos = len(layers)
            name = names[pos] if pos < len(names) else (g.attrs.get("name") or f"{ltype}{idx}")
            name = str(name)
            quant = quants[pos] if pos < len(quants) and isinstance(quants[pos], dict) else {}
            shape = tuple(int(s) for s in np.asarray(g["shape"][()]).reshape(-1)) if "shape" in g else None
            if ltype == "input":
                if layers:
                    raise ExportError(f"{where}: an input layer may only come first")
                if shape is None:
                    raise ExportError(f"{where}: input layer without shape")
                input_shape = shape
                layers.append(LoihiLayer(kind="input", name=name, shape=shape, neuron=neuron, quant=quant))
                continue
            if not layers:
                raise ExportError(f"{where}: file starts with {ltype!r}; an 'input' layer with a shape must come first")
            weight = np.asarray(g["weight"][()])
            if np.issubdtype(weight.dtype, np.floating) and not np.all(weight == np.round(weight)):
                notes.append(f"{where}: non-integer weights rounded as netx's astype(int) truncates")
            weight = weight.astype(np.int64)
            bias = np.asarray(g["bias"][()]).astype(np.int64) if "bias" in g else None
            if "delay" in g:
                raise UnsupportedLayerError(f"{where}: synaptic delays are not supported by the emulator")
            if ltype == "conv":
                if weight.ndim == 5:
                    if weight.shape[-1] != 1:
                        raise UnsupportedLayerError(f"{where}: 3-D conv weight {weight.shape} is not supported")
                    weight = weight[..., 0]
                if weight.ndim != 4:
                    raise ExportError(f"{where}: conv weight must be 4-D, got {weight.shape}")
                if neuron is None:
                    raise ExportError(f"{where}: conv layer without neuron group (netx requires one)")
                in_shape = layers[-1].shape
                stride = _pair(g["stride"][()]) if "stride" in g else (1, 1)
                padding = _pair(g["padding"][()]) if "padding" in g else (0, 0)
                dilation = _pair(g["dilation"][()]) if "dilation" in g else (1, 1)
                groups = _scalar(g["groups"][()]) if "groups" in g else 1
                if shape is None:
                    shape = _conv_out_shape(in_shape, weight.shape, stride, padding, dilation)
                layers.append(LoihiLayer(kind="conv", name=name, shape=shape, neuron=neuron, weight=weight,
                                         bias=bias, stride=stride, padding=padding, dilation=dilation,
                                         groups=groups, quant=quant))
            elif ltype == "dense":
                n_out = int(np.prod(shape)) if shape is not None else weight.shape[0]
                if weight.ndim == 1:
                    weight = weight.reshape(n_out, -1)
                layers.append(LoihiLayer(kind="dense", name=name, shape=(n_out,), neuron=neuron, weight=weight,
                                         bias=bias, flatten_input=flatten_next or len(layers[-1].shape) > 1,
                                         quant=quant))
                flatten_next = False
            else:
                raise UnsupportedLayerError(f"{where}: unknown layer type {ltype!r}")
        if input_shape is None:
            raise ExportError(f"{path}: no input layer")
        if meta is not None and "num_steps" in meta:
            num_steps = int(meta["num_steps"])
            input_scale = float(meta.get("input_scale", 1.0))
            metadata = json.loads(meta["metadata"]) if "metadata" in meta else {}
        else:
            num_steps, input_scale, metadata = DEFAULT_NUM_STEPS, 1.0, {}
            notes.append(
                f"no /neurocxr metadata: num_steps defaults to {DEFAULT_NUM_STEPS} and input_scale to 1.0; "
                "pass the values the model was trained with"
            )
    if notes:
        metadata = dict(metadata)
        metadata["read_notes"] = notes
    program = LoihiProgram(
        input_shape=input_shape,
        input_kind="bias" if layers[0].neuron is not None else "spikes",
        layers=layers,
        num_steps=num_steps,
        input_scale=input_scale,
        metadata=metadata,
    )
    try:
        program.validate()
    except ProgramError as exc:
        raise ExportError(f"{path}: {exc}") from exc
    return program


def _conv_out_shape(in_shape: tuple[int, ...], wshape: tuple[int, ...], stride: tuple[int, int],
                    padding: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int]:
    _, h, w = in_shape
    kh, kw = wshape[2], wshape[3]
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return (int(wshape[0]), int(oh), int(ow))
