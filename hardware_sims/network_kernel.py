"""Whole-program fused kernel (numba): one compiled pass runs every layer of a sample, event-driven.

The emulator's fast path (hardware_sims/emulator.py chooses it; the layer-by-layer torch/numba
path stays as the fallback and as the reference it is tested against). Same integers as Lava's
fixed-point models, following the sample protocol of the emulator's docstring: layer ``k`` runs its
window of ``T`` steps from ``u = v = 0`` on the window spikes of layer ``k - 1``.

Why it is fast:

- **Event-driven synapses.** Each input spike adds its weights to the accumulators it reaches; no
  work for silent inputs. Maps are stored channel-last (H, W, C), so a spike's contribution to one
  output position is one contiguous run of output channels (vectorised adds); dense weights are
  stored one row per input position.
- **Narrow integers where exact.** Synaptic accumulators are int32 when a bound on every value
  (from the weights, biases and decays; `plan_dtype`) proves int32 cannot overflow, else int64;
  weights are int16 (a valid program's are 8-bit mantissas). Neuron state is float64 holding
  integers below 2**40, where Lava's decay
  ``sign(x) * (|x| * f >> 12)`` equals ``trunc(x * (f / 4096))`` exactly (``f / 4096`` is exact in
  binary), so the whole update vectorises.
- **Fewer events where the kernel allows.** A kernel that is constant on stride x stride blocks
  (an average pool folded into the next conv) delivers one event per busy block, weighted by its
  spike count, through the smaller kernel at stride 1 (the emulator's `_pooled_factor` regrouping).
- **Pattern lookup for dense single-channel input.** A conv reading one channel (the image-driven
  first layer of a grayscale model) turns each output's receptive field of spikes into a bit pattern
  and adds a precomputed row of summed weights, when that is cheaper than one run per spike.
- **Byte-pattern lookup for dense multi-channel input.** For a conv whose input channels are a multiple
  of eight, the spikes of eight channels at one position form a byte; a table of the summed weights of
  every byte (256 per group of eight channels) turns a dense step's one run per spike into one run per
  busy byte (snn_conv-like maps at 15-20 % spikes: about 2x fewer runs). A pooled conv's block counts
  are delivered the same way, one bit plane at a time. Such a step is read straight from the spike
  map as 64-bit words: the layer before writes no event list for it (`_takes_bytes`), and pooling and
  synaptic-op counts come from the map too.
- **Lean neuron updates.** A layer with one decay pair and threshold reads them as scalars, and where
  the emulator's bounds prove the current wrap and the voltage clip cannot fire they are skipped.
- **Everything in one pass.** Spike counts and synaptic-operation counts are summed while
  spikes are delivered; only the output layer's spikes leave the kernel unless every layer is
  recorded. Samples are spread over threads (``prange``), each thread with its own scratch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurocxr.exporters.program import ConvLayer, LoihiProgram

from .cuba_kernel import available, numba_threads

try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - the emulator falls back to its layer-by-layer path
    numba = None

__all__ = [
    "available",
    "NetworkPlan",
    "storage_order",
    "build_plan",
    "plan_dtype",
    "scratch_bytes",
    "run_plan",
]

_U_MAX = 2**23
_V_LIMIT = 2**23 - 1
_V_LIMIT_F = float(_V_LIMIT)
_INT32_LIMIT = 2**31 - 1
# int64 state stays exact in the float64 decay product while |x| * 4096 < 2**53
_INT64_STATE_LIMIT = 2**40

# meta columns (one row per program layer)
(
    KIND,
    N,
    CIN,
    COUT,
    HO,
    WO,
    KH,
    KW,
    GROUPS,
    W_OFF,
    P_OFF,
    CONV_WRAP,
    W_EXP,
    FAN_OFF,
    YT_OFF,
    XT_OFF,
    ROW_RUN,
    DEC_OFF,
    DEC_N,
    POOL_OFF,
    NO_CURRENT,
    LUT_OFF,
    RF_OFF,
    BYTE_LUT_OFF,
    POOL_PLANES,
    UNIFORM,
    SATURATES,
) = range(27)
_META_COLS = 27
# a single-input-channel conv whose kernel has at most this many taps may run by pattern lookup
MAX_LUT_TAPS = 10
# a multi-channel conv may deliver by channel-byte pattern when its tables take at most this many bytes
MAX_BYTE_LUT_BYTES = 1 << 20
# bytes -> bits: for a little-endian word of eight 0/1 bytes, (word * _GATHER_BITS) >> 56 has byte i at bit i
_GATHER_BITS = 0x0102040810204080
INPUT, CONV, DENSE = 0, 1, 2


def storage_order(shape: tuple[int, ...]) -> np.ndarray:
    """For each kernel storage index (H, W, C channel-last for 3-D maps), its torch (C, H, W) flat index."""
    if len(shape) != 3:
        return np.arange(int(np.prod(shape)), dtype=np.int64)
    c, h, w = shape
    return np.arange(c * h * w, dtype=np.int64).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


@dataclass
class NetworkPlan:
    """A LoihiProgram flattened into arrays the kernel reads (built once per emulate() call)."""

    meta: np.ndarray  # [L, _META_COLS] int64
    weights: (
        np.ndarray
    )  # all synaptic weights, kernel layout: int16 when every value fits, else the plan's dtype
    du_scale: np.ndarray  # (4096 - iDecay) / 4096 per neuron, float64
    dv_scale: np.ndarray  # (4096 - vDecay) / 4096 per neuron, float64
    vth: np.ndarray  # vThMant << 6 per neuron, float64 (integers)
    bias: np.ndarray  # bias << 6 per neuron, float64 (integers)
    fanout: np.ndarray  # non-zero synapses per input position of each synaptic layer, int32
    taps: (
        np.ndarray
    )  # conv tap tables (`conv_taps`) or row-run descriptors (`_row_run_descriptors`), int32
    decode: (
        np.ndarray
    )  # conv delivery maps: storage index -> (y, x, c), or (position, c) for row runs, int32
    pool_index: (
        np.ndarray
    )  # pooled convs: input storage index -> pooled-map index (-1: reaches no output), int32
    max_pooled: int  # size of the largest pooled map (scratch per thread)
    luts: np.ndarray  # single-channel convs: per tap pattern, the summed weights per output channel
    fields: (
        np.ndarray
    )  # their receptive fields: per output position, the input index of each tap (-1: padding)
    orders: list[np.ndarray]  # per layer: storage index -> torch flat index
    dtype: np.dtype

    @property
    def num_layers(self) -> int:
        return int(self.meta.shape[0])


def conv_taps(
    size: int, out_size: int, kernel: int, stride: int, padding: int, dilation: int
) -> np.ndarray:
    """For each input row (or column) i: [count, k0, o0, k1, o1, ...] of the kernel taps k that carry it
    to an output o (``i + padding - k * dilation == o * stride``, ``0 <= o < out_size``), padded to
    ``1 + 2 * kernel`` entries. Precomputed so the kernel does no integer division per spike."""
    table = np.zeros((size, 1 + 2 * kernel), dtype=np.int64)
    for i in range(size):
        pairs = []
        for k in range(kernel):
            num = i + padding - k * dilation
            if num >= 0 and num % stride == 0 and num // stride < out_size:
                pairs += [k, num // stride]
        table[i, 0] = len(pairs) // 2
        table[i, 1 : 1 + len(pairs)] = pairs
    return table.reshape(-1)


def row_run_layout(
    size: int, out_size: int, kernel: int, stride: int, padding: int, dilation: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Kernel-column order and per-input-column runs that make a spike's taps in one kernel row contiguous.

    With dilation 1 the columns ``kx`` that carry input column ``x`` to an output are those with
    ``kx = (x + padding) mod stride (mod stride)``, and in descending ``kx`` they reach consecutive
    output columns. Ordering the kernel columns by phase, descending within a phase, makes them
    consecutive in memory too, so with the (H, W, C) accumulators one spike adds one contiguous run
    of ``count * Cout`` weights per kernel row. Returns (column order [kernel], table [size, 3] of
    (count, first position in the order, first output column)), or None when the geometry gives no
    such runs (dilation > 1).
    """
    if dilation != 1:
        return None
    order = [kx for r in range(stride) for kx in sorted(range(r, kernel, stride), reverse=True)]
    where = {kx: i for i, kx in enumerate(order)}
    table = np.zeros((size, 3), dtype=np.int64)
    taps = conv_taps(size, out_size, kernel, stride, padding, dilation).reshape(size, -1)
    for i in range(size):
        count = int(taps[i, 0])
        pairs = sorted(
            ((int(taps[i, 1 + 2 * j]), int(taps[i, 2 + 2 * j])) for j in range(count)), reverse=True
        )
        if count:
            pos = [where[kx] for kx, _ in pairs]
            outs = [o for _, o in pairs]
            if pos != list(range(pos[0], pos[0] + count)) or outs != list(
                range(outs[0], outs[0] + count)
            ):
                return None
            table[i] = (count, pos[0], outs[0])
    return np.asarray(order, dtype=np.int64), table.reshape(-1)


