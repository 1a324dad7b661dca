"""Batched, integer-exact emulator of a `LoihiProgram` as Lava's fixed-point models run it.

What it reproduces (lava-nc 0.10.0 / lava-dl 0.6.0 sources, which win over any doc):

- CUBA neuron, ``PyLifModelBitAcc`` / ``PyLifResetModelBitAcc``, per step::

      u = trunc(u * (4096 - iDecay)) + (a_in << 6)      trunc = sign(x) * (|x| >> 12)
      u -= 2**24 if u > 2**23 ; u += 2**24 if u <= -2**23   (one conditional wrap, as the source)
      v = clip(trunc(v * (4096 - vDecay)) + u + (bias << 6), -(2**23 - 1), 2**23 - 1)
      spike = v > (vThMant << 6) ; v[spike] = 0

  (netx passes du = iDecay - 1 and Lava adds ds_offset = 1 back.)
- Dense synapse (``PyDenseModelBitAcc``) with the weights/exponent netx's
  ``optimize_weight_bits`` produces, then Lava's ``clip_weights``/``truncate_weights``:
  ``a = (W' @ s) << weight_exp`` (arithmetic shift). `netx_dense_weights` repeats that packing.
- Conv synapse (``PyConvModelFixed``): integer cross-correlation of the file's (torch-order)
  weight (Lava 0.10 computes it with scipy; here float32/float64 conv, exact because every partial
  sum is an integer below 2**24 / 2**53), wrapped to 24 bits (``(x + 2**23) % 2**24 - 2**23``),
  no weight exponent.

Speed (same integer results): neuron state is float64 holding integers (``trunc(x * f/4096)`` is
exact there), the current wrap / voltage clip / conv wrap are skipped only when a bound computed
from the weights, biases and decays (`_neuron_bounds`) proves they cannot fire, a kernel that is a
pooled kernel (constant on stride x stride blocks) runs as sum-pool + smaller conv, and synaptic-op
counts use spikes summed over the window times the fan-out map.
- The readout (netx ``dense`` without ``neuron``) is netx's default neuron: iDecay 0, vDecay 4096,
  vThMant 1 << 17: ``u`` accumulates ``a_in << 6`` without decay and ``v = u`` never spikes; the
  readout value is that raw ``v`` (64 x the summed weighted input, 24-bit wrapped), exactly what
  the Lava runner reads with ``Var.get()``.

Sample protocol (the Lava runner does exactly the same; see hardware_sims/lava.py):

- ``T = num_steps``; program layer ``k`` (0 = input) owns the window of steps ``k+1 .. k+T`` of a
  sample timeline of ``T_run = T + L`` steps (``L`` synaptic layers). At the first step of its
  window a layer's u and v are reset to zero. This is netx's staggered reset
  (``Network(reset_interval=T, reset_offset=...)``, ``LIFReset``), which Lava runs natively.
- Each synaptic layer delivers one step late, so in its window layer ``k`` sees exactly layer
  ``k-1``'s window, step for step: in float the program computes what the trained model computes
  over ``T`` steps, every layer shifted by one step. A layer's bias is integrated from the start of
  its own window, i.e. together with its first real input, so biases do not break the shift.
- Spike inputs are presented at steps 1..T; bias inputs (image -> input neuron bias) during the
  input layer's window 1..T. The readout is read at step ``T_run`` (end of its window).
- Because every window depends only on the previous layer's window of the same sample, samples
  are independent; on Lava they are pipelined back to back (sample ``i`` starts at global step
  ``i*T + 1``) and nothing of one sample leaks into the next.
- ``layer_spikes``/``output_spikes`` are placed on the sample timeline (``[T_run, B, ...]``):
  layer ``k``'s spikes occupy rows ``k .. k+T-1``, other rows are zero.
- Counts (LayerCounts) cover each layer's own window of ``T`` steps (``time_steps = T``): the
  work the chip does per sample in steady-state pipelined operation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from neurocxr.errors import SimulationError
from neurocxr.exporters.program import LoihiLayer, LoihiProgram, ProgramError

from .results import LayerCounts, RunResult

__all__ = ["emulate", "netx_dense_weights", "conv_fanout_map", "sample_timeline"]

_U_MAX = 2**23  # Lava's max_uv_val
_V_LIMIT = 2**23 - 1
_DECAY_UNITY = 4096
DEFAULT_BATCH_SIZE = 16
READOUT_NEURON = {"i_decay": 0, "v_decay": 4096, "v_th_mant": 1 << 17}  # netx create_dense default


def sample_timeline(program: LoihiProgram, num_steps: int | None = None) -> tuple[int, int]:
    """(T, T_run) of the sample protocol: T = num_steps, T_run = T + number of synaptic layers."""
    steps = int(num_steps if num_steps is not None else program.num_steps)
    if steps < 1:
        raise SimulationError(f"num_steps must be >= 1, got {steps}")
    return steps, steps + len(program.layers) - 1


def netx_dense_weights(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """Effective dense weights and exponent as netx + Lava's PyDenseModelBitAcc use them.

    Repeats ``netx.utils.optimize_weight_bits`` (shift by scale_bits, num_weight_bits,
    weight_exponent) and Lava's ``clip_weights(num_bits=8)`` / ``truncate_weights`` with the sign
    mode Lava re-derives from the shifted weights. Returns ``(W', weight_exp)``; the synapse
    computes ``(W' @ s) << weight_exp`` (right shift when negative).
    """
    w = np.asarray(weight).astype(np.int64)
    max_w, min_w = int(w.max()), int(w.min())
    if max_w > 254 and min_w < 0:
        w = np.clip(w, -256, 254)
        max_w = int(w.max())
    if min_w < -256 and max_w > 0:
        w = np.clip(w, -256, 254)
        min_w = int(w.min())
    if max_w == 0 and min_w == 0:
        raise SimulationError("a dense layer with all-zero weights cannot be packed by netx (division by zero)")
    if max_w < 0:
        is_signed, scale = 0, -256 / min_w
    elif min_w >= 0:
        is_signed, scale = 0, 255 / max_w
    else:
        is_signed = 1
        scale = min(127 / max_w if max_w != 0 else np.inf, -128 / min_w)
    scale_bits = int(np.floor(np.log2(scale))) + is_signed
    n = 8
    while n > 0 and np.any(w % (2**n) != 0):
        n -= 1
    n -= is_signed
    num_weight_bits = 8 - scale_bits - n
    weight_exp = -scale_bits
    shifted = np.left_shift(w.astype(np.int32), scale_bits).astype(np.int64) if scale_bits >= 0 else np.zeros_like(w)
    # Lava's PyDenseModelBitAcc: sign mode from the shifted weights, clip to 8 bits, truncate.
    if shifted.min() >= 0:
        mode = "excitatory"
    elif shifted.max() <= 0:
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
    return shifted.astype(np.int64), int(weight_exp)


def conv_fanout_map(layer: LoihiLayer, in_shape: tuple[int, int, int]) -> np.ndarray:
    """Per input position (C, H, W): number of non-zero-weight synapses it reaches (border-correct)."""
    w = torch.as_tensor(np.asarray(layer.weight) != 0, dtype=torch.float64)
    cout, ho, wo = layer.shape
    ones = torch.ones((1, cout, ho, wo), dtype=torch.float64)
    _, h, wd = in_shape
    kh, kw = w.shape[2], w.shape[3]
    base_h = (ho - 1) * layer.stride[0] - 2 * layer.padding[0] + layer.dilation[0] * (kh - 1) + 1
    base_w = (wo - 1) * layer.stride[1] - 2 * layer.padding[1] + layer.dilation[1] * (kw - 1) + 1
    out_pad = (h - base_h, wd - base_w)
    if not (0 <= out_pad[0] < max(layer.stride[0], layer.dilation[0]) and 0 <= out_pad[1] < max(layer.stride[1], layer.dilation[1])):
        # sizes that conv_transpose2d cannot reach directly: compute from a larger map and crop
        fan = F.conv_transpose2d(ones, w, stride=layer.stride, padding=0, dilation=layer.dilation, groups=layer.groups)
        fan = fan[:, :, layer.padding[0]:layer.padding[0] + h, layer.padding[1]:layer.padding[1] + wd]
        full = torch.zeros((1, fan.shape[1], h, wd), dtype=torch.float64)
        full[:, :, : fan.shape[2], : fan.shape[3]] = fan
        fan = full
    else:
        fan = F.conv_transpose2d(ones, w, stride=layer.stride, padding=layer.padding, output_padding=out_pad,
                                 dilation=layer.dilation, groups=layer.groups)
    return np.rint(fan[0].numpy()).astype(np.int64)


@dataclass
class _Prepared:
    """Per-layer constants computed once per emulate() call."""

    layer: LoihiLayer
    in_shape: tuple[int, ...]
    weight: torch.Tensor | None  # conv: float kernel; dense: float effective W' [Nout, Nin]
    weight_exp: int
    fanout: torch.Tensor | None  # [Nin] int64 fan-out per input position
    dense_ops_per_step: int
    fan_in: int
    num_synapses: int
    bias_eff: torch.Tensor  # [N] int64 bias << 6
    du_factor: int
    dv_factor: int
    vth_eff: int
    float_dtype: torch.dtype
    a_max: int = _U_MAX  # bound on |a_in| (synaptic input before << 6) for any 0/1 input spikes
    conv_wrap: bool = True  # whether the conv's 24-bit wrap can ever change a value
    pool: int = 1  # > 1: `weight` is the factor of a block-constant kernel applied after a sum-pool (_pooled_factor)


def _pooled_factor(layer: LoihiLayer, weight: np.ndarray) -> tuple[int, np.ndarray]:
    """Factor a conv whose kernel is constant on ``s x s`` blocks (``s`` = stride) into sum-pool + conv.

    An average pool folded into the next conv (snn_conv's AvgPool2 + 3x3 conv -> 6x6 stride-2 kernel)
    gives such kernels. For stride ``s``, kernel ``k*s``, dilation 1 and padding ``p``:
    ``conv(x, W, stride s, pad p) == conv(sumpool_s(pad(x, p)), W[:, :, ::s, ::s], stride 1)`` exactly
    (same integer products, regrouped), with ``s*s`` times fewer multiplies. Returns ``(1, weight)``
    when the kernel has no such structure.
    """
    sh, sw = layer.stride
    if sh != sw or sh < 2 or tuple(layer.dilation) != (1, 1):
        return 1, weight
    s = sh
    kh, kw = weight.shape[2], weight.shape[3]
    if kh % s or kw % s:
        return 1, weight
    small = weight[:, :, ::s, ::s]
    if not np.array_equal(np.repeat(np.repeat(small, s, axis=2), s, axis=3), weight):
        return 1, weight
    return s, np.ascontiguousarray(small)


def _prepare(program: LoihiProgram) -> list[_Prepared | None]:
    prepared: list[_Prepared | None] = [None]
    in_shape: tuple[int, ...] = tuple(program.layers[0].shape)
    for layer in program.layers[1:]:
        neuron = layer.neuron
        params = (
            (neuron.i_decay, neuron.v_decay, neuron.v_th_mant) if neuron is not None
            else (READOUT_NEURON["i_decay"], READOUT_NEURON["v_decay"], READOUT_NEURON["v_th_mant"])
        )
        w_np = np.asarray(layer.weight).astype(np.int64)
        if layer.kind == "conv":
            w_eff, w_exp = w_np, 0
            fan = conv_fanout_map(layer, in_shape).reshape(-1)  # type: ignore[arg-type]
            # NeuroBench's dense ops: all-ones weights on all-ones input, so taps on zero padding
            # are not operations (the same border-correct fan-out map, with every weight present).
            dense_ops = int(conv_fanout_map(replace(layer, weight=np.ones_like(w_np)), in_shape).sum())  # type: ignore[arg-type]
            fan_in = int(np.prod(w_np.shape[1:]))
        else:
            w_eff, w_exp = netx_dense_weights(w_np)
            fan = np.count_nonzero(w_eff, axis=0).astype(np.int64)
            dense_ops = int(w_np.size)
            fan_in = int(w_np.shape[1])
        # float32 is what Lava's conv uses; it is exact while every partial sum stays below 2**24.
        worst = float(np.abs(w_eff).reshape(w_eff.shape[0], -1).sum(axis=1).max(initial=0))
        fdtype = torch.float32 if worst < 2**24 else torch.float64
        worst_int = int(np.abs(w_eff).reshape(w_eff.shape[0], -1).sum(axis=1).max(initial=0))
        pool = 1
        w_run = w_eff
        if layer.kind == "conv":
            conv_wrap = worst_int >= _U_MAX  # the wrap is the identity on [-2**23, 2**23)
            a_max = _U_MAX if conv_wrap else worst_int
            pool, w_run = _pooled_factor(layer, w_eff)
        else:
            conv_wrap = False
            a_max = worst_int << w_exp if w_exp >= 0 else (worst_int >> -w_exp) + 1
        prepared.append(_Prepared(
            layer=layer,
            in_shape=in_shape,
            weight=torch.as_tensor(w_run, dtype=fdtype),
            weight_exp=w_exp,
            fanout=torch.as_tensor(fan, dtype=torch.int64),
            dense_ops_per_step=dense_ops,
            fan_in=fan_in,
            num_synapses=int(np.count_nonzero(w_np)),
            bias_eff=torch.as_tensor(layer.bias_full().reshape(-1) * 64, dtype=torch.int64),
            du_factor=_DECAY_UNITY - int(params[0]),
            dv_factor=_DECAY_UNITY - int(params[1]),
            vth_eff=int(params[2]) << 6,
            float_dtype=fdtype,
            a_max=a_max,
            conv_wrap=conv_wrap,
            pool=pool,
        ))
        in_shape = tuple(layer.shape)
    return prepared


def _trunc_shift12(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * (torch.abs(x) >> 12)


def _run_neurons_reference(a_in: torch.Tensor, bias_eff: torch.Tensor, du_factor: int, dv_factor: int,
                           vth_eff: int, u0: torch.Tensor | None = None,
                           v0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Straightforward int64 transcription of Lava's CUBA update (the spec the fast path is tested against).

    ``a_in`` [T, B, N] int64; optional start state ``u0``/``v0`` [B, N] (default zero).
    Returns (spikes [T, B, N] bool, u_end, v_end) as int64.
    """
    steps, batch, n = a_in.shape
    u = torch.zeros((batch, n), dtype=torch.int64) if u0 is None else u0.to(torch.int64).clone()
    v = torch.zeros((batch, n), dtype=torch.int64) if v0 is None else v0.to(torch.int64).clone()
    spikes = torch.zeros((steps, batch, n), dtype=torch.bool)
    act = a_in.to(torch.int64) << 6
    for t in range(steps):
        u = _trunc_shift12(u * du_factor) + act[t]
        u = torch.where(u > _U_MAX, u - 2 * _U_MAX, torch.where(u <= -_U_MAX, u + 2 * _U_MAX, u))
        v = torch.clamp(_trunc_shift12(v * dv_factor) + u + bias_eff, -_V_LIMIT, _V_LIMIT)
        s = v > vth_eff
        v = torch.where(s, torch.zeros_like(v), v)
        spikes[t] = s
    return spikes, u, v


def _neuron_bounds(a_max: int, bias_max: int, du_factor: int, dv_factor: int, steps: int) -> tuple[int, int]:
    """Upper bounds on |u| and |v| over ``steps`` steps from u = v = 0, given |a_in| <= a_max, |bias<<6| <= bias_max.

    Exact integer recurrences (trunc toward zero never increases a magnitude; a reset or a clamp only
    lowers |v|), so when ``u_max < 2**23`` Lava's current wrap never fires and when
    ``v_max <= 2**23 - 1`` its voltage clip never fires. The v bound assumes no wrap happened; when the u bound
    is not below 2**23 the caller keeps both the wrap and the clip.
    """
    u_max = v_max = 0
    act = int(a_max) << 6
    for _ in range(int(steps)):
        u_max = ((u_max * du_factor) >> 12) + act
        v_max = ((v_max * dv_factor) >> 12) + u_max + int(bias_max)
    return u_max, v_max


def _neuron_step_(u: torch.Tensor | None, v: torch.Tensor, drive: torch.Tensor, du_scale: float, dv_scale: float,
                  vth_eff: float, wrap_u: bool, clamp_v: bool, bias: torch.Tensor | None = None,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """One CUBA step in float64, in place on ``u``/``v`` (exact: every value is an integer < 2**53).

    ``trunc(x * f / 4096)`` is computed as ``trunc(x * (f / 4096))``: ``f / 4096`` is exact in binary
    and ``|x * f| < 2**36``, so the product and its truncation equal the integer formulation.
    ``drive`` is ``a_in << 6`` for this step (as float). ``u is None`` means the current has no memory
    (``du_factor == 0``), so ``u = drive`` and ``drive`` may already include the bias (``bias is None``).
    Returns the spike mask (bool); spiking entries of ``v`` are reset to zero.
    """
    if u is None:
        cur = drive
        if wrap_u:
            cur = drive.clone()
    else:
        if du_scale == 1.0:
            u.add_(drive)
        else:
            u.mul_(du_scale).trunc_().add_(drive)
        cur = u
    if wrap_u:
        cur.sub_((cur > _U_MAX).to(cur.dtype), alpha=2 * _U_MAX).add_((cur <= -_U_MAX).to(cur.dtype), alpha=2 * _U_MAX)
    if dv_scale == 0.0:
        v.copy_(cur)
    elif dv_scale == 1.0:
        v.add_(cur)
    else:
        v.mul_(dv_scale).trunc_().add_(cur)
    if bias is not None:
        v.add_(bias)
    if clamp_v:
        v.clamp_(-_V_LIMIT, _V_LIMIT)
    s = torch.gt(v, vth_eff, out=out) if out is not None else torch.gt(v, vth_eff)
    v.masked_fill_(s, 0.0)
    return s


def _run_neurons(a_in: torch.Tensor | None, bias_eff: torch.Tensor, du_factor: int, dv_factor: int,
                 vth_eff: int, *, shape: tuple[int, int, int] | None = None, wrap_u: bool = True,
                 clamp_v: bool = True, a_max: int | None = None, spike_dtype: torch.dtype = torch.bool,
                 consume_input: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """CUBA dynamics over a window from u = v = 0 (the integer semantics of `_run_neurons_reference`).

    ``a_in`` [T, B, N] (integer-valued, any dtype) or None for no synaptic input (then ``shape``
    gives (T, B, N)). ``wrap_u`` / ``clamp_v`` may be switched off only when `_neuron_bounds` proves
    the wrap / clip cannot fire. ``a_max`` (a proven bound on |a_in|) enables a float32 drive when
    ``64 * (a_max + |bias|)`` stays an exactly representable multiple of 64. ``consume_input`` lets
    the function overwrite ``a_in``. Returns (spikes [T, B, N] of ``spike_dtype`` (0/1),
    v_end [B, N] float64 holding integers).
    """
    if a_in is None:
        if shape is None:
            raise SimulationError("_run_neurons needs a_in or shape")
        steps, batch, n = shape
    else:
        steps, batch, n = a_in.shape
    bias = bias_eff.to(torch.float64)  # [N] per neuron or [B, N] per sample (image bias)
    bias_t = bias if bool(bias.any()) else None
    du_scale, dv_scale = du_factor / _DECAY_UNITY, dv_factor / _DECAY_UNITY
    v = torch.zeros((batch, n), dtype=torch.float64)
    spikes = torch.empty((steps, batch, n), dtype=spike_dtype)
    mask = torch.empty((batch, n), dtype=torch.bool) if spike_dtype != torch.bool else None
    if a_in is None:
        # u stays zero (trunc(0 * f) + 0); v integrates the bias only
        zero = torch.zeros((batch, n), dtype=torch.float64)
        for t in range(steps):
            _store(spikes, t, mask, _neuron_step_(None, v, zero, du_scale, dv_scale, float(vth_eff), False, clamp_v,
                                                  bias_t, spikes[t] if mask is None else mask))
        return spikes, v
    bias_max = int(bias.abs().max()) if bias.numel() else 0
    if du_factor == 0 and not wrap_u:
        # u = a_in << 6 exactly, so u + bias is formed for all steps at once; in float32 when every
        # value is a multiple of 64 below 2**30 (exact), else in float64.
        small = (a_max is not None and a_in.is_floating_point() and (a_max << 6) + bias_max < 2**30)
        dtype = torch.float32 if small else torch.float64
        if consume_input and a_in.dtype == dtype:
            drive = a_in.mul_(64.0)
        else:
            drive = a_in.to(dtype) * 64.0
        if bias_t is not None:
            drive.add_(bias_t.to(dtype))
        for t in range(steps):
            _store(spikes, t, mask, _neuron_step_(None, v, drive[t], du_scale, dv_scale, float(vth_eff), False,
                                                  clamp_v, None, spikes[t] if mask is None else mask))
        return spikes, v
    drive = a_in.to(torch.float64)
    drive.mul_(64.0)
    u = None if du_factor == 0 else torch.zeros((batch, n), dtype=torch.float64)
    for t in range(steps):
        _store(spikes, t, mask, _neuron_step_(u, v, drive[t], du_scale, dv_scale, float(vth_eff), wrap_u, clamp_v,
                                              bias_t, spikes[t] if mask is None else mask))
    return spikes, v


def _store(spikes: torch.Tensor, t: int, mask: torch.Tensor | None, s: torch.Tensor) -> None:
    """Copy a step's bool spike mask into a non-bool spike record (bool records are written in place)."""
    if mask is not None:
        spikes[t].copy_(s)


def _sum_pool_padded(x: torch.Tensor, s: int, padding: tuple[int, int]) -> torch.Tensor:
    """``sumpool_s(pad(x, padding))`` (kernel = stride = s), exact for integer-valued x.

    When the padding and the map size are multiples of ``s`` the pool runs first (pooling zeros
    gives zeros) with strided adds, which is several times cheaper than pad + avg_pool2d.
    """
    n, c, h, w = x.shape
    ph, pw = padding
    if ph % s or pw % s or h % s or w % s:
        xp = F.pad(x, (pw, pw, ph, ph)) if (ph or pw) else x
        return F.avg_pool2d(xp, s, stride=s, divisor_override=1)
    rows = x.reshape(n, c, h // s, s, w)
    acc = rows[:, :, :, 0].clone()
    for i in range(1, s):
        acc.add_(rows[:, :, :, i])
    cols = acc.reshape(n, c, h // s, w // s, s)
    pooled = cols[..., 0].clone()
    for i in range(1, s):
        pooled.add_(cols[..., i])
    return F.pad(pooled, (pw // s, pw // s, ph // s, ph // s)) if (ph or pw) else pooled


def _synaptic_input(prep: _Prepared, s_prev: torch.Tensor) -> torch.Tensor:
    """Weighted input [T, B, N] that the layer's neurons receive in their window (integer-valued float).

    The float32 (float64 for large weights) accumulation is exact: all partial sums are integers
    below 2**24 (2**53). The conv's 24-bit wrap is applied only when the weights allow it to fire.
    """
    steps, batch = s_prev.shape[:2]
    layer = prep.layer
    x = s_prev.reshape((steps * batch, *prep.in_shape))
    if x.dtype != prep.float_dtype:
        x = x.to(prep.float_dtype)
    if layer.kind == "conv" and prep.pool > 1:
        # exact regrouping of the block-constant kernel (see _pooled_factor); pooled sums <= pool**2
        pooled = _sum_pool_padded(x, prep.pool, tuple(layer.padding))
        acc = F.conv2d(pooled, prep.weight, groups=layer.groups)
        cout, ho, wo = layer.shape
        acc = acc[:, :, :ho, :wo]
        acc = torch.round_(acc.contiguous() if not acc.is_contiguous() else acc)
        if prep.conv_wrap:
            acc = torch.remainder(acc.to(torch.float64) + _U_MAX, 2 * _U_MAX) - _U_MAX
    elif layer.kind == "conv":
        acc = F.conv2d(x, prep.weight, stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                       groups=layer.groups)
        acc = torch.round_(acc)
        if prep.conv_wrap:  # PyConvModelFixed signed_clamp(24), exact in float64 for integers
            acc = torch.remainder(acc.to(torch.float64) + _U_MAX, 2 * _U_MAX) - _U_MAX
    else:
        acc = torch.round_(x.reshape(steps * batch, -1) @ prep.weight.T).to(torch.float64)
        if prep.weight_exp > 0:
            acc.mul_(float(2 ** prep.weight_exp))
        elif prep.weight_exp < 0:  # arithmetic right shift = floor division by a power of two
            acc.mul_(float(2.0 ** prep.weight_exp)).floor_()
    return acc.reshape(steps, batch, -1)


def _coerce_inputs(program: LoihiProgram, inputs: np.ndarray | torch.Tensor, steps: int | None) -> tuple[np.ndarray, int]:
    arr = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    shape0 = tuple(program.layers[0].shape)
    if program.input_kind == "bias":
        if arr.ndim == len(shape0) and shape0[0] == 1 and arr.shape[1:] == shape0[1:]:
            arr = arr[:, None]
        if arr.shape[1:] != shape0:
            raise SimulationError(f"bias input must be images [B, {', '.join(map(str, shape0))}], got {arr.shape}")
        if np.issubdtype(arr.dtype, np.integer):
            bias = arr.astype(np.int64)
            if bias.size and (bias.min() < -(2**12) or bias.max() > 2**12 - 1):
                raise SimulationError(f"integer input bias {bias.min()}..{bias.max()} does not fit 13 bits")
        else:
            try:
                bias = program.quantise_input(arr)
            except ProgramError as exc:
                raise SimulationError(str(exc)) from exc
        return bias, int(steps if steps is not None else program.num_steps)
    if arr.ndim != len(shape0) + 2 or arr.shape[2:] != shape0:
        raise SimulationError(f"spike input must be [T, B, {', '.join(map(str, shape0))}], got {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise SimulationError("spike input must contain only 0 and 1")
    t_in = arr.shape[0]
    steps = int(steps if steps is not None else t_in)
    if t_in != steps:
        raise SimulationError(f"spike input has {t_in} steps but num_steps is {steps}")
    return arr.astype(np.int8), steps


def emulate(program: LoihiProgram, inputs: np.ndarray | torch.Tensor, *, num_steps: int | None = None,
            record: bool = False, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False,
            threads: int | None = None) -> RunResult:
    """Run ``program`` on a batch bit-exactly as Lava's fixed-point models would (module docstring).

    ``inputs``: images ``[B, C, H, W]`` in [0, 1] (or integer bias) for ``input_kind == "bias"``,
    spike trains ``[T, B, C, H, W]`` for ``"spikes"``. Returns a RunResult on the sample timeline
    of ``T_run = T + L`` steps; counts cover each layer's window of ``T`` steps.

    ``batch_size`` samples are stepped together (results do not depend on it; the default of 16
    keeps the per-step state of snn_conv in cache, the fastest setting measured on one thread).
    ``threads``: torch intra-op threads for this call only (restored afterwards); ``None`` uses
    the caller's setting (``torch.get_num_threads()``, e.g. from ``OMP_NUM_THREADS``).
    """
    if threads is not None:
        if int(threads) < 1:
            raise SimulationError(f"threads must be >= 1, got {threads}")
        previous = torch.get_num_threads()
        torch.set_num_threads(int(threads))
        try:
            return emulate(program, inputs, num_steps=num_steps, record=record, batch_size=batch_size,
                           progress=progress, threads=None)
        finally:
            torch.set_num_threads(previous)
    try:
        program.validate()
    except ProgramError as exc:
        raise SimulationError(f"program is not runnable: {exc}") from exc
    data, steps = _coerce_inputs(program, inputs, num_steps)
    _, t_run = sample_timeline(program, steps)
    num_samples = data.shape[0] if program.input_kind == "bias" else data.shape[1]
    prepared = _prepare(program)
    n_layers = len(program.layers)
    flags: list[tuple[bool, bool]] = [(True, True)]
    for prep in prepared[1:]:
        assert prep is not None
        bias_max = int(prep.bias_eff.abs().max()) if prep.bias_eff.numel() else 0
        u_bound, v_bound = _neuron_bounds(prep.a_max, bias_max, prep.du_factor, prep.dv_factor, steps)
        wrap_u = u_bound >= _U_MAX
        flags.append((wrap_u, wrap_u or v_bound > _V_LIMIT))
    spiking_idx = n_layers - 2 if program.has_readout else n_layers - 1

    per_layer: list[dict[str, list[np.ndarray]]] = [
        {k: [] for k in ("in", "out", "sops")} for _ in range(n_layers)
    ]
    recorded: list[list[np.ndarray]] = [[] for _ in range(n_layers)]
    out_chunks: list[np.ndarray] = []
    readout_chunks: list[np.ndarray] = []
    batch_size = max(1, int(batch_size))
    starts = range(0, num_samples, batch_size)
    iterator: Any = starts
    if progress:
        from tqdm import tqdm

        iterator = tqdm(starts, desc="emulate", unit="batch")
    with torch.no_grad():
        for start in iterator:
            stop = min(start + batch_size, num_samples)
            b = stop - start
            layer0 = program.layers[0]
            if program.input_kind == "bias":
                neuron = layer0.neuron
                assert neuron is not None
                bias = torch.as_tensor(data[start:stop].reshape(b, -1) * 64, dtype=torch.int64)
                du0, dv0 = _DECAY_UNITY - neuron.i_decay, _DECAY_UNITY - neuron.v_decay
                _, v_bound = _neuron_bounds(0, int(bias.abs().max()) if bias.numel() else 0, du0, dv0, steps)
                s, _ = _run_neurons(None, bias, du0, dv0, neuron.v_th_mant << 6, shape=(steps, b, bias.shape[1]),
                                    wrap_u=False, clamp_v=v_bound > _V_LIMIT, spike_dtype=torch.float32)
            else:
                s = torch.as_tensor(data[:, start:stop].reshape(steps, b, -1), dtype=torch.float32)
            window_spikes = [s]
            v_end = None
            for k in range(1, n_layers):
                prep = prepared[k]
                assert prep is not None
                s_prev = window_spikes[-1]
                a_in = _synaptic_input(prep, s_prev)
                wrap_u, clamp_v = flags[k]
                s, v_end = _run_neurons(a_in, prep.bias_eff, prep.du_factor, prep.dv_factor, prep.vth_eff,
                                        wrap_u=wrap_u, clamp_v=clamp_v, a_max=prep.a_max,
                                        spike_dtype=torch.float32, consume_input=True)
                window_spikes.append(s)
            _accumulate_counts(program, prepared, window_spikes, per_layer)
            if program.has_readout:
                assert v_end is not None
                readout_chunks.append(v_end.to(torch.int64).numpy())
            out_chunks.append(_place(window_spikes[spiking_idx], spiking_idx, t_run, program.layers[spiking_idx].shape))
            if record:
                for k in range(n_layers):
                    recorded[k].append(_place(window_spikes[k], k, t_run, program.layers[k].shape))

    counts = _assemble_counts(program, prepared, per_layer, steps, num_samples)
    return RunResult(
        output_spikes=np.concatenate(out_chunks, axis=1) if out_chunks else np.zeros((t_run, 0, *program.layers[spiking_idx].shape), np.int8),
        readout=np.concatenate(readout_chunks) if readout_chunks else None,
        counts=counts,
        time_steps=t_run,
        layer_spikes=[np.concatenate(r, axis=1) for r in recorded] if record else None,
        simulator="emulator",
        metadata={"num_steps": steps, "t_run": t_run, "protocol": "staggered-window",
                  "counts_cover": "each layer's num_steps window"},
    )



def _accumulate_counts(program: LoihiProgram, prepared: list[_Prepared | None], windows: list[torch.Tensor],
                       per_layer: list[dict[str, list[np.ndarray]]]) -> None:
    """Add one batch's per-sample counts; ``windows[k]`` is layer k's window spikes [T, B, N] (bool or 0/1).

    Synaptic ops use the spikes summed over the window once, times the fan-out map (exact in float64).
    """
    # per sample and neuron: spikes summed over the window (float32 sums of 0/1 are exact below 2**24)
    summed = [w.reshape(w.shape[0], w.shape[1], -1).sum(dim=0, dtype=torch.float64 if w.shape[0] >= 2**24 else torch.float32)
              for w in windows]
    out_counts = [torch.round_(s.sum(dim=1, dtype=torch.float64)).to(torch.int64) for s in summed]
    for k, layer in enumerate(program.layers):
        out = out_counts[k].numpy()
        prep = prepared[k]
        if prep is None:  # input layer: its spikes are the encoded input (spike input) or its neurons' output
            per_layer[k]["in"].append(out.copy() if program.input_kind == "spikes" else np.zeros_like(out))
            per_layer[k]["sops"].append(np.zeros_like(out))
        else:
            assert prep.fanout is not None
            sops = torch.round_(summed[k - 1].to(torch.float64) @ prep.fanout.to(torch.float64)).to(torch.int64)
            per_layer[k]["in"].append(out_counts[k - 1].numpy().copy())
            per_layer[k]["sops"].append(sops.numpy())
        per_layer[k]["out"].append(out)


def _assemble_counts(program: LoihiProgram, prepared: list[_Prepared | None],
                     per_layer: list[dict[str, list[np.ndarray]]], steps: int, num_samples: int) -> list[LayerCounts]:
    counts: list[LayerCounts] = []
    for k, layer in enumerate(program.layers):
        prep = prepared[k]
        cat = {key: np.concatenate(vals).astype(np.int64) if vals else np.zeros(0, dtype=np.int64)
               for key, vals in per_layer[k].items()}
        has_neurons = layer.neuron is not None or layer.kind != "input"
        counts.append(LayerCounts(
            name=layer.name,
            kind=f"{layer.kind}_readout" if layer.is_readout and layer.kind != "input" else layer.kind,
            num_neurons=layer.num_neurons,
            fan_in=prep.fan_in if prep else 0,
            num_synapses=prep.num_synapses if prep else 0,
            time_steps=steps,
            input_spikes=cat["in"],
            output_spikes=cat["out"],
            synaptic_ops=cat["sops"],
            dense_synaptic_ops=np.full(num_samples, (prep.dense_ops_per_step * steps) if prep else 0, dtype=np.int64),
            neuron_updates=np.full(num_samples, layer.num_neurons * steps if has_neurons else 0, dtype=np.int64),
        ))
    return counts

def _place(window: torch.Tensor, offset: int, t_run: int, shape: tuple[int, ...]) -> np.ndarray:
    """Window spikes [T, B, N] -> sample timeline [T_run, B, *shape] int8 at rows offset..offset+T-1."""
    steps, batch = window.shape[:2]
    out = np.zeros((t_run, batch, *shape), dtype=np.int8)
    out[offset:offset + steps] = window.reshape(steps, batch, *shape).numpy().astype(np.int8)
    return out
