"""The report's data model: `Report` and its rows (`SummaryRow`, `SweepTable`), the summary rows built
from energy estimates and measurements, and which rows and sweep devices the first screen shows.

Fields the energy model may or may not provide (basis, scope, static energy, modelled throughput,
timing, footnotes) are read with ``getattr`` and shown when present.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from neurocxr.energy.types import EnergyEstimate, EnergyMeasurement, Kind
from neurocxr.report.formatting import _finite

__all__ = [
    "DEFAULT_ASSUMPTIONS",
    "BASIS_LABELS",
    "SCOPE_LABELS",
    "SummaryRow",
    "SweepTable",
    "Report",
    "summary_from",
    "is_headline",
    "sweep_devices",
]

# Default text of the assumptions paragraph (from the project's energy method notes, docs/energy.md).
DEFAULT_ASSUMPTIONS: list[str] = [
    "Estimated energy is operation counts times per-operation constants. Unless a row says "
    "memory-inclusive, it leaves out data movement outside what a profile's constants include, "
    "input/output to and from the chip, the host CPU that drives the accelerator, and static "
    "(leakage) power wherever a device profile has no static power; such rows give dynamic energy only.",
    "Loihi 2 has no public per-operation energy table. A Loihi 2 estimate applies Loihi 1 per-op "
    "constants (Davies et al., IEEE Micro 38(1), 2018, Table 2; pre-silicon simulation values) to "
    "Loihi 2 op counts, or constants the user supplied; treat it as an order of magnitude.",
    "KerasSpiking-style numbers (keras-spiking ModelEnergy, device constants from Degnan et al. "
    "2016, Davies et al. 2018, Hoppner et al. 2019) charge every neuron every time step and take "
    "the mean input magnitude as a firing rate; they are reproduced for comparison with published "
    "work, not because they are the most faithful model.",
    "Spike counts are not energy: an SNN may well lose to a quantised CNN on conventional hardware "
    "(Davies et al., Proc. IEEE 2021: plain feed-forward networks show modest if any benefit on Loihi).",
    "Measured GPU energy is the board energy counter over multi-second windows with an idle "
    "baseline subtracted (dynamic) or not (total); CPU energy is measured only where Intel RAPL is "
    "readable; elsewhere it is reported as not measurable, never guessed from TDP.",
]


# How each counting basis / scope is named in the table (EnergyEstimate.basis / .scope).
BASIS_LABELS = {
    "chip": "chip counts",
    "neurobench": "NeuroBench counts",
    "cnn": "CNN MACs",
    "keras-spiking": "KerasSpiking formula",
    "measured-latency": "TDP x measured time",
    "measured": "measured",
}


SCOPE_LABELS = {
    "device": "device per-op constants",
    "arithmetic": "arithmetic only",
    "memory-inclusive": "memory-inclusive",
    "tdp": "TDP",
}


@dataclass
class SummaryRow:
    """One line of the summary table: a model on a device, with where each number comes from."""

    model: str
    device: str
    accuracy: float | None  # fraction in [0, 1]
    latency_s: float | None  # time for one inference to come back (smallest batch measured)
    dynamic_j: float | None  # J per inference
    total_j: float | None  # J per inference, including static / idle power
    kind: Kind
    source: str
    notes: str = ""
    basis: str = ""  # counting basis label, e.g. "chip counts", "CNN MACs", "measured"
    scope: str = ""  # what is charged, e.g. "memory-inclusive", "arithmetic only"
    throughput_fps: float | None = None  # inferences per second (best batch measured, or modelled)
    static_j: float | None = None
    auc: float | None = None
    footnotes: list[str] = field(default_factory=list)  # sentences shown once under the table
    is_baseline: bool = False  # a CNN baseline (not the SNN under study)
    # modelled at the profile's slow-bound synaptic op time (Loihi 2: a bracket); None: no bracket
    latency_s_slow_bound: float | None = None
    throughput_fps_slow_bound: float | None = None
    total_j_slow_bound: float | None = None  # dynamic + static at the slow-bound step


@dataclass
class SweepTable:
    """Trials of an accuracy-vs-energy sweep (`neurocxr sweep` / benchmarks/pareto.py), normalised:
    each trial has model, num_steps, encoding, val_auc, test_auc, test_accuracy and
    energy {device: {"dynamic_j", "total_j"}}."""

    source: str
    trials: list[dict[str, Any]]
    pareto: list[dict[str, Any]] = field(default_factory=list)

    @property
    def devices(self) -> list[str]:
        seen: list[str] = []
        for t in self.trials:
            seen += [d for d in (t.get("energy") or {}) if d not in seen]
        return seen

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "trials": self.trials, "pareto": self.pareto}


@dataclass
class Report:
    """Everything a report shows; only ``title``, ``created`` and ``data_source`` are required."""

    title: str
    created: str  # ISO timestamp
    data_source: str  # e.g. "PneumoniaMNIST test split (624 images)" or "synthetic phantoms"
    summary: list[SummaryRow] = field(default_factory=list)
    estimates: list[EnergyEstimate] = field(default_factory=list)
    measurements: list[EnergyMeasurement] = field(default_factory=list)
    layer_counts: dict[str, list[dict[str, Any]]] = field(
        default_factory=dict
    )  # model -> LayerCounts.to_dict()
    accuracy: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> clinical metrics
    parity: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=lambda: list(DEFAULT_ASSUMPTIONS))
    environment: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    # The chip's operating point: threshold chosen on validation like the float model's.
    operating_point: dict[str, Any] = field(default_factory=dict)
    # Per layer: chip counts vs NeuroBench float-model counts, ratio and why (energy.bases.compare_bases
    # "layers"); its "total" and "explanations" in counting_bases_summary.
    counting_bases: list[dict[str, Any]] = field(default_factory=list)
    counting_bases_summary: dict[str, Any] = field(default_factory=dict)
    # What could not be measured on this machine, and why (said once in the report).
    not_measurable: dict[str, str] = field(default_factory=dict)
    auc: dict[str, float] = field(default_factory=dict)  # model -> test ROC-AUC
    sweep: SweepTable | None = None
    neuromorphic_devices: list[str] = field(default_factory=list)

    @property
    def is_synthetic(self) -> bool:
        return "synthetic" in self.data_source.lower()


# ----------------------------------------------------------------------------------------------
# Summary rows

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text or "") if s.strip()]


def _basis_of(e: EnergyEstimate) -> tuple[str, str]:
    """(basis label, scope label) of an estimate: its own fields when set, else inferred from how
    the estimate was made (the energy functions that predate those fields)."""
    basis, scope = getattr(e, "basis", "") or "", getattr(e, "scope", "") or ""
    if not basis:
        if "KerasSpiking" in e.device or "keras" in e.source.lower():
            basis = "keras-spiking"
        elif "MACs x E_MAC" in e.method:
            basis = "cnn"
        else:
            basis = "chip"
    if not scope:
        method = e.method.lower()
        scope = (
            "memory-inclusive"
            if "memory" in method and "arithmetic" not in method
            else (
                "arithmetic"
                if ("e_mac" in method or "e_ac" in method)
                else ("tdp" if "tdp" in method else "device")
            )
        )
    return BASIS_LABELS.get(basis, basis), SCOPE_LABELS.get(scope, scope)


def summary_from(
    estimates: Iterable[EnergyEstimate],
    measurements: Iterable[EnergyMeasurement],
    *,
    baselines: Iterable[str] = (),
    auc: dict[str, float] | None = None,
) -> list[SummaryRow]:
    """Summary rows, one per model x device. Measurements first (a measured number outranks an
    estimate); the batch sizes measured for one model on one device are merged into one row:
    latency and energy of the smallest batch, throughput of the best batch."""
    auc = auc or {}
    baseline_names = set(baselines)
    rows: list[SummaryRow] = []
    groups: dict[tuple[str, str], list[EnergyMeasurement]] = {}
    for m in measurements:
        groups.setdefault((m.model, m.device), []).append(m)
    for (model, device), ms in groups.items():
        ms = sorted(ms, key=lambda m: m.batch_size)
        first = ms[0]
        fps = [m.throughput_sps for m in ms if m.throughput_sps]
        best = max(ms, key=lambda m: m.throughput_sps or 0.0)
        batches = ", ".join(str(m.batch_size) for m in ms)
        foot = [first.method]
        if len(ms) > 1:
            foot.append(
                f"Measured at batch {batches}: latency and energy at batch {first.batch_size}, "
                f"frames/s at batch {best.batch_size}."
            )
        foot += _sentences(first.notes)
        base = model.split(" (")[0]
        rows.append(
            SummaryRow(
                model=model,
                device=device if first.runtime in device else f"{device} ({first.runtime})",
                accuracy=first.accuracy,
                latency_s=first.latency_s,
                dynamic_j=first.dynamic_j,
                total_j=first.total_j,
                kind=first.kind,
                source=first.method,
                notes=first.notes,
                basis="measured",
                scope="",
                throughput_fps=max(fps) if fps else None,
                auc=auc.get(base),
                footnotes=foot,
                is_baseline=base in baseline_names,
            )
        )
    for e in estimates:
        basis, scope = _basis_of(e)
        foot = [f"Source: {e.source}", f"Method: {e.method}"]
        foot += list(getattr(e, "footnotes", None) or _sentences(e.notes))
        rows.append(
            SummaryRow(
                model=e.model,
                device=e.device,
                accuracy=e.accuracy,
                latency_s=e.latency_s,
                dynamic_j=e.dynamic_j,
                total_j=e.total_j,
                kind=e.kind,
                source=e.source,
                notes="; ".join(x for x in (e.method, e.notes) if x),
                basis=basis,
                scope=scope,
                throughput_fps=getattr(e, "throughput_fps", None),
                static_j=getattr(e, "static_j", None),
                auc=auc.get(e.model),
                footnotes=foot,
                is_baseline=e.model in baseline_names,
                latency_s_slow_bound=(getattr(e, "timing", None) or {}).get("latency_s_slow_bound"),
                throughput_fps_slow_bound=(getattr(e, "timing", None) or {}).get(
                    "throughput_fps_slow_bound"
                ),
                total_j_slow_bound=getattr(e, "total_j_slow_bound", None),
            )
        )
    return rows


def is_headline(r: SummaryRow) -> bool:
    """Rows of the first-screen table: measurements, CNN baselines, and the SNN on neuromorphic
    devices from its chip counts. The SNN under other conventions (NeuroBench or KerasSpiking
    counts, conventional hardware) goes to the second table below."""
    if r.kind != "estimated" or r.is_baseline:
        return True
    return r.basis in (BASIS_LABELS["chip"], "") and r.scope in (SCOPE_LABELS["device"], "")


# ----------------------------------------------------------------------------------------------
# Sweep trials and loosely keyed records


def _trial_ok(t: dict[str, Any]) -> bool:
    """A finished trial with energy figures (failed ones stay in the table but are not plotted)."""
    status = str(t.get("status") or "ok").lower()
    return status in ("ok", "done", "finished", "completed", "terminated", "success") and bool(
        t.get("energy")
    )


# Devices shown for a sweep, in this order when present (neuromorphic first: the sweep's purpose).
_SWEEP_DEVICE_ORDER = (
    "loihi2",
    "loihi",
    "loihi-sanafe",
    "truenorth",
    "spinnaker2",
    "spinnaker",
    "horowitz45-int8",
    "horowitz45-fp32",
)


def sweep_devices(sweep: SweepTable, limit: int = 4) -> list[str]:
    """Up to ``limit`` devices with energy in finished trials, neuromorphic devices first."""
    trials = [t for t in sweep.trials if _trial_ok(t)]
    present = [
        d
        for d in sweep.devices
        if any(_finite((t["energy"].get(d) or {}).get("dynamic_j")) for t in trials)
    ]
    rank = {d: i for i, d in enumerate(_SWEEP_DEVICE_ORDER)}
    return sorted(present, key=lambda d: (rank.get(d, len(rank)), present.index(d)))[:limit]


def _pick(d: dict[str, Any], *keys: str) -> Any:
    """The first of ``keys`` set in ``d`` (records such as compare_bases rows, read by several names)."""
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None
