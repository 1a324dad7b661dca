"""Parallel timing model of a Loihi-class chip: step time, latency, throughput and static energy.

Loihi's cores run in parallel and synchronise at the end of every time step with a mesh-wide
barrier (Davies et al., IEEE Micro 38(1), 2018). So a time step lasts as long as its busiest core
needs for its own work, plus the barrier:

    core work per step = synaptic ops x t_synop + active updates x t_active
                         + inactive updates x t_inactive + spikes out x t_spike
    step = max over cores (core work per step) + barrier(tiles in use)

Core assignment is the one of the resource estimate (`neurocxr.exporters.resources`): every layer
gets its own cores. Under Loihi 1's "fewest" rule a layer's work is split evenly over its cores;
under Loihi 2's compiler-like rule the fullest core of a layer carries its share of the layer's
neurons (conv slabs of whole columns, dense groups sized by synaptic memory), and that core sets
the layer's pace. Per-op times and the barrier come from the device profile, each with its
published source (`neurocxr.energy.profiles`); nothing here is fitted to any network's measured
result.

Several chips: every chip in use draws static power, and the step barrier must cross the chips;
each chip beyond the first adds the profile's ``interchip_barrier_s`` (or, where no figure is
public, one more whole-chip barrier: a lower bound).

Sample protocol (hardware_sims/emulator.py): layer k owns steps k+1..k+T of a sample's timeline of
T + L steps (L synaptic layers). Hence

    latency per inference      = (T + L) x step
    throughput (pipelined)     = 1 / (T x step)   (a new sample enters every T steps)

Where the profile's synaptic op time is a peak rate (a fast bound) and it names a slow bound
(``time_per_synop_slow_s``: Loihi 2, Loihi 1's 3.5 ns), every core's work is recomputed with the slow
bound too, and latency and frames/s are given at both: the point estimate (fast) and
``latency_s_slow_bound`` / ``throughput_fps_slow_bound``. Nothing in the bracket is fitted.

A board's "fps" (lava-dl's Loihi 2 benchmarks: 1 / (mean time per step x steps per sample), with a
new frame every ``reset_interval`` steps) is the pipelined throughput, not 1 / latency.
    static energy / inference  = static power per chip x chips in use x T x step (pipelined);
                                 x (T + L) x step for one isolated inference.

Why this structure (checked against how Loihi works, issue 17 item 3):
- Per-core parallel work: every core updates its own neurons and processes the spikes that arrive at
  its own synapses, asynchronously; cores only meet at the step barrier (Davies 2018: a mesh-wide
  barrier ends every time step). A layer cut over several cores therefore works in parallel, and
  the fullest core sets the layer's pace.
- A synaptic op is one (arriving spike, target neuron) accumulate in the receiving core, whether the
  weight is stored per synapse or shared by a conv kernel: weight sharing (Loihi 2 brief,
  "convolutional connectivity with shared weights") shrinks synaptic memory, not the accumulates, so
  the per-op time applies to every effective synaptic op of the counts. Loihi 2's per-op time is a
  peak rate (profiles: Intel's Hala Point figure); whether conv synapses reach it is not public.
- The whole frame: counts are per sample over the T steps each layer is busy with it, so a core's
  load per step is its share / T, and in steady state every layer is busy every step.
- Within one core, its synaptic, neuron and spike work add up (no overlap), as SANA-FE models Loihi
  cores (arch/loihi.yaml: "blocking"); a receiving core cannot finish before its senders emit, a
  delay not modelled (at most the sender's own update time).

Limits, stated in every result: the load is the mean per step (bursty steps take longer), spikes
spread evenly over a layer's cores (a hot spot takes longer), inter-tile hop latency and congestion
and host I/O are not modelled, and a multi-chip barrier is taken as the whole-chip figure. The
result is therefore closer to a lower bound on latency than the old serial sum, which was an upper
bound by about the number of cores in use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from neurocxr.energy.profiles import (
    LOIHI2_TIME_PER_SYNOP_S,
    LOIHI2_TIME_PER_SYNOP_SLOW_S,
    DeviceProfile,
)
from neurocxr.errors import NeurocxrError
from neurocxr.exporters.resources import (
    LOIHI1,
    LOIHI2,
    _neuron_cap,
    estimate_resources,
    layer_cores,
    partition_dense,
)
from neurocxr.hardware_sims.results import LayerCounts

# Loihi 1 tiles hold 4 cores (SANA-FE arch/loihi.yaml: 8 x 4 tiles of loihi_core[0..3] = 128 cores);
# Davies 2018 quotes the barrier for 1-32 tiles. Loihi 2's tile layout is not public: same assumption.
CORES_PER_TILE = 4
BARRIER_TILES_MAX = 32

TIMING_FOOTNOTE = (
    "Modelled latency: cores run in parallel and synchronise every time step; a step lasts as long as "
    "its busiest core (its synaptic ops, neuron updates and spikes x published per-op times) plus the "
    "barrier; latency covers T + L steps, throughput is pipelined (one sample every T steps). Mean "
    "load per step, a layer's work shared by its cores in proportion to their neurons, no hop latency "
    "or congestion, no host I/O."
)
FPS_BASIS = (
    "frames/s is pipelined throughput (a new frame every T steps, as a board's fps is measured in lava-dl's "
    "Loihi 2 benchmarks: 1 / (time per step x steps per sample)); one frame alone takes the latency (T + L steps)"
)
# Intel's Loihi 2 board (Oheo Gulch) on lava-dl's PilotNet LIF network, T = 16 (lava-dl
# tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb): quoted beside the bracket, never used to compute it.
PILOTNET_BOARD_FPS = 342.29
STATIC_FOOTNOTE = (
    "Static energy = static power per chip x chips in use x time per inference in pipelined operation "
    "(T steps); an isolated inference (T + L steps) is in timing['static_j_single_inference']."
)


@dataclass
class CoreLoad:
    """Work per time step on the fullest core of one layer (mean over samples and steps)."""

    layer: str
    cores: int
    synops_per_step: float
    active_updates_per_step: float
    inactive_updates_per_step: float
    spikes_per_step: float
    seconds_per_step: float


@dataclass
class TimingResult:
    """What `loihi_timing` returns; `as_dict` is what goes into EnergyEstimate.timing."""

    step_s: float
    busiest_core_s: float
    busiest_layer: str
    barrier_s: float
    steps_per_sample: int  # T
    pipeline_depth: int  # L synaptic layers
    latency_s: float  # (T + L) x step
    throughput_fps: float  # 1 / (T x step)
    cores: int
    tiles: int
    chips: int
    mapping: str  # where the core assignment came from
    static_power_w: float | None
    static_j: float | None  # pipelined, per inference
    static_j_single_inference: float | None
    per_layer: list[CoreLoad] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    single_frame_fps: float = 0.0  # 1 / latency: one frame at a time, no pipelining
    fps_basis: str = FPS_BASIS
    interchip_barrier_s: float = 0.0  # added to every step when several chips are in use
    limits_cited: dict[str, str] = field(
        default_factory=dict
    )  # chip parameter -> source / "not public"
    # the same step recomputed with the profile's slow-bound synaptic op time (None: no bracket)
    latency_s_slow_bound: float | None = None
    throughput_fps_slow_bound: float | None = None
    # static power x chips x T steps at the slow-bound step (None: no bracket or no static power)
    static_j_slow_bound: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # profiles without a bracket keep exactly the keys they always had
        for key in ("latency_s_slow_bound", "throughput_fps_slow_bound", "static_j_slow_bound"):
            if out[key] is None:
                del out[key]
        return out


def _limits_for(chip: str | None) -> Any:

    limits = LOIHI1 if chip == "loihi1" else LOIHI2
    # timing must not refuse a network that needs several chips: it reports the chips instead
    return replace(limits, max_chips=10**6)


def core_mapping(
    counts: Sequence[LayerCounts], profile: DeviceProfile, program: Any = None
) -> tuple[list[int], list[float], int, str, Any]:
    """Cores of every layer (aligned with ``counts``), the share of each layer's work on its fullest
    core, chips in use, where the mapping came from, and the chip limits used.

    With the LoihiProgram the mapping is `estimate_resources` itself. Without it, the same per-core
    limits are applied to the counts' neurons, fan-in and stored synapses, which can only under-count
    conv layers."""

    limits = _limits_for(profile.chip)
    if program is not None:
        res = estimate_resources(program, limits)
        if len(res.layers) != len(counts):
            raise NeurocxrError(
                f"program has {len(res.layers)} layers but the run has counts for {len(counts)}"
            )
        cores = [r.cores for r in res.layers]
        shares = [r.max_core_share for r in res.layers]
        # host-fed spike input has no neuromorphic cores (estimate_resources gives it 0)
        return (
            cores,
            shares,
            res.chips,
            f"estimate_resources(program, {limits.name}, {limits.partition} rule)",
            limits,
        )
    cores, shares = [], []
    for c in counts:
        if c.kind == "input" and int(np.max(np.asarray(c.neuron_updates), initial=0)) == 0:
            cores.append(0)
            shares.append(0.0)
            continue
        if limits.partition == "compiler":
            cap, cap_name = _neuron_cap(limits, c.kind not in ("dense_readout", "readout"))
            per_neuron_bits = (
                math.ceil(int(c.num_synapses) / max(int(c.num_neurons), 1)) * 8
            )  # 8-bit synapses
            if c.kind in ("conv", "input"):
                per_neuron_bits = 0  # shared kernels / no synapses: cores sized by neurons
            part = partition_dense(
                int(c.num_neurons), int(c.fan_in), per_neuron_bits, cap, limits, cap_name
            )
            cores.append(part.cores)
            shares.append(min(1.0, part.max_core_neurons / max(int(c.num_neurons), 1)))
        else:
            n = layer_cores(int(c.num_neurons), int(c.num_synapses), 0, limits)
            cores.append(n)
            shares.append(1.0 / n)
    total = sum(cores)
    chips = max(1, math.ceil(total / limits.cores_per_chip))
    mapping = f"counts only ({limits.name} limits, {limits.partition} rule; conv synapses as stored weights)"
    return cores, shares, chips, mapping, limits


def cores_per_layer(
    counts: Sequence[LayerCounts], profile: DeviceProfile, program: Any = None
) -> tuple[list[int], int, str]:
    """Cores of every layer (aligned with ``counts``), chips in use, and where the mapping came from
    (`core_mapping` without the work shares)."""
    cores, _, chips, mapping, _ = core_mapping(counts, profile, program)
    return cores, chips, mapping


def barrier_time(profile: DeviceProfile, tiles: int) -> float:
    """Barrier per step: the profile's 1-tile figure, rising linearly to its 32-tile figure
    (Davies 2018 gives only the two ends: 113-465 ns for 1-32 tiles)."""
    lo = profile.barrier_s or 0.0
    hi = profile.barrier_s_max if profile.barrier_s_max is not None else lo
    if tiles <= 1:
        return lo
    if tiles >= BARRIER_TILES_MAX:
        return hi
    return lo + (hi - lo) * (tiles - 1) / (BARRIER_TILES_MAX - 1)


def split_updates(c: LayerCounts) -> tuple[float, float, bool]:
    """(active, inactive) neuron updates per sample, and whether the split was known.

    Counts that carry ``active_neuron_updates`` give the split; otherwise every update is
    charged as active (an upper bound on energy and time)."""
    total = float(np.mean(np.asarray(c.neuron_updates, dtype=np.float64)))
    active = getattr(c, "active_neuron_updates", None)
    if active is None:
        return total, 0.0, False
    act = float(np.mean(np.asarray(active, dtype=np.float64)))
    act = min(max(act, 0.0), total)
    return act, total - act, True


def _core_loads(
    counts: Sequence[LayerCounts],
    cores: Sequence[int],
    shares: Sequence[float],
    steps: int,
    partition: str,
    profile: DeviceProfile,
) -> tuple[list[CoreLoad], bool]:
    """Each mapped layer's fullest core: its work and time per step; and whether every layer's
    active/inactive neuron-update split was counted (else all updates are charged as active)."""
    t_syn = float(profile.time_per_synop_s or 0.0)
    t_act = float(profile.time_per_neuron_update_s or 0.0)
    t_inact = (
        profile.time_per_neuron_update_inactive_s
        if profile.time_per_neuron_update_inactive_s is not None
        else t_act
    )
    t_spk = profile.time_per_spike_s or 0.0
    split_known = True
    loads: list[CoreLoad] = []
    for c, n_cores, share in zip(counts, cores, shares):
        if n_cores <= 0:
            continue
        act, inact, known = split_updates(c)
        split_known = split_known and known
        has_neurons = float(np.mean(np.asarray(c.neuron_updates, dtype=np.float64))) > 0
        spikes = (
            float(np.mean(np.asarray(c.output_spikes, dtype=np.float64)))
            if has_neurons and c.kind != "dense_readout"
            else 0.0
        )
        synops = float(np.mean(np.asarray(c.synaptic_ops, dtype=np.float64)))
        # the fullest core's share of the layer's work, per step (an even split under the "fewest" rule)
        per = float(steps * n_cores) if partition != "compiler" else float(steps) / share
        loads.append(
            CoreLoad(
                layer=c.name,
                cores=int(n_cores),
                synops_per_step=synops / per,
                active_updates_per_step=act / per,
                inactive_updates_per_step=inact / per,
                spikes_per_step=spikes / per,
                seconds_per_step=(synops * t_syn + act * t_act + inact * t_inact + spikes * t_spk)
                / per,
            )
        )
    return loads, split_known


def _interchip_barrier(profile: DeviceProfile, chips: int, partition: str) -> tuple[float, bool]:
    """(seconds added to every step by chips beyond the first, whether the profile models it).
    Loihi 2 and any profile that gives a figure model it; Loihi 1 profiles keep their earlier rule
    (whole-chip barrier, inter-chip links not modelled)."""
    models_interchip = profile.interchip_barrier_s is not None or partition == "compiler"
    if chips <= 1 or not models_interchip:
        return 0.0, models_interchip
    per_chip = profile.interchip_barrier_s
    if per_chip is None:
        per_chip = (
            profile.barrier_s_max
            if profile.barrier_s_max is not None
            else (profile.barrier_s or 0.0)
        )
    return (chips - 1) * per_chip, models_interchip


def _timing_assumptions(
    counts: Sequence[LayerCounts],
    profile: DeviceProfile,
    mapping: str,
    total_cores: int,
    tiles: int,
    chips: int,
    split_known: bool,
    models_interchip: bool,
    latency: float,
    period: float,
    latency_slow: float | None,
    fps_slow: float | None,
) -> list[str]:
    """What the timing model assumed for this run, in sentences a reader can check."""
    t_syn = profile.time_per_synop_s or 0.0
    t_syn_slow = profile.time_per_synop_slow_s
    assumptions = [
        TIMING_FOOTNOTE,
        f"Core mapping: {mapping}; {total_cores} cores, {tiles} tile(s) of {CORES_PER_TILE}, {chips} chip(s).",
        f"Frames/s: {FPS_BASIS}.",
    ]
    if not split_known:
        assumptions.append(
            "Active/inactive neuron updates not counted for this run: every update charged as active (upper bound)."
        )
    assumptions.extend(split_source_notes(counts))
    if profile.chip == "loihi2":
        assumptions.append(
            "Loihi 2 cores assigned by a compiler-like partition (conv layers in slabs of whole columns with shared "
            "kernels, dense layers in groups sized by synaptic memory; CUBA neurons, input and output axons limited "
            "per core); per-core limits Intel has not published are named, with the Loihi 1 figure or assumption "
            "used (timing['limits_cited'])."
        )
        assumptions.append(
            "Loihi 2 per-op times: the synaptic op time comes from a peak rate Intel published for Hala Point "
            "(a lower bound on the time per op; the rate of conv synapses is not public); neuron updates and "
            "spikes scale Loihi 1's by Intel's stated speed-ups; the barrier is Loihi 1's (not public)."
        )
    if latency_slow is not None and fps_slow is not None and t_syn_slow is not None:
        bracket = (
            f"Latency and frames/s are a bracket: the point estimate uses the profile's synaptic op time "
            f"({t_syn * 1e9:.2g} ns, a peak rate: the fast bound), the slow bound {t_syn_slow * 1e9:.2g} ns per "
            f"synaptic op (time_per_synop_slow_s), other per-op times unchanged: latency {latency * 1e3:.3g} to "
            f"{latency_slow * 1e3:.3g} ms, {fps_slow:,.0f} to {1.0 / period if period > 0 else float('inf'):,.0f} "
            "frames/s (timing['latency_s_slow_bound'], timing['throughput_fps_slow_bound'])."
        )
        if (
            profile.chip == "loihi2"
            and t_syn == LOIHI2_TIME_PER_SYNOP_S
            and t_syn_slow == LOIHI2_TIME_PER_SYNOP_SLOW_S
        ):
            bracket += (
                " Fast bound: Intel's Hala Point peak rate; slow bound: Loihi 1's 3.5 ns (Davies 2018; Intel states "
                f"no Loihi 2 slowdown). Intel's board runs lava-dl's PilotNet LIF network at {PILOTNET_BOARD_FPS:g} "
                "frames/s, inside the bracket this model gives for a network of PilotNet's shapes; neither bound is "
                "fitted to it."
            )
        assumptions.append(bracket)
    if chips > 1 and not models_interchip:
        assumptions.append(
            "Several chips: the barrier is taken as the whole-chip figure; inter-chip links are not modelled."
        )
    elif chips > 1:
        if profile.interchip_barrier_s is not None:
            assumptions.append(
                f"{chips} chips: each chip beyond the first adds {profile.interchip_barrier_s * 1e9:.0f} ns to the "
                "step barrier (profile's interchip_barrier_s); static power of every chip is charged."
            )
        else:
            assumptions.append(
                f"{chips} chips: no public chip-to-chip barrier figure, so each chip beyond the first adds one "
                "whole-chip barrier to every step (a lower bound); static power of every chip is charged."
            )
    return assumptions


def split_source_notes(counts: Sequence[Any]) -> list[str]:
    """Where the active/inactive neuron-update split came from, when the counts say (float-model
    activity sets ``active_neuron_updates_source`` on its counts, `neurocxr.energy.suite`)."""
    sources = {str(s) for c in counts if (s := getattr(c, "active_neuron_updates_source", None))}
    return [f"Active/inactive split: {', '.join(sorted(sources))}."] if sources else []


def loihi_timing(
    counts: Sequence[LayerCounts], profile: DeviceProfile, *, program: Any = None
) -> TimingResult:
    """Step time, latency, throughput and static energy of a run whose counts are ``counts``."""
    if profile.time_per_synop_s is None or profile.time_per_neuron_update_s is None:
        raise NeurocxrError(f"profile '{profile.name}' has no per-op times: no timing model for it")
    if not counts:
        raise NeurocxrError("no layer counts given: run the program (emulator or Lava) first")
    cores, shares, chips, mapping, limits = core_mapping(counts, profile, program)
    steps = max(int(max(c.time_steps for c in counts)), 1)
    depth = sum(1 for c in counts if c.kind != "input")
    loads, split_known = _core_loads(counts, cores, shares, steps, limits.partition, profile)
    if not loads:
        raise NeurocxrError("no layer of this run is mapped to neuromorphic cores")
    busiest = max(loads, key=lambda x: x.seconds_per_step)
    total_cores = sum(cores)
    tiles = max(1, math.ceil(total_cores / CORES_PER_TILE))
    barrier = barrier_time(profile, tiles if chips == 1 else BARRIER_TILES_MAX)
    interchip, models_interchip = _interchip_barrier(profile, chips, limits.partition)
    step = busiest.seconds_per_step + barrier + interchip
    latency = (steps + depth) * step
    period = steps * step
    latency_slow: float | None = None
    fps_slow: float | None = None
    static_slow: float | None = None
    static_w = profile.static_power_w
    t_syn_slow = profile.time_per_synop_slow_s
    if t_syn_slow is not None:
        # every core's step with its synaptic ops at the slow time (the busiest core may change)
        slow_core = max(
            x.seconds_per_step + x.synops_per_step * (t_syn_slow - profile.time_per_synop_s)
            for x in loads
        )
        step_slow = slow_core + barrier + interchip
        latency_slow = (steps + depth) * step_slow
        fps_slow = 1.0 / (steps * step_slow) if step_slow > 0 else float("inf")
        if static_w is not None:  # a longer step keeps every chip powered longer
            static_slow = static_w * chips * steps * step_slow
    assumptions = _timing_assumptions(
        counts,
        profile,
        mapping,
        total_cores,
        tiles,
        chips,
        split_known,
        models_interchip,
        latency,
        period,
        latency_slow,
        fps_slow,
    )
    return TimingResult(
        step_s=step,
        busiest_core_s=busiest.seconds_per_step,
        busiest_layer=busiest.layer,
        barrier_s=barrier,
        steps_per_sample=steps,
        pipeline_depth=depth,
        latency_s=latency,
        throughput_fps=1.0 / period if period > 0 else float("inf"),
        cores=int(total_cores),
        tiles=int(tiles),
        chips=int(chips),
        mapping=mapping,
        static_power_w=static_w,
        static_j=None if static_w is None else static_w * chips * period,
        static_j_single_inference=None if static_w is None else static_w * chips * latency,
        per_layer=loads,
        assumptions=assumptions,
        single_frame_fps=1.0 / latency if latency > 0 else float("inf"),
        interchip_barrier_s=interchip,
        limits_cited=limits.cited() if limits.partition == "compiler" else {},
        latency_s_slow_bound=latency_slow,
        throughput_fps_slow_bound=fps_slow,
        static_j_slow_bound=static_slow,
    )


@dataclass
class TooWideLayer:
    """A layer whose fan-in exceeds TrueNorth's 256 axons per core."""

    layer: str
    fan_in: int

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "fan_in": self.fan_in}


