"""Device energy profiles: per-operation constants with their citation, as data.

A profile says what one synaptic operation and one neuron update cost on a device, whether the
device is event-driven (``spiking``: only arriving spikes cost synaptic energy) and whether a
static (leakage) power is known for it. Estimates multiply counts from real runs by these
constants (see `neurocxr.energy.estimate`); nothing here is measured.

Sources (see ../../shared/docs/energy.md):
- Davies et al., "Loihi: a neuromorphic manycore processor with on-chip learning", IEEE Micro
  38(1), 2018, Table 2 (pre-silicon values): synaptic spike op 23.6 pJ / 3.5 ns, neuron update
  81 pJ / 8.4 ns active and 52 pJ / 5.3 ns inactive, spike within a tile 1.7 pJ / 2.1 ns, mesh-wide
  barrier synchronisation 113-465 ns (1-32 tiles).
- SANA-FE (Boyle et al., "SANA-FE: Simulating Advanced Neuromorphic Architectures for Fast
  Exploration"; constants in ``arch/loihi.yaml`` of github.com/SLAM-Lab/SANA-FE, calibrated against
  Loihi measurements): synapse 35.5 pJ / 4.0 ns, neuron update 72.8 pJ / 9.7 ns active and
  51.2 pJ / 6.0 ns inactive, +69.3 pJ / 30.0 ns per spiking neuron, axon out 76.8 pJ / 7.6 ns per
  packet, global barrier 299 ns.
- Frady et al., "Neuromorphic nearest-neighbor search using Intel's Pohoiki Springs", NICE 2020:
  3.34 W static for 32 Loihi chips, i.e. about 104 mW static per chip.
- Merolla et al., "A million spiking-neuron integrated circuit...", Science 345(6197), 2014:
  TrueNorth 26 pJ per synaptic event; 65-70 mW chip; 46 GSOPS/W typical. Cores are 256 axons x
  256 neurons (binary crossbar): a neuron has at most 256 inputs.
- Hoppner et al., "Dynamic power management for neuromorphic many-core systems", IEEE TCAS-I
  66(8), 2019: SpiNNaker 13.3 nJ / 26 nJ, SpiNNaker 2 450 pJ / 2.19 nJ (synop / neuron update).
- Degnan, Marr, Hasler, "Assessing trends in performance per watt for signal processing
  applications", IEEE TVLSI 24(1), 2016: CPU 8.6 nJ, GPU 0.3 nJ, ARM 0.9 nJ per MAC.
- Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm:
  fp32 add 0.9 / mult 3.7 pJ; int8 add 0.03 / mult 0.2 pJ.
- keras-spiking 0.3.0 ``ModelEnergy.devices`` (model_energy.py) for the "keras-spiking:*" rows,
  copied as they are, including its Loihi synop of (23.6 + 3.5) pJ: Davies' Table 2 lists the
  synaptic op as 23.6 pJ and 3.5 ns, so the +3.5 is most likely the time figure added as energy.
- Loihi 2 static power: Intel's Loihi 2 board measurements published with lava-dl's netx tutorials
  (Oheo Gulch board, lava-dl ``tutorials/lava/lib/dl/netx/*/benchmark.ipynb``, power profiler
  ``Loihi2Power``) report about 0.23 W static per chip (see ../../shared/docs/energy.md). Hala Point
  (Intel, 2024: 1,152 Loihi 2 chips, 2,600 W maximum system power) is about 2.3 W per chip at full
  load with everything included; the per-chip board figure is the one charged here.
- Loihi 2 timing: no public per-operation table. What is public and used:
  synaptic ops: Intel's Hala Point announcement (press release, 17 April 2024: 1,152 Loihi 2 chips,
  140,544 neuromorphic cores, "can process over 380 trillion 8-bit synapses ... per second"), i.e.
  380e12 / 140,544 = 2.7e9 synaptic ops per second per core, 0.37 ns per synaptic op on one core
  (9.5x faster than Loihi 1's 3.5 ns, in line with the brief's "up to 10x"). It is a peak rate of
  the whole system ("over"; 8-bit synapses; the synaptic encoding it assumes is not stated), so a
  lower bound on the time per op; whether conv (shared-weight) synapses run at that rate is not
  public. Slow bound of the same time: Loihi 1's 3.5 ns (Davies 2018 Table 2), since Intel states
  speed-ups of Loihi 2 over Loihi 1 and no slowdown; the timing result gives latency and frames/s at
  both (``time_per_synop_slow_s``). Neuron updates and spikes: Intel's Loihi 2 announcement (technology brief, 2021, as
  reported by Ars Technica, "Understanding neuromorphic computing and why Intel's excited about
  it", Sept. 2021) states 2x faster neuron state updates and 10x faster spike generation than
  Loihi 1: Davies' Loihi 1 neuron-update times / 2 and spike time / 10. The same Hala Point release
  quotes "over 240 trillion neuron operations per second" (0.59 ns per core); a "neuron operation"
  is not defined there and 0.59 ns per whole update would be 14x Loihi 1, against Intel's own 2x,
  so it is not used as a neuron-update time. Barrier and chip-to-chip times: not public for Loihi 2.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from neurocxr.errors import ProfileError
from neurocxr.validation import missing_file_message

if sys.version_info >= (3, 11):  # pragma: no cover - the project runs on 3.10
    import tomllib
else:
    import tomli as tomllib

ProfileKind = Literal["neuromorphic", "conventional"]
PROFILE_KINDS = ("neuromorphic", "conventional")


@dataclass(frozen=True)
class DeviceProfile:
    """Per-operation energy (J) and timing (s) of one device, with its citation.

    ``spiking``: event-driven device; synaptic energy is charged per arriving spike (effective
    synaptic ops). A non-spiking device computes every synapse every step (dense ops).
    ``static_power_w``: leakage/idle power of one chip, or None when not known (then the estimate
    has no total, only dynamic energy). ``time_per_*``: time per operation on one core, used by the
    parallel timing model (`neurocxr.energy.timing`). ``energy_per_mac_j`` / ``energy_per_ac_j``:
    for ANN-style (accelerator) profiles, the cost of a multiply-accumulate and of an accumulate.
    ``energy_per_neuron_update_j`` is the *active* update; ``energy_per_neuron_update_inactive_j``
    the update of a neuron with no input and no state (None: charged as active).
    ``energy_per_spike_j`` / ``time_per_spike_s``: extra cost per emitted spike (soma firing and
    sending it out of the core). ``barrier_s`` / ``barrier_s_max``: time-step barrier
    synchronisation for the smallest / whole chip (interpolated by tiles in use). ``chip``:
    which chip's capacity the mapping uses ("loihi1", "loihi2", "truenorth"; None: no mapping).
    ``interchip_barrier_s``: what each chip beyond the first adds to the step barrier (None: no
    public figure; the timing model then adds one whole-chip barrier per extra chip, a lower bound).
    ``time_per_synop_slow_s``: a cited slow bound of ``time_per_synop_s`` where that one is a peak
    rate (a fast bound); the timing result then also gives latency and frames/s at the slow bound
    (None: no bracket).
    """

    name: str
    kind: ProfileKind
    energy_per_synop_j: float
    energy_per_neuron_update_j: float
    spiking: bool
    source: str
    static_power_w: float | None = None
    time_per_synop_s: float | None = None
    time_per_neuron_update_s: float | None = None
    energy_per_mac_j: float | None = None
    energy_per_ac_j: float | None = None
    notes: str = ""
    energy_per_neuron_update_inactive_j: float | None = None
    energy_per_spike_j: float | None = None
    time_per_neuron_update_inactive_s: float | None = None
    time_per_spike_s: float | None = None
    barrier_s: float | None = None
    barrier_s_max: float | None = None
    chip: str | None = None
    interchip_barrier_s: float | None = None
    time_per_synop_slow_s: float | None = None

    def __post_init__(self) -> None:
        _check_profile(self, where="profile")

    def constants(self) -> dict[str, float]:
        """The numeric constants of this profile (for EnergyEstimate.constants)."""
        out: dict[str, float] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_j", "_w", "_s")) and value is not None:
                out[f.name] = float(value)
        return out


_REQUIRED = (
    "name",
    "kind",
    "energy_per_synop_j",
    "energy_per_neuron_update_j",
    "spiking",
    "source",
)
_NUMERIC_REQUIRED = ("energy_per_synop_j", "energy_per_neuron_update_j")
_NUMERIC_OPTIONAL = (
    "static_power_w",
    "time_per_synop_s",
    "time_per_neuron_update_s",
    "energy_per_mac_j",
    "energy_per_ac_j",
    "energy_per_neuron_update_inactive_j",
    "energy_per_spike_j",
    "time_per_neuron_update_inactive_s",
    "time_per_spike_s",
    "barrier_s",
    "barrier_s_max",
    "interchip_barrier_s",
    "time_per_synop_slow_s",
)
CHIPS = ("loihi1", "loihi2", "truenorth")


def _check_number(value: Any, field_name: str, where: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProfileError(f"{where}: field '{field_name}' must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ProfileError(
            f"{where}: field '{field_name}' must be a finite number >= 0, got {value!r}"
        )


def _check_profile(profile: DeviceProfile, where: str) -> None:
    where = f"{where} '{profile.name}'"
    if not isinstance(profile.name, str) or not profile.name.strip():
        raise ProfileError(f"{where}: field 'name' must be a non-empty string")
    if profile.kind not in PROFILE_KINDS:
        raise ProfileError(
            f"{where}: field 'kind' must be one of {', '.join(PROFILE_KINDS)}, got {profile.kind!r}"
        )
    if not isinstance(profile.spiking, bool):
        raise ProfileError(
            f"{where}: field 'spiking' must be true or false, got {profile.spiking!r}"
        )
    for name in _NUMERIC_REQUIRED:
        _check_number(getattr(profile, name), name, where, optional=False)
    for name in _NUMERIC_OPTIONAL:
        _check_number(getattr(profile, name), name, where, optional=True)
    slow = profile.time_per_synop_slow_s
    if slow is not None and (profile.time_per_synop_s is None or slow < profile.time_per_synop_s):
        raise ProfileError(
            f"{where}: field 'time_per_synop_slow_s' is a slow bound of 'time_per_synop_s': give both, with "
            f"time_per_synop_slow_s >= time_per_synop_s (got {slow!r} and {profile.time_per_synop_s!r})"
        )
    if profile.chip is not None and profile.chip not in CHIPS:
        raise ProfileError(
            f"{where}: field 'chip' must be one of {', '.join(CHIPS)} or absent, got {profile.chip!r}"
        )


_DAVIES = "Davies et al., IEEE Micro 38(1), 2018, Table 2 (pre-silicon)"
_FRADY = "Frady et al., NICE 2020 (Pohoiki Springs: 3.34 W static / 32 chips)"
_LOIHI2_STATIC = (
    "Intel Loihi 2 board measurement (Oheo Gulch) published with lava-dl's netx tutorials "
    "(tutorials/lava/lib/dl/netx/*/benchmark.ipynb, Loihi2Power profiler): about 0.23 W static per chip"
)
_LOIHI2_SPEED = (
    "Intel Loihi 2 technology brief (2021), as reported by Ars Technica (Sept. 2021): 2x faster neuron "
    "state updates and 10x faster spike generation than Loihi 1"
)
# Intel's Hala Point announcement (17 April 2024): 1,152 Loihi 2 chips with 140,544 neuromorphic cores
# "can process over 380 trillion 8-bit synapses ... per second". Cores run in parallel, so one core's
# time per synaptic op is cores / rate (a peak: "over"; a lower bound on the time per op).
HALA_POINT_CORES = 140_544
HALA_POINT_SYNAPSES_PER_S = 380e12
LOIHI2_TIME_PER_SYNOP_S = HALA_POINT_CORES / HALA_POINT_SYNAPSES_PER_S  # 0.37 ns
# Slow bound of the same time: Loihi 1's 3.5 ns (Davies 2018 Table 2); Intel states Loihi 2 speed-ups over
# Loihi 1 (the brief's "up to 10x"), none a slowdown, so a Loihi 2 synaptic op takes at most that long.
LOIHI2_TIME_PER_SYNOP_SLOW_S = 3.5e-9
_LOIHI2_SYNOP = (
    "Intel Hala Point announcement (17 April 2024): 140,544 Loihi 2 cores process over 380 trillion 8-bit "
    "synapses per second, i.e. 0.37 ns per synaptic op per core (a peak rate)"
)
_SANAFE = "SANA-FE (Boyle et al.), arch/loihi.yaml, constants calibrated against Loihi measurements"
_HOPPNER = "Hoppner et al., IEEE TCAS-I 66(8), 2019"
_DEGNAN = "Degnan, Marr, Hasler, IEEE TVLSI 24(1), 2016"
_HOROWITZ = "Horowitz, ISSCC 2014, 45 nm process"
_KS = "keras-spiking 0.3.0 ModelEnergy.devices (model_energy.py), citing "
_KS_NOTE = (
    "KerasSpiking's constants. estimate_energy multiplies them with neurocxr's measured counts (all T "
    "steps); keras_spiking_energy applies KerasSpiking's own formula (one ANN pass on cpu/gpu/arm)."
)
KERAS_SPIKING_LOIHI_QUIRK = (
    "KerasSpiking charges a Loihi synop (23.6 + 3.5) pJ: Davies 2018 Table 2 lists the synaptic op as "
    "23.6 pJ and 3.5 ns, so the +3.5 is most likely the time figure added as energy. Kept here only to "
    "reproduce KerasSpiking's numbers; neurocxr's own 'loihi' profile uses 23.6 pJ."
)

BUILTIN_PROFILES: dict[str, DeviceProfile] = {
    p.name: p
    for p in [
        DeviceProfile(
            name="loihi",
            kind="neuromorphic",
            energy_per_synop_j=23.6e-12,  # Davies 2018 Table 2: synaptic spike op, min
            energy_per_neuron_update_j=81e-12,  # Davies 2018 Table 2: neuron update, active
            energy_per_neuron_update_inactive_j=52e-12,  # Davies 2018 Table 2: neuron update, inactive
            energy_per_spike_j=1.7e-12,  # Davies 2018 Table 2: spike within a tile (mesh hops not charged)
            spiking=True,
            static_power_w=0.104,  # Frady 2020: 3.34 W / 32 chips
            time_per_synop_s=3.5e-9,  # Davies 2018 Table 2: time per synaptic spike op (max)
            time_per_neuron_update_s=8.4e-9,  # Davies 2018 Table 2: neuron update, active
            time_per_neuron_update_inactive_s=5.3e-9,  # Davies 2018 Table 2: neuron update, inactive
            time_per_spike_s=2.1e-9,  # Davies 2018 Table 2: within-tile spike latency
            barrier_s=113e-9,  # Davies 2018 Table 2: mesh-wide barrier sync, 1 tile
            barrier_s_max=465e-9,  # Davies 2018 Table 2: mesh-wide barrier sync, 32 tiles
            chip="loihi1",
            source=f"{_DAVIES}; static power {_FRADY}",
            notes="Per-op values are pre-silicon simulation numbers; mesh hops between tiles (3.0-4.0 pJ) not charged.",
        ),
        DeviceProfile(
            name="loihi-sanafe",
            kind="neuromorphic",
            energy_per_synop_j=35.5e-12,  # SANA-FE loihi.yaml: synapse energy_spike
            energy_per_neuron_update_j=72.8e-12,  # SANA-FE: soma energy_active
            energy_per_neuron_update_inactive_j=51.2e-12,  # SANA-FE: soma energy_inactive
            energy_per_spike_j=(69.3 + 76.8)
            * 1e-12,  # SANA-FE: soma energy_spiking + axon_out energy (one packet)
            spiking=True,
            static_power_w=0.104,  # Frady 2020 (SANA-FE models no static power; Loihi 1 board figure)
            time_per_synop_s=4.0e-9,  # SANA-FE: synapse latency_spike
            time_per_neuron_update_s=9.7e-9,  # SANA-FE: soma latency_active
            time_per_neuron_update_inactive_s=6.0e-9,  # SANA-FE: soma latency_inactive
            time_per_spike_s=(30.0 + 7.6)
            * 1e-9,  # SANA-FE: soma latency_spiking + axon_out latency
            barrier_s=299e-9,  # SANA-FE: latency_global_barrier
            barrier_s_max=299e-9,
            chip="loihi1",
            source=f"{_SANAFE}; static power {_FRADY}",
            notes=(
                "Measurement-calibrated Loihi 1 constants (SANA-FE) beside Davies' pre-silicon ones. One axon-out "
                "packet charged per spike (a spike to several cores sends more: lower bound); "
                "N-S hop 4.2 pJ not charged."
            ),
        ),
        DeviceProfile(
            name="loihi2",
            kind="neuromorphic",
            energy_per_synop_j=23.6e-12,  # Davies 2018 (Loihi 1): no public Loihi 2 per-op table
            energy_per_neuron_update_j=81e-12,
            energy_per_neuron_update_inactive_j=52e-12,
            energy_per_spike_j=1.7e-12,
            spiking=True,
            static_power_w=0.23,  # Intel's Loihi 2 board measurement (lava-dl netx benchmarks): 0.23 W per chip
            # Hala Point (Intel 2024): 380e12 synaptic ops/s over 140,544 cores, 0.37 ns per op per core
            time_per_synop_s=LOIHI2_TIME_PER_SYNOP_S,
            # slow bound: Loihi 1's time per synaptic op (Davies 2018); Intel states no Loihi 2 slowdown
            time_per_synop_slow_s=LOIHI2_TIME_PER_SYNOP_SLOW_S,
            time_per_neuron_update_s=8.4e-9
            / 2,  # Davies 2018 active update / 2 (Loihi 2: 2x faster, Intel 2021)
            time_per_neuron_update_inactive_s=5.3e-9 / 2,  # Davies 2018 inactive update / 2
            time_per_spike_s=2.1e-9
            / 10,  # Davies 2018 spike / 10 (Loihi 2: up to 10x faster spike generation)
            barrier_s=113e-9,  # Davies 2018 (Loihi 1) barrier, 1 tile: no Loihi 2 figure
            barrier_s_max=465e-9,  # Davies 2018 (Loihi 1) barrier, 32 tiles
            interchip_barrier_s=None,  # not public: one whole-chip barrier per extra chip (lower bound)
            chip="loihi2",
            source=(
                f"{_DAVIES} (Loihi 1 per-op energies, barrier); synaptic op time: {_LOIHI2_SYNOP}, with Loihi 1's "
                f"3.5 ns ({_DAVIES}) as its slow bound; neuron update "
                f"and spike times: Davies' scaled by {_LOIHI2_SPEED}; static power: {_LOIHI2_STATIC}; cores "
                "mapped by a compiler-like Loihi 2 partition"
            ),
            notes=(
                "No public per-op table for Loihi 2: Loihi 1 per-op constants applied to Loihi 2 op counts "
                "(energies). Times: synaptic op 0.37 ns per core from Intel's Hala Point figure (380 trillion 8-bit "
                "synapses per second on 140,544 cores: a peak rate, so a lower bound; the rate of conv synapses "
                "is not public), with Loihi 1's 3.5 ns as the slow bound (latency and frames/s given at both); "
                "neuron updates Loihi 1's / 2 and spikes / 10 as Intel states for Loihi 2; "
                "barrier Loihi 1's (not public for Loihi 2). Static power 0.23 W per chip in use from Intel's "
                "Loihi 2 board measurement. Cores mapped by a compiler-like partition with named per-core limits "
                "(exporters.resources.LOIHI2); supply measured constants with a profile file (load_profiles)."
            ),
        ),
        DeviceProfile(
            name="spinnaker",
            kind="neuromorphic",
            energy_per_synop_j=13.3e-9,
            energy_per_neuron_update_j=26e-9,
            spiking=True,
            source=_HOPPNER,
            notes="Static power not included.",
        ),
        DeviceProfile(
            name="spinnaker2",
            kind="neuromorphic",
            energy_per_synop_j=450e-12,
            energy_per_neuron_update_j=2.19e-9,
            spiking=True,
            source=_HOPPNER,
            notes="Static power not included.",
        ),
        DeviceProfile(
            name="truenorth",
            kind="neuromorphic",
            energy_per_synop_j=26e-12,  # Merolla 2014: 26 pJ per synaptic event
            energy_per_neuron_update_j=0.0,
            spiking=True,
            chip="truenorth",
            source="Merolla et al., Science 345(6197), 2014 (26 pJ per synaptic event; 65-70 mW chip)",
            notes=(
                "Energy per synaptic event only: neuron updates and static power (65-70 mW per chip) are not "
                "added. TrueNorth cores are 256 axons x 256 neurons with binary synapses and 4 weight values "
                "per neuron: layers with more than 256 inputs per neuron, or arbitrary integer weights, do not "
                "map directly (see truenorth_mapping)."
            ),
        ),
        DeviceProfile(
            name="horowitz45-fp32",
            kind="conventional",
            energy_per_synop_j=0.9e-12,  # an SNN synop on an accelerator is one fp32 add (AC)
            energy_per_neuron_update_j=0.0,
            spiking=False,
            energy_per_mac_j=4.6e-12,  # fp32 mult 3.7 + add 0.9
            energy_per_ac_j=0.9e-12,
            source=f"{_HOROWITZ}: fp32 add 0.9 pJ, mult 3.7 pJ",
            notes=(
                "Arithmetic only (MAC 4.6 pJ, AC 0.9 pJ), as Spikformer/SpikingJelly use it: memory "
                "traffic, control and static power are ignored (Davidson & Furber 2021; "
                "Dampfhoffer et al. 2023). Neuron updates are not charged. estimate_energy charges an SNN's dense "
                "ops at E_AC here (binary spikes make each op an add); estimate_snn_ac_energy applies NeuroBench's "
                "rule (spike-fed layers AC, analog-fed MAC); neurocxr.energy.memory adds memory traffic."
            ),
        ),
        DeviceProfile(
            name="horowitz45-int8",
            kind="conventional",
            energy_per_synop_j=0.03e-12,
            energy_per_neuron_update_j=0.0,
            spiking=False,
            energy_per_mac_j=0.23e-12,  # int8 mult 0.2 + add 0.03
            energy_per_ac_j=0.03e-12,
            source=f"{_HOROWITZ}: int8 add 0.03 pJ, mult 0.2 pJ",
            notes="Arithmetic only (MAC 0.23 pJ, AC 0.03 pJ): memory traffic ignored. Neuron updates not charged.",
        ),
        # keras-spiking 0.3.0's own table, kept verbatim so its numbers can be reproduced.
        DeviceProfile(
            name="keras-spiking:cpu",
            kind="conventional",
            energy_per_synop_j=8.6e-9,
            energy_per_neuron_update_j=8.6e-9,
            spiking=False,
            notes=_KS_NOTE,
            source=_KS + _DEGNAN + " (Intel i7-4960X)",
        ),
        DeviceProfile(
            name="keras-spiking:gpu",
            kind="conventional",
            energy_per_synop_j=0.3e-9,
            energy_per_neuron_update_j=0.3e-9,
            spiking=False,
            notes=_KS_NOTE,
            source=_KS + _DEGNAN + " (GTX Titan Black, large batches)",
        ),
        DeviceProfile(
            name="keras-spiking:arm",
            kind="conventional",
            energy_per_synop_j=0.9e-9,
            energy_per_neuron_update_j=0.9e-9,
            spiking=False,
            notes=_KS_NOTE,
            source=_KS + _DEGNAN + " (ARM Cortex-A)",
        ),
        DeviceProfile(
            name="keras-spiking:loihi",
            kind="neuromorphic",
            energy_per_synop_j=(23.6 + 3.5) * 1e-12,
            energy_per_neuron_update_j=81e-12,
            spiking=True,
            source=_KS + _DAVIES,
            notes=_KS_NOTE + " " + KERAS_SPIKING_LOIHI_QUIRK,
        ),
        DeviceProfile(
            name="keras-spiking:spinnaker",
            kind="neuromorphic",
            energy_per_synop_j=13.3e-9,
            energy_per_neuron_update_j=26e-9,
            spiking=True,
            notes=_KS_NOTE,
            source=_KS + _HOPPNER,
        ),
        DeviceProfile(
            name="keras-spiking:spinnaker2",
            kind="neuromorphic",
            energy_per_synop_j=450e-12,
            energy_per_neuron_update_j=2.19e-9,
            spiking=True,
            notes=_KS_NOTE,
            source=_KS + _HOPPNER,
        ),
    ]
}

_registered: dict[str, DeviceProfile] = {}


def available_profiles() -> list[str]:
    """Names of all built-in and registered profiles."""
    return sorted(set(BUILTIN_PROFILES) | set(_registered))


def get_profile(name: str) -> DeviceProfile:
    """The profile called ``name`` (registered profiles shadow built-in ones)."""
    if name in _registered:
        return _registered[name]
    if name in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[name]
    raise ProfileError(
        f"unknown device profile {name!r}; available: {', '.join(available_profiles())}. "
        "Add your own with register_profile() or a TOML/JSON file (load_profiles)."
    )


def register_profile(profile: DeviceProfile) -> None:
    """Make ``profile`` available to get_profile (replaces a previous one of the same name)."""
    if not isinstance(profile, DeviceProfile):
        raise ProfileError(
            f"register_profile expects a DeviceProfile, got {type(profile).__name__}"
        )
    _check_profile(profile, where="profile")
    _registered[profile.name] = profile


def unregister_profile(name: str) -> None:
    """Forget a registered profile (built-in ones cannot be removed)."""
    _registered.pop(name, None)


@contextlib.contextmanager
def registered_profiles(profiles: Iterable[DeviceProfile]) -> Iterator[list[DeviceProfile]]:
    """Register ``profiles`` for the ``with`` block only; afterwards the registry is exactly as
    before (a profile shadowed by one of the same name comes back), even on error or Ctrl-C."""
    chosen = list(profiles)
    for p in chosen:
        if not isinstance(p, DeviceProfile):
            raise ProfileError(
                f"registered_profiles expects DeviceProfiles, got {type(p).__name__}"
            )
        _check_profile(p, where="profile")
    saved = dict(_registered)
    try:
        for p in chosen:
            _registered[p.name] = p
        yield chosen
    finally:
        _registered.clear()
        _registered.update(saved)


_ALL_FIELDS = tuple(f.name for f in fields(DeviceProfile))


def profile_from_dict(data: Any, where: str) -> DeviceProfile:
    """Build a profile from a mapping, with ProfileError naming ``where``, the profile and the field."""
    if not isinstance(data, dict):
        raise ProfileError(
            f"{where}: each profile must be a table/object, got {type(data).__name__}"
        )
    label = f"{where}: profile '{data.get('name', '?')}'"
    unknown = sorted(set(data) - set(_ALL_FIELDS))
    if unknown:
        raise ProfileError(
            f"{label}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_ALL_FIELDS)}"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ProfileError(f"{label}: missing required field(s) {', '.join(missing)}")
    for key in ("name", "source", "notes", "chip"):
        if key in data and not isinstance(data[key], str):
            raise ProfileError(f"{label}: field '{key}' must be a string, got {data[key]!r}")
    for key in _NUMERIC_REQUIRED:
        _check_number(data[key], key, label, optional=False)
    for key in _NUMERIC_OPTIONAL:
        _check_number(data.get(key), key, label, optional=True)
    values = {
        k: (float(v) if k in _NUMERIC_REQUIRED + _NUMERIC_OPTIONAL and v is not None else v)
        for k, v in data.items()
    }
    try:
        return DeviceProfile(**values)
    except ProfileError as exc:
        raise ProfileError(f"{where}: {exc}") from None


def load_profiles(path: str | Path, *, register: bool = False) -> list[DeviceProfile]:
    """Read profiles from a TOML file (``[[profile]]`` tables) or JSON file (a list, or
    ``{"profile": [...]}``); optionally register them. Errors name the file, profile and field."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(missing_file_message(path, "profile file"))
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            with path.open("rb") as fh:
                data: Any = tomllib.load(fh)
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            raise ProfileError(
                f"profile file {path}: use a .toml or .json file, not {suffix or 'no suffix'}"
            )
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(
            f"profile file {path} is not valid {suffix[1:].upper()}: {exc}"
        ) from None
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"profile"})
        if unknown:
            raise ProfileError(
                f"profile file {path}: unknown top-level key(s) {', '.join(unknown)}; use 'profile'"
            )
        data = data.get("profile", [])
    if not isinstance(data, list) or not data:
        raise ProfileError(
            f"profile file {path}: no profiles found (expected [[profile]] tables or a JSON list)"
        )
    profiles = [profile_from_dict(item, str(path)) for item in data]
    names = [p.name for p in profiles]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ProfileError(
            f"profile file {path}: duplicate profile name(s) {', '.join(duplicates)}"
        )
    if register:
        for p in profiles:
            register_profile(p)
    return profiles


def resolve_profile(profile: DeviceProfile | str) -> DeviceProfile:
    """Accept a profile or its name."""
    return profile if isinstance(profile, DeviceProfile) else get_profile(profile)
