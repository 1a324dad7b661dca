"""NIR graph -> `LoihiProgram`: recover discrete neurons, fuse pooling, quantise to Loihi integers.

NIR is continuous time and stores no dt; Loihi 2 runs the fixed-point CUBA neuron of lava-nc's
``PyLifModelBitAcc`` (see ../shared/docs/loihi.md). This module is the one place that maps one to
the other:

- neurons: ``LIF(tau, r, v_leak=0, v_threshold, v_reset=0)`` becomes ``beta = 1 - dt/tau`` with input
  gain ``r*dt/tau`` (1 for snnTorch graphs; other gains are folded into the synaptic weights);
  ``CubaLIF`` adds ``alpha = 1 - dt/tau_syn`` and gain ``w_in*dt/tau_syn``; ``IF`` is ``beta = 1``
  with gain ``r*dt`` (NIR's ``dv/dt = r*I``; neurocxr's exporter writes ``r = 1/dt``).
  ``vDecay = round(4096*(1-beta))``, ``iDecay = round(4096*(1-alpha))`` (4096 for LIF/IF).
- pooling: sum/average pooling (kernel == stride, no padding) before a conv or dense is linear and
  is fused into that layer's weights, on the un-pooled spike map.
- quantisation: per synaptic layer one float scale ``s`` (weights, bias and threshold all in the
  same units, as the membrane is) and one 8-bit weight grid, chosen jointly: mixed-sign weights
  are even integers in [-256, 254] or any integer in [-128, 127] (the values lava-dl's
  ``optimize_weight_bits`` packs into 8 bits; odd values beyond +-128 need 9, which Lava's CPU
  models accept but the chip cannot hold), one-sign weights any integer in [0, 255]. Each grid
  gets the largest scale that fits it and the 13-bit bias / 17-bit threshold; the grid with the
  smaller worst-case input error per step wins. `netx_weight_bits` mirrors lava-dl's count and
  every layer is checked with it. Anything that would need clipping raises `QuantisationError`
  unless clipping is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nir
import numpy as np

from neurocxr.errors import ExportError, QuantisationError, UnsupportedLayerError
from neurocxr.exporters.layer_quant import layer_quants
from neurocxr.exporters.nir import _NETX_SHAPE, inline_recurrent_subgraphs, pool_of_conv, walk_chain
from neurocxr.exporters.program import (
    BIAS_MAX,
    BIAS_MIN,
    DECAY_MAX,
    STATE_BITS,
    VTH_MAX,
    WEIGHT_MAX,
    WEIGHT_MAX_EXCITATORY,
    WEIGHT_MIN,
    ConvLayer,
    DenseLayer,
    InputLayer,
    Layer,
    LoihiNeuron,
    LoihiProgram,
    ProgramError,
    ReadoutLayer,
    RecurrentDenseLayer,
    SynapticLayer,
    as_pair,
    netx_weight_bits,  # re-exported: the packing rule lives with the program it constrains
)

if TYPE_CHECKING:  # pragma: no cover - deployment imports this module
    pass
from neurocxr.data.encoding import ENCODINGS
from neurocxr.exporters.nir import to_nir
from neurocxr.models.loaded import LoadedModel, input_shape

# nir 1.0.8 defines Identity in nir.ir.graph but does not export it at the top level.
try:
    from nir.ir.graph import Identity as _Identity
except ImportError:  # pragma: no cover - other nir versions
    _Identity = nir.Identity if hasattr(nir, "Identity") else type("_NoIdentity", (), {})

# Preferred input scale: 16 * 255, so a uint8 image x/255 becomes the exact integer bias 16*x.
PREFERRED_INPUT_SCALE = 16.0 * 255.0
_GAIN_TOL = 1e-9
_EXACT_KEY = (
    "neurocxr_exact"  # node metadata key of neurocxr.exporters.nir holding exact float32 decays
)


@dataclass
class QuantisationOptions:
    """How float weights become Loihi integers.

    ``max_weight``: cap on the largest positive mixed-sign weight (the 8-bit grids are even
    values in [-256, 254] and integers in [-128, 127]); all-positive weights use [0, 255].
    ``scale`` forces one scale for every synaptic layer.
    ``allow_clipping`` lets weights/bias/threshold be clipped (counted and reported) instead of
    raising. ``min_weight_levels``: the largest |weight| must get at least this many integer steps;
    a bias that would push the scale lower needs clipping (or retraining).
    """

    allow_clipping: bool = False
    max_weight: int = WEIGHT_MAX
    scale: float | None = None
    min_weight_levels: int = 16

    def __post_init__(self) -> None:
        # Types first, so a string or NaN gets a named QuantisationError instead of int()'s ValueError.
        if not isinstance(self.allow_clipping, (bool, np.bool_)):
            raise QuantisationError(
                f"allow_clipping must be true or false, got {self.allow_clipping!r}"
            )
        for name in ("max_weight", "min_weight_levels"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise QuantisationError(f"{name} must be an integer, got {value!r}")
        if self.scale is not None and (
            isinstance(self.scale, (bool, np.bool_))
            or not isinstance(self.scale, (int, float, np.integer, np.floating))
        ):
            raise QuantisationError(
                f"forced scale must be a positive finite number, got {self.scale!r}"
            )
        if not 1 <= int(self.max_weight) <= WEIGHT_MAX:
            raise QuantisationError(
                f"max_weight {self.max_weight} must be in 1..{WEIGHT_MAX}: netx clips "
                f"mixed-sign weights above {WEIGHT_MAX}"
            )
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise QuantisationError(
                f"forced scale must be a positive finite number, got {self.scale}"
            )
        if self.min_weight_levels < 1:
            raise QuantisationError("min_weight_levels must be >= 1")


# --------------------------------------------------------------------------------------------
# Graph walking
# --------------------------------------------------------------------------------------------


def _arr(x: Any) -> np.ndarray:
    """NIR parameters as float64 numpy arrays (snnTorch stores torch tensors in its nodes)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _pair(x: Any, what: str, where: str) -> tuple[int, int]:
    try:
        return as_pair(np.asarray(_arr(x)).astype(np.int64))
    except ValueError:
        raise UnsupportedLayerError(
            f"node {where!r}: {what} {x!r} is not an int or an (H, W) pair"
        ) from None


# What netx can hold, said once for every refusal of a graph's shape.
def _chain(
    graph: nir.NIRGraph,
) -> tuple[tuple[int, ...], list[tuple[str, nir.NIRNode]], dict[str, tuple[str, nir.NIRNode]]]:
    """The Input shape, the chain from Input to Output (`exporters.nir.walk_chain`) and each neuron's
    recurrent synapse."""
    walk = walk_chain(graph)
    shape = graph.nodes[walk.input].input_type["input"]
    if shape is None:
        raise ExportError("the Input node has no shape; export the graph with an input shape")
    return tuple(int(v) for v in np.asarray(shape).ravel()), walk.chain, walk.recurrent


# --------------------------------------------------------------------------------------------
# Neurons
# --------------------------------------------------------------------------------------------


