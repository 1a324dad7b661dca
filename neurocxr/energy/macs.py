"""The one MAC counter for CNN layers: PyTorch modules and ONNX nodes are both counted here.

Convention (the same as NeuroBench's dense count and the SNN's ``dense_synaptic_ops``): a
convolution's multiply-accumulates are its real taps, i.e. for every output position the kernel
taps that fall inside the input map; taps that land on zero padding are not counted (they multiply
a constant zero). ``include_padding=True`` gives the other common convention, output elements x
kernel size x C_in/groups, which is what a dense accelerator that materialises the padding
computes. A Linear/Gemm/MatMul layer is output elements x the reduced dimension. Bias additions
are not MACs.

`torch_layer_traffic` (here) hooks PyTorch modules once for every consumer (MAC totals in
`neurocxr.energy.estimate.count_cnn_macs`, memory traffic in `neurocxr.energy.memory`) and
`onnx_macs` (neurocxr.exporters.onnx) reads an ONNX graph; both call `conv_macs`, so they agree.
Only Conv1d/2d/3d and Linear modules are counted: a model that multiplies activations by each other
(attention) does more MACs than this counts, which `tests/test_macs.py` shows against
`torch.utils.flop_counter.FlopCounterMode` for every CNN the project builds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neurocxr.errors import ExportError, NeurocxrError


def valid_taps_1d(
    size_in: int, size_out: int, kernel: int, stride: int, pad_begin: int, dilation: int
) -> int:
    """Along one axis: sum over kernel offsets of the output positions whose tap lies inside the input."""
    if kernel < 1 or size_out < 1:
        return 0
    out = np.arange(size_out) * stride - pad_begin
    total = 0
    for k in range(kernel):
        pos = out + k * dilation
        total += int(np.count_nonzero((pos >= 0) & (pos < size_in)))
    return total


def conv_macs(
    in_channels: int,
    in_spatial: Sequence[int],
    out_spatial: Sequence[int],
    weight_shape: Sequence[int],
    stride: Sequence[int],
    pad_begin: Sequence[int],
    dilation: Sequence[int],
    groups: int = 1,
    *,
    include_padding: bool = False,
) -> int:
    """MACs of one sample through a convolution of any dimensionality.

    ``weight_shape`` = (C_out, C_in/groups, *kernel); ``pad_begin`` = padding before each spatial
    axis (the padding after it only shows in ``out_spatial``). Real taps only unless
    ``include_padding``.
    """
    c_out, c_in_per_group, *kernel = (int(v) for v in weight_shape)
    dims = len(kernel)
    if not (
        len(in_spatial)
        == len(out_spatial)
        == len(stride)
        == len(pad_begin)
        == len(dilation)
        == dims
    ):
        raise ValueError(
            f"conv geometry mismatch: kernel {kernel}, input {list(in_spatial)}, output {list(out_spatial)}, "
            f"stride {list(stride)}, padding {list(pad_begin)}, dilation {list(dilation)}"
        )
    if in_channels != c_in_per_group * groups:
        raise ValueError(
            f"conv has {in_channels} input channels but weight expects {c_in_per_group} x {groups} groups"
        )
    if include_padding:
        per_pair = int(np.prod([int(o) for o in out_spatial])) * int(np.prod(kernel))
    else:
        per_pair = 1
        for i in range(dims):
            per_pair *= valid_taps_1d(
                int(in_spatial[i]),
                int(out_spatial[i]),
                kernel[i],
                int(stride[i]),
                int(pad_begin[i]),
                int(dilation[i]),
            )
    # every output channel sees C_in/groups input channels through its own kernel
    return int(c_out * c_in_per_group * per_pair)


def linear_macs(rows: int, in_features: int, out_features: int) -> int:
    """MACs of a matrix product: ``rows`` input vectors of ``in_features`` to ``out_features`` outputs."""
    return int(rows) * int(in_features) * int(out_features)


@dataclass(frozen=True)
class LayerTraffic:
    """One Conv/Linear layer's work for one sample: MACs (the rule above), weights and biases held,
    and the activation elements it reads and writes."""

    name: str  # module path and type, e.g. "features.0 (Conv2d)"
    macs: int
    weights: int
    input_elements: int
    output_elements: int


def torch_pad_begin(module: nn.Module, dims: int) -> tuple[int, ...]:
    """Padding before each spatial axis of a torch conv (numbers, 'valid' or 'same')."""
    pad = module.padding
    if isinstance(pad, str):
        if pad == "valid":
            return (0,) * dims
        # 'same': torch pads dilation * (k - 1) in total, the smaller half first
        k, d = module.kernel_size, module.dilation
        return tuple((d[i] * (k[i] - 1)) // 2 for i in range(dims))
    return tuple(int(p) for p in pad)


_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def torch_layer_traffic(
    model: nn.Module, input_shape: Sequence[int], *, include_padding: bool = False
) -> list[LayerTraffic]:
    """Run ``model`` once on zeros of ``input_shape`` (batch first) and return one `LayerTraffic`
    per Conv/Linear call, in call order (a module called twice appears twice)."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2 or shape[0] < 1:
        raise NeurocxrError(f"input_shape must include the batch dimension first, got {shape}")
    names = {m: n for n, m in model.named_modules()}
    rows: list[LayerTraffic] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]
        batch = x.shape[0]
        # "net.3" says little in a report: add the layer type ("net.3 (Conv2d)").
        name = (
            f"{names[module]} ({type(module).__name__})" if names[module] else type(module).__name__
        )
        if isinstance(module, nn.Linear):
            macs = linear_macs(
                x.numel() // x.shape[-1] // batch, module.in_features, module.out_features
            )
        else:
            macs = conv_macs(
                int(x.shape[1]),
                tuple(x.shape[2:]),
                tuple(output.shape[2:]),
                tuple(module.weight.shape),
                module.stride,
                torch_pad_begin(module, x.dim() - 2),
                module.dilation,
                module.groups,
                # reflect/replicate/circular padding taps are real values and always count
                include_padding=include_padding or module.padding_mode != "zeros",
            )
        weights = int(module.weight.numel()) + (
            int(module.bias.numel()) if module.bias is not None else 0
        )
        rows.append(
            LayerTraffic(
                name, int(macs), weights, int(x.numel() // batch), int(output.numel() // batch)
            )
        )

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _COUNTED)]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        with torch.no_grad():
            model(torch.zeros(shape, dtype=param.dtype if param is not None else torch.float32))
    except NeurocxrError:
        raise
    except Exception as exc:  # a shape mismatch deep inside torch
        raise NeurocxrError(
            f"could not run the model on an input of shape {shape} to count its MACs: {exc}"
        ) from exc
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return rows