@dataclass
class TrueNorthMapping:
    """Whether a network maps directly onto TrueNorth cores, and the fewest cores it needs."""

    fits: bool
    too_wide_layers: list[TooWideLayer]
    min_cores: int
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "fits": self.fits,
            "too_wide_layers": [d.to_dict() for d in self.too_wide_layers],
            "min_cores": self.min_cores,
            "note": self.note,
        }


def truenorth_mapping(counts: Sequence[LayerCounts]) -> TrueNorthMapping:
    """Whether each layer fits TrueNorth cores (256 axons x 256 neurons, Merolla et al. 2014):
    a neuron reads at most 256 axons, so a layer whose fan-in exceeds 256 cannot map directly."""
    too_wide = [
        TooWideLayer(layer=c.name, fan_in=int(c.fan_in))
        for c in counts
        if c.kind != "input" and int(c.fan_in) > 256
    ]
    cores = sum(math.ceil(int(c.num_neurons) / 256) for c in counts if c.kind != "input")
    note = ""
    if too_wide:
        names = ", ".join(f"{d.layer} ({d.fan_in} inputs)" for d in too_wide)
        note = (
            f"Cannot map directly onto TrueNorth cores (at most 256 inputs per neuron): {names}. Splitting them "
            "over several cores with partial-sum neurons is not modelled, so this TrueNorth figure is optimistic."
        )
    return TrueNorthMapping(
        fits=not too_wide, too_wide_layers=too_wide, min_cores=int(cores), note=note
    )