@dataclass
class _Neuron:
    """A discrete neuron recovered from NIR: ``i <- alpha*i + gain*I; v <- beta*v + i``."""

    kind: str
    alpha: float  # 0 for LIF/IF (no current memory)
    beta: float
    threshold: float
    gain: float  # folded into the synaptic weights/bias
    param_size: int

    def decays(self) -> dict[str, Any]:
        """iDecay/vDecay as Loihi integers and their rounding error (the threshold needs the scale)."""
        i_decay = int(round(DECAY_MAX * (1.0 - self.alpha)))
        v_decay = int(round(DECAY_MAX * (1.0 - self.beta)))
        info = {
            "neuron_kind": self.kind,
            "alpha": self.alpha,
            "beta": self.beta,
            "threshold": self.threshold,
            "input_gain": self.gain,
            "i_decay": i_decay,
            "v_decay": v_decay,
            "alpha_loihi": 1.0 - i_decay / DECAY_MAX,
            "beta_loihi": 1.0 - v_decay / DECAY_MAX,
            "decay_error": max(
                abs((1.0 - i_decay / DECAY_MAX) - self.alpha),
                abs((1.0 - v_decay / DECAY_MAX) - self.beta),
            ),
        }
        return info


def _uniform(values: Any, what: str, where: str) -> float:
    a = _arr(values).ravel()
    if a.size == 0:
        raise ExportError(f"node {where!r}: {what} is empty")
    first = a[0]
    same = (
        np.all(a == first)
        if not np.isfinite(first)
        else np.allclose(a, first, rtol=1e-6, atol=1e-12)
    )
    if not same:
        raise QuantisationError(
            f"node {where!r}: {what} differs between neurons ({a.min():.6g}..{a.max():.6g}); Loihi neuron "
            "parameters are shared by a whole layer here. Train with one value per layer (snnTorch "
            "learn_beta/learn_threshold off) or average it before export"
        )
    return float(first)


def _zero(values: Any, what: str, where: str, why: str) -> None:
    if values is None:
        return
    a = _arr(values)
    if np.any(a != 0):
        raise UnsupportedLayerError(
            f"node {where!r}: {what} = {a.ravel()[:3]}... is not zero; {why}"
        )


def _snap(gain: float) -> float:
    """Input gains within float64 noise of 1 (tau/dt round trips) are exactly 1."""
    return 1.0 if abs(gain - 1.0) <= _GAIN_TOL else gain


def _exact(node: nir.NIRNode, key: str, value: float, where: str) -> float:
    """Prefer the exact float32 decay neurocxr's NIR exporter stores in node metadata, if any."""
    exact = (getattr(node, "metadata", None) or {}).get(_EXACT_KEY, {})
    if key in exact:
        return _uniform(exact[key], key, where)
    return value


def _leak_gain(tau: float, r: float, dt: float, where: str, what: str) -> tuple[float, float]:
    """(decay factor 1 - dt/tau, input gain r*dt/tau) of a first-order filter, checked."""
    if tau <= 0:
        raise ExportError(f"node {where!r}: {what} {tau} must be positive")
    ratio = dt / tau
    if ratio > 1.0 + 1e-12:
        raise ExportError(
            f"node {where!r}: {what} {tau:.6g} is shorter than dt {dt:.6g}, giving a negative decay; "
            "pass the dt the graph was exported with"
        )
    if math.isinf(tau) and math.isinf(r):
        gain = 1.0  # snnTorch's beta = 1: tau = dt/0, r = tau/dt, so r*dt/tau is 1 in the limit
    else:
        gain = r * ratio
    if not math.isfinite(gain) or gain == 0:
        raise ExportError(
            f"node {where!r}: input gain r*dt/{what} = {gain} (r={r}, {what}={tau}); the neuron gets no usable input"
        )
    return max(0.0, 1.0 - ratio), _snap(gain)


def _neuron(node: nir.NIRNode, dt: float, where: str) -> _Neuron:
    reset_why = "Loihi resets the membrane to 0 (export with reset to zero)"
    leak_why = "Loihi's CUBA neuron has no leak voltage"
    if isinstance(node, nir.LIF):
        _zero(node.v_leak, "v_leak", where, leak_why)
        _zero(node.v_reset, "v_reset", where, reset_why)
        tau = _uniform(node.tau, "tau", where)
        r = _uniform(node.r, "r", where)
        beta, gain = _leak_gain(tau, r, dt, where, "tau")
        beta = _exact(node, "beta", beta, where)
        thr = _uniform(node.v_threshold, "v_threshold", where)
        exact_thr = _exact(node, "threshold", math.nan, where)
        if math.isfinite(exact_thr) and math.isclose(exact_thr * gain, thr, rel_tol=1e-6):
            # neurocxr's portable LIF (r = 1, threshold * dt/tau): the same spikes as unit gain with the
            # producer's exact threshold, which keeps the integer program independent of dt
            thr, gain = exact_thr, 1.0
        return _Neuron("LIF", 0.0, beta, thr, gain, _arr(node.v_threshold).size)
    if isinstance(node, nir.CubaLIF):
        _zero(node.v_leak, "v_leak", where, leak_why)
        _zero(node.v_reset, "v_reset", where, reset_why)
        alpha, gain_syn = _leak_gain(
            _uniform(node.tau_syn, "tau_syn", where),
            _uniform(node.w_in, "w_in", where),
            dt,
            where,
            "tau_syn",
        )
        beta, gain_mem = _leak_gain(
            _uniform(node.tau_mem, "tau_mem", where),
            _uniform(node.r, "r", where),
            dt,
            where,
            "tau_mem",
        )
        alpha, beta = _exact(node, "alpha", alpha, where), _exact(node, "beta", beta, where)
        thr = _uniform(node.v_threshold, "v_threshold", where)
        return _Neuron(
            "CubaLIF", alpha, beta, thr, _snap(gain_syn * gain_mem), _arr(node.v_threshold).size
        )
    if isinstance(node, nir.IF):
        _zero(node.v_reset, "v_reset", where, reset_why)
        gain = _snap(_uniform(node.r, "r", where) * dt)  # NIR: dv/dt = r*I, so v += dt*r*I per step
        if gain == 0 or not math.isfinite(gain):
            raise ExportError(
                f"node {where!r}: IF input gain dt*r = {gain}; the neuron gets no usable input"
            )
        thr = _uniform(node.v_threshold, "v_threshold", where)
        return _Neuron("IF", 0.0, 1.0, thr, gain, _arr(node.v_threshold).size)
    raise AssertionError("not a spiking neuron")  # callers check _is_spiking first


def _is_spiking(node: nir.NIRNode) -> bool:
    return isinstance(node, (nir.LIF, nir.CubaLIF, nir.IF))


# --------------------------------------------------------------------------------------------
# Pooling fusion (public: tested numerically against torch)
# --------------------------------------------------------------------------------------------