def _dims(value_info: Any) -> list[int] | None:
    """Static dims of a tensor type; symbolic / unknown dims count as 1 (the per-sample batch)."""
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims = []
    for d in tensor_type.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else 1)
    return dims


def _conv_pad_begin(
    node: Any,
    in_spatial: list[int],
    out_spatial: list[int],
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
) -> list[int]:
    """Padding before each spatial axis of an ONNX Conv (explicit ``pads`` or ``auto_pad``)."""
    attrs = {a.name: a for a in node.attribute}
    dims = len(kernel)
    auto_pad = attrs["auto_pad"].s.decode() if "auto_pad" in attrs else "NOTSET"
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin = []
        for i in range(dims):
            total = max(
                (out_spatial[i] - 1) * strides[i]
                + dilations[i] * (kernel[i] - 1)
                + 1
                - in_spatial[i],
                0,
            )
            begin.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
        return begin
    if auto_pad == "VALID" or "pads" not in attrs:
        return [0] * dims
    return [int(p) for p in attrs["pads"].ints[:dims]]


def onnx_macs(path: str | os.PathLike[str], *, include_padding: bool = False) -> dict[str, int]:
    """Multiply-accumulates of every Conv, Gemm and MatMul node, from shapes ONNX infers.

    Symbolic dimensions (the dynamic batch) count as 1, so a dynamic-batch graph gives MACs per
    sample; a fixed-batch graph gives MACs for its batch. Keys are node names (``op_type_i`` when
    a node has none); sum the values for the whole network. The counting rule is the one of
    `neurocxr.energy.macs` (shared with `count_cnn_macs`, so both give the same numbers): Conv
    taps that land on zero padding are not counted unless ``include_padding``; Gemm / MatMul:
    output elements x the reduced dimension. Bias additions are not MACs.
    """
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ExportError(f"ONNX file {p} not found")
    try:
        model = onnx.shape_inference.infer_shapes(onnx.load(str(p)), strict_mode=True)
    except Exception as exc:
        raise ExportError(f"ONNX shape inference failed for {p}: {exc}") from exc
    graph = model.graph
    shapes: dict[str, list[int] | None] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        shapes[vi.name] = _dims(vi)
    for init in graph.initializer:
        shapes[init.name] = [int(d) for d in init.dims]

    def shape_of(name: str, node_name: str) -> list[int]:
        s = shapes.get(name)
        if s is None:
            raise ExportError(
                f"ONNX shape inference gave no shape for tensor {name!r} of node {node_name!r}"
            )
        return s

    macs: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        name = node.name or f"{node.op_type}_{i}"
        if name in macs:
            name = f"{name}_{i}"
        out_shape = shape_of(node.output[0], name)
        out_elements = int(np.prod(out_shape)) if out_shape else 1
        if node.op_type == "Conv":
            x = shape_of(node.input[0], name)  # (N, Cin, *spatial)
            w = shape_of(node.input[1], name)  # (Cout, Cin/groups, *kernel)
            attrs = {a.name: a for a in node.attribute}
            dims = len(w) - 2
            strides = list(attrs["strides"].ints) if "strides" in attrs else [1] * dims
            dilations = list(attrs["dilations"].ints) if "dilations" in attrs else [1] * dims
            groups = int(attrs["group"].i) if "group" in attrs else 1
            pad_begin = _conv_pad_begin(node, x[2:], out_shape[2:], w[2:], strides, dilations)
            per_sample = conv_macs(
                x[1],
                x[2:],
                out_shape[2:],
                w,
                strides,
                pad_begin,
                dilations,
                groups,
                include_padding=include_padding,
            )
            macs[name] = int(per_sample * out_shape[0])
            continue
        if node.op_type == "Gemm":
            a = shape_of(node.input[0], name)
            trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
            reduced = a[0] if trans_a else a[-1]
        else:  # MatMul: [..., M, K] x [..., K, N]
            a = shape_of(node.input[0], name)
            reduced = a[-1]
        macs[name] = int(out_elements * reduced)
    return macs