def _row_run_descriptors(
    y_table: np.ndarray, x_table: np.ndarray, kh: int, kw: int, wo: int, cout: int
) -> np.ndarray:
    """Per delivery-map position (y, x): ``[rows, run, (acc offset, weight offset) x kh]`` for row runs."""
    h, wd = y_table.shape[0], x_table.shape[0]
    stride = 2 + 2 * kh
    out = np.zeros((h, wd, stride), dtype=np.int64)
    for y in range(h):
        ny = int(y_table[y, 0])
        for x in range(wd):
            count, first_w, first_o = (int(v) for v in x_table[x])
            out[y, x, 0] = ny if count else 0
            out[y, x, 1] = count * cout
            for a in range(ny):
                ky, oy = int(y_table[y, 1 + 2 * a]), int(y_table[y, 2 + 2 * a])
                out[y, x, 2 + 2 * a] = (oy * wo + first_o) * cout
                out[y, x, 3 + 2 * a] = (ky * kw + first_w) * cout
    return out.reshape(-1)


def _pattern_tables(
    w: np.ndarray,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """For a conv with one input channel: (table [2**taps, Cout] of the weight sums of every tap pattern,
    receptive fields [Ho * Wo, taps] of input indices, -1 on padding). Tap t = ky * kw + kx is bit t."""
    cout, _, kh, kw = w.shape
    taps = kh * kw
    bits = (np.arange(2**taps)[:, None] >> np.arange(taps)[None, :]) & 1  # [patterns, taps]
    lut = bits @ w.reshape(cout, taps).T  # exact integer sums
    _, h, wd = in_shape
    _, ho, wo = out_shape
    oy, ox = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    ky, kx = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    y = oy.reshape(-1, 1) * stride[0] - padding[0] + ky.reshape(1, -1) * dilation[0]
    x = ox.reshape(-1, 1) * stride[1] - padding[1] + kx.reshape(1, -1) * dilation[1]
    inside = (y >= 0) & (y < h) & (x >= 0) & (x < wd)
    field = np.where(inside, y * wd + x, -1)
    return lut.reshape(-1), field.reshape(-1)


def _byte_pattern_table(packed: np.ndarray, cin: int) -> np.ndarray | None:
    """For a conv kernel packed per input channel (`build_plan`'s layout, ``cin`` blocks), per group of eight
    channels and per byte pattern (bit i = channel 8g + i spikes) the summed blocks: [cin/8 * 256 * block].
    None when ``cin`` is not a multiple of eight or the tables would exceed `MAX_BYTE_LUT_BYTES`."""
    if cin < 8 or cin % 8:
        return None
    block = packed.size // cin
    if (cin // 8) * 256 * block * 2 > MAX_BYTE_LUT_BYTES:
        return None
    bits = (np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1  # [pattern, channel in group]
    groups = packed.reshape(cin // 8, 8, block)
    return np.einsum("pi,gib->gpb", bits, groups).reshape(-1)  # exact integer sums


def plan_dtype(prepared: list, u_bounds: list[int]) -> np.dtype | None:
    """int32 when every intermediate provably fits, int64 when exact there, None when neither is proven.

    ``prepared``: the emulator's per-layer `_Prepared` (None for the input); ``u_bounds``: per synaptic
    layer, the emulator's `_neuron_bounds` bound on |u| over the window (without wrap).
    """
    worst = 0
    for prep, u_max in zip(prepared[1:], u_bounds):
        # v before its clip: |trunc(v * f)| <= 2**23 plus the current plus the bias
        worst = max(
            worst, prep.acc_max, (int(prep.a_max) << 6) + u_max, u_max + _U_MAX + prep.bias_max + 1
        )
    if worst < _INT32_LIMIT:
        return np.dtype(np.int32)
    if worst < _INT64_STATE_LIMIT:
        return np.dtype(np.int64)
    return None


def build_plan(
    program: LoihiProgram,
    prepared: list,
    dtype: np.dtype,
    input_factors: tuple | None = None,
    saturating: list[bool] | None = None,
) -> NetworkPlan:
    """Flatten ``program`` (with the emulator's `_prepare` output) into a NetworkPlan of ``dtype``.

    ``input_factors``: for bias input, the input neurons' (4096 - iDecay, 4096 - vDecay, vThMant << 6)
    as the emulator's `_factors` gives them. ``saturating``: per synaptic layer, whether the current wrap or
    the voltage clip can ever fire (the emulator's bounds; None: assume they can). Where neither can, the
    kernel skips both.
    """
    layers = program.layers
    meta = np.zeros((len(layers), _META_COLS), dtype=np.int64)
    meta[:, SATURATES] = 1
    if saturating is not None:
        meta[1:, SATURATES] = np.asarray(saturating, dtype=bool)
    orders = [storage_order(tuple(layer.shape)) for layer in layers]
    weights: list[np.ndarray] = []
    du: list[np.ndarray] = []
    dv: list[np.ndarray] = []
    vth: list[np.ndarray] = []
    bias: list[np.ndarray] = []
    fans: list[np.ndarray] = []
    taps: list[np.ndarray] = []
    decode: list[np.ndarray] = []
    pool_index: list[np.ndarray] = []
    luts: list[np.ndarray] = []
    fields: list[np.ndarray] = []
    lut_off = rf_off = 0
    w_off = p_off = f_off = t_off = d_off = q_off = 0
    max_pooled = 1

    def add_neurons(n: int, order: np.ndarray, du_f, dv_f, vth_f, bias_eff: np.ndarray) -> None:
        nonlocal p_off
        for dst, val, kind in ((du, du_f, "f"), (dv, dv_f, "f"), (vth, vth_f, "i")):
            arr = np.asarray(val.numpy() if hasattr(val, "numpy") else val, dtype=np.int64).reshape(
                -1
            )
            arr = np.broadcast_to(arr, (n,)) if arr.size == 1 else arr[order]
            dst.append(arr / 4096.0 if kind == "f" else arr.astype(np.float64))
        bias.append(np.asarray(bias_eff, dtype=np.int64).reshape(-1)[order].astype(np.float64))
        p_off += n

    # input layer: neurons only for bias input (their bias is the image, given per sample)
    layer0 = layers[0]
    meta[0, KIND] = INPUT
    meta[0, N] = layer0.num_neurons
    meta[0, P_OFF] = p_off
    if program.input_kind == "bias":
        if input_factors is None:
            raise ValueError("a bias-input program needs input_factors")
        du0, dv0, vth0 = input_factors
        add_neurons(
            layer0.num_neurons,
            orders[0],
            du0,
            dv0,
            vth0,
            np.zeros(layer0.num_neurons, dtype=np.int64),
        )
        meta[0, UNIFORM] = int(all(arr.min() == arr.max() for arr in (du[-1], dv[-1], vth[-1])))
    in_shape = tuple(layer0.shape)
    for k, (layer, prep) in enumerate(zip(layers[1:], prepared[1:]), start=1):
        row = meta[k]
        row[N] = layer.num_neurons
        row[W_OFF], row[P_OFF], row[FAN_OFF] = w_off, p_off, f_off
        in_order = orders[k - 1]
        fan = np.asarray(layer.fanout(in_shape), dtype=np.int64).reshape(-1)[in_order]
        fans.append(fan)
        f_off += fan.size
        if isinstance(layer, ConvLayer):
            w = np.asarray(layer.weight, dtype=np.int64)  # (Cout, Cin/g, kh, kw), torch order
            cin, h, wd = in_shape
            row[KIND] = CONV
            row[COUT], row[HO], row[WO] = layer.shape
            row[GROUPS] = layer.groups
            row[CONV_WRAP] = int(prep.conv_wrap)
            (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
            if prep.pool > 1 and layer.groups == 1:
                # block-constant kernel (an average pool folded into the conv, see emulator._pooled_factor):
                # spikes are first summed over s x s blocks of the padded map, then the pooled map meets
                # the s-times smaller kernel at stride 1 (same integer sums, one event per busy block)
                s_p = prep.pool
                w = w[:, :, ::s_p, ::s_p]
                hp, wp = (h + 2 * ph) // s_p, (wd + 2 * pw) // s_p
                j = np.arange(h * wd * cin)
                py, px = (j // cin // wd + ph) // s_p, (j // cin % wd + pw) // s_p
                index = np.where((py < hp) & (px < wp), (py * wp + px) * cin + j % cin, -1)
                row[POOL_OFF] = q_off
                row[POOL_PLANES] = (s_p * s_p).bit_length()  # bit planes of a block's spike count
                pool_index.append(index)
                q_off += index.size
                max_pooled = max(max_pooled, hp * wp * cin)
                h, wd = hp, wp
                (sh, sw), (ph, pw), (dh, dw) = (1, 1), (0, 0), (1, 1)
            else:
                row[POOL_OFF] = -1
            row[LUT_OFF] = row[RF_OFF] = -1
            if (
                cin == 1
                and layer.groups == 1
                and row[POOL_OFF] < 0
                and w.shape[2] * w.shape[3] <= MAX_LUT_TAPS
            ):
                # one input channel: the spikes under an output's receptive field form a bit pattern, and
                # the summed weights of every pattern fit a small table, so a dense input step costs one
                # lookup per output position instead of one weight run per spike
                lut, field = _pattern_tables(
                    w, in_shape, tuple(layer.shape), (sh, sw), (ph, pw), (dh, dw)
                )
                row[LUT_OFF], row[RF_OFF] = lut_off, rf_off
                luts.append(lut)
                fields.append(field)
                lut_off += lut.size
                rf_off += field.size
            row[CIN] = cin
            row[KH], row[KW] = w.shape[2], w.shape[3]
            runs = (
                None
                if layer.groups != 1
                else row_run_layout(wd, layer.shape[2], w.shape[3], sw, pw, dw)
            )
            if runs is not None:
                row[ROW_RUN] = 1
                w = w[:, :, :, runs[0]]  # kernel columns in run order
                x_table = runs[1]
            else:
                x_table = conv_taps(wd, layer.shape[2], w.shape[3], sw, pw, dw)
            if (
                row[POOL_OFF] >= 0 and runs is None
            ):  # pragma: no cover - stride 1, dilation 1 always has runs
                raise AssertionError("a pooled conv needs row runs")
            y_table = conv_taps(h, layer.shape[1], w.shape[2], sh, ph, dh)
            pos = np.arange(h * wd * cin, dtype=np.int64)
            if runs is not None:
                # per map position: [rows, run length, (accumulator offset, weight offset) per row], so a
                # spike costs two table reads (position, channel) and one descriptor
                decode.append(np.concatenate([pos // cin, pos % cin]))
                x_table = _row_run_descriptors(
                    y_table.reshape(h, -1),
                    x_table.reshape(wd, 3),
                    w.shape[2],
                    w.shape[3],
                    int(layer.shape[2]),
                    int(layer.shape[0]),
                )
                row[XT_OFF] = t_off
                taps.append(x_table)
                t_off += x_table.size
            else:
                decode.append(
                    np.concatenate([pos // cin // wd, pos // cin % wd, pos % cin])
                )  # H, W, C storage
                for col, table in ((YT_OFF, y_table), (XT_OFF, x_table)):
                    row[col] = t_off
                    taps.append(table)
                    t_off += table.size
            row[DEC_OFF], row[DEC_N] = d_off, pos.size
            d_off += decode[-1].size
            packed = np.ascontiguousarray(np.transpose(w, (1, 2, 3, 0))).reshape(
                -1
            )  # (Cin/g, kh, kw, Cout)
            row[BYTE_LUT_OFF] = -1
            # (a pooled conv's block counts must fit a byte)
            table = (
                _byte_pattern_table(packed, cin)
                if runs is not None and prep.pool**2 < 256
                else None
            )
            if table is not None:
                # dense multi-channel input: the spikes of eight channels at one position form a byte, and
                # one run of the byte's summed weights replaces one run per spike (the tables follow the
                # kernel in `weights`, laid out as eight-channel "channels" of 256 patterns each)
                row[BYTE_LUT_OFF] = w_off + packed.size
                packed = np.concatenate([packed, table])
        else:
            row[KIND] = DENSE
            row[W_EXP] = prep.weight_exp
            w_eff = np.rint(prep.weight.numpy().astype(np.float64)).astype(
                np.int64
            )  # netx-packed W' [Nout, Nin]
            packed = np.ascontiguousarray(w_eff.T[in_order]).reshape(
                -1
            )  # one row per input (storage order)
        weights.append(packed)
        w_off += packed.size
        add_neurons(
            layer.num_neurons,
            orders[k],
            prep.du_factor,
            prep.dv_factor,
            prep.vth_eff,
            prep.bias_eff.numpy(),
        )
        # one decay pair and threshold for the whole layer (the usual case): the kernel then streams only the
        # bias beside the state, which keeps a large layer's per-step data within L2
        row[UNIFORM] = int(all(arr.min() == arr.max() for arr in (du[-1], dv[-1], vth[-1])))
        row[NO_CURRENT] = int(
            not np.any(du[-1])
        )  # iDecay 4096 everywhere: u is this step's input alone
        in_shape = tuple(layer.shape)

    def cat(parts: list[np.ndarray], dt) -> np.ndarray:
        return (
            np.ascontiguousarray(np.concatenate(parts).astype(dt))
            if parts
            else np.zeros(1, dtype=dt)
        )

    # a valid program's weights are 8-bit mantissas (at most 9-bit values): int16 halves their cache
    # footprint; the accumulators keep the plan's width
    all_w = np.concatenate(weights) if weights else np.zeros(1, dtype=np.int64)
    w_dtype = np.int16 if np.abs(all_w).max(initial=0) < 2**15 else dtype
    return NetworkPlan(
        meta=meta,
        weights=cat(weights, w_dtype),
        du_scale=cat(du, np.float64),
        dv_scale=cat(dv, np.float64),
        vth=cat(vth, np.float64),
        bias=cat(bias, np.float64),
        fanout=cat(fans, np.int32),
        taps=cat(taps, np.int32),
        decode=cat(decode, np.int32),
        pool_index=cat(pool_index, np.int32),
        max_pooled=max_pooled,
        luts=cat(luts, dtype),
        fields=cat(fields, np.int32),
        orders=orders,
        dtype=np.dtype(dtype),
    )


if numba is not None:

    @njit(inline="always", cache=True)
    def _current_and_voltage(
        u_decayed, a_in, v, dv, bias, vth, saturates
    ):  # pragma: no cover - compiled
        """Lava's CUBA update after the current decay: (u, v after the reset, spike) in float64 integers.
        ``saturates`` False: bounds prove the wrap and the clip are the identity, so they are skipped."""
        cur = u_decayed + np.float64(a_in) * 64.0
        if saturates:
            cur = (
                cur - 2.0 * _U_MAX if cur > _U_MAX else cur
            )  # one conditional 24-bit wrap, as Lava
            cur = cur + 2.0 * _U_MAX if cur <= -_U_MAX else cur
        vv = np.trunc(v * dv) + cur + bias
        if saturates:
            vv = min(max(vv, -_V_LIMIT_F), _V_LIMIT_F)
        s = vv > vth
        return cur, 0.0 if s else vv, s

    @njit(inline="always", cache=True)
    def _neuron_window_step(
        acc, u, v, du_s, dv_s, vth, bias, n, uniform, saturates, spikes
    ):  # pragma: no cover - compiled
        """One step of Lava's CUBA update for n neurons (arrays are this layer's views); acc holds a_in.

        State is float64 holding integers below 2**40 (`plan_dtype` proves the bound), so
        ``trunc(x * (f / 4096))`` is Lava's ``sign(x) * (|x| * f >> 12)`` exactly and every
        operation vectorises. ``uniform``: du_s, dv_s and vth hold one value for all n (`UNIFORM`).
        Writes spikes[:n] (0/1) and returns the spike count.
        """
        count = 0
        if uniform:
            du0, dv0, vth0 = du_s[0], dv_s[0], vth[0]
            for i in range(n):
                u[i], v[i], s = _current_and_voltage(
                    np.trunc(u[i] * du0), acc[i], v[i], dv0, bias[i], vth0, saturates
                )
                spikes[i] = 1 if s else 0
                count += 1 if s else 0
            return count
        for i in range(n):
            u[i], v[i], s = _current_and_voltage(
                np.trunc(u[i] * du_s[i]), acc[i], v[i], dv_s[i], bias[i], vth[i], saturates
            )
            spikes[i] = 1 if s else 0
            count += 1 if s else 0
        return count

    @njit(inline="always", cache=True)
    def _neuron_window_step_no_current(
        acc, u, v, dv_s, vth, bias, n, uniform, saturates, spikes
    ):  # pragma: no cover - compiled
        """`_neuron_window_step` for a layer whose current has no memory (iDecay 4096: ``u = a_in << 6``)."""
        count = 0
        if uniform:
            dv0, vth0 = dv_s[0], vth[0]
            for i in range(n):
                _, v[i], s = _current_and_voltage(0.0, acc[i], v[i], dv0, bias[i], vth0, saturates)
                spikes[i] = 1 if s else 0
                count += 1 if s else 0
            return count
        for i in range(n):
            _, v[i], s = _current_and_voltage(
                0.0, acc[i], v[i], dv_s[i], bias[i], vth[i], saturates
            )
            spikes[i] = 1 if s else 0
            count += 1 if s else 0
        return count

    @njit(cache=True)
    def _compact(spikes, n, events):  # pragma: no cover - compiled
        """Indices of the non-zero entries of spikes[:n] into events (branch-free); returns their number."""
        count = 0
        for i in range(n):
            events[count] = i
            count += spikes[i]
        return count

    @njit(cache=True)
    def _synaptic_ops(events, num_events, fanout, f_off):  # pragma: no cover - compiled
        """Synaptic operations of one step: the non-zero fan-out of every input spike."""
        sops = 0
        for e in range(num_events):
            sops += fanout[f_off + events[e]]
        return sops

    @njit(cache=True)
    def _pool_events(
        events, num_events, pool_index, q_off, pooled, touched, values
    ):  # pragma: no cover - compiled
        """Sum one step's spikes over the pooling blocks; returns the number of busy blocks, whose pooled-map
        indices go to ``touched`` and sums to ``values`` (``pooled`` is all zero before and after)."""
        busy = 0
        for e in range(num_events):
            q = pool_index[q_off + events[e]]
            if q < 0:
                continue
            if pooled[q] == 0:
                touched[busy] = q
                busy += 1
            pooled[q] += 1
        for e in range(busy):
            q = touched[e]
            values[e] = pooled[q]
            pooled[q] = 0
        return busy

    @njit(cache=True)
    def _deliver_by_pattern(meta_k, spikes, luts, fields, acc):  # pragma: no cover - compiled
        """Single-channel conv: each output position adds the table row of its receptive field's spike pattern."""
        cout = meta_k[COUT]
        taps = meta_k[KH] * meta_k[KW]
        positions = meta_k[HO] * meta_k[WO]
        lut_off, rf_off = meta_k[LUT_OFF], meta_k[RF_OFF]
        for p in range(positions):
            field = fields[rf_off + p * taps : rf_off + (p + 1) * taps]
            pattern = 0
            for t in range(taps):
                j = field[t]
                if j >= 0:
                    pattern |= np.int64(spikes[j]) << t
            if pattern == 0:
                continue
            src = luts[lut_off + pattern * cout : lut_off + (pattern + 1) * cout]
            dst = acc[p * cout : (p + 1) * cout]
            for c in range(cout):
                dst[c] += src[c]

    @njit(inline="always", cache=True)
    def _takes_bytes(meta_k, count):  # pragma: no cover - compiled
        """Whether layer ``meta_k`` delivers a step of ``count`` input spikes by byte pattern: a conv with byte
        tables, when the spikes outnumber 0.4 x the bytes of its (pooled) input map (fewer busy bytes than spikes)."""
        return (
            meta_k[KIND] == CONV
            and meta_k[BYTE_LUT_OFF] >= 0
            and 5 * count > 2 * (meta_k[DEC_N] // 8)
        )

    @njit(cache=True)
    def _synaptic_ops_of_map(spikes, n, fanout, f_off):  # pragma: no cover - compiled
        """`_synaptic_ops` from a step's 0/1 spike map instead of its event list."""
        sops = 0
        src = fanout[f_off : f_off + n]
        for i in range(n):
            sops += spikes[i] * src[i]
        return sops

    @njit(cache=True)
    def _pool_words(words, pool_index, q_off, cin, pooled_words):  # pragma: no cover - compiled
        """`_pool_bytes` from a step's spike map (64-bit words of 0/1 bytes, channel-last): each position's
        words are added to its block's (byte sums stay below 256, so no carries cross bytes)."""
        groups = cin // 8
        for p in range(words.shape[0] // groups):
            q = pool_index[q_off + p * cin]
            if q < 0:
                continue
            dst = pooled_words[q // 8 : q // 8 + groups]
            src = words[p * groups : (p + 1) * groups]
            for g in range(groups):
                dst[g] += src[g]

    @njit(cache=True)
    def _pool_bytes(events, num_events, pool_index, q_off, counts):  # pragma: no cover - compiled
        """Sum one step's spikes over the pooling blocks into the byte map ``counts`` (all zero before)."""
        for e in range(num_events):
            q = pool_index[q_off + events[e]]
            if q >= 0:
                counts[q] += 1

    @njit(inline="always", cache=True)
    def _add_block(taps, base, first_w, weights, acc, scale):  # pragma: no cover - compiled
        """Add ``scale`` times the kernel block starting at ``weights[first_w]`` along the row-run descriptor
        ``taps[base:]`` (`_row_run_descriptors`): one contiguous run per kernel row."""
        run = taps[base + 1]
        for a in range(taps[base]):
            ob = taps[base + 2 + 2 * a]
            wb = first_w + taps[base + 3 + 2 * a]
            # views, so the index is the loop counter alone: numba's negative-index
            # wraparound check then folds away and the loop vectorises
            dst = acc[ob : ob + run]
            src = weights[wb : wb + run]
            if scale == 1:
                for i in range(run):
                    dst[i] += src[i]
            else:
                for i in range(run):
                    dst[i] += scale * src[i]

    @njit(cache=True)
    def _deliver_by_byte_pattern(
        meta_k, words, planes, weights, taps, acc
    ):  # pragma: no cover - compiled
        """Multi-channel row-run conv: per input position and group of eight channels, the byte of their spikes
        (``words``: this step's map as little-endian 64-bit words of 0/1 bytes, channel-last) selects one table
        block (`_byte_pattern_table`) that is added like one spike's weights. For a pooled conv the bytes are
        block spike counts below ``2**planes``: bit plane ``b`` of the counts is one pattern, added ``2**b`` times."""
        cin, kh = meta_k[CIN], meta_k[KH]
        groups = cin // 8
        positions = meta_k[DEC_N] // cin
        stride = 2 + 2 * kh
        block = kh * meta_k[KW] * meta_k[COUT]
        x_off, lut_off = meta_k[XT_OFF], meta_k[BYTE_LUT_OFF]
        for p in range(positions):
            base = x_off + p * stride
            for g in range(groups):
                word = words[p * groups + g]
                if word == 0:
                    continue
                for b in range(planes):
                    plane = (word >> np.uint64(b)) & np.uint64(0x0101010101010101)
                    if plane == 0:
                        continue
                    pattern = (plane * np.uint64(_GATHER_BITS)) >> np.uint64(56)
                    _add_block(
                        taps,
                        base,
                        lut_off + (g * 256 + np.int64(pattern)) * block,
                        weights,
                        acc,
                        1 << b,
                    )

    @njit(cache=True)
    def _deliver_conv(
        meta_k, events, num_events, values, weighted, weights, taps, decode, acc
    ):  # pragma: no cover - compiled
        """Add one step's inputs (delivery-map indices ``events[:num_events]``, each of size ``values[e]``
        when ``weighted``, else 1) to the conv accumulators."""
        cin = meta_k[CIN]
        cout, wo = meta_k[COUT], meta_k[WO]
        kh, kw = meta_k[KH], meta_k[KW]
        groups, w_off = meta_k[GROUPS], meta_k[W_OFF]
        y_off, x_off, d_off = meta_k[YT_OFF], meta_k[XT_OFF], meta_k[DEC_OFF]
        n_dec = meta_k[DEC_N]
        cin_g = cin // groups
        cout_g = cout // groups
        if meta_k[ROW_RUN] != 0:
            # groups == 1: a kernel row's taps for a spike are one contiguous run (row_run_layout)
            stride = 2 + 2 * kh
            ci_size = kh * kw * cout
            for e in range(num_events):
                j = events[e]
                _add_block(
                    taps,
                    x_off + decode[d_off + j] * stride,
                    w_off + decode[d_off + n_dec + j] * ci_size,
                    weights,
                    acc,
                    values[e] if weighted else 1,
                )
            return
        for e in range(num_events):
            j = events[e]
            y = decode[d_off + j]
            x = decode[d_off + n_dec + j]
            ci = decode[d_off + 2 * n_dec + j]
            yb = y_off + y * (1 + 2 * kh)
            ny = taps[yb]
            xb = x_off + x * (1 + 2 * kw)
            nx = taps[xb]
            g = ci // cin_g
            c0 = g * cout_g
            cl = ci - g * cin_g
            for a in range(ny):
                ky = taps[yb + 1 + 2 * a]
                orow = taps[yb + 2 + 2 * a] * wo
                wrow = (cl * kh + ky) * kw
                for c in range(nx):
                    ob = (orow + taps[xb + 2 + 2 * c]) * cout + c0
                    wb = w_off + (wrow + taps[xb + 1 + 2 * c]) * cout + c0
                    dst = acc[ob : ob + cout_g]
                    src = weights[wb : wb + cout_g]
                    for i in range(cout_g):
                        dst[i] += src[i]

    @njit(cache=True)
    def _deliver_dense(meta_k, events, num_events, weights, acc):  # pragma: no cover - compiled
        n, w_off = meta_k[N], meta_k[W_OFF]
        dst = acc[:n]
        for e in range(num_events):
            j = events[e]
            src = weights[w_off + j * n : w_off + j * n + n]
            for i in range(n):
                dst[i] += src[i]

    @njit(cache=True, nogil=True)
    def _run_sample(
        b,
        meta,
        weights,
        du_s,
        dv_s,
        vth,
        bias,
        fanout,
        taps,
        decode,
        pool_index,
        spike_in,
        input_order,
        bias_in,
        steps,
        out_layer,
        out_spikes,
        record,
        rec,
        rec_off,
        counts,
        v_end,
        acc,
        u,
        v,
        win,
        win64,
        events,
        ev_start,
        mapped,
        pooled,
        touched,
        values,
        pooled_words,
        luts,
        fields,
    ):  # pragma: no cover - compiled
        """Every layer's window for sample b; scratch (acc, u, v, win, events, ev_start, ...) is the caller's.

        ``mapped[w, t]`` = 1: step t of window w kept no event list because the next layer reads that step
        by byte pattern straight from the spike map (`_takes_bytes`); its synaptic ops come from the map too.
        """
        num_layers = meta.shape[0]
        n0 = meta[0, N]
        pooled_bytes = pooled_words.view(np.uint8)
        prev, cur = 0, 1  # which scratch window holds the previous layer's spikes / this layer's
        ev_start[prev, 0] = 0
        mapped[prev, :] = 0
        if bias_in.shape[0] > 0:  # input neurons driven by the image as bias
            p0 = meta[0, P_OFF]
            u[:n0] = 0.0
            v[:n0] = 0.0
            acc[:n0] = 0
            out = 0
            for t in range(steps):
                row = win[prev, t * n0 : (t + 1) * n0]
                out += _neuron_window_step(
                    acc,
                    u,
                    v,
                    du_s[p0 : p0 + n0],
                    dv_s[p0 : p0 + n0],
                    vth[p0 : p0 + n0],
                    bias_in[b],
                    n0,
                    meta[0, UNIFORM] != 0,
                    True,
                    row,
                )
                start = ev_start[prev, t]
                ev_start[prev, t + 1] = start + _compact(row, n0, events[prev, start:])
            counts[b, 0, 1] = out
        else:
            out = 0
            for t in range(steps):
                row = win[prev, t * n0 : (t + 1) * n0]
                src = spike_in[t, b]
                if (
                    input_order.shape[0] == 0
                ):  # storage order is torch order (one channel, or a flat input)
                    for i in range(n0):
                        row[i] = src[i]
                else:
                    for i in range(n0):
                        row[i] = src[input_order[i]]  # torch order in, storage order here
                start = ev_start[prev, t]
                ev_start[prev, t + 1] = start + _compact(row, n0, events[prev, start:])
                out += ev_start[prev, t + 1] - start
            counts[b, 0, 0] = out
            counts[b, 0, 1] = out
        if record:
            rec[b, rec_off[0] : rec_off[0] + steps * n0] = win[prev, : steps * n0]
        if out_layer == 0:
            out_spikes[b, :] = win[prev, : steps * n0]
        n = n0
        for k in range(1, num_layers):
            mk = meta[k]
            n = mk[N]
            n_prev = meta[k - 1, N]
            p0 = mk[P_OFF]
            u[:n] = 0.0
            v[:n] = 0.0
            sops = 0
            out = 0
            conv = mk[KIND] == CONV
            e = mk[W_EXP]
            ev_start[cur, 0] = 0
            next_meta = meta[min(k + 1, num_layers - 1)]
            for t in range(steps):
                acc[:n] = 0
                first, last = ev_start[prev, t], ev_start[prev, t + 1]
                step_events = events[prev, first:last]
                from_map = mapped[prev, t] != 0
                if from_map:
                    sops += _synaptic_ops_of_map(
                        win[prev, t * n_prev : (t + 1) * n_prev], n_prev, fanout, mk[FAN_OFF]
                    )
                else:
                    sops += _synaptic_ops(step_events, last - first, fanout, mk[FAN_OFF])
                by_bytes = from_map or _takes_bytes(mk, last - first)  # (only convs take bytes)
                if by_bytes and mk[POOL_OFF] >= 0:
                    # dense input to a pooled conv: block counts as bytes, delivered by bit plane
                    words = mk[DEC_N] // 8
                    if from_map:
                        _pool_words(
                            win64[prev, t * n_prev // 8 : (t + 1) * n_prev // 8],
                            pool_index,
                            mk[POOL_OFF],
                            mk[CIN],
                            pooled_words,
                        )
                    else:
                        _pool_bytes(
                            step_events, last - first, pool_index, mk[POOL_OFF], pooled_bytes
                        )
                    _deliver_by_byte_pattern(
                        mk, pooled_words[:words], mk[POOL_PLANES], weights, taps, acc
                    )
                    pooled_words[:words] = 0
                elif by_bytes:
                    # dense multi-channel input: fewer busy bytes than spikes (see _deliver_by_byte_pattern)
                    _deliver_by_byte_pattern(
                        mk,
                        win64[prev, t * n_prev // 8 : (t + 1) * n_prev // 8],
                        1,
                        weights,
                        taps,
                        acc,
                    )
                elif conv and mk[POOL_OFF] >= 0:
                    busy = _pool_events(
                        step_events, last - first, pool_index, mk[POOL_OFF], pooled, touched, values
                    )
                    _deliver_conv(mk, touched, busy, values, True, weights, taps, decode, acc)
                elif (
                    conv
                    and mk[LUT_OFF] >= 0
                    and (last - first) * mk[KH] * mk[KW] > 6 * mk[HO] * mk[WO]
                ):
                    # dense single-channel input: one table lookup per output beats one run per spike (a lookup
                    # costs about as much as six taps of spike delivery, measured on snn_conv and benchmark (a))
                    _deliver_by_pattern(
                        mk, win[prev, t * n_prev : (t + 1) * n_prev], luts, fields, acc
                    )
                elif conv:
                    _deliver_conv(
                        mk, step_events, last - first, values, False, weights, taps, decode, acc
                    )
                if conv:
                    if mk[CONV_WRAP]:  # PyConvModelFixed's signed 24-bit wrap
                        for i in range(n):
                            acc[i] = ((acc[i] + _U_MAX) & (2 * _U_MAX - 1)) - _U_MAX
                else:
                    _deliver_dense(mk, step_events, last - first, weights, acc)
                    if e > 0:
                        for i in range(n):
                            acc[i] = acc[i] << e
                    elif e < 0:  # arithmetic shift: floor division by 2**-e
                        for i in range(n):
                            acc[i] = acc[i] >> (-e)
                row = win[cur, t * n : (t + 1) * n]
                if mk[NO_CURRENT]:
                    fired = _neuron_window_step_no_current(
                        acc,
                        u,
                        v,
                        dv_s[p0 : p0 + n],
                        vth[p0 : p0 + n],
                        bias[p0 : p0 + n],
                        n,
                        mk[UNIFORM] != 0,
                        mk[SATURATES] != 0,
                        row,
                    )
                else:
                    fired = _neuron_window_step(
                        acc,
                        u,
                        v,
                        du_s[p0 : p0 + n],
                        dv_s[p0 : p0 + n],
                        vth[p0 : p0 + n],
                        bias[p0 : p0 + n],
                        n,
                        mk[UNIFORM] != 0,
                        mk[SATURATES] != 0,
                        row,
                    )
                out += fired
                if k < num_layers - 1:
                    start = ev_start[cur, t]
                    if _takes_bytes(
                        next_meta, fired
                    ):  # the next layer reads this step from the map
                        mapped[cur, t] = 1
                        ev_start[cur, t + 1] = start
                    else:
                        mapped[cur, t] = 0
                        ev_start[cur, t + 1] = start + _compact(row, n, events[cur, start:])
            counts[b, k, 0] = counts[b, k - 1, 1]
            counts[b, k, 1] = out
            counts[b, k, 2] = sops
            if record:
                rec[b, rec_off[k] : rec_off[k] + steps * n] = win[cur, : steps * n]
            if out_layer == k:
                out_spikes[b, :] = win[cur, : steps * n]
            prev, cur = cur, prev
        v_end[b, :] = v[:n]

    @njit(parallel=True, cache=True, nogil=True)
    def _run(
        meta,
        weights,
        du_s,
        dv_s,
        vth,
        bias,
        fanout,
        taps,
        decode,
        pool_index,
        spike_in,
        input_order,
        bias_in,
        steps,
        out_layer,
        out_spikes,
        record,
        rec,
        rec_off,
        counts,
        v_end,
        acc_all,
        u_all,
        v_all,
        win_all,
        win64_all,
        events_all,
        ev_start_all,
        mapped_all,
        pooled_all,
        touched_all,
        values_all,
        pooled_words_all,
        luts,
        fields,
    ):  # pragma: no cover - compiled
        batch = counts.shape[0]
        threads = acc_all.shape[0]
        for c in prange(
            threads
        ):  # one contiguous share of the batch per thread, each with its scratch
            for b in range(c * batch // threads, (c + 1) * batch // threads):
                _run_sample(
                    b,
                    meta,
                    weights,
                    du_s,
                    dv_s,
                    vth,
                    bias,
                    fanout,
                    taps,
                    decode,
                    pool_index,
                    spike_in,
                    input_order,
                    bias_in,
                    steps,
                    out_layer,
                    out_spikes,
                    record,
                    rec,
                    rec_off,
                    counts,
                    v_end,
                    acc_all[c],
                    u_all[c],
                    v_all[c],
                    win_all[c],
                    win64_all[c],
                    events_all[c],
                    ev_start_all[c],
                    mapped_all[c],
                    pooled_all[c],
                    touched_all[c],
                    values_all[c],
                    pooled_words_all[c],
                    luts,
                    fields,
                )


def scratch_bytes(program: LoihiProgram, steps: int, threads: int) -> int:
    """Scratch `run_plan` allocates per call: two windows of spikes (1 byte) and of events (4 bytes) per thread."""
    widest = max(layer.num_neurons for layer in program.layers)
    return int(max(1, threads)) * 2 * int(steps) * widest * 5


def run_plan(
    plan: NetworkPlan,
    *,
    steps: int,
    spike_in: np.ndarray | None,
    bias_in: np.ndarray | None,
    out_layer: int,
    record: bool,
    threads: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray] | None]:
    """Run a batch through the fused kernel.

    ``spike_in`` [T, B, N0] 0/1 (torch order) for spike input, or ``bias_in`` [B, N0] integer
    bias_mant for bias input. Returns (out_spikes [T, B, N_out] uint8 of layer ``out_layer`` in torch
    order, counts [B, L, 3] int64 (input spikes, output spikes, synaptic ops per layer), v_end of the
    last layer [B, N_last] int64 (torch order), per-layer window spikes [T, B, N_k] uint8 when
    ``record``).
    """
    meta = plan.meta
    num_layers = plan.num_layers
    sizes = [int(n) for n in meta[:, N]]
    order0 = plan.orders[0]
    if spike_in is not None:
        # 0/1 int8/uint8 as given (any strides): the kernel reads it in place, permuting as it copies
        spikes = (
            spike_in
            if spike_in.dtype in (np.int8, np.uint8)
            else np.asarray(spike_in, dtype=np.uint8)
        )
        batch = spikes.shape[1]
        bias = np.zeros((0, sizes[0]), dtype=np.float64)
    else:
        assert bias_in is not None
        batch = bias_in.shape[0]
        bias = np.ascontiguousarray(
            (np.asarray(bias_in, dtype=np.int64)[:, order0] * 64).astype(np.float64)
        )
        spikes = np.zeros((steps, 0, sizes[0]), dtype=np.int8)
    threads = max(1, min(int(threads), batch, numba.config.NUMBA_NUM_THREADS))
    max_n = max(sizes)
    rec_off = np.zeros(num_layers, dtype=np.int64)
    rec_off[1:] = np.cumsum([steps * n for n in sizes[:-1]])
    rec = np.zeros((batch, int(steps * sum(sizes)) if record else 0), dtype=np.uint8)
    out_spikes = np.zeros((batch, steps * sizes[out_layer]), dtype=np.uint8)
    counts = np.zeros((batch, num_layers, 3), dtype=np.int64)
    v_end = np.zeros((batch, sizes[-1]), dtype=np.float64)
    acc_all = np.zeros((threads, max_n), dtype=plan.dtype)
    u_all = np.zeros((threads, max_n), dtype=np.float64)
    v_all = np.zeros((threads, max_n), dtype=np.float64)
    # whole 64-bit words per window (the byte-pattern delivery reads the spike maps eight channels at a time)
    win64_all = np.zeros((threads, 2, -(-steps * max_n // 8)), dtype=np.uint64)
    win_all = win64_all.view(np.uint8)
    # each window's events back to back (step t's at ev_start[t]:ev_start[t + 1]), so they stay compact in cache
    events_all = np.zeros((threads, 2, steps * max_n + 1), dtype=np.int32)
    ev_start_all = np.zeros((threads, 2, steps + 1), dtype=np.int64)
    mapped_all = np.zeros((threads, 2, steps), dtype=np.uint8)
    pooled_all = np.zeros((threads, plan.max_pooled), dtype=np.int32)
    touched_all = np.zeros((threads, plan.max_pooled), dtype=np.int32)
    values_all = np.zeros((threads, plan.max_pooled), dtype=plan.dtype)
    pooled_words_all = np.zeros((threads, -(-plan.max_pooled // 8)), dtype=np.uint64)
    # an identity order is passed empty: the kernel then copies the input without a gather
    order_in = order0[:0] if np.array_equal(order0, np.arange(order0.size)) else order0
    with numba_threads(threads):
        _run(
            meta,
            plan.weights,
            plan.du_scale,
            plan.dv_scale,
            plan.vth,
            plan.bias,
            plan.fanout,
            plan.taps,
            plan.decode,
            plan.pool_index,
            spikes,
            order_in,
            bias,
            int(steps),
            int(out_layer),
            out_spikes,
            bool(record),
            rec,
            rec_off,
            counts,
            v_end,
            acc_all,
            u_all,
            v_all,
            win_all,
            win64_all,
            events_all,
            ev_start_all,
            mapped_all,
            pooled_all,
            touched_all,
            values_all,
            pooled_words_all,
            plan.luts,
            plan.fields,
        )

    def to_torch_order(window: np.ndarray, k: int) -> np.ndarray:
        """[B, T * N] storage order -> [T, B, N] torch order."""
        n = sizes[k]
        arr = window.reshape(batch, steps, n)
        inverse = np.empty(n, dtype=np.int64)
        inverse[plan.orders[k]] = np.arange(n)
        return np.ascontiguousarray(np.transpose(arr[:, :, inverse], (1, 0, 2)))

    last_inverse = np.empty(sizes[-1], dtype=np.int64)
    last_inverse[plan.orders[-1]] = np.arange(sizes[-1])
    layers = None
    if record:
        layers = [
            to_torch_order(rec[:, rec_off[k] : rec_off[k] + steps * sizes[k]], k)
            for k in range(num_layers)
        ]
    return (
        to_torch_order(out_spikes, out_layer),
        counts,
        np.rint(v_end).astype(np.int64)[:, last_inverse],
        layers,
    )