def fuse_pool_into_conv(
    weight: np.ndarray,
    pool: tuple[int, int],
    pool_gain: float,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """Conv after a (kernel == stride == ``pool``) sum pool scaled by ``pool_gain`` -> one conv
    on the un-pooled map: returns (weight, stride, padding) with dilation 1.

    Pooled ``P[y] = g * sum_{d<p} X[p*y + d]``; the conv reads ``P[s*Y + d_c*k - pad]``, i.e.
    ``X[p*s*Y + p*d_c*k + d - p*pad]``: kernel tap ``p*d_c*k + d`` carries ``g*W[k]``, stride ``p*s``,
    padding ``p*pad``. Exact when the map's height/width are multiples of the pool size.
    """
    w = np.asarray(weight, dtype=np.float64)
    cout, cin, kh, kw = w.shape
    (ph, pw), (dh, dw) = pool, dilation
    fused = np.zeros(
        (cout, cin, ph * (dh * (kh - 1) + 1), pw * (dw * (kw - 1) + 1)), dtype=np.float64
    )
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ph * dh * ky, pw * dw * kx
            fused[:, :, y0 : y0 + ph, x0 : x0 + pw] = pool_gain * w[:, :, ky : ky + 1, kx : kx + 1]
    return fused, (stride[0] * ph, stride[1] * pw), (padding[0] * ph, padding[1] * pw)


def fuse_pool_into_dense(
    weight: np.ndarray, map_shape: tuple[int, int, int], pool: tuple[int, int], pool_gain: float
) -> np.ndarray:
    """Dense over the flattened (C, H//ph, W//pw) pooled map -> dense over the flattened (C, H, W)
    map: each pooled weight spread over its window times ``pool_gain``; rows/columns the pooling
    dropped (H, W not multiples of the pool) get weight 0."""
    c, h, w_ = map_shape
    ph, pw = pool
    hp, wp = h // ph, w_ // pw
    wt = np.asarray(weight, dtype=np.float64).reshape(-1, c, hp, wp)
    spread = np.repeat(np.repeat(wt, ph, axis=2), pw, axis=3) * pool_gain
    fused = np.zeros((wt.shape[0], c, h, w_), dtype=np.float64)
    fused[:, :, : hp * ph, : wp * pw] = spread
    return fused.reshape(wt.shape[0], c * h * w_)


# --------------------------------------------------------------------------------------------
# Quantisation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightGrid:
    """The integer weights one synaptic layer may use: multiples of ``step`` in [lo, hi]."""

    step: int
    lo: int
    hi: int

    def describe(self) -> str:
        every = (
            "integers"
            if self.step == 1
            else ("even integers" if self.step == 2 else f"multiples of {self.step}")
        )
        return f"{every} in [{self.lo}, {self.hi}]"


# Loihi's 8-bit synapse as netx packs it. Mixed sign: the 8-bit mantissa is shifted left by one,
# so even values in [-256, 254] (full range) or every integer in [-128, 127] (netx then uses a
# weight exponent of -1); the two are one grid at two scales, and the coarser weight units let
# thresholds and biases (17 and 13 bits) use twice the scale. One sign: every integer in [0, 255].
MIXED_GRIDS = (WeightGrid(2, WEIGHT_MIN, WEIGHT_MAX), WeightGrid(1, -128, 127))
EXCITATORY_GRID = WeightGrid(1, 0, WEIGHT_MAX_EXCITATORY)


def weight_grids(w: np.ndarray, options: QuantisationOptions) -> list[WeightGrid]:
    """The storable grids for float weights ``w`` (capped at ``options.max_weight``)."""
    if w.size == 0 or w.min() >= 0:
        return [EXCITATORY_GRID]
    cap = int(options.max_weight)
    return [WeightGrid(g.step, g.lo, min(g.hi, cap - cap % g.step)) for g in MIXED_GRIDS]


def _scale_bounds(
    w: np.ndarray, b: np.ndarray, thr: float | None, grid: WeightGrid
) -> dict[str, float]:
    """Largest scale each constraint allows on ``grid`` (absent when the constraint cannot bind)."""
    bounds: dict[str, float] = {}
    wmax, wmin = (float(w.max()), float(w.min())) if w.size else (0.0, 0.0)
    wb = []
    if wmax > 0:
        wb.append(grid.hi / wmax)
    if wmin < 0:
        wb.append(-grid.lo / -wmin)
    if wb:
        bounds["weights"] = min(wb)
    if thr is not None and thr > 0:
        bounds["threshold"] = VTH_MAX / thr  # also keeps vth << 6 below 2**23 (24-bit v)
    bb = []
    if b.size and b.max() > 0:
        bb.append(BIAS_MAX / float(b.max()))
    if b.size and b.min() < 0:
        bb.append(-BIAS_MIN / -float(b.min()))
    if bb:
        bounds["bias"] = min(bb)
    return bounds


def _max_input_per_step(w_int: np.ndarray) -> int:
    """Worst-case |weighted input| one neuron receives in one step (all its inputs spiking)."""
    if w_int.size == 0:
        return 0
    axes = tuple(range(1, w_int.ndim))
    pos = np.clip(w_int, 0, None).sum(axis=axes)
    neg = np.clip(w_int, None, 0).sum(axis=axes)
    return int(max(pos.max(), -neg.min()))


def _quantise_synapse(
    name: str,
    w: np.ndarray,
    b: np.ndarray,
    thr: float | None,
    options: QuantisationOptions,
) -> tuple[np.ndarray, np.ndarray | None, int | None, dict[str, Any]]:
    """Choose grid and scale of one synaptic layer jointly; returns (weight, bias, vThMant, info).

    Every storable grid gets its largest fitting scale; the winner has the smallest worst-case
    input error per step (float units: the largest sum over a neuron's fan-in of |weight error|,
    plus its bias error and the threshold error). A grid that cannot hold the layer is skipped;
    when none can, the first grid's QuantisationError is raised.
    """
    tried: list[tuple[float, tuple[np.ndarray, np.ndarray | None, int | None, dict[str, Any]]]] = []
    first_error: QuantisationError | None = None
    for grid in weight_grids(w, options):
        try:
            result = _quantise_on_grid(name, w, b, thr, grid, options)
        except QuantisationError as exc:
            first_error = first_error or exc
            continue
        tried.append((result[3]["input_error_per_step"], result))
    if not tried:
        assert first_error is not None
        raise first_error
    best = min(tried, key=lambda t: t[0])[1]  # ties keep the first (full-range) grid
    best[3]["grids_tried"] = {r[3]["weight_grid"]: err for err, r in tried}
    return best


@dataclass(frozen=True)
class _Scale:
    """The float -> integer scale of one layer, why it was chosen, and whether the bias is clipped."""

    value: float
    source: str
    bounds: dict[str, float]
    clip_bias_for_precision: bool = False


def _choose_scale(
    name: str,
    w: np.ndarray,
    b: np.ndarray,
    thr: float | None,
    grid: WeightGrid,
    options: QuantisationOptions,
) -> _Scale:
    """Largest scale that fits ``grid`` and the 13/17-bit fields (or the forced one); refuse a scale
    that leaves the weights fewer than ``min_weight_levels`` grid steps, unless the bias may clip."""
    bounds = _scale_bounds(w, b, thr, grid)
    if options.scale is not None:
        return _Scale(float(options.scale), "forced", bounds)
    if not bounds:
        return _Scale(1.0, "default 1 (all zero)", bounds)
    binding = min(bounds, key=lambda k: bounds[k])
    s = bounds[binding]
    wabs = float(np.abs(w).max()) if w.size else 0.0
    levels = s * wabs / grid.step  # grid steps of the largest |weight|
    if wabs == 0 or levels >= options.min_weight_levels:
        return _Scale(s, f"largest that fits ({binding})", bounds)
    if binding != "bias":
        raise QuantisationError(
            f"layer {name!r}: threshold {thr:.4g} is {(thr or 0.0) / wabs:.4g} times the largest |weight| {wabs:.4g}; "
            f"at the largest scale where vThMant fits 17 bits (<= {VTH_MAX}) the weights get only "
            f"{levels:.1f} steps of the 8-bit weight grid (min_weight_levels={options.min_weight_levels}). "
            "Retrain with a smaller threshold or larger weights, or lower min_weight_levels to accept the "
            "precision loss"
        )
    if not options.allow_clipping:
        raise QuantisationError(
            f"layer {name!r}: bias {float(b.min()):.4g}..{float(b.max()):.4g} is too large for the weights "
            f"(largest |weight| {wabs:.4g}): fitting it into 13 bits (|bias| <= {BIAS_MAX}) needs scale "
            f"<= {s:.4g}, which leaves the largest weight only {levels:.1f} steps of the 8-bit weight grid "
            f"(min_weight_levels={options.min_weight_levels}). Either pass "
            "QuantisationOptions(allow_clipping=True) to clip the bias to 13 bits (those neurons then "
            "behave differently), or retrain with weight decay / a bias penalty"
        )
    rest = {k: v for k, v in bounds.items() if k != "bias"}
    if not rest:
        return _Scale(s, f"largest that fits ({binding}); bias clipped", bounds, True)
    binding = min(rest, key=lambda k: rest[k])
    return _Scale(rest[binding], f"largest that fits ({binding}); bias clipped", bounds, True)


def _quantise_on_grid(
    name: str,
    w: np.ndarray,
    b: np.ndarray,
    thr: float | None,
    grid: WeightGrid,
    options: QuantisationOptions,
) -> tuple[np.ndarray, np.ndarray | None, int | None, dict[str, Any]]:
    """Largest scale that fits ``grid`` and the 13/17-bit fields, then round; refuse what needs clipping."""
    scale = _choose_scale(name, w, b, thr, grid, options)
    s = scale.value
    lo, hi, step = grid.lo, grid.hi, grid.step
    w_int = (np.rint(w * s / step) * step).astype(np.int64)
    b_int = np.rint(b * s).astype(np.int64)
    vth = int(np.rint(thr * s)) if thr is not None else None
    problems = []
    w_out = int(np.count_nonzero((w_int < lo) | (w_int > hi)))
    b_out = int(np.count_nonzero((b_int < BIAS_MIN) | (b_int > BIAS_MAX)))
    vth_out = vth is not None and not 0 <= vth <= VTH_MAX
    if w_out:
        problems.append(
            f"{w_out} weights at {w_int.min()}..{w_int.max()} outside the 8-bit grid ({grid.describe()})"
        )
    if b_out:
        problems.append(
            f"{b_out} biases at {b_int.min()}..{b_int.max()} outside {BIAS_MIN}..{BIAS_MAX} (13 bits)"
        )
    if vth_out:
        problems.append(f"vThMant {vth} outside 0..{VTH_MAX} (17 bits)")
    if problems and not (
        options.allow_clipping or (scale.clip_bias_for_precision and not w_out and not vth_out)
    ):
        raise QuantisationError(
            f"layer {name!r} at scale {s:.6g}: "
            + "; ".join(problems)
            + ". Pass QuantisationOptions(allow_clipping=True) "
            "to clip (changes the model's behaviour), choose a smaller scale, or retrain with weight decay"
        )
    w_int = np.clip(w_int, lo, hi)
    b_int = np.clip(b_int, BIAS_MIN, BIAS_MAX)
    if vth is not None:
        vth = int(min(max(vth, 0), VTH_MAX))
    wabs = float(np.abs(w).max()) if w.size else 0.0
    if w.size and not np.any(w_int):
        raise QuantisationError(
            f"layer {name!r}: every weight rounds to 0 at scale {s:.6g} (largest |weight| {wabs:.4g}); the layer would "
            "pass nothing (and netx cannot pack an all-zero weight matrix). Retrain, or check the threshold/bias scale"
        )
    bits, exponent, sign_mode = netx_weight_bits(w_int)
    if (
        bits > 8
    ):  # the grids above are storable by construction: this guards the mirror and the grids
        raise QuantisationError(
            f"layer {name!r}: weights {w_int.min()}..{w_int.max()} need {bits} bits in lava-dl's packing; Loihi's "
            "synapse holds 8"
        )
    info = _quantisation_info(w, b, thr, w_int, b_int, vth, scale, grid)
    info.update(
        num_weight_bits=bits,
        weight_exponent=exponent,
        sign_mode=sign_mode,
        clipped_weights=w_out,
        clipped_bias=b_out,
        clipped_count=w_out + b_out + int(vth_out),
        clipped_fraction=(w_out + b_out + int(vth_out))
        / max(1, w.size + b.size + (thr is not None)),
    )
    bias_out = b_int if b.size and np.any(b_int != 0) else None
    return w_int, bias_out, vth, info


def _quantisation_info(
    w: np.ndarray,
    b: np.ndarray,
    thr: float | None,
    w_int: np.ndarray,
    b_int: np.ndarray,
    vth: int | None,
    scale: _Scale,
    grid: WeightGrid,
) -> dict[str, Any]:
    """What rounding did to one layer: scale, ranges and errors (the export report's per-layer row)."""
    s = scale.value
    wabs = float(np.abs(w).max()) if w.size else 0.0
    w_err = np.abs(w_int / s - w) if w.size else np.zeros((1, 1))
    b_err = np.abs(b_int / s - b) if b.size else np.zeros(1)
    thr_err = abs(vth / s - thr) if thr is not None and vth is not None else 0.0
    fan_in_err = float(w_err.reshape(w_err.shape[0], -1).sum(axis=1).max()) if w_err.size else 0.0
    max_in = _max_input_per_step(w_int)
    return {
        "scale": s,
        "scale_source": scale.source,
        "scale_bounds": dict(scale.bounds),
        "weight_grid": grid.describe(),
        "weight_step": grid.step,
        "weight_min": int(w_int.min()) if w_int.size else 0,
        "weight_max": int(w_int.max()) if w_int.size else 0,
        "weight_range": (grid.lo, grid.hi),
        "weight_max_abs_error": float(w_err.max()),
        "weight_relative_error": float(w_err.max() / wabs) if wabs > 0 else 0.0,
        "weight_rms_error": float(np.sqrt(np.mean(w_err**2))),
        "weights_zeroed": int(np.count_nonzero((w != 0) & (w_int == 0))),
        # Worst case over neurons, all inputs spiking: sum of |weight error| + |bias error| + |threshold error|.
        "input_error_per_step": fan_in_err + float(b_err.max()) + thr_err,
        "input_error_vs_threshold": (fan_in_err + float(b_err.max()) + thr_err) / thr
        if thr
        else None,
        "bias_min": int(b_int.min()) if b_int.size else 0,
        "bias_max": int(b_int.max()) if b_int.size else 0,
        "bias_max_abs_error": float(b_err.max()),
        "threshold_abs_error": thr_err,
        # Loihi wraps u (24 bits) rather than saturating: flag layers where it can happen.
        "max_input_per_step": max_in,
        "u_may_wrap": (max_in << 6) >= 2 ** (STATE_BITS - 1),
    }


# --------------------------------------------------------------------------------------------
# NIR -> LoihiProgram
# --------------------------------------------------------------------------------------------


@dataclass
class _PreOps:
    """Linear operations between a spike map and the next synapse: pooling, scaling, flatten."""

    pool: tuple[int, int] = (1, 1)
    pool_gain: float = 1.0
    gain: float = 1.0
    flatten: bool = False
    names: tuple[str, ...] = ()

    @property
    def pooled(self) -> bool:
        return self.pool != (1, 1)


def _conv_padding(
    node: nir.Conv2d,
    kernel: tuple[int, int],
    dilation: tuple[int, int],
    stride: tuple[int, int],
    where: str,
) -> tuple[int, int]:
    pad = node.padding
    if isinstance(pad, str):
        if pad == "valid":
            return (0, 0)
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        if stride != (1, 1) or any(t % 2 for t in total):
            raise UnsupportedLayerError(
                f"node {where!r}: padding 'same' needs asymmetric padding here; netx convs pad symmetrically. "
                "Use an odd kernel with stride 1, or explicit integer padding"
            )
        return (total[0] // 2, total[1] // 2)
    return _pair(pad, "padding", where)


def _refuse_non_finite(graph: Any) -> None:
    """NaN/inf in any node's parameters would quantise to garbage integers (int64 min): name it instead."""
    for name, node in (getattr(graph, "nodes", None) or {}).items():
        for field, value in vars(node).items():
            if isinstance(value, (str, bytes, dict)) or value is None:
                continue
            try:
                arr = np.asarray(
                    value.detach().cpu().numpy() if hasattr(value, "detach") else value
                )
            except Exception:  # noqa: BLE001  not array-like: nothing numeric to check
                continue
            if arr.dtype.kind in "fc" and arr.size and not np.isfinite(arr).all():
                bad = int((~np.isfinite(arr)).sum())
                raise ExportError(
                    f"node {name!r}: {field} holds {bad} NaN/inf value(s); the model's weights are "
                    "not finite (diverged training or a damaged file): retrain or fix them"
                )


def _resolve_dt(meta_dt: Any, dt: float | None) -> tuple[float, str]:
    """The time step to use and where it came from: the graph's metadata, else the argument."""
    if (
        meta_dt is not None
        and dt is not None
        and not math.isclose(float(meta_dt), float(dt), rel_tol=1e-9)
    ):
        raise ExportError(
            f"the graph's metadata says dt={meta_dt}, but dt={dt} was passed; its time constants were "
            "computed with the graph's dt, so drop the argument (or fix the metadata)"
        )
    if meta_dt is not None:
        dt_used, dt_source = float(meta_dt), "graph metadata"
    elif dt is not None:
        dt_used, dt_source = float(dt), "argument"
    else:
        raise ExportError(
            "the NIR graph does not state its time step (no 'dt' in its metadata) and no dt was given: pass dt= "
            "(CLI: --dt SECONDS). NIR is continuous-time, so every decay depends on it; graphs from Sinabs "
            "(IF with r = 1) usually mean dt = 1, snnTorch's writer uses dt = 1e-4"
        )
    if not dt_used > 0:
        raise ExportError(f"dt must be positive, got {dt_used}")
    return dt_used, dt_source


def _resolve_encoding_and_steps(
    ncx: dict[str, Any], encoding: str | None, num_steps: int | None
) -> tuple[str | None, int]:
    """The encoding and number of steps: the arguments, else the graph's neurocxr metadata."""
    encoding = encoding if encoding is not None else ncx.get("encoding")
    if encoding is not None and encoding not in ENCODINGS:
        raise ExportError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
    steps = num_steps if num_steps is not None else ncx.get("num_steps")
    if steps is None:
        raise ExportError(
            "num_steps is unknown: the graph's metadata has no neurocxr.num_steps; pass num_steps="
        )
    steps = int(steps)
    if steps < 1:
        raise ExportError(f"num_steps must be >= 1, got {steps}")
    return encoding, steps


@dataclass
class _InputStage:
    """The program's input layer, how the image reaches it, and how many chain nodes it used."""

    layer: InputLayer
    kind: str  # "bias" (input neurons) or "spikes" (spike trains as given)
    scale: float
    nodes_used: int


def _checked_input_neuron(
    name: str,
    node: nir.NIRNode,
    input_shape: tuple[int, ...],
    encoding: str | None,
    recurrent: dict[str, tuple[str, nir.NIRNode]],
    dt: float,
) -> tuple[_Neuron, dict[str, Any]]:
    """The input neurons and their decays, refusing what cannot take the image as a bias current."""
    if encoding is not None and encoding != "direct":
        raise ExportError(
            f"the graph starts with input neurons ({name!r}) but the encoding is {encoding!r}: Loihi's "
            "input neurons take the image as a constant bias current, not spike trains. Export with "
            "encoding='direct', or build the model without input neurons for spike-train input"
        )
    if name in recurrent:
        raise UnsupportedLayerError(
            f"input neurons {name!r} feed back into themselves through {recurrent[name][0]!r}: "
            f"{_NETX_SHAPE}, but the input layer has no synapse to hold it; put a Linear "
            "before the recurrent neurons"
        )
    neuron = _neuron(node, dt, name)
    if neuron.param_size not in (1, int(np.prod(input_shape))):
        raise ExportError(
            f"input neurons {name!r} have {neuron.param_size} parameters for input shape {input_shape}"
        )
    info = neuron.decays()
    if neuron.kind == "CubaLIF" and info["i_decay"] != DECAY_MAX:
        raise UnsupportedLayerError(
            f"node {name!r}: current-based input neurons with synaptic memory (alpha={neuron.alpha:.4g}) "
            "cannot take the image as a bias (Loihi adds bias to v, not to the current); use LIF/IF input neurons"
        )
    if neuron.threshold < 0:
        raise QuantisationError(
            f"input neurons {name!r}: threshold {neuron.threshold} is negative; Loihi's vThMant is unsigned"
        )
    return neuron, info


def _input_bias_scale(
    name: str, g: float, thr: float, options: QuantisationOptions
) -> tuple[float, int, float]:
    """The voltage scale s0, the integer threshold and the image's bias scale for input neurons."""
    # Largest |bias| is gain * 1 (images in [0, 1]); v is in units of s0, the image bias is g*x*s0.
    s0 = PREFERRED_INPUT_SCALE / abs(g)
    vth0 = thr * s0
    if not (abs(vth0 - round(vth0)) < 1e-9 and round(vth0) <= VTH_MAX):
        bounds = [BIAS_MAX / abs(g)] + ([VTH_MAX / thr] if thr > 0 else [])
        s0 = min(bounds)
    v_th_mant = int(round(thr * s0))
    input_scale = g * s0
    if abs(input_scale) < options.min_weight_levels:
        raise QuantisationError(
            f"input neurons {name!r}: threshold {thr:.4g} vs input gain {g:.4g} leaves the image only "
            f"{abs(input_scale):.1f} integer levels; retrain with a smaller input threshold"
        )
    return s0, v_th_mant, input_scale


def _input_neuron_layer(
    name: str,
    node: nir.NIRNode,
    input_shape: tuple[int, ...],
    encoding: str | None,
    recurrent: dict[str, tuple[str, nir.NIRNode]],
    dt: float,
    options: QuantisationOptions,
) -> tuple[InputLayer, float]:
    """The input layer of neurons that take the image as a bias current, and the image's bias scale."""
    neuron, info = _checked_input_neuron(name, node, input_shape, encoding, recurrent, dt)
    thr = neuron.threshold
    s0, v_th_mant, input_scale = _input_bias_scale(name, neuron.gain, thr, options)
    info.update(
        scale=s0,
        scale_source="16*255 (exact for uint8 images)"
        if math.isclose(abs(input_scale), PREFERRED_INPUT_SCALE)
        else "largest that fits",
        input_scale=input_scale,
        v_th_mant=v_th_mant,
        threshold_abs_error=abs(v_th_mant / s0 - thr),
        bias_min=int(min(0, round(input_scale))),
        bias_max=int(max(0, round(input_scale))),
        clipped_count=0,
        clipped_fraction=0.0,
        source_nodes=(name,),
    )
    layer = InputLayer(
        name=name,
        shape=input_shape,
        neuron=LoihiNeuron(v_th_mant=v_th_mant, i_decay=info["i_decay"], v_decay=info["v_decay"]),
        quant=info,
    )
    return layer, input_scale


def _input_stage(
    chain: list[tuple[str, nir.NIRNode]],
    input_shape: tuple[int, ...],
    encoding: str | None,
    recurrent: dict[str, tuple[str, nir.NIRNode]],
    dt: float,
    options: QuantisationOptions,
) -> _InputStage:
    """The input layer: input neurons fed the image as a bias, or spike trains into the first synapse."""
    first_name, first = chain[0]
    if _is_spiking(first):
        layer, input_scale = _input_neuron_layer(
            first_name, first, input_shape, encoding, recurrent, dt, options
        )
        return _InputStage(layer=layer, kind="bias", scale=input_scale, nodes_used=1)
    if encoding == "direct":
        raise ExportError(
            f"the first layer {first_name!r} ({type(first).__name__}) receives the analog image directly "
            "(encoding 'direct'), but Loihi receives spikes or bias currents, not analog values. Train with "
            f"a spike-train encoding ({', '.join(e for e in ENCODINGS if e != 'direct')}), or with a layer of "
            "input neurons first (snn_conv's default does this)"
        )
    # encoding None (a graph from another tool): the first layer is synaptic, so the network takes
    # spike trains as they are given; no encoding is needed to run it.
    layer = InputLayer(name="input", shape=input_shape, neuron=None)
    return _InputStage(layer=layer, kind="spikes", scale=1.0, nodes_used=0)


def _pooling(
    name: str,
    node: nir.NIRNode,
    pool_conv: Any,
    pre: _PreOps,
    source_shape: tuple[int, ...],
) -> _PreOps:
    """``pre`` with one more pooling node fused in (kernel == stride, no padding)."""
    if pool_conv is not None:  # an AvgPool2d that neurocxr wrote as a Conv2d for other readers
        k, st, pad = pool_conv
    else:
        k, st = (
            _pair(node.kernel_size, "kernel_size", name),
            _pair(node.stride, "stride", name),
        )
        pad = _pair(node.padding, "padding", name)
    if k != st or pad != (0, 0):
        raise UnsupportedLayerError(
            f"node {name!r}: pooling with kernel {k}, stride {st}, padding {pad}; only kernel == stride "
            "without padding can be fused into the next layer (use AvgPool2d(k) with default stride)"
        )
    if pre.flatten or len(source_shape) != 3:
        raise UnsupportedLayerError(
            f"node {name!r}: pooling needs a (C, H, W) map, not a flattened one"
        )
    c, h, w = source_shape
    total = (pre.pool[0] * k[0], pre.pool[1] * k[1])
    if total[0] > h or total[1] > w:
        raise UnsupportedLayerError(
            f"node {name!r}: pooling {total} is larger than the map {source_shape}"
        )
    gain = 1.0 if isinstance(node, nir.SumPool2d) else 1.0 / (k[0] * k[1])
    return _PreOps(total, pre.pool_gain * gain, pre.gain, pre.flatten, pre.names + (name,))


def _synaptic_layers(
    chain: list[tuple[str, nir.NIRNode]],
    start: int,
    input_shape: tuple[int, ...],
    dt: float,
    options: QuantisationOptions,
    fusions: list[str],
    first_index: int,
    recurrent: dict[str, tuple[str, nir.NIRNode]],
) -> list[Layer]:
    """The synaptic layers from chain[start:], with pooling/scale/flatten fused into the next synapse."""
    layers: list[Layer] = []
    source_shape: tuple[int, ...] = input_shape
    pre = _PreOps()
    i = start
    while i < len(chain):
        name, node = chain[i]
        pool_conv = pool_of_conv(node)
        if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)) or pool_conv is not None:
            pre = _pooling(name, node, pool_conv, pre, source_shape)
            i += 1
            continue
        if isinstance(node, nir.Scale):
            pre.gain *= _uniform(node.scale, "scale", name)
            pre.names += (name,)
            i += 1
            continue
        if isinstance(node, nir.Flatten):
            pre.flatten = True
            pre.names += (name,)
            i += 1
            continue
        if isinstance(node, _Identity):
            i += 1
            continue
        if isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear)):
            layer, i = _synaptic_layer(
                chain,
                i,
                source_shape,
                pre,
                dt,
                options,
                fusions,
                first_index + len(layers),
                recurrent,
            )
            layers.append(layer)
            source_shape = layer.shape
            pre = _PreOps()
            continue
        if _is_spiking(node):
            raise UnsupportedLayerError(
                f"node {name!r}: a neuron layer without a synaptic layer (conv/linear) before it; Loihi neurons are "
                "fed by synapses, so only the first layer may be neurons"
            )
        raise UnsupportedLayerError(_unsupported_reason(name, node))
    if pre.pooled or pre.gain != 1.0:
        raise UnsupportedLayerError(
            f"nodes {list(pre.names)} after the last layer have no synaptic layer to be fused into; Loihi cannot "
            "pool or scale spikes on their own"
        )
    return layers


