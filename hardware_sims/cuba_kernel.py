"""Fused, integer-exact CUBA window kernel (numba), the emulator's fast path for the neuron dynamics.

One pass per layer and batch over ``[T, B, N]`` in int64, exactly the update of lava-nc's
``PyLifModelBitAcc`` (see hardware_sims/emulator.py): the 24-bit current wrap and the voltage clip
are always applied (cheap here), so no bound is needed to skip them. Samples run in parallel
(numba ``prange``) on as many threads as torch is given. Without numba the emulator falls back to
its torch implementation (same integers; tested against each other), and
``NEUROCXR_EMULATOR_KERNEL=torch`` forces that fallback.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import numpy as np
import numpy.typing as npt

try:  # numba is a dependency, but the emulator must keep working without it
    import numba
    from numba import njit, prange

    # numba's OpenMP layer leaves its workers spinning and slows torch's own OpenMP ops several
    # times (measured); the workqueue layer does not spin. Only numba's untouched default is
    # changed: a caller's choice (environment or numba.config, made before this import) stands.
    if (
        os.environ.get("NUMBA_THREADING_LAYER") is None
        and numba.config.THREADING_LAYER == "default"
    ):
        numba.config.THREADING_LAYER = "workqueue"
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

__all__ = ["available", "cuba_window", "numba_threads"]

_U_MAX = 2**23
_V_LIMIT = 2**23 - 1


@contextlib.contextmanager
def numba_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` numba threads (capped at numba's pool), then give the calling
    thread back the count it had: the emulator never leaves numba's setting changed."""
    if numba is None or threads is None:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def available() -> bool:
    """True when the numba kernel can run (and is not switched off by NEUROCXR_EMULATOR_KERNEL=torch)."""
    return numba is not None and os.environ.get("NEUROCXR_EMULATOR_KERNEL", "numba") != "torch"


if numba is not None:

    @njit(parallel=True, cache=True, nogil=True)
    def _window(a_in, bias, du, dv, vth, spikes, v_end, counts):  # pragma: no cover - compiled
        steps, batch, n = a_in.shape
        bias_step = 1 if bias.shape[0] > 1 else 0  # per-sample bias rows, or one row for all
        for b in prange(batch):
            u = np.zeros(n, dtype=np.int64)
            v = np.zeros(n, dtype=np.int64)
            bb = b * bias_step
            for t in range(steps):
                for i in range(n):
                    x = u[i] * du[i]
                    cur = (x >> 12) if x >= 0 else -((-x) >> 12)  # trunc toward zero
                    cur += np.int64(a_in[t, b, i]) << 6
                    if cur > _U_MAX:  # one conditional 24-bit wrap, as Lava does
                        cur -= 2 * _U_MAX
                    elif cur <= -_U_MAX:
                        cur += 2 * _U_MAX
                    u[i] = cur
                    y = v[i] * dv[i]
                    vv = ((y >> 12) if y >= 0 else -((-y) >> 12)) + cur + bias[bb, i]
                    if vv > _V_LIMIT:
                        vv = _V_LIMIT
                    elif vv < -_V_LIMIT:
                        vv = -_V_LIMIT
                    if vv > vth[i]:
                        spikes[t, b, i] = 1
                        counts[b, i] += 1
                        vv = 0
                    else:
                        spikes[t, b, i] = 0
                    v[i] = vv
            for i in range(n):
                v_end[b, i] = v[i]


def _per_neuron(x: object, n: int) -> np.ndarray:
    arr = np.asarray(x, dtype=np.int64).reshape(-1)
    return np.ascontiguousarray(np.broadcast_to(arr, (n,)) if arr.size == 1 else arr)


