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

Speed (same integer results): with numba installed, emulate() runs the whole program in one fused
kernel (hardware_sims/network_kernel.py): samples spread over threads, each layer's window computed
event-driven (every spike adds its weights; channel-last maps so a spike's weights are contiguous
runs; average-pool-folded kernels deliver one event per busy pooling block; dense steps of multi-channel
maps go by byte-pattern tables, one run per busy byte of eight channels), neuron state in float64
holding integers and accumulators in int32 when a bound from the weights, biases and decays
(`_neuron_bounds`) proves int32 exact (else int64), counts summed on the way. Programs whose bound
exceeds what float64 holds exactly, and machines without numba, use the layer-by-layer path below,
which the fused kernel is tested against on random programs. In that path neuron dynamics run in one
fused int64 kernel per layer (hardware_sims/cuba_kernel.py) that also counts spikes, and conv layers
whose input spike density is below `EVENT_CONV_DENSITY` run event-driven; otherwise
(torch fallback) neuron state is float64 holding integers (``trunc(x * f/4096)`` is
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
- Recurrent programs (a `RecurrentDenseLayer`, netx ``dense_rec``: input and recurrent weights packed
  together, `netx_recurrent_weights`) are the exception to independent samples: the recurrent synapse
  delivers a sample's last-step spikes into the next sample's first step (the reset clears u and v,
  not the synapse in flight), exactly as on Lava. They take the layer-by-layer path (not the fused
  kernel): feed-forward layers batched as above, a recurrent layer sample after sample in int64
  (`_recurrent_window`), the first sample starting from the layer's spikes of the step before its
  window (`_first_carries`). `emulate_timeline`, which steps the whole back-to-back stream in int64
  as Lava schedules it, is the specification: tested equal to the windowed paths on feed-forward
  programs, to this path on recurrent ones, and to Lava.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from neurocxr.errors import ExportError, SimulationError
from neurocxr.exporters.netx import netx_dense_weights, netx_recurrent_weights
from neurocxr.exporters.program import (
    READOUT_I_DECAY,
    READOUT_V_DECAY,
    READOUT_V_TH_MANT,
    ConvLayer,
    DenseLayer,
    InputLayer,
    LoihiNeuron,
    LoihiProgram,
    ProgramError,
    RecurrentDenseLayer,
)
from neurocxr.threads import torch_threads

from . import cuba_kernel, network_kernel
from .counts import CountAccumulator
from .protocol import coerce_inputs, place_window, sample_timeline
from .results import RunResult

__all__ = ["emulate", "sample_timeline"]

_U_MAX = 2**23  # Lava's max_uv_val
_V_LIMIT = 2**23 - 1
_DECAY_UNITY = 4096
DEFAULT_BATCH_SIZE = 16
# Below this input spike density a conv layer runs event-driven (numba), above it as a dense oneDNN
# conv: the break-even measured on 2 CPU cores for 3x3 stride-2 layers (benchmarks/emulator_vs_lava.py).
EVENT_CONV_DENSITY = 0.1

# A neuron parameter as the dynamics use it: an int for the whole layer, or a tensor [N] per neuron.
Factor = Union[int, torch.Tensor]


def _factors(neuron: LoihiNeuron | None, shape: tuple[int, ...]) -> tuple[Factor, Factor, Factor]:
    """(4096 - iDecay, 4096 - vDecay, vThMant << 6): ints when uniform, else int64 tensors [N]."""
    if neuron is None:  # netx's default neuron of a dense layer without neuron group (the readout)
        return (
            _DECAY_UNITY - READOUT_I_DECAY,
            _DECAY_UNITY - READOUT_V_DECAY,
            READOUT_V_TH_MANT << 6,
        )
    if neuron.is_uniform:
        return (
            _DECAY_UNITY - int(neuron.i_decay),
            _DECAY_UNITY - int(neuron.v_decay),  # type: ignore[arg-type]
            int(neuron.v_th_mant) << 6,
        )  # type: ignore[operator]
    vth, i_decay, v_decay = neuron.per_neuron(shape)
    as_factor = lambda a: int(a[0]) if np.all(a == a[0]) else torch.as_tensor(a, dtype=torch.int64)  # noqa: E731
    return as_factor(_DECAY_UNITY - i_decay), as_factor(_DECAY_UNITY - v_decay), as_factor(vth << 6)


def _fmax(x: Factor) -> int:
    return int(x.max()) if isinstance(x, torch.Tensor) else int(x)


def _scale(x: Factor) -> float | torch.Tensor:
    """factor / 4096 (exact in binary): a float, or a float64 tensor [N]."""
    return x.to(torch.float64) / _DECAY_UNITY if isinstance(x, torch.Tensor) else x / _DECAY_UNITY


def _threshold(x: Factor) -> float | torch.Tensor:
    return x.to(torch.float64) if isinstance(x, torch.Tensor) else float(x)


@dataclass
class _Prepared:
    """Per-layer constants computed once per emulate() call."""

    layer: ConvLayer | DenseLayer
    in_shape: tuple[int, ...]
    weight: torch.Tensor | None  # conv: float kernel; dense: float effective W' [Nout, Nin]
    weight_exp: int
    bias_eff: torch.Tensor  # [N] int64 bias << 6
    du_factor: Factor  # 4096 - iDecay
    dv_factor: Factor  # 4096 - vDecay
    vth_eff: Factor  # vThMant << 6
    float_dtype: torch.dtype
    a_max: int = _U_MAX  # bound on |a_in| (synaptic input before << 6) for any 0/1 input spikes
    acc_max: int = (
        0  # bound on |sum of weights| into one neuron, before the dense exponent / conv wrap
    )
    bias_max: int = 0  # max |bias << 6|
    conv_wrap: bool = True  # whether the conv's 24-bit wrap can ever change a value
    pool: int = 1  # > 1: `weight` is the factor of a block-constant kernel applied after a sum-pool (_pooled_factor)
    weight_rec: np.ndarray | None = (
        None  # recurrent layers: R' packed with the input weights (netx_recurrent_weights)
    )


def _pooled_factor(layer: ConvLayer, weight: np.ndarray) -> tuple[int, np.ndarray]:
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
        assert isinstance(layer, (ConvLayer, DenseLayer))
        du_factor, dv_factor, vth_eff = _factors(layer.neuron, layer.shape)
        w_np = np.asarray(layer.weight).astype(np.int64)
        w_rec = None
        if isinstance(layer, ConvLayer):
            w_eff, w_exp = w_np, 0
        elif isinstance(
            layer, RecurrentDenseLayer
        ):  # one exponent for both synapses, as netx packs them
            w_eff, w_rec, w_exp = netx_recurrent_weights(w_np, np.asarray(layer.weight_rec))
        else:
            try:
                w_eff, w_exp = netx_dense_weights(w_np)
            except ExportError as exc:
                raise SimulationError(f"layer {layer.name}: {exc}") from exc
        # float32 is what Lava's conv uses; it is exact while every partial sum stays below 2**24.
        worst_int = int(np.abs(w_eff).reshape(w_eff.shape[0], -1).sum(axis=1).max(initial=0))
        fdtype = torch.float32 if worst_int < 2**24 else torch.float64
        pool = 1
        w_run = w_eff
        if isinstance(layer, ConvLayer):
            conv_wrap = worst_int >= _U_MAX  # the wrap is the identity on [-2**23, 2**23)
            a_max = _U_MAX if conv_wrap else worst_int
            pool, w_run = _pooled_factor(layer, w_eff)
        else:
            conv_wrap = False
            a_max = worst_int << w_exp if w_exp >= 0 else (worst_int >> -w_exp) + 1
        prepared.append(
            _Prepared(
                layer=layer,
                in_shape=in_shape,
                weight=torch.as_tensor(w_run, dtype=fdtype),
                weight_exp=w_exp,
                bias_eff=torch.as_tensor(layer.bias_full().reshape(-1) * 64, dtype=torch.int64),
                du_factor=du_factor,
                dv_factor=dv_factor,
                vth_eff=vth_eff,
                float_dtype=fdtype,
                a_max=a_max,
                acc_max=worst_int,
                bias_max=int(np.abs(layer.bias_full()).max(initial=0)) * 64,
                conv_wrap=conv_wrap,
                pool=pool,
                weight_rec=w_rec,
            )
        )
        in_shape = tuple(layer.shape)
    return prepared


def _trunc_shift12(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * (torch.abs(x) >> 12)


def _run_neurons_reference(
    a_in: torch.Tensor,
    bias_eff: torch.Tensor,
    du_factor: Factor,
    dv_factor: Factor,
    vth_eff: Factor,
    u0: torch.Tensor | None = None,
    v0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Straightforward int64 transcription of Lava's CUBA update (the spec the fast path is tested against).

    ``a_in`` [T, B, N] int64; factors are ints or int64 tensors [N]; optional start state
    ``u0``/``v0`` [B, N] (default zero).
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


def _neuron_bounds(
    a_max: int, bias_max: int, du_factor: Factor, dv_factor: Factor, steps: int
) -> tuple[int, int]:
    """Upper bounds on |u| and |v| over ``steps`` steps from u = v = 0, given |a_in| <= a_max, |bias<<6| <= bias_max.

    Exact integer recurrences (trunc toward zero never increases a magnitude; a reset or a clamp only
    lowers |v|), so when ``u_max < 2**23`` Lava's current wrap never fires and when
    ``v_max <= 2**23 - 1`` its voltage clip never fires. The v bound assumes no wrap happened; when the u bound
    is not below 2**23 the caller keeps both the wrap and the clip.
    """
    u_max = v_max = 0
    du_factor, dv_factor = (
        _fmax(du_factor),
        _fmax(dv_factor),
    )  # the largest factor bounds every neuron
    act = int(a_max) << 6
    for _ in range(int(steps)):
        u_max = ((u_max * du_factor) >> 12) + act
        v_max = ((v_max * dv_factor) >> 12) + u_max + int(bias_max)
    return u_max, v_max


def _neuron_step_(
    u: torch.Tensor | None,
    v: torch.Tensor,
    drive: torch.Tensor,
    du_scale: float | torch.Tensor,
    dv_scale: float | torch.Tensor,
    vth_eff: float | torch.Tensor,
    wrap_u: bool,
    clamp_v: bool,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
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
        if isinstance(du_scale, float) and du_scale == 1.0:
            u.add_(drive)
        else:
            u.mul_(du_scale).trunc_().add_(drive)
        cur = u
    if wrap_u:
        cur.sub_((cur > _U_MAX).to(cur.dtype), alpha=2 * _U_MAX).add_(
            (cur <= -_U_MAX).to(cur.dtype), alpha=2 * _U_MAX
        )
    if isinstance(dv_scale, float) and dv_scale == 0.0:
        v.copy_(cur)
    elif isinstance(dv_scale, float) and dv_scale == 1.0:
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


def _run_neurons(
    a_in: torch.Tensor | None,
    bias_eff: torch.Tensor,
    du_factor: Factor,
    dv_factor: Factor,
    vth_eff: Factor,
    *,
    shape: tuple[int, int, int] | None = None,
    wrap_u: bool = True,
    clamp_v: bool = True,
    a_max: int | None = None,
    spike_dtype: torch.dtype = torch.bool,
    consume_input: bool = False,
    counts: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CUBA dynamics over a window from u = v = 0: the fused numba kernel when available, else torch.

    Arguments and results as `_run_neurons_torch`; the kernel always applies the wrap and the clip.
    ``counts``: when given, the kernel appends each neuron's spike count over the window [B, N].
    """
    if cuba_kernel.available() and spike_dtype in (torch.float32, torch.bool):
        if a_in is None:
            if shape is None:
                raise SimulationError("_run_neurons needs a_in or shape")
            arr = np.zeros(shape, dtype=np.float32)
        else:
            arr = a_in.numpy()
        as_np = lambda f: f.numpy() if isinstance(f, torch.Tensor) else f  # noqa: E731
        spikes, v_end, spike_counts = cuba_kernel.cuba_window(
            arr,
            bias_eff.numpy(),
            as_np(du_factor),
            as_np(dv_factor),
            as_np(vth_eff),
            spike_dtype=np.float32 if spike_dtype == torch.float32 else np.bool_,
            threads=torch.get_num_threads(),
        )
        if counts is not None:
            counts.append(torch.from_numpy(spike_counts))
        return torch.from_numpy(spikes), torch.from_numpy(v_end).to(torch.float64)
    return _run_neurons_torch(
        a_in,
        bias_eff,
        du_factor,
        dv_factor,
        vth_eff,
        shape=shape,
        wrap_u=wrap_u,
        clamp_v=clamp_v,
        a_max=a_max,
        spike_dtype=spike_dtype,
        consume_input=consume_input,
    )


def _run_neurons_torch(
    a_in: torch.Tensor | None,
    bias_eff: torch.Tensor,
    du_factor: Factor,
    dv_factor: Factor,
    vth_eff: Factor,
    *,
    shape: tuple[int, int, int] | None = None,
    wrap_u: bool = True,
    clamp_v: bool = True,
    a_max: int | None = None,
    spike_dtype: torch.dtype = torch.bool,
    consume_input: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
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
    du_scale, dv_scale, vth = _scale(du_factor), _scale(dv_factor), _threshold(vth_eff)
    du_zero = (
        not isinstance(du_factor, torch.Tensor) and du_factor == 0
    )  # per-neuron factors are never all 0
    v = torch.zeros((batch, n), dtype=torch.float64)
    spikes = torch.empty((steps, batch, n), dtype=spike_dtype)
    mask = torch.empty((batch, n), dtype=torch.bool) if spike_dtype != torch.bool else None
    if a_in is None:
        # u stays zero (trunc(0 * f) + 0); v integrates the bias only
        zero = torch.zeros((batch, n), dtype=torch.float64)
        for t in range(steps):
            _store(
                spikes,
                t,
                mask,
                _neuron_step_(
                    None,
                    v,
                    zero,
                    du_scale,
                    dv_scale,
                    vth,
                    False,
                    clamp_v,
                    bias_t,
                    spikes[t] if mask is None else mask,
                ),
            )
        return spikes, v
    bias_max = int(bias.abs().max()) if bias.numel() else 0
    if du_zero and not wrap_u:
        # u = a_in << 6 exactly, so u + bias is formed for all steps at once; in float32 when every
        # value is a multiple of 64 below 2**30 (exact), else in float64.
        small = a_max is not None and a_in.is_floating_point() and (a_max << 6) + bias_max < 2**30
        dtype = torch.float32 if small else torch.float64
        if consume_input and a_in.dtype == dtype:
            drive = a_in.mul_(64.0)
        else:
            drive = a_in.to(dtype) * 64.0
        if bias_t is not None:
            drive.add_(bias_t.to(dtype))
        for t in range(steps):
            _store(
                spikes,
                t,
                mask,
                _neuron_step_(
                    None,
                    v,
                    drive[t],
                    du_scale,
                    dv_scale,
                    vth,
                    False,
                    clamp_v,
                    None,
                    spikes[t] if mask is None else mask,
                ),
            )
        return spikes, v
    drive = a_in.to(torch.float64)
    drive.mul_(64.0)
    u = None if du_zero else torch.zeros((batch, n), dtype=torch.float64)
    for t in range(steps):
        _store(
            spikes,
            t,
            mask,
            _neuron_step_(
                u,
                v,
                drive[t],
                du_scale,
                dv_scale,
                vth,
                wrap_u,
                clamp_v,
                bias_t,
                spikes[t] if mask is None else mask,
            ),
        )
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


def _synaptic_input(
    prep: _Prepared, s_prev: torch.Tensor, density: float | None = None
) -> torch.Tensor:
    """Weighted input [T, B, N] that the layer's neurons receive in their window (integer-valued float).

    The float32 (float64 for large weights) accumulation is exact: all partial sums are integers
    below 2**24 (2**53). The conv's 24-bit wrap is applied only when the weights allow it to fire.
    ``density``: fraction of non-zero input spikes, when the caller knows it (else counted here).
    """
    steps, batch = s_prev.shape[:2]
    layer = prep.layer
    assert prep.weight is not None  # every prepared synaptic layer has its weight
    x = s_prev.reshape((steps * batch, *prep.in_shape))
    if x.dtype != prep.float_dtype:
        x = x.to(prep.float_dtype)
    if isinstance(layer, ConvLayer) and prep.pool > 1:
        # exact regrouping of the block-constant kernel (see _pooled_factor); pooled sums <= pool**2
        pooled = _sum_pool_padded(x, prep.pool, tuple(layer.padding))
        acc = F.conv2d(pooled, prep.weight, groups=layer.groups)
        cout, ho, wo = layer.shape
        acc = acc[:, :, :ho, :wo]
        acc = torch.round_(acc.contiguous() if not acc.is_contiguous() else acc)
        if prep.conv_wrap:
            acc = torch.remainder(acc.to(torch.float64) + _U_MAX, 2 * _U_MAX) - _U_MAX
    elif isinstance(layer, ConvLayer):
        if density is None:
            density = float(torch.count_nonzero(x)) / max(1, x.numel())
        if cuba_kernel.available() and density < EVENT_CONV_DENSITY:
            # sparse spikes: each spike adds its kernel to the outputs it reaches (same integer sums)
            acc = torch.from_numpy(
                cuba_kernel.conv_events(
                    x.numpy(),
                    prep.weight.numpy(),
                    layer.stride,
                    layer.padding,
                    layer.dilation,
                    layer.groups,
                    layer.shape[1:],
                    threads=torch.get_num_threads(),
                )
            )
        else:
            acc = F.conv2d(
                x,
                prep.weight,
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
                groups=layer.groups,
            )
            acc = torch.round_(acc)
        if prep.conv_wrap:  # PyConvModelFixed signed_clamp(24), exact in float64 for integers
            acc = torch.remainder(acc.to(torch.float64) + _U_MAX, 2 * _U_MAX) - _U_MAX
    else:
        acc = torch.round_(x.reshape(steps * batch, -1) @ prep.weight.T).to(torch.float64)
        if prep.weight_exp > 0:
            acc.mul_(float(2**prep.weight_exp))
        elif prep.weight_exp < 0:  # arithmetic right shift = floor division by a power of two
            acc.mul_(float(2.0**prep.weight_exp)).floor_()
    return acc.reshape(steps, batch, -1)


def emulate(
    program: LoihiProgram,
    inputs: np.ndarray | torch.Tensor,
    *,
    num_steps: int | None = None,
    record: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
    threads: int | None = None,
    raw_bias: bool = False,
) -> RunResult:
    """Run ``program`` on a batch bit-exactly as Lava's fixed-point models would (module docstring).

    ``inputs``: images ``[B, C, H, W]`` for ``input_kind == "bias"`` by the one pixel rule (float in
    [0, 1], uint8 / 255, uint16 / 65535; integer input-bias mantissas only with ``raw_bias=True``,
    `protocol.coerce_inputs`), spike trains ``[T, B, C, H, W]`` for ``"spikes"``. Returns a
    RunResult on the sample timeline of ``T_run = T + L`` steps; counts cover each layer's window
    of ``T`` steps.

    ``batch_size`` samples are stepped together (results do not depend on it; the default of 16
    keeps the per-step state of snn_conv in cache, the fastest setting measured on one thread).
    ``threads``: torch intra-op threads for this call only (restored afterwards); ``None`` uses
    the caller's setting (``torch.get_num_threads()``, e.g. from ``OMP_NUM_THREADS``).
    """
    if threads is not None:
        if int(threads) < 1:
            raise SimulationError(f"threads must be >= 1, got {threads}")
        with torch_threads(int(threads)):
            return emulate(
                program,
                inputs,
                num_steps=num_steps,
                record=record,
                batch_size=batch_size,
                progress=progress,
                threads=None,
                raw_bias=raw_bias,
            )
    try:
        program.validate()
    except ProgramError as exc:
        raise SimulationError(f"program is not runnable: {exc}") from exc
    data, steps = coerce_inputs(program, inputs, num_steps, raw_bias=raw_bias)
    _, t_run = sample_timeline(program, steps)
    num_samples = data.shape[0] if program.input_kind == "bias" else data.shape[1]
    prepared = _prepare(program)
    n_layers = len(program.layers)
    flags: list[tuple[bool, bool]] = [(True, True)]
    u_bounds: list[int] = []
    for prep in prepared[1:]:
        assert prep is not None
        u_bound, v_bound = _neuron_bounds(
            prep.a_max, prep.bias_max, prep.du_factor, prep.dv_factor, steps
        )
        u_bounds.append(u_bound)
        wrap_u = u_bound >= _U_MAX
        flags.append((wrap_u, wrap_u or v_bound > _V_LIMIT))
    spiking_idx = n_layers - 2 if program.has_readout else n_layers - 1

    # A recurrent layer carries one step of its own spikes from each sample into the next, as on Lava: it runs
    # sample after sample in the layer-by-layer path below (`_recurrent_window`), starting from what it did
    # before the first sample's window (`_first_carries`); the fused kernel does not hold recurrence.
    carries = (
        _first_carries(program, data, steps) if program.is_recurrent and num_samples > 0 else {}
    )
    if network_kernel.available() and num_samples > 0 and not program.is_recurrent:
        dtype = network_kernel.plan_dtype(prepared, u_bounds)
        # per-thread scratch holds a whole window of the widest layer (spikes and event lists)
        scratch = network_kernel.scratch_bytes(program, steps, torch.get_num_threads())
        if dtype is not None and scratch <= FUSED_SCRATCH_LIMIT:
            return _emulate_fused(
                program,
                prepared,
                dtype,
                data,
                num_samples,
                steps,
                t_run,
                spiking_idx,
                record,
                progress,
                [clamp_v for _, clamp_v in flags[1:]],
            )

    counter = CountAccumulator(program)
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
                du0, dv0, vth0 = _factors(neuron, layer0.shape)
                _, v_bound = _neuron_bounds(
                    0, int(bias.abs().max()) if bias.numel() else 0, du0, dv0, steps
                )
                s, _ = _run_neurons(
                    None,
                    bias,
                    du0,
                    dv0,
                    vth0,
                    shape=(steps, b, bias.shape[1]),
                    wrap_u=False,
                    clamp_v=v_bound > _V_LIMIT,
                    spike_dtype=torch.float32,
                )
            else:
                s = torch.as_tensor(data[:, start:stop].reshape(steps, b, -1), dtype=torch.float32)
            window_spikes = [s]
            # per layer [B, N] spike counts over the window (from the kernel; None: counted later)
            summed: list[torch.Tensor | None] = [
                None
                if program.input_kind == "bias"
                else torch.from_numpy(
                    data[:, start:stop]
                    .reshape(steps, b, -1)
                    .sum(axis=0, dtype=np.int32)
                    .astype(np.float32)
                )
            ]
            v_end = None
            for k in range(1, n_layers):
                prep = prepared[k]
                assert prep is not None
                s_prev = window_spikes[-1]
                known = summed[-1]
                density = (
                    float(known.numpy().sum(dtype=np.float64)) / max(1, s_prev.numel())
                    if known is not None
                    else None
                )
                a_in = _synaptic_input(prep, s_prev, density)
                wrap_u, clamp_v = flags[k]
                got: list[torch.Tensor] = []
                if prep.weight_rec is not None:
                    s, v_rec, carries[k] = _recurrent_window(
                        prep, prep.weight_rec, a_in, carries[k]
                    )
                    v_end = torch.from_numpy(v_rec).to(torch.float64)
                else:
                    s, v_end = _run_neurons(
                        a_in,
                        prep.bias_eff,
                        prep.du_factor,
                        prep.dv_factor,
                        prep.vth_eff,
                        wrap_u=wrap_u,
                        clamp_v=clamp_v,
                        a_max=prep.a_max,
                        spike_dtype=torch.float32,
                        consume_input=True,
                        counts=got,
                    )
                window_spikes.append(s)
                summed.append(got[0] if got else None)
            counter.add(window_spikes, summed)
            if program.has_readout:
                assert v_end is not None
                readout_chunks.append(v_end.to(torch.int64).numpy())
            out_chunks.append(
                place_window(
                    window_spikes[spiking_idx],
                    spiking_idx,
                    t_run,
                    program.layers[spiking_idx].shape,
                )
            )
            if record:
                for k in range(n_layers):
                    recorded[k].append(
                        place_window(window_spikes[k], k, t_run, program.layers[k].shape)
                    )

    return _run_result(
        program,
        spiking_idx,
        steps,
        t_run,
        num_samples,
        counter,
        out_chunks,
        readout_chunks,
        recorded if record else None,
    )


def _run_result(
    program: LoihiProgram,
    spiking_idx: int,
    steps: int,
    t_run: int,
    num_samples: int,
    counter: CountAccumulator,
    out_chunks: list[np.ndarray],
    readout_chunks: list[np.ndarray],
    recorded: list[list[np.ndarray]] | None,
    **metadata: Any,
) -> RunResult:
    """The RunResult of either emulation path, from its per-batch pieces on the sample timeline."""
    return RunResult(
        output_spikes=np.concatenate(out_chunks, axis=1)
        if out_chunks
        else np.zeros((t_run, 0, *program.layers[spiking_idx].shape), np.int8),
        readout=np.concatenate(readout_chunks) if readout_chunks else None,
        counts=counter.result(steps, num_samples),
        time_steps=t_run,
        layer_spikes=[np.concatenate(r, axis=1) for r in recorded]
        if recorded is not None
        else None,
        simulator="emulator",
        metadata={
            "num_steps": steps,
            "t_run": t_run,
            "protocol": "staggered-window",
            "counts_cover": "each layer's num_steps window",
            **metadata,
        },
    )


# samples per call of the fused kernel: bounds the memory of a call and paces the progress bar
FUSED_CHUNK = 512
# above this much per-call scratch (very long windows of very wide layers) the layer-by-layer path runs
FUSED_SCRATCH_LIMIT = 2 * 2**30


def _emulate_fused(
    program: LoihiProgram,
    prepared: list[_Prepared | None],
    dtype: np.dtype,
    data: np.ndarray,
    num_samples: int,
    steps: int,
    t_run: int,
    spiking_idx: int,
    record: bool,
    progress: bool,
    saturating: list[bool],
) -> RunResult:
    """emulate() through the whole-program kernel (hardware_sims/network_kernel.py): same RunResult."""
    layer0 = program.layers[0]
    input_factors = (
        _factors(layer0.neuron, tuple(layer0.shape)) if program.input_kind == "bias" else None
    )
    plan = network_kernel.build_plan(program, prepared, dtype, input_factors, saturating)
    n_layers = len(program.layers)
    counter = CountAccumulator(program)
    out_chunks: list[np.ndarray] = []
    readout_chunks: list[np.ndarray] = []
    recorded: list[list[np.ndarray]] = [[] for _ in range(n_layers)]
    starts: Any = range(0, num_samples, FUSED_CHUNK)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="emulate", unit="chunk")
    for start in starts:
        stop = min(start + FUSED_CHUNK, num_samples)
        b = stop - start
        if program.input_kind == "bias":
            spike_in, bias_in = None, data[start:stop].reshape(b, -1)
        else:
            spike_in, bias_in = data[:, start:stop].reshape(steps, b, -1), None
        out, totals, v_end, layers = network_kernel.run_plan(
            plan,
            steps=steps,
            spike_in=spike_in,
            bias_in=bias_in,
            out_layer=spiking_idx,
            record=record,
            threads=torch.get_num_threads(),
        )
        counter.add_totals(totals)
        if program.has_readout:
            readout_chunks.append(v_end)
        out_chunks.append(
            place_window(
                torch.from_numpy(out), spiking_idx, t_run, program.layers[spiking_idx].shape
            )
        )
        if layers is not None:
            for k in range(n_layers):
                recorded[k].append(
                    place_window(torch.from_numpy(layers[k]), k, t_run, program.layers[k].shape)
                )
    return _run_result(
        program,
        spiking_idx,
        steps,
        t_run,
        num_samples,
        counter,
        out_chunks,
        readout_chunks,
        recorded if record else None,
        kernel=f"fused-{np.dtype(dtype).name}",
    )


def _trunc12(x: np.ndarray) -> np.ndarray:
    """``sign(x) * (|x| >> 12)``: Lava's decay truncation toward zero, in int64."""
    return np.sign(x) * (np.abs(x) >> 12)


def _shift(acc: np.ndarray, weight_exp: int) -> np.ndarray:
    """Lava's dense ``a_accum << weight_exp`` (arithmetic right shift when negative)."""
    return np.left_shift(acc, weight_exp) if weight_exp > 0 else np.right_shift(acc, -weight_exp)


@dataclass
class _TimelineLayer:
    """One program layer's integer state and constants on the global timeline (`emulate_timeline`)."""

    du: np.ndarray  # 4096 - iDecay per neuron
    dv: np.ndarray  # 4096 - vDecay per neuron
    vth: np.ndarray  # vThMant << 6 per neuron
    bias: np.ndarray  # bias << 6 per neuron
    synapse: (
        Any  # callable: previous layer's spikes (bool [Nin]) -> a_out [N] int64; None for the input
    )
    weight_rec: np.ndarray | None  # R' (packed as netx + Lava pack it), None when not recurrent
    weight_exp: int
    u: np.ndarray
    v: np.ndarray
    ff_buf: np.ndarray  # a_out of the input synapse from the previous step (Lava's a_buff)
    rec_buf: np.ndarray  # a_out of the recurrent synapse from the previous step


def _timeline_layers(program: LoihiProgram) -> list[_TimelineLayer]:
    out: list[_TimelineLayer] = []
    for layer, in_shape in zip(program.layers, program.layer_input_shapes()):
        n = int(np.prod(layer.shape))
        neuron = layer.neuron
        if neuron is None:  # spike input (never stepped) or netx's default readout integrator
            du = np.full(n, _DECAY_UNITY - READOUT_I_DECAY, dtype=np.int64)
            dv = np.full(n, _DECAY_UNITY - READOUT_V_DECAY, dtype=np.int64)
            vth = np.full(n, READOUT_V_TH_MANT << 6, dtype=np.int64)
        else:
            vth_mant, i_decay, v_decay = neuron.per_neuron(tuple(layer.shape))
            du, dv, vth = _DECAY_UNITY - i_decay, _DECAY_UNITY - v_decay, vth_mant << 6
        synapse: Any = None
        weight_rec, weight_exp = None, 0
        if isinstance(layer, ConvLayer):
            kernel = torch.as_tensor(np.asarray(layer.weight, dtype=np.float64))

            def synapse(
                s: np.ndarray,
                layer: ConvLayer = layer,
                kernel: torch.Tensor = kernel,
                in_shape: tuple[int, ...] = in_shape,
            ) -> np.ndarray:
                x = torch.as_tensor(s.reshape(1, *in_shape), dtype=torch.float64)
                acc = F.conv2d(
                    x,
                    kernel,
                    stride=layer.stride,
                    padding=layer.padding,
                    dilation=layer.dilation,
                    groups=layer.groups,
                )
                acc = np.rint(acc.numpy()).astype(np.int64).reshape(-1)
                return (acc + _U_MAX) % (2 * _U_MAX) - _U_MAX  # PyConvModelFixed's 24-bit wrap
        elif isinstance(layer, DenseLayer):
            if isinstance(layer, RecurrentDenseLayer):
                w_eff, weight_rec, weight_exp = netx_recurrent_weights(
                    layer.weight, layer.weight_rec
                )
            else:
                try:
                    w_eff, weight_exp = netx_dense_weights(np.asarray(layer.weight))
                except ExportError as exc:
                    raise SimulationError(f"layer {layer.name}: {exc}") from exc

            def synapse(s: np.ndarray, w: np.ndarray = w_eff, e: int = weight_exp) -> np.ndarray:
                return _shift(w[:, s.reshape(-1)].sum(axis=1), e)

        bias = (
            np.zeros(n, dtype=np.int64)
            if isinstance(layer, InputLayer)
            else layer.bias_full().reshape(-1) * 64
        )
        zeros = np.zeros(n, dtype=np.int64)
        out.append(
            _TimelineLayer(
                du.astype(np.int64),
                dv.astype(np.int64),
                vth.astype(np.int64),
                bias.astype(np.int64),
                synapse,
                weight_rec,
                weight_exp,
                zeros.copy(),
                zeros.copy(),
                zeros.copy(),
                zeros.copy(),
            )
        )
    return out


def _cuba_step(st: _TimelineLayer, a_in: np.ndarray, bias: np.ndarray, reset: bool) -> np.ndarray:
    """One step of Lava's PyLifResetModelBitAcc on ``st`` (in place); returns the spikes (bool)."""
    if reset:
        st.u[:] = 0
        st.v[:] = 0
    u = _trunc12(st.u * st.du) + (a_in << 6)
    u = np.where(u > _U_MAX, u - 2 * _U_MAX, np.where(u <= -_U_MAX, u + 2 * _U_MAX, u))
    v = np.clip(_trunc12(st.v * st.dv) + u + bias, -_V_LIMIT, _V_LIMIT)
    spikes = v > st.vth
    v[spikes] = 0
    st.u, st.v = u, v
    return spikes


def _timeline_steps(program: LoihiProgram, data: np.ndarray, steps: int, total: int) -> Any:
    """Yield ``(g, spikes of every layer at global step g, layer states)`` for g = 1..total (`emulate_timeline`)."""
    n_layers = len(program.layers)
    bias_input = program.input_kind == "bias"
    num_samples = data.shape[0] if bias_input else data.shape[1]
    state = _timeline_layers(program)
    spikes_now: list[np.ndarray] = [np.zeros(len(st.u), dtype=bool) for st in state]
    flat = data.reshape(num_samples, -1) if bias_input else data.reshape(steps, num_samples, -1)
    with torch.no_grad():
        for g in range(1, total + 1):
            sample, j = divmod(g - 1, steps)
            if bias_input:
                st = state[0]
                bias = flat[min(sample, num_samples - 1)].astype(np.int64) * 64
                spikes_now[0] = _cuba_step(st, np.zeros_like(st.u), bias, g % steps == 1 % steps)
            else:
                spikes_now[0] = (
                    flat[j, sample].astype(bool)
                    if sample < num_samples
                    else np.zeros(len(state[0].u), bool)
                )
            for k in range(1, n_layers):
                st = state[k]
                spikes_now[k] = _cuba_step(
                    st, st.ff_buf + st.rec_buf, st.bias, g % steps == (k + 1) % steps
                )
            for k in range(1, n_layers):  # what each synapse delivers at the next step
                st = state[k]
                st.ff_buf = st.synapse(spikes_now[k - 1])
                if st.weight_rec is not None:
                    st.rec_buf = _shift(st.weight_rec[:, spikes_now[k]].sum(axis=1), st.weight_exp)
            yield g, spikes_now, state


def _first_carries(program: LoihiProgram, data: np.ndarray, steps: int) -> dict[int, np.ndarray]:
    """For each recurrent layer k: its spikes at global step k, the step before the first sample's window,
    which its recurrent synapse delivers into that window's first step (the timeline's first k steps)."""
    rec = [k for k, layer in enumerate(program.layers) if isinstance(layer, RecurrentDenseLayer)]
    out: dict[int, np.ndarray] = {}
    for g, spikes_now, _ in _timeline_steps(program, data, steps, max(rec)):
        for k in rec:
            if g == k:
                out[k] = spikes_now[k].copy()
    return out


def _recurrent_window(
    prep: _Prepared, weight_rec: np.ndarray, a_ff: torch.Tensor, carry: np.ndarray
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """A recurrent layer's windows for a batch of consecutive samples, one sample after another.

    ``a_ff`` [T, B, N]: the input synapse's delivery in each window step (`_synaptic_input`); ``carry``: the
    layer's spikes of the step before the first sample's window. Returns (spikes [T, B, N] float32,
    v at each window's end [B, N] int64, the carry for the next sample).
    """
    steps, batch, n = a_ff.shape
    a_ff_int = a_ff.to(torch.int64).numpy()
    du, dv, vth = (
        np.broadcast_to(
            np.asarray(f.numpy() if isinstance(f, torch.Tensor) else f, dtype=np.int64), (n,)
        )
        for f in (prep.du_factor, prep.dv_factor, prep.vth_eff)
    )
    bias = prep.bias_eff.numpy().astype(np.int64)
    spikes = np.zeros((steps, batch, n), dtype=np.float32)
    v_end = np.zeros((batch, n), dtype=np.int64)
    st = _TimelineLayer(
        du,
        dv,
        vth,
        bias,
        None,
        weight_rec,
        prep.weight_exp,
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
    )
    prev = carry.astype(bool)
    for b in range(batch):
        for t in range(steps):
            rec = _shift(weight_rec[:, prev].sum(axis=1), prep.weight_exp)
            prev = _cuba_step(st, a_ff_int[t, b] + rec, bias, t == 0)
            spikes[t, b] = prev
        v_end[b] = st.v
    return torch.from_numpy(spikes), v_end, prev.copy()


def emulate_timeline(
    program: LoihiProgram, data: np.ndarray, steps: int, *, record: bool = False
) -> RunResult:
    """Run the back-to-back sample stream step by step exactly as the Lava runner schedules it.

    The global timeline of hardware_sims/lava.py: sample ``i``'s input at global steps ``i*T+1 ..
    i*T+T``; program layer ``k`` resets (netx's staggered LIFReset) at every step ``g`` with
    ``g % T == (k+1) % T``; every synapse (input, conv, dense, recurrent) delivers at step ``g`` what
    it computed from the spikes of step ``g-1`` (Lava's ``a_buff``); bias input of sample ``i`` from
    step ``i*T+1`` on. Used for programs with a recurrent layer, whose neurons at the first step of
    a window receive their own spikes of the step before (the previous sample's last step, or for
    the first sample whatever the layer did before its first window): samples depend on the
    previous one, as on Lava and on the chip. ``data`` as `coerce_inputs` returns it. Integer
    (int64) arithmetic throughout; it is the specification the windowed paths agree with on
    feed-forward programs (tests/test_recurrent.py).
    """
    layers = program.layers
    n_layers = len(layers)
    depth = n_layers - 1
    bias_input = program.input_kind == "bias"
    num_samples = data.shape[0] if bias_input else data.shape[1]
    total = num_samples * steps + depth
    global_spikes = [np.zeros((total, int(np.prod(layer.shape))), dtype=bool) for layer in layers]
    readouts: list[np.ndarray] = []
    flat = data.reshape(num_samples, -1) if bias_input else data.reshape(steps, num_samples, -1)
    for g, spikes_now, state in _timeline_steps(program, data, steps, total):
        for k in range(n_layers):
            global_spikes[k][g - 1] = spikes_now[k]
        if program.has_readout and g >= steps + depth and (g - depth) % steps == 0:
            readouts.append(state[-1].v.copy())
    windows: list[torch.Tensor] = []
    for k, _layer in enumerate(layers):
        if k == 0 and not bias_input:
            win = flat.astype(bool)
        else:
            win = np.stack(
                [
                    global_spikes[k][i * steps + k : i * steps + k + steps]
                    for i in range(num_samples)
                ],
                axis=1,
            )
        windows.append(torch.as_tensor(np.ascontiguousarray(win)))
    counter = CountAccumulator(program)
    counter.add(windows)
    spiking_idx = n_layers - 2 if program.has_readout else n_layers - 1
    t_run = steps + depth
    return _run_result(
        program,
        spiking_idx,
        steps,
        t_run,
        num_samples,
        counter,
        [place_window(windows[spiking_idx], spiking_idx, t_run, layers[spiking_idx].shape)],
        [np.stack(readouts)] if program.has_readout else [],
        [[place_window(windows[k], k, t_run, layers[k].shape)] for k in range(n_layers)]
        if record
        else None,
        kernel="timeline-int64",
    )