def _program_metadata(
    dt: float,
    dt_source: str,
    encoding: str | None,
    model: Any,
    fusions: list[str],
    options: QuantisationOptions,
) -> dict[str, Any]:
    """The program's metadata: where it came from, its dt, encoding, fusions and quantisation options."""
    return {
        "source": "nir",
        "dt": dt,
        "dt_source": dt_source,
        "encoding": encoding,
        "model": model,
        "fusions": fusions,
        "quantisation_options": {
            "allow_clipping": options.allow_clipping,
            "max_weight": options.max_weight,
            "scale": options.scale,
            "min_weight_levels": options.min_weight_levels,
        },
    }


def nir_to_program(
    graph: nir.NIRGraph,
    *,
    encoding: str | None = None,
    num_steps: int | None = None,
    options: QuantisationOptions | None = None,
    dt: float | None = None,
) -> LoihiProgram:
    """Turn a chain-shaped NIR graph into a validated, quantised `LoihiProgram`.

    ``encoding``/``num_steps`` default to ``graph.metadata["neurocxr"]``; ``dt`` to
    ``graph.metadata["dt"]``, else the argument; neither raises ExportError (they must agree when
    both are given). A graph whose first layer is synaptic takes spike trains as given.
    """
    options = options or QuantisationOptions()
    _refuse_non_finite(graph)
    meta = dict(getattr(graph, "metadata", None) or {})
    ncx = dict(meta.get("neurocxr") or {})
    dt_used, dt_source = _resolve_dt(meta.get("dt"), dt)
    encoding, steps = _resolve_encoding_and_steps(ncx, encoding, num_steps)

    input_shape, chain, recurrent = _chain(inline_recurrent_subgraphs(graph))
    if not chain:
        raise ExportError("the graph has no layers between Input and Output")
    fusions: list[str] = []
    stage = _input_stage(chain, input_shape, encoding, recurrent, dt_used, options)
    layers: list[Layer] = [stage.layer]
    layers += _synaptic_layers(
        chain, stage.nodes_used, input_shape, dt_used, options, fusions, len(layers), recurrent
    )
    if len(layers) < 2:
        raise ExportError("the graph has no synaptic (conv/linear) layer")

    program = LoihiProgram(
        input_shape=input_shape,
        input_kind=stage.kind,  # type: ignore[arg-type]
        layers=layers,
        num_steps=steps,
        input_scale=float(stage.scale),
        metadata=_program_metadata(
            dt_used, dt_source, encoding, ncx.get("model"), fusions, options
        ),
    )
    try:
        program.validate()
    except ProgramError as exc:  # a bug here, but show it as an export problem with the reason
        raise ExportError(f"the generated Loihi program is invalid: {exc}") from exc
    return program


