"""The one MAC counter for CNN layers: PyTorch modules and ONNX nodes are both counted here.

Convention (the same as NeuroBench's dense count and the SNN's ``dense_synaptic_ops``): a
convolution's multiply-accumulates are its real taps, i.e. for every output position the kernel
taps that fall inside the input map; taps that land on zero padding are not counted (they multiply
a constant zero). ``include_padding=True`` gives the other common convention, output elements x
kernel size x C_in/groups, which is what a dense accelerator that materialises the padding
computes. A Linear/Gemm/MatMul layer is output elements x the reduced dimension. Bias additions
are not MACs.

`count_cnn_macs` (neurocxr.energy.estimate) hooks PyTorch modules and `onnx_macs`
(neurocxr.exporters.onnx) reads an ONNX graph; both call `conv_macs`, so the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def valid_taps_1d(size_in: int, size_out: int, kernel: int, stride: int, pad_begin: int, dilation: int) -> int:
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
    if not (len(in_spatial) == len(out_spatial) == len(stride) == len(pad_begin) == len(dilation) == dims):
        raise ValueError(
            f"conv geometry mismatch: kernel {kernel}, input {list(in_spatial)}, output {list(out_spatial)}, "
            f"stride {list(stride)}, padding {list(pad_begin)}, dilation {list(dilation)}"
        )
    if in_channels != c_in_per_group * groups:
        raise ValueError(f"conv has {in_channels} input channels but weight expects {c_in_per_group} x {groups} groups")
    if include_padding:
        per_pair = int(np.prod([int(o) for o in out_spatial])) * int(np.prod(kernel))
    else:
        per_pair = 1
        for i in range(dims):
            per_pair *= valid_taps_1d(
                int(in_spatial[i]), int(out_spatial[i]), kernel[i], int(stride[i]), int(pad_begin[i]), int(dilation[i])
            )
    # every output channel sees C_in/groups input channels through its own kernel
    return int(c_out * c_in_per_group * per_pair)


def linear_macs(rows: int, in_features: int, out_features: int) -> int:
    """MACs of a matrix product: ``rows`` input vectors of ``in_features`` to ``out_features`` outputs."""
    return int(rows) * int(in_features) * int(out_features)