def cuba_window(
    a_in: np.ndarray,
    bias_eff: np.ndarray,
    du_factor: object,
    dv_factor: object,
    vth_eff: object,
    spike_dtype: npt.DTypeLike = np.float32,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CUBA dynamics over a window from u = v = 0.

    ``a_in`` [T, B, N] integer-valued (float32/float64/int); ``bias_eff`` (bias << 6) [N] or [B, N];
    ``du_factor`` = 4096 - iDecay, ``dv_factor`` = 4096 - vDecay, ``vth_eff`` = vThMant << 6: ints or
    arrays [N]. Returns (spikes [T, B, N] of ``spike_dtype`` (0/1), v_end [B, N] int64, spike counts over
    the window [B, N] float32 (exact: at most T < 2**24)).
    """
    if numba is None:  # pragma: no cover
        raise RuntimeError("numba is not installed")
    steps, batch, n = a_in.shape
    bias = np.asarray(bias_eff, dtype=np.int64)
    bias = np.ascontiguousarray(bias.reshape(1, n) if bias.ndim == 1 else bias.reshape(-1, n))
    spikes = np.empty((steps, batch, n), dtype=spike_dtype)
    v_end = np.empty((batch, n), dtype=np.int64)
    counts = np.zeros((batch, n), dtype=np.float32)
    with numba_threads(threads):
        _window(
            np.ascontiguousarray(a_in),
            bias,
            _per_neuron(du_factor, n),
            _per_neuron(dv_factor, n),
            _per_neuron(vth_eff, n),
            spikes,
            v_end,
            counts,
        )
    return spikes, v_end, counts


if numba is not None:

    @njit(parallel=True, cache=True, nogil=True)
    def _conv_events(x, w, sh, sw, ph, pw, dh, dw, groups, out):  # pragma: no cover - compiled
        # w: (Cin/groups, kH, kW, Cout) and out: (M, Ho, Wo, Cout) so the innermost loop is contiguous
        m_total, cin, h, wd = x.shape
        cin_g, kh, kw, cout = w.shape
        ho, wo = out.shape[1], out.shape[2]
        cout_g = cout // groups
        for m in prange(m_total):
            for ci in range(cin):
                g = ci // cin_g
                cl = ci - g * cin_g
                c0 = g * cout_g
                for y in range(h):
                    for xx in range(wd):
                        val = x[m, ci, y, xx]
                        if val == 0:
                            continue
                        for ky in range(kh):
                            num_y = y + ph - ky * dh
                            if num_y < 0 or num_y % sh != 0:
                                continue
                            oy = num_y // sh
                            if oy >= ho:
                                continue
                            for kx in range(kw):
                                num_x = xx + pw - kx * dw
                                if num_x < 0 or num_x % sw != 0:
                                    continue
                                ox = num_x // sw
                                if ox >= wo:
                                    continue
                                for co in range(cout_g):
                                    out[m, oy, ox, c0 + co] += val * w[cl, ky, kx, c0 + co]


def conv_events(
    x: np.ndarray,
    weight: np.ndarray,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    out_hw: tuple[int, int],
    threads: int | None = None,
) -> np.ndarray:
    """Event-driven cross-correlation: each non-zero input adds its weights to the outputs it reaches.

    Same integer sums as ``torch.nn.functional.conv2d`` (exact while partial sums stay below 2**24 in
    float32, 2**53 in float64); work grows with the number of input spikes instead of the map size.
    """
    if numba is None:  # pragma: no cover
        raise RuntimeError("numba is not installed")
    x = np.ascontiguousarray(x)
    w = np.ascontiguousarray(np.transpose(weight.astype(x.dtype, copy=False), (1, 2, 3, 0)))
    out = np.zeros((x.shape[0], int(out_hw[0]), int(out_hw[1]), w.shape[3]), dtype=x.dtype)
    with numba_threads(threads):
        _conv_events(
            x,
            w,
            int(stride[0]),
            int(stride[1]),
            int(padding[0]),
            int(padding[1]),
            int(dilation[0]),
            int(dilation[1]),
            int(groups),
            out,
        )
    return np.ascontiguousarray(np.transpose(out, (0, 3, 1, 2)))