def _unsupported_reason(name: str, node: nir.NIRNode) -> str:
    kind = type(node).__name__
    why = {
        "Delay": "netx layers have a fixed one-step delay; per-synapse delays are not exported",
        "Threshold": "a bare threshold without a neuron has no Loihi equivalent",
        "LI": "leaky integrators without spikes only exist as the final readout (a dense layer without neuron)",
        "CubaLI": "leaky integrators without spikes only exist as the final readout (a dense layer without neuron)",
        "I": "integrators without spikes only exist as the final readout (a dense layer without neuron)",
        "NIRGraph": (
            "nested sub-graphs are not read: write a recurrent neuron flat, the neuron and its own "
            "Linear/Affine as top-level nodes (netx holds it as dense_rec)"
        ),
        "Conv1d": "only 2-D convolutions are exported",
    }.get(
        kind,
        "Loihi netx holds conv/dense synapses, LIF/CubaLIF/IF neurons, and pooling fused into them",
    )
    if "maxpool" in kind.lower():
        why = "max pooling of spikes is not linear and cannot be fused; use average pooling"
    return f"node {name!r} ({kind}) is not supported: {why}"


@dataclass
class _Synapse:
    """A conv or dense synapse read from NIR with its pre-ops fused, before quantisation."""

    kind: str  # conv | dense
    weight: np.ndarray
    bias: np.ndarray
    out_shape: tuple[int, ...]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    flatten_input: bool = False


def _bias_of(node: nir.NIRNode, n_out: int) -> np.ndarray:
    """The node's bias as n_out floats (zeros when it has none; a scalar broadcast)."""
    has_bias = isinstance(node, (nir.Conv2d, nir.Affine)) and node.bias is not None
    b = _arr(node.bias).ravel() if has_bias else np.zeros(n_out)
    if b.size == 1 and n_out > 1:
        b = np.full(n_out, float(b[0]))
    return b


def _conv_synapse(
    name: str, node: nir.Conv2d, source_shape: tuple[int, ...], pre: _PreOps, fusions: list[str]
) -> _Synapse:
    """A Conv2d on a (C, H, W) map, with the pooling before it fused in (exact when it divides)."""
    if pre.flatten:
        raise UnsupportedLayerError(f"node {name!r}: a convolution after Flatten")
    if len(source_shape) != 3:
        raise UnsupportedLayerError(
            f"node {name!r}: a convolution needs a (C, H, W) input, got {source_shape}"
        )
    w = _arr(node.weight) * pre.gain
    if w.ndim != 4:
        raise UnsupportedLayerError(
            f"node {name!r}: Conv2d weight must be 4-D, got shape {w.shape}"
        )
    b = _bias_of(node, w.shape[0])
    stride = _pair(node.stride, "stride", name)
    dilation = _pair(node.dilation, "dilation", name)
    padding = _conv_padding(node, (w.shape[2], w.shape[3]), dilation, stride, name)
    groups = int(node.groups)
    c, h, wd = source_shape
    hp, wp = h // pre.pool[0], wd // pre.pool[1]
    if w.shape[1] * groups != c:
        raise ExportError(
            f"node {name!r}: Conv2d expects {w.shape[1] * groups} input channels, the map has {c}"
        )
    out_h = (hp + 2 * padding[0] - dilation[0] * (w.shape[2] - 1) - 1) // stride[0] + 1
    out_w = (wp + 2 * padding[1] - dilation[1] * (w.shape[3] - 1) - 1) // stride[1] + 1
    if out_h < 1 or out_w < 1:
        raise ExportError(f"node {name!r}: kernel {w.shape[2:]} does not fit the {hp}x{wp} map")
    if pre.pooled:
        if h % pre.pool[0] or wd % pre.pool[1]:
            raise UnsupportedLayerError(
                f"node {name!r}: pooling {pre.pool} does not divide the map {source_shape}; fusing it into the "
                "convolution is exact only when it does"
            )
        w, stride, padding = fuse_pool_into_conv(
            w, pre.pool, pre.pool_gain, stride, padding, dilation
        )
        dilation = (1, 1)
        fusions.append(f"{'+'.join(pre.names)} fused into conv {name!r}")
    return _Synapse(
        "conv", w, b, (int(w.shape[0]), int(out_h), int(out_w)), stride, padding, dilation, groups
    )


def _dense_synapse(
    name: str, node: nir.NIRNode, source_shape: tuple[int, ...], pre: _PreOps, fusions: list[str]
) -> _Synapse:
    """A Linear/Affine on the flattened map, with the pooling before it fused in."""
    w = _arr(node.weight) * pre.gain
    if w.ndim != 2:
        raise UnsupportedLayerError(
            f"node {name!r}: linear weight must be 2-D, got shape {w.shape}"
        )
    b = _bias_of(node, w.shape[0])
    pooled_n = int(np.prod(source_shape))
    if pre.pooled:
        c, h, wd = source_shape
        pooled_n = c * (h // pre.pool[0]) * (wd // pre.pool[1])
    if w.shape[1] != pooled_n:
        raise ExportError(
            f"node {name!r}: linear layer expects {w.shape[1]} inputs but receives {pooled_n} "
            f"(map {source_shape}{' pooled by ' + str(pre.pool) if pre.pooled else ''})"
        )
    if pre.pooled:
        w = fuse_pool_into_dense(w, source_shape, pre.pool, pre.pool_gain)  # type: ignore[arg-type]
        fusions.append(f"{'+'.join(pre.names)} fused into dense {name!r}")
    return _Synapse("dense", w, b, (int(w.shape[0]),), flatten_input=len(source_shape) > 1)


def _readout_layer(
    name: str, syn: _Synapse, sources: tuple[str, ...], options: QuantisationOptions
) -> ReadoutLayer:
    """The final linear layer without neuron: Loihi's readout integrates over the whole run."""
    if syn.kind != "dense":
        raise UnsupportedLayerError(
            f"node {name!r}: the graph ends in a convolution without neurons; only a final linear layer can be "
            "a non-spiking readout"
        )
    if np.any(syn.bias != 0):
        raise ExportError(
            f"readout {name!r} has a non-zero bias ({float(np.abs(syn.bias).max()):.4g}): on Loihi the readout "
            "integrates over the whole run, so a bias would grow with the run length instead of once per step as "
            "trained. Build the readout with bias=False (snn_conv does)"
        )
    w_int, _, _, info = _quantise_synapse(name, syn.weight, np.zeros(0), None, options)
    info.update(
        source_nodes=sources,
        readout=True,
        v_th_mant=None,
        i_decay=None,
        v_decay=None,
        decay_error=0.0,
    )
    return ReadoutLayer(
        name=name,
        shape=syn.out_shape,
        weight=w_int,
        flatten_input=syn.flatten_input,
        quant=info,
    )


def _check_follows_synapse(name: str, nname: str, nnode: nir.NIRNode, after: list[Any]) -> None:
    """Refuse anything but a spiking neuron after a synapse, naming what Loihi does instead."""
    if _is_spiking(nnode):
        return
    if isinstance(nnode, (nir.LI, nir.CubaLI, nir.I)) and all(
        isinstance(n, (nir.Flatten, _Identity)) for _, n in after
    ):
        raise UnsupportedLayerError(
            f"node {nname!r} ({type(nnode).__name__}): a leaky non-spiking readout is not supported; Loihi's "
            "readout is a dense layer without neuron that sums its input without leak (use a plain Linear readout)"
        )
    raise UnsupportedLayerError(
        f"node {nname!r} ({type(nnode).__name__}) follows synaptic layer {name!r}; "
        "expected a LIF/CubaLIF/IF neuron. " + _unsupported_reason(nname, nnode)
    )


def _recurrent_synapse(
    name: str, syn: _Synapse, nname: str, rec: tuple[str, nir.NIRNode], n_out: int
) -> tuple[np.ndarray, np.ndarray]:
    """(recurrent weight, its bias as n_out floats) of a neuron that feeds back into itself."""
    rname, rnode = rec
    if syn.kind != "dense":
        raise UnsupportedLayerError(
            f"neuron {nname!r} feeds back into itself through {rname!r}, but its input synapse {name!r} is a "
            f"convolution: {_NETX_SHAPE}, and only a dense layer can be one"
        )
    r_w = _arr(rnode.weight)
    if r_w.shape != (n_out, n_out):
        raise ExportError(
            f"recurrent synapse {rname!r}: weight {r_w.shape} must be ({n_out}, {n_out}) for neuron {nname!r}"
        )
    return r_w, _bias_of(rnode, n_out)  # the bias reaches the neuron every step


def _synaptic_layer(
    chain: list[tuple[str, nir.NIRNode]],
    i: int,
    source_shape: tuple[int, ...],
    pre: _PreOps,
    dt: float,
    options: QuantisationOptions,
    fusions: list[str],
    index: int,
    recurrent: dict[str, tuple[str, nir.NIRNode]] | None = None,
) -> tuple[SynapticLayer, int]:
    """Build one ConvLayer / DenseLayer / ReadoutLayer / RecurrentDenseLayer from chain[i] (+ following Scale
    and neuron; ``recurrent`` maps a neuron to its own recurrent synapse, see `exporters.nir.walk_chain`)."""
    name, node = chain[i]
    sources = pre.names + (name,)
    if isinstance(node, nir.Conv2d):
        syn = _conv_synapse(name, node, source_shape, pre, fusions)
    else:
        syn = _dense_synapse(name, node, source_shape, pre, fusions)
    i += 1
    # Scales between the synapse and its neuron multiply weights and bias.
    while i < len(chain) and isinstance(chain[i][1], (nir.Scale, _Identity)):
        if isinstance(chain[i][1], nir.Scale):
            post = _uniform(chain[i][1].scale, "scale", chain[i][0])
            syn.weight, syn.bias = syn.weight * post, syn.bias * post
            sources += (chain[i][0],)
        i += 1
    # Trailing Flatten / Identity before Output change nothing on the chip.
    if all(isinstance(n, (nir.Flatten, _Identity)) for _, n in chain[i:]):
        return _readout_layer(name, syn, sources, options), len(chain)
    nname, nnode = chain[i]
    _check_follows_synapse(name, nname, nnode, chain[i + 1 :])
    neuron = _neuron(nnode, dt, nname)
    n_out = int(np.prod(syn.out_shape))
    if neuron.param_size not in (1, n_out):
        raise ExportError(
            f"neuron {nname!r} has {neuron.param_size} parameters but layer {name!r} has {n_out} outputs"
        )
    ninfo = neuron.decays()
    w, b = syn.weight, syn.bias
    rec = (recurrent or {}).get(nname)
    r_w = None
    if rec is not None:
        r_w, r_b = _recurrent_synapse(name, syn, nname, rec, n_out)
        b = b + r_b
        sources += (rec[0],)
    if neuron.kind == "CubaLIF" and ninfo["i_decay"] != DECAY_MAX and np.any(b != 0):
        raise UnsupportedLayerError(
            f"layer {name!r}: a bias feeding CubaLIF {nname!r} (alpha={neuron.alpha:.4g}) accumulates in the synaptic "
            "current in the float model, but Loihi adds bias to the membrane; train this layer with bias=False"
        )
    if neuron.threshold < 0:
        raise QuantisationError(
            f"neuron {nname!r}: threshold {neuron.threshold} is negative; Loihi's vThMant is unsigned"
        )
    w, b = w * neuron.gain, b * neuron.gain
    if r_w is not None:
        # netx packs input and recurrent weights as one matrix: quantise them on one grid, then split
        joint, b_int, vth, info = _quantise_synapse(
            name, np.hstack([w, r_w * neuron.gain]), b, neuron.threshold, options
        )
        w_int, r_int = joint[:, : w.shape[1]], joint[:, w.shape[1] :]
    else:
        w_int, b_int, vth, info = _quantise_synapse(name, w, b, neuron.threshold, options)
    info.update(ninfo)
    info.update(source_nodes=sources + (nname,), readout=False, v_th_mant=vth)
    lif = LoihiNeuron(v_th_mant=int(vth), i_decay=ninfo["i_decay"], v_decay=ninfo["v_decay"])
    if r_w is not None:
        info.update(recurrent_source=rec[0] if rec else None)
        return RecurrentDenseLayer(
            name=name,
            shape=syn.out_shape,
            neuron=lif,
            weight=w_int,
            bias=b_int,
            flatten_input=syn.flatten_input,
            quant=info,
            weight_rec=r_int,
        ), i + 1
    layer: SynapticLayer
    if syn.kind == "conv":
        layer = ConvLayer(
            name=name,
            shape=syn.out_shape,
            neuron=lif,
            weight=w_int,
            bias=b_int,
            stride=syn.stride,
            padding=syn.padding,
            dilation=syn.dilation,
            groups=syn.groups,
            quant=info,
        )
    else:
        layer = DenseLayer(
            name=name,
            shape=syn.out_shape,
            neuron=lif,
            weight=w_int,
            bias=b_int,
            flatten_input=syn.flatten_input,
            quant=info,
        )
    return layer, i + 1


def quantisation_table(program: LoihiProgram) -> list[dict[str, Any]]:
    """One row per layer: how its floats became integers (scale, ranges, errors, clipping, decays);
    the rows of the typed records `neurocxr.exporters.layer_quant.LayerQuant`."""
    return [record.to_row() for record in layer_quants(program)]


def to_program(
    loaded: LoadedModel, *, allow_clipping: bool = False, num_steps: int | None = None
) -> tuple[Any, Any]:
    """Model -> (NIR graph, LoihiProgram), in memory; ``num_steps`` runs the same network for a
    different number of steps (None: the model's own). `neurocxr.deploy.deployment.Deployment` wraps this."""

    graph = to_nir(loaded.model, input_shape=input_shape(loaded.config))
    program = nir_to_program(
        graph, num_steps=num_steps, options=QuantisationOptions(allow_clipping=allow_clipping)
    )
    return graph, program
