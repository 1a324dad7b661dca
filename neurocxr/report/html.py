"""The report people read: one self-contained HTML page and a JSON file with every number.

Input is a `Report` (plain dataclass) assembled by the energy-report stage (`neurocxr.stages`):
energy estimates and measurements, per-layer counts on both counting bases, clinical metrics at
validation-chosen operating points, export and parity results, provenance, and optionally a
sweep table. Output:

- ``report.html`` rendered from jinja2 templates (``neurocxr/templates``): inline CSS, plots as
  base64 PNG data URIs (no external files), every piece of text escaped. The first screen is a
  one-sentence verdict with numbers, the accuracy-vs-energy plot and one compact table (one row
  per model x device, a measured / estimated / not-measurable badge, footnotes instead of
  repeated notes); sources, per-layer detail and the rest follow below.
- ``report.json``: the same content, every energy number as ``{"value", "unit", "kind", "source"}``
  and every other physical number with its unit, numpy types converted.

Fields the energy model may or may not provide (basis, scope, static energy, modelled
throughput, timing, footnotes) are read with ``getattr`` and shown when present.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from neurocxr.energy.types import EnergyEstimate, EnergyMeasurement, Kind
from neurocxr.errors import NeurocxrError
from neurocxr.fileio import dumps_json, to_jsonable, write_text

__all__ = [
    "DEFAULT_ASSUMPTIONS",
    "SummaryRow",
    "Report",
    "SweepTable",
    "summary_from",
    "verdict",
    "verdict_caveats",
    "read_sweep",
    "write_report",
    "report_to_json",
    "render_html",
    "format_energy",
    "format_seconds",
    "format_accuracy",
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

_KINDS = ("measured", "estimated", "not measurable")

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
    layer_counts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # model -> LayerCounts.to_dict()
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
        scope = "memory-inclusive" if "memory" in method and "arithmetic" not in method else (
            "arithmetic" if ("e_mac" in method or "e_ac" in method) else ("tdp" if "tdp" in method else "device"))
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
            foot.append(f"Measured at batch {batches}: latency and energy at batch {first.batch_size}, "
                        f"frames/s at batch {best.batch_size}.")
        foot += _sentences(first.notes)
        base = model.split(" (")[0]
        rows.append(SummaryRow(
            model=model, device=device if first.runtime in device else f"{device} ({first.runtime})",
            accuracy=first.accuracy, latency_s=first.latency_s, dynamic_j=first.dynamic_j, total_j=first.total_j,
            kind=first.kind, source=first.method, notes=first.notes, basis="measured", scope="",
            throughput_fps=max(fps) if fps else None, auc=auc.get(base), footnotes=foot,
            is_baseline=base in baseline_names,
        ))
    for e in estimates:
        basis, scope = _basis_of(e)
        foot = [f"Source: {e.source}", f"Method: {e.method}"]
        foot += list(getattr(e, "footnotes", None) or _sentences(e.notes))
        rows.append(SummaryRow(
            model=e.model, device=e.device, accuracy=e.accuracy, latency_s=e.latency_s,
            dynamic_j=e.dynamic_j, total_j=e.total_j, kind=e.kind, source=e.source,
            notes="; ".join(x for x in (e.method, e.notes) if x), basis=basis, scope=scope,
            throughput_fps=getattr(e, "throughput_fps", None), static_j=getattr(e, "static_j", None),
            auc=auc.get(e.model), footnotes=foot, is_baseline=e.model in baseline_names,
        ))
    return rows


# ----------------------------------------------------------------------------------------------
# Formatting

_PREFIXES = [(1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"), (1e-15, "f")]


def _si(value: float, unit: str) -> str:
    value = float(f"{value:.3g}")  # round first so 999.96e-6 becomes 1 mJ, not "1e+03 µJ"
    if value == 0:
        return f"0 {unit}"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:.4g} {unit}"
    for scale, prefix in _PREFIXES:
        if magnitude >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return value is not None and _is_number(value) and math.isfinite(float(value))


def format_energy(joules: float | None) -> str:
    """Energy with an SI prefix, 3 significant digits (``2.7e-5`` -> ``27 µJ``); ``—`` when None."""
    if not _finite(joules):
        return "—"
    return _si(float(joules), "J")  # type: ignore[arg-type]


def format_seconds(seconds: float | None) -> str:
    """Duration with an SI prefix, 3 significant digits (``0.00123`` -> ``1.23 ms``)."""
    if not _finite(seconds):
        return "—"
    return _si(float(seconds), "s")  # type: ignore[arg-type]


def format_accuracy(fraction: float | None) -> str:
    """Accuracy fraction as a percentage with one decimal (``0.854`` -> ``85.4%``)."""
    if not _finite(fraction):
        return "—"
    return f"{100.0 * float(fraction):.1f}%"  # type: ignore[arg-type]


def format_rate(per_second: float | None) -> str:
    """Frames per second, 3 significant digits with thousands separators."""
    if not _finite(per_second):
        return "—"
    v = float(per_second)  # type: ignore[arg-type]
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def format_auc(value: float | None) -> str:
    return "—" if not _finite(value) else f"{float(value):.3f}"  # type: ignore[arg-type]


def _fmt_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if _is_number(value):
        v = float(value)
        if not math.isfinite(v):
            return "—"
        if float(v).is_integer() and abs(v) < 1e15:
            return f"{int(v):,}"
        return f"{v:.4g}"
    if isinstance(value, (dict, list, tuple, np.ndarray)):
        return json.dumps(to_jsonable(value), separators=(", ", ": "))
    return str(value)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


# ----------------------------------------------------------------------------------------------
# Verdict


def _ratio_text(ratio: float) -> str:
    return f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.1f}×"


def _pick_snn_row(report: Report) -> SummaryRow | None:
    snn = [r for r in report.summary if not r.is_baseline and r.kind == "estimated" and r.dynamic_j
           and (r.device in report.neuromorphic_devices or r.device in ("loihi", "loihi2"))]
    for preferred in ("loihi", "loihi2"):
        for r in sorted(snn, key=lambda r: r.basis != BASIS_LABELS["chip"]):  # chip counts first
            if r.device == preferred:
                return r
    return snn[0] if snn else None


def _cheapest_like_for_like(rows: Sequence[SummaryRow]) -> SummaryRow | None:
    """The cheapest row, preferring measured rows, then memory-inclusive estimates, then any."""
    measured = [r for r in rows if r.kind == "measured"]
    if measured:
        return min(measured, key=lambda r: r.dynamic_j or math.inf)
    memory = [r for r in rows if r.scope == SCOPE_LABELS["memory-inclusive"]]
    pool = memory or list(rows)
    return min(pool, key=lambda r: r.dynamic_j or math.inf) if pool else None


@dataclass
class BaselineChoice:
    """Which CNN baseline the verdict compares with, and why (``match``):
    "matched": the cheapest baseline whose test ROC-AUC is at least the SNN's;
    "none reaches": no baseline reaches the SNN's AUC (the most accurate one is shown);
    "auc unknown": the SNN's or every baseline's AUC is missing (the cheapest baseline is shown)."""

    row: SummaryRow | None
    match: str
    snn_auc: float | None = None
    baseline_auc: float | None = None
    snn_model: str = "the SNN"


def _pick_cnn_choice(report: Report, snn: SummaryRow | None = None) -> BaselineChoice:
    """The accuracy-matched CNN baseline for the verdict (issue 18 item 7): among baselines whose test
    ROC-AUC is at least the SNN's, the cheapest like-for-like row (measured, else memory-inclusive,
    else any); the table keeps every baseline (cnn_small included)."""
    rows = [r for r in report.summary if r.is_baseline and r.dynamic_j]
    snn = snn if snn is not None else _pick_snn_row(report)
    snn_auc = snn.auc if snn is not None and _finite(snn.auc) else None
    name = snn.model if snn is not None else "the SNN"
    with_auc = [r for r in rows if _finite(r.auc)]
    if snn_auc is None or not with_auc:
        return BaselineChoice(_cheapest_like_for_like(rows), "auc unknown", snn_auc, None, name)
    reaching = [r for r in with_auc if float(r.auc) >= float(snn_auc)]  # type: ignore[arg-type]
    if reaching:
        row = _cheapest_like_for_like(reaching)
        return BaselineChoice(row, "matched", snn_auc, row.auc if row is not None else None, name)
    best_auc = max(float(r.auc) for r in with_auc)  # type: ignore[arg-type]
    row = _cheapest_like_for_like([r for r in with_auc if float(r.auc) == best_auc])  # type: ignore[arg-type]
    return BaselineChoice(row, "none reaches", snn_auc, best_auc, name)


def _pick_cnn_row(report: Report) -> SummaryRow | None:
    return _pick_cnn_choice(report).row


def _describe(r: SummaryRow) -> str:
    what = ", ".join(x for x in (r.basis, r.scope) if x and x != "measured" and x not in r.device)
    kind = "measured" if r.kind == "measured" else "estimated"
    return f"{r.model} on {r.device} ({kind}{'; ' + what if what else ''})"


def _match_clause(choice: BaselineChoice) -> str:
    if choice.row is None:
        return ""
    if choice.match == "matched":
        return (f" {choice.row.model} is the cheapest CNN baseline whose test ROC-AUC "
                f"({format_auc(choice.baseline_auc)}) is at least that of {choice.snn_model} "
                f"({format_auc(choice.snn_auc)}).")
    if choice.match == "none reaches":
        return (f" No CNN baseline reaches the test ROC-AUC of {choice.snn_model} ({format_auc(choice.snn_auc)}); the "
                f"comparison is with the most accurate one, {choice.row.model} ({format_auc(choice.baseline_auc)}).")
    return " Test ROC-AUC is not known for both sides, so this comparison is not accuracy-matched."


def verdict(report: Report) -> str:
    """One sentence with numbers: which is cheaper per inference, by how much, on which basis,
    measured or estimated. Compares the SNN on Loihi (chip counts) with the accuracy-matched CNN
    baseline (`_pick_cnn_choice`: the cheapest whose test ROC-AUC is at least the SNN's; like for
    like: measured, else memory-inclusive, else arithmetic-only, said so), and says so when no
    baseline reaches the SNN's AUC."""
    snn = _pick_snn_row(report)
    choice = _pick_cnn_choice(report, snn)
    cnn = choice.row
    if snn is None and cnn is None:
        return "No energy figures in this report: nothing to compare."
    if snn is None or cnn is None:
        r = snn or cnn
        assert r is not None
        return (f"Only one side to compare: {_describe(r)} uses {format_energy(r.dynamic_j)} of dynamic energy "
                f"per inference; add a CNN baseline (--baseline) for a verdict.")
    cheap, dear = (snn, cnn) if snn.dynamic_j <= cnn.dynamic_j else (cnn, snn)  # type: ignore[operator]
    ratio = float(dear.dynamic_j) / float(cheap.dynamic_j) if cheap.dynamic_j else math.inf  # type: ignore[arg-type]
    acc = ""
    if _finite(cheap.accuracy) and _finite(dear.accuracy):
        acc = (f", at {format_accuracy(cheap.accuracy)} vs {format_accuracy(dear.accuracy)} test accuracy "
               "(each model at its validation-chosen threshold)")
    return (f"{cheap.model} is cheaper: {format_energy(cheap.dynamic_j)} of dynamic energy per inference for "
            f"{_describe(cheap)} against {format_energy(dear.dynamic_j)} for {_describe(dear)}, "
            f"{_ratio_text(ratio)} less{acc}.{_match_clause(choice)}{_sample_sentence(report)}")


def _sample_sentence(report: Report) -> str:
    """' Counted on N test images.' (the verdict's sample size), or '' when the report does not say."""
    n = (report.parity or {}).get("samples")
    if not isinstance(n, int):
        found = re.search(r"(\d+) (?:samples|images)", report.data_source or "")
        n = int(found.group(1)) if found else None
    if n is None:
        return ""
    return f" Counted on {n} test image{'' if n == 1 else 's'}" + (" only." if n < 100 else ".")


def sweep_sentence(report: Report) -> str | None:
    """The validation-selected sweep trial in one sentence: what it reaches on test and what it costs."""
    if report.sweep is None:
        return None
    devices = sweep_devices(report.sweep, limit=1)
    trials = [t for t in report.sweep.trials if _trial_ok(t) and _finite(t.get("val_auc"))]
    if not devices or not trials:
        return None
    device = devices[0]
    trials = [t for t in trials if _finite((t["energy"].get(device) or {}).get("dynamic_j"))]
    if not trials:
        return None
    best = max(trials, key=lambda t: t["val_auc"])
    energy = best["energy"][device]["dynamic_j"]
    steps = f", {best['num_steps']} steps" if best.get("num_steps") is not None else ""
    text = (f"Sweep ({len(report.sweep.trials)} trials): the trial chosen on validation AUC, {best.get('model', '?')}{steps}, "
            f"reaches test AUC {format_auc(best.get('test_auc'))} and accuracy {format_accuracy(best.get('test_accuracy'))} "
            f"at {format_energy(energy)} per inference on {device} (chip counts, estimated)")
    cnn = _pick_cnn_row(report)
    if cnn is not None and cnn.dynamic_j:
        ratio = energy / float(cnn.dynamic_j)
        text += (f", {_ratio_text(ratio)} the {cnn.model} figure above" if ratio >= 1
                 else f", {_ratio_text(1 / ratio)} less than the {cnn.model} figure above")
    return text + "."


def verdict_caveats(report: Report) -> list[str]:
    """What the verdict's comparison leaves out, in a sentence each (shown under it)."""
    snn, cnn = _pick_snn_row(report), _pick_cnn_row(report)
    out = []
    if cnn is not None and snn is not None and cnn.scope == SCOPE_LABELS["arithmetic"]:
        out.append("The CNN figure is arithmetic only (no memory traffic), while Loihi's per-op constants "
                   "include its synaptic memory; no memory-inclusive CNN estimate was available.")
    if cnn is not None and snn is not None and cnn.scope == SCOPE_LABELS["memory-inclusive"]:
        out.append("Like for like: the CNN figure includes on-chip SRAM and off-chip DRAM traffic, as Loihi's "
                   "per-op constants include its synaptic memory.")
    if not any(r.kind == "measured" and r.dynamic_j is not None for r in report.summary):
        out.append("Every energy figure here is an estimate; no energy counter was readable on this machine.")
    return out


# ----------------------------------------------------------------------------------------------
# Sweep tables (from `neurocxr sweep` or benchmarks/pareto.py)

_SWEEP_FILES = ("results.jsonl", "trials.jsonl", "results.csv", "trials.csv", "results.json", "pareto.json")
_FLAT_ENERGY = re.compile(r"^energy[_.](?P<device>.+?)[_.](?P<field>dynamic_j|total_j)$")
_FLOAT_FIELDS = ("val_auc", "test_auc", "test_accuracy", "val_accuracy")


def _num(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _normalise_trial(raw: dict[str, Any]) -> dict[str, Any]:
    trial = dict(raw)
    energy: dict[str, dict[str, float | None]] = {}
    nested = raw.get("energy")
    if isinstance(nested, str) and nested.strip().startswith("{"):
        nested = json.loads(nested)
    if isinstance(nested, dict):
        for device, v in nested.items():
            if isinstance(v, dict):
                energy[str(device)] = {"dynamic_j": _num(v.get("dynamic_j")), "total_j": _num(v.get("total_j"))}
            else:
                energy[str(device)] = {"dynamic_j": _num(v), "total_j": None}
    for key, value in raw.items():
        m = _FLAT_ENERGY.match(str(key))
        if m:
            energy.setdefault(m["device"], {"dynamic_j": None, "total_j": None})[m["field"]] = _num(value)
    trial["energy"] = energy
    for key in _FLOAT_FIELDS:
        trial[key] = _num(raw.get(key))
    if "num_steps" in raw:
        steps = _num(raw.get("num_steps"))
        trial["num_steps"] = int(steps) if steps is not None else None
    return trial


def read_sweep(path: str | os.PathLike[str]) -> SweepTable:
    """Read a sweep's results table: a sweep output folder, or the table file itself (JSON lines,
    CSV, or JSON ``{"trials": [...], "pareto": [...]}`` / a JSON list). Energy per device is
    ``energy: {device: {dynamic_j, total_j}}`` or flat columns ``energy_<device>_dynamic_j``.
    Failed trials (a ``status`` other than ok/done/finished, or no energy) are kept but not plotted."""
    p = Path(path)
    if p.is_dir():
        found = [p / name for name in _SWEEP_FILES if (p / name).is_file()]
        if not found:
            found = sorted(p.glob("*.jsonl")) + sorted(p.glob("*.csv"))
        if not found and (p / "trials").is_dir():
            # A sweep still running: one JSON per finished trial (what `neurocxr sweep` resumes from).
            trials = []
            for f in sorted((p / "trials").glob("*.json")):
                try:
                    trials.append(_normalise_trial(json.loads(f.read_text(encoding="utf-8"))))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # a trial file being written right now
            if trials:
                return SweepTable(source=str(p / "trials"), trials=trials)
        if not found:
            raise NeurocxrError(f"{p} holds no sweep results table ({', '.join(_SWEEP_FILES)}); run `neurocxr sweep` first")
        p = found[0]
    if not p.is_file():
        raise NeurocxrError(f"sweep results {p} not found")
    text = p.read_text(encoding="utf-8")
    pareto: list[dict[str, Any]] = []
    try:
        if p.suffix == ".csv":
            raw = list(csv.DictReader(io.StringIO(text)))
        elif p.suffix == ".jsonl":
            raw = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
            if isinstance(data, dict):
                raw = list(data.get("trials") or [])
                pareto = [_normalise_trial(t) for t in data.get("pareto") or [] if isinstance(t, dict)]
            else:
                raw = list(data)
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as err:
        raise NeurocxrError(f"{p} is not a readable sweep table: {err}") from None
    trials = [_normalise_trial(t) for t in raw if isinstance(t, dict)]
    if not trials:
        raise NeurocxrError(f"{p} lists no trials")
    return SweepTable(source=str(p), trials=trials, pareto=pareto)


def _trial_ok(t: dict[str, Any]) -> bool:
    status = str(t.get("status") or "ok").lower()
    return status in ("ok", "done", "finished", "completed", "terminated", "success") and bool(t.get("energy"))


# ----------------------------------------------------------------------------------------------
# JSON


def _energy(value: float | None, kind: str, source: str, unit: str = "J per inference") -> dict[str, Any]:
    return {"value": to_jsonable(value), "unit": unit, "kind": kind, "source": source}


def _quantity(value: Any, unit: str) -> dict[str, Any]:
    return {"value": to_jsonable(value), "unit": unit}


def _estimate_json(e: EnergyEstimate) -> dict[str, Any]:
    basis, scope = _basis_of(e)
    out = {
        "model": e.model,
        "device": e.device,
        "kind": e.kind,
        "source": e.source,
        "method": e.method,
        "basis": basis,
        "scope": scope,
        "dynamic_energy": _energy(e.dynamic_j, e.kind, e.source),
        "total_energy": _energy(e.total_j, e.kind, e.source),
        "latency": _quantity(e.latency_s, "s per inference"),
        "accuracy": _quantity(e.accuracy, "fraction"),
        "per_layer_energy": {
            str(layer): _energy(j, e.kind, e.source) for layer, j in e.per_layer_j.items()
        },
        "constants": {
            str(name): {"value": to_jsonable(v), "unit": "J per op", "kind": "constant", "source": e.source}
            for name, v in e.constants.items()
        },
        "notes": e.notes,
    }
    if getattr(e, "static_j", None) is not None:
        out["static_energy"] = _energy(e.static_j, e.kind, e.source)  # type: ignore[attr-defined]
    if getattr(e, "throughput_fps", None) is not None:
        out["throughput"] = _quantity(e.throughput_fps, "inferences per s (modelled)")  # type: ignore[attr-defined]
    if getattr(e, "timing", None):
        out["timing"] = to_jsonable(e.timing)  # type: ignore[attr-defined]
    return out


def _measurement_json(m: EnergyMeasurement) -> dict[str, Any]:
    return {
        "model": m.model,
        "device": m.device,
        "runtime": m.runtime,
        "kind": m.kind,
        "method": m.method,
        "batch_size": m.batch_size,
        "latency": _quantity(m.latency_s, "s per batch"),
        "throughput": _quantity(m.throughput_sps, "samples per s"),
        "dynamic_energy": _energy(m.dynamic_j, m.kind, m.method, "J per sample"),
        "total_energy": _energy(m.total_j, m.kind, m.method, "J per sample"),
        "accuracy": _quantity(m.accuracy, "fraction"),
        "notes": m.notes,
        "extra": to_jsonable(m.extra),
    }


def _row_json(r: SummaryRow) -> dict[str, Any]:
    return {
        "model": r.model,
        "device": r.device,
        "kind": r.kind,
        "basis": r.basis,
        "scope": r.scope,
        "source": r.source,
        "accuracy": _quantity(r.accuracy, "fraction"),
        "roc_auc": _quantity(r.auc, "fraction"),
        "latency": _quantity(r.latency_s, "s"),
        "throughput": _quantity(r.throughput_fps, "inferences per s"),
        "dynamic_energy": _energy(r.dynamic_j, r.kind, r.source),
        "total_energy": _energy(r.total_j, r.kind, r.source),
        "notes": r.notes,
    }


def _choice_json(choice: BaselineChoice) -> dict[str, Any]:
    """Which baseline the verdict names and why, for report.json."""
    r = choice.row
    return {"model": r.model if r else None, "device": r.device if r else None, "match": choice.match,
            "snn_test_auc": choice.snn_auc, "baseline_test_auc": choice.baseline_auc,
            "rule": "cheapest CNN baseline whose test ROC-AUC is at least the SNN's (like for like: measured, "
                    "else memory-inclusive, else any)"}


def report_to_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready dicts: energy numbers as {value, unit, kind, source}."""
    return {
        "title": report.title,
        "created": report.created,
        "data_source": report.data_source,
        "synthetic_data": report.is_synthetic,
        "verdict": verdict(report),
        "verdict_baseline": _choice_json(_pick_cnn_choice(report)),
        "verdict_caveats": verdict_caveats(report),
        "sweep_verdict": sweep_sentence(report),
        "summary": [_row_json(r) for r in report.summary],
        "not_measurable_here": dict(report.not_measurable),
        "estimates": [_estimate_json(e) for e in report.estimates],
        "measurements": [_measurement_json(m) for m in report.measurements],
        "operating_point": to_jsonable(report.operating_point),
        "counting_bases": {
            "units": "effective / dense synaptic operations per sample, summed over time steps",
            "layers": to_jsonable(report.counting_bases),
            **{str(k): to_jsonable(v) for k, v in (report.counting_bases_summary or {}).items()},
        },
        "layer_counts": {
            "units": "per sample, summed over time steps: spikes, synaptic operations, neuron updates (counts)",
            "models": to_jsonable(report.layer_counts),
        },
        "accuracy": to_jsonable(report.accuracy),
        "parity": to_jsonable(report.parity),
        "export": to_jsonable(report.export),
        "sweep": to_jsonable(report.sweep.to_dict()) if report.sweep is not None else None,
        "assumptions": list(report.assumptions),
        "provenance": to_jsonable(report.provenance),
        "environment": to_jsonable(report.environment),
    }


# ----------------------------------------------------------------------------------------------
# Plots (matplotlib's object API with the Agg canvas: never touches the global pyplot backend)

_KIND_COLOR = {"measured": "#2e7d32", "estimated": "#ef8f00", "not measurable": "#9e9e9e"}
_KIND_HATCH = {"measured": "", "estimated": "//", "not measurable": "xx"}


def _figure(width: float = 7.5, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png_data_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


_MODEL_COLORS = ["#1565c0", "#c62828", "#6a1b9a", "#2e7d32", "#ef6c00", "#00838f", "#5d4037", "#ad1457"]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (energy, score) points no other point beats on both (less energy and a higher score),
    sorted by energy: the line a family of models draws on an accuracy-vs-energy plot."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


# SNN and CNN fronts: one colour and line style per family, the same on every plot.
_FRONT_STYLE = {"SNN": ("#ff8f00", "-"), "CNN": ("#37474f", "--")}


def _draw_fronts(ax: Any, families: dict[str, list[tuple[float, float]]], what: str) -> None:
    """A line through each family's Pareto points (``families``: name -> (energy, score) points)."""
    for name, pts in families.items():
        front = pareto_front([p for p in pts if _finite(p[0]) and p[0] > 0 and _finite(p[1])])
        if not front:
            continue
        color, style = _FRONT_STYLE.get(name, ("#555555", ":"))
        # a one-point front is drawn as a ring around its point, so it stays visible under the marker
        ax.plot([p[0] for p in front], [p[1] for p in front], linestyle=style, color=color, linewidth=1.8,
                marker="o" if len(front) == 1 else None, markersize=13, fillstyle="none", markeredgewidth=1.6,
                alpha=0.9, zorder=2,
                label=f"{name} front ({what}, {len(front)} point{'s' if len(front) != 1 else ''})")


def _plot_accuracy_vs_energy(rows: Sequence[SummaryRow]) -> str | None:
    """Test ROC-AUC (or accuracy where AUC is missing) against dynamic energy per inference: one
    colour per model, one point per device; circles for measured, triangles for estimated energy;
    a line through the SNN family's Pareto points and one through the CNN baselines', on the same axes."""
    use_auc = any(_finite(r.auc) and r.is_baseline for r in rows) and any(_finite(r.auc) and not r.is_baseline
                                                                          for r in rows)

    def score(r: SummaryRow) -> float | None:
        v = r.auc if use_auc else r.accuracy
        return float(v) if v is not None and _finite(v) else None

    metric = "test ROC-AUC" if use_auc else "test accuracy (%)"
    title = "ROC-AUC" if use_auc else "Accuracy"
    scale = 1.0 if use_auc else 100.0
    data = [r for r in rows if score(r) is not None and _finite(r.dynamic_j) and r.dynamic_j > 0]  # type: ignore[operator]
    if not data:
        return None
    fig = _figure(7.6, 4.3)
    ax = fig.add_subplot(1, 1, 1)
    models = list(dict.fromkeys(r.model for r in data))
    energies = [float(r.dynamic_j) for r in data]  # type: ignore[arg-type]
    # x range in decades over about 470 pt of axes; a 6.5 pt character is about 3.7 pt wide
    decades_per_char = (math.log10(max(energies) / min(energies)) + math.log10(100)) * 3.7 / 470
    _draw_fronts(ax, {"SNN": [(float(r.dynamic_j), scale * score(r)) for r in data if not r.is_baseline],  # type: ignore[arg-type, operator]
                      "CNN": [(float(r.dynamic_j), scale * score(r)) for r in data if r.is_baseline]},  # type: ignore[arg-type, operator]
                 "AUC" if use_auc else "accuracy")
    for i, model in enumerate(models):
        pts = [r for r in data if r.model == model]
        color = _MODEL_COLORS[i % len(_MODEL_COLORS)]
        for kind, marker in (("measured", "o"), ("estimated", "^")):
            sel = [r for r in pts if r.kind == kind]
            if sel:
                ax.scatter([r.dynamic_j for r in sel], [scale * score(r) for r in sel],  # type: ignore[operator]
                           c=color, marker=marker, edgecolors="black", s=46, zorder=3,
                           label=f"{_short(model, 26)} ({kind})")
        # Points of one model mostly share a height: label them by device, level, and stack a label
        # one line higher while it would still run into a label to its left at that height (a
        # label's width in decades follows its length); points at (nearly) the same energy share
        # one label.
        groups: list[list[SummaryRow]] = []
        for r in sorted(pts, key=lambda r: r.dynamic_j):  # type: ignore[arg-type, return-value]
            if (groups and score(r) == score(groups[-1][0])
                    and math.log10(float(r.dynamic_j) / float(groups[-1][0].dynamic_j)) < 0.05):  # type: ignore[arg-type]
                groups[-1].append(r)
            else:
                groups.append([r])
        placed: list[tuple[float, float, float, int]] = []  # (score, left, right in log10 J, level)
        for group in groups:
            first = group[0]
            label = ", ".join(_short(r.device, 22) for r in group)
            x = math.log10(float(first.dynamic_j))  # type: ignore[arg-type]
            right = x + len(label) * decades_per_char
            y = score(first)
            busy = {lv for acc, lo, hi, lv in placed if acc == y and lo <= x <= hi}
            level = next(lv for lv in range(len(placed) + 1) if lv not in busy)
            placed.append((y, x, right, level))  # type: ignore[arg-type]
            ax.annotate(label, (first.dynamic_j, scale * y), fontsize=6.5,  # type: ignore[operator]
                        xytext=(3, 5 + 8 * level), textcoords="offset points", ha="left", va="bottom")
    ax.set_xscale("log")
    ax.set_xlim(min(energies) / 5, max(energies) * 20)
    ax.margins(y=0.45)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_xlabel("dynamic energy per inference (J, log scale)")
    ax.set_ylabel(metric)
    ax.set_title(f"Test {title} vs energy per inference: SNN and CNN fronts, one point per model × device",
                 fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return _png_data_uri(fig)


# Devices shown for a sweep, in this order when present (neuromorphic first: the sweep's purpose).
_SWEEP_DEVICE_ORDER = ("loihi2", "loihi", "loihi-sanafe", "truenorth", "spinnaker2", "spinnaker",
                       "horowitz45-int8", "horowitz45-fp32")


def sweep_devices(sweep: SweepTable, limit: int = 4) -> list[str]:
    """Up to ``limit`` devices with energy in finished trials, neuromorphic devices first."""
    trials = [t for t in sweep.trials if _trial_ok(t)]
    present = [d for d in sweep.devices if any(_finite((t["energy"].get(d) or {}).get("dynamic_j")) for t in trials)]
    rank = {d: i for i, d in enumerate(_SWEEP_DEVICE_ORDER)}
    return sorted(present, key=lambda d: (rank.get(d, len(rank)), present.index(d)))[:limit]


def _plot_sweep(sweep: SweepTable, rows: Sequence[SummaryRow]) -> str | None:
    """One panel per device: every finished sweep trial's test accuracy (circles) and ROC-AUC
    (squares) against its dynamic energy on that device, the report's own models on that device,
    and the CNN baselines' rows on the same axes (stars: accuracy, diamonds: AUC)."""
    trials = [t for t in sweep.trials if _trial_ok(t)]
    devices = sweep_devices(sweep)
    if not devices:
        return None
    cols = 2 if len(devices) > 1 else 1
    nrows = (len(devices) + cols - 1) // cols
    fig = _figure(9.5 if cols == 2 else 7.6, 1.4 + 3.2 * nrows)
    handles: list[Any] = []
    labels: list[str] = []
    baselines = [r for r in rows if r.is_baseline and _finite(r.dynamic_j) and r.dynamic_j > 0]  # type: ignore[operator]
    steps = sorted({t.get("num_steps") for t in trials if t.get("num_steps") is not None})
    cmap = __import__("matplotlib").colormaps["viridis"]
    for k, device in enumerate(devices):
        ax = fig.add_subplot(nrows, cols, k + 1)
        xs, acc, auc, col = [], [], [], []
        for t in trials:
            e = (t["energy"].get(device) or {}).get("dynamic_j")
            if not _finite(e) or e <= 0:
                continue
            xs.append(e)
            acc.append(t.get("test_accuracy"))
            auc.append(t.get("test_auc"))
            s = t.get("num_steps")
            col.append(cmap(steps.index(s) / max(1, len(steps) - 1)) if s in steps else "#777777")
        for ys, marker, label in ((acc, "o", "SNN trials: accuracy"), (auc, "s", "SNN trials: ROC-AUC")):
            pts = [(x, y, c) for x, y, c in zip(xs, ys, col) if _finite(y)]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=[p[2] for p in pts], marker=marker,
                           edgecolors="black", linewidths=0.4, s=30, label=label, zorder=3)
        for r in rows:
            if (not r.is_baseline and r.device == device and is_headline(r) and _finite(r.dynamic_j)
                    and _finite(r.accuracy)):
                ax.scatter([r.dynamic_j], [r.accuracy], marker="P", c="#c62828", s=70, edgecolors="black",
                           label=f"{_short(r.model, 20)} (this report)", zorder=4)
        mine = [(float(r.dynamic_j), float(r.auc)) for r in rows  # type: ignore[arg-type]
                if not r.is_baseline and r.device == device and is_headline(r) and _finite(r.dynamic_j)
                and _finite(r.auc)]
        trial_pts = [(float(x), float(y)) for x, y in zip(xs, auc) if x is not None and y is not None and _finite(y)]
        base_pts = [(float(r.dynamic_j), float(r.auc)) for r in baselines  # type: ignore[arg-type]
                    if _finite(r.auc)]
        _draw_fronts(ax, {"SNN": trial_pts + mine, "CNN": base_pts}, "ROC-AUC")
        for i, r in enumerate(baselines):
            color = _MODEL_COLORS[(i + 2) % len(_MODEL_COLORS)]
            what = _short(f"{r.model}, {r.device}", 34)
            if _finite(r.accuracy):
                ax.scatter([r.dynamic_j], [r.accuracy], marker="*", c=color, s=110, edgecolors="black",
                           label=f"{what}: accuracy", zorder=4)
            if _finite(r.auc):
                ax.scatter([r.dynamic_j], [r.auc], marker="D", c=color, s=40, edgecolors="black",
                           label=f"{what}: AUC", zorder=4)
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.set_title(f"energy on {device}", fontsize=9)
        ax.set_xlabel("dynamic energy per inference (J, log)", fontsize=8)
        ax.set_ylabel("test accuracy / ROC-AUC", fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0:
            handles, labels = ax.get_legend_handles_labels()
    if steps:
        fig.suptitle("Sweep: colour = time steps (" + ", ".join(str(s) for s in steps) + ", dark to light)", fontsize=9)
    # One legend under all panels, so no panel's points are hidden behind it.
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.03 + 0.04 * math.ceil(len(labels) / 3) / nrows, 1, 0.97))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plot_counting_bases(bases: Sequence[dict[str, Any]]) -> str | None:
    def chip_ops(b: dict[str, Any]) -> Any:
        return _pick(b, "chip_synaptic_ops", "chip_effective_ops")

    def nb_ops(b: dict[str, Any]) -> Any:
        return _pick(b, "neurobench_synaptic_ops", "neurobench_effective_ops")

    rows = [b for b in bases if _finite(chip_ops(b)) or _finite(nb_ops(b))]
    if not rows:
        return None
    fig = _figure(7.6, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    chip = [float(chip_ops(b) or np.nan) for b in rows]
    nb = [float(nb_ops(b) or np.nan) for b in rows]
    ax.bar(x - 0.2, chip, width=0.4, color="#ef8f00", edgecolor="black", label="chip counts (energy estimates use these)")
    ax.bar(x + 0.2, nb, width=0.4, color="#1565c0", edgecolor="black", label="NeuroBench float-model counts")
    ax.set_xticks(x)
    ax.set_xticklabels([_short(str(_pick(b, "chip_layer", "layer")), 16) for b in rows], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("effective synaptic ops per sample")
    ax.set_title("Two counting bases per layer", fontsize=10)
    ax.legend(fontsize=7)
    return _png_data_uri(fig)


def _plot_layer_breakdown(estimates: Sequence[EnergyEstimate]) -> str | None:
    """Grouped bars, log scale, one panel per model: per layer, one bar per device profile.

    Grouped rather than stacked because profiles differ by orders of magnitude; on a linear stack
    the Loihi bars would vanish next to the CPU/GPU ones.
    """
    data = [e for e in estimates if any(float(v) > 0 for v in e.per_layer_j.values())]
    if not data:
        return None
    by_model: dict[str, list[EnergyEstimate]] = {}
    for e in data:
        by_model.setdefault(e.model, []).append(e)
    fig = _figure(9.0, 0.6 + 3.6 * len(by_model))
    cmap = __import__("matplotlib").colormaps["tab20"]
    for row, (model, group) in enumerate(by_model.items()):
        ax = fig.add_subplot(len(by_model), 1, row + 1)
        layers: list[str] = []
        for e in group:
            layers += [name for name in e.per_layer_j if name not in layers]
        width = 0.85 / len(group)
        for k, e in enumerate(group):
            values = [float(e.per_layer_j.get(layer, 0.0)) for layer in layers]
            x = np.arange(len(layers)) + (k - (len(group) - 1) / 2) * width
            bars = ax.bar(x, [v if v > 0 else np.nan for v in values], width=width, color=cmap(k % 20),
                          edgecolor="black", linewidth=0.3, label=_short(e.device, 32))
            for bar in bars:
                bar.set_hatch(_KIND_HATCH.get(e.kind, ""))
        ax.set_xticks(np.arange(len(layers)))
        ax.set_xticklabels([_short(n, 16) for n in layers], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("J per inference (log)")
        ax.set_title(f"Per-layer energy by device profile: {_short(model, 40)}", fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _png_data_uri(fig)


def _plot_spikes_per_layer(layer_counts: dict[str, list[dict[str, Any]]]) -> str | None:
    series = {}
    for model, layers in layer_counts.items():
        names, spikes = [], []
        for layer in layers:
            mean = layer.get("per_sample_mean", {})
            if "output_spikes" in mean:
                names.append(str(layer.get("name", f"layer{len(names)}")))
                spikes.append(float(mean["output_spikes"]))
        if names:
            series[model] = (names, spikes)
    if not series:
        return None
    all_names: list[str] = []
    for names, _ in series.values():
        all_names += [n for n in names if n not in all_names]
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    for k, (model, (names, spikes)) in enumerate(series.items()):
        by_name = dict(zip(names, spikes))
        x = np.arange(len(all_names)) + (k - (len(series) - 1) / 2) * width
        ax.bar(x, [by_name.get(n, np.nan) for n in all_names], width=width, label=_short(model, 30))
    ax.set_xticks(np.arange(len(all_names)))
    ax.set_xticklabels([_short(n, 16) for n in all_names], fontsize=8, rotation=20, ha="right")
    ax.set_ylabel("output spikes per sample (all steps)")
    ax.set_title("Spikes per layer")
    ax.legend(fontsize=8)
    return _png_data_uri(fig)


# ----------------------------------------------------------------------------------------------
# HTML (jinja2 templates in neurocxr/templates; autoescaped, plus a few pre-escaped tables)

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(x, dict) for x in value)


def _kv_table(d: dict[str, Any], depth: int = 0) -> str:
    """Key/value table; nested dicts and lists of dicts become nested tables (two levels deep)."""
    rows = ""
    for k, v in d.items():
        if depth < 2 and isinstance(v, dict) and v:
            cell = f"<td>{_kv_table(v, depth + 1)}</td>"
        elif depth < 2 and _is_records(v):
            cell = f"<td>{_records_table(v)}</td>"
        else:
            cell = f"<td{' class=num' if _is_number(v) else ''}>{_e(_fmt_value(v))}</td>"
        rows += f"<tr><th>{_e(k)}</th>{cell}</tr>"
    return f"<table class=kv>{rows}</table>"


def _records_table(records: Sequence[dict[str, Any]]) -> str:
    columns: list[str] = []
    for r in records:
        for k in r:
            if k not in columns:
                columns.append(k)
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = ""
    for r in records:
        cells = ""
        for c in columns:
            v = r.get(c)
            cells += f"<td{' class=num' if _is_number(v) else ''}>{_e(_fmt_value(v))}</td>"
        body += f"<tr>{cells}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


class _Footnotes:
    """Numbered footnotes, each text once; rows refer to them by number."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1


_KIND_ORDER = {"measured": 0, "not measurable": 1, "estimated": 2}


def _is_basis_note(text: str) -> bool:
    return text.startswith("Counting basis:")


def _row_footnotes(r: SummaryRow) -> list[str]:
    texts = []
    for text in r.footnotes or _sentences(r.notes):
        low = text.lower()
        # Said once elsewhere: the not-measurable line under the table, the badge itself, the basis
        # legend, and the method (the basis column names it; the Sources section spells it out).
        if ("not measurable" in low or low.startswith("latency and throughput are measured")
                or low.startswith("method:") or _is_basis_note(text)):
            continue
        texts.append(text)
    return texts


def _common_footnotes(rows: Sequence[SummaryRow]) -> list[str]:
    """Sentences every estimated row carries: shown once as a general note, not as a number on each row."""
    estimated = [set(_row_footnotes(r)) for r in rows if r.kind == "estimated"]
    if len(estimated) < 2:
        return []
    common = set.intersection(*estimated)
    first = next(r for r in rows if r.kind == "estimated")
    return [t for t in _row_footnotes(first) if t in common]


def _basis_legend(rows: Sequence[SummaryRow]) -> list[str]:
    """The counting bases the rows use, each explained once."""
    seen: list[str] = []
    for r in rows:
        for text in r.footnotes:
            if _is_basis_note(text) and text not in seen:
                seen.append(text)
    return [t.split(":", 1)[1].strip() for t in seen]


def is_headline(r: SummaryRow) -> bool:
    """Rows of the first-screen table: measurements, CNN baselines, and the SNN on neuromorphic
    devices from its chip counts. The SNN under other conventions (NeuroBench or KerasSpiking
    counts, conventional hardware) goes to the second table below."""
    if r.kind != "estimated" or r.is_baseline:
        return True
    return r.basis in (BASIS_LABELS["chip"], "") and r.scope in (SCOPE_LABELS["device"], "")


def _headline_estimates(report: Report) -> list[EnergyEstimate]:
    """Estimates of the first-screen table: one layer naming per model (chip layers for the SNN)."""
    baselines = {r.model for r in report.summary if r.is_baseline}
    out = []
    for e in report.estimates:
        basis, scope = _basis_of(e)
        if e.model in baselines or (basis == BASIS_LABELS["chip"] and scope == SCOPE_LABELS["device"]):
            out.append(e)
    return out


def _table_context(rows: Sequence[SummaryRow], notes: _Footnotes, common: set[str]) -> list[dict[str, Any]]:
    rows = sorted(rows, key=lambda r: (r.is_baseline, _KIND_ORDER.get(r.kind, 9)))
    out = []
    for r in rows:
        refs = [notes.ref(text) for text in _row_footnotes(r) if text not in common]
        badge = r.kind
        if r.kind == "not measurable" and _finite(r.latency_s):
            badge_text = "latency measured, energy not measurable"
        else:
            badge_text = r.kind
        out.append({
            "model": r.model,
            "device": r.device,
            "basis": ", ".join(x for x in (r.basis, r.scope) if x),
            "accuracy": format_accuracy(r.accuracy),
            "auc": format_auc(r.auc),
            "latency": format_seconds(r.latency_s),
            "fps": format_rate(r.throughput_fps),
            "dynamic": format_energy(r.dynamic_j) if r.kind != "not measurable" else "—",
            "total": format_energy(r.total_j) if r.kind != "not measurable" else "—",
            "dynamic_exact": "" if r.dynamic_j is None else f"{float(r.dynamic_j):.6g} J",
            "total_exact": "" if r.total_j is None else f"{float(r.total_j):.6g} J",
            "badge": badge,
            "badge_class": "badge-" + badge.replace(" ", "-"),
            "badge_text": badge_text,
            "refs": sorted(set(refs)),
            "baseline": r.is_baseline,
        })
    return out


# Timing keys already shown in their own columns of the timing table.
_TIMING_SHOWN = {"latency_s", "throughput_fps", "static_j", "fps_basis"}


def _timing_rows(report: Report) -> list[dict[str, Any]]:
    rows = []
    for e in report.estimates:
        if e.latency_s is None and getattr(e, "throughput_fps", None) is None and not getattr(e, "timing", None):
            continue
        timing = getattr(e, "timing", None) or {}
        basis, _ = _basis_of(e)
        rows.append({
            "model": e.model,
            "device": e.device,
            "basis": basis,
            "latency": format_seconds(e.latency_s),
            "fps": format_rate(getattr(e, "throughput_fps", None)),
            "static": format_energy(getattr(e, "static_j", None)),
            "dynamic": format_energy(e.dynamic_j),
            "total": format_energy(e.total_j),
            "timing": ", ".join(f"{k} = {_fmt_unit(k, v)}" for k, v in timing.items()
                                if not isinstance(v, (dict, list)) and k not in _TIMING_SHOWN and v is not None),
        })
    return rows


def _fmt_unit(key: str, value: Any) -> str:
    """A number by the unit its key names: *_s seconds, *_j joules, *_w watts, *_fps per second."""
    if not _is_number(value):
        return _fmt_value(value)
    v = float(value)
    tokens = key.lower().split("_")  # e.g. static_j_single_inference: joules
    if "s" in tokens or key in ("step", "barrier"):
        return format_seconds(v)
    if "j" in tokens:
        return format_energy(v)
    if "w" in tokens:
        return _si(v, "W")
    if key.endswith("_fps"):
        return format_rate(v) + " /s"
    return _fmt_value(value)


_fmt_timing = _fmt_unit


def _sources(report: Report) -> list[dict[str, Any]]:
    by_source: dict[str, dict[str, Any]] = {}
    for e in report.estimates:
        s = by_source.setdefault(e.source, {"source": e.source, "devices": [], "constants": {}})
        if e.device not in s["devices"]:
            s["devices"].append(e.device)
        for k, v in e.constants.items():
            s["constants"][k] = v
    out = []
    for s in by_source.values():
        consts = ", ".join(f"{k} = {_fmt_const(k, v)}" for k, v in s["constants"].items())
        out.append({"source": s["source"], "devices": ", ".join(s["devices"]), "constants": consts})
    return out


def _fmt_const(key: str, v: Any) -> str:
    if key.endswith(("_s", "_j", "_w")):
        return _fmt_unit(key, v)
    if _is_number(v) and 0 < abs(float(v)) < 1e-3:  # bare per-op constants are joules
        return format_energy(float(v))
    return _fmt_value(v)


def _pick(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


def _bases_rows(report: Report) -> list[dict[str, Any]]:
    """Rows of the counting-bases table; reads energy.bases.compare_bases keys (and shorter aliases)."""
    rows = []
    for b in report.counting_bases:
        ratio = _pick(b, "synaptic_ops_ratio", "ratio_chip_to_neurobench", "ratio")
        dense_ratio = _pick(b, "dense_ops_ratio")
        chip_fan, nb_fan = _pick(b, "chip_fan_in"), _pick(b, "neurobench_fan_in")
        why = _pick(b, "explanation", "why") or ""
        if not why and _finite(ratio):
            why = ("pooling fused into this layer on the chip: a larger kernel per spike"
                   if b.get("pool_fused") else
                   "same network on both bases; counts differ only where quantisation changes spikes")
        rows.append({
            "layer": _pick(b, "chip_layer", "layer"),
            "float_layer": _pick(b, "neurobench_layer", "float_layer") or "",
            "op_type": _pick(b, "neurobench_op_type", "op_type") or "",
            "fan_in": "" if chip_fan is None else (f"{chip_fan} / {nb_fan}" if nb_fan is not None else str(chip_fan)),
            "chip": _fmt_ops(_pick(b, "chip_synaptic_ops", "chip_effective_ops")),
            "neurobench": _fmt_ops(_pick(b, "neurobench_synaptic_ops", "neurobench_effective_ops")),
            "ratio": "—" if not _finite(ratio) else f"{float(ratio):.2f}×",
            "chip_dense": _fmt_ops(_pick(b, "chip_dense_ops")),
            "neurobench_dense": _fmt_ops(_pick(b, "neurobench_dense_ops")),
            "dense_ratio": "—" if not _finite(dense_ratio) else f"{float(dense_ratio):.2f}×",
            "why": why,
        })
    return rows


def _fmt_ops(v: Any) -> str:
    return "—" if not _finite(v) else f"{float(v):,.0f}"


def _bases_total(report: Report) -> str | None:
    total = (report.counting_bases_summary or {}).get("total") or {}
    ratio = _pick(total, "synaptic_ops_ratio", "ratio")
    if _finite(ratio):
        return f"{float(ratio):.2f}"
    chip = sum(float(_pick(b, "chip_synaptic_ops", "chip_effective_ops") or 0) for b in report.counting_bases)
    nb = sum(float(_pick(b, "neurobench_synaptic_ops", "neurobench_effective_ops") or 0) for b in report.counting_bases)
    if chip <= 0 or nb <= 0:
        return None
    return f"{chip / nb:.2f}"


def _sweep_rows(sweep: SweepTable | None) -> list[dict[str, Any]]:
    if sweep is None:
        return []
    devices = sweep_devices(sweep)
    rows = []
    for t in sorted(sweep.trials, key=lambda t: -(t.get("val_auc") or -1)):
        rows.append({
            "model": t.get("model", ""),
            "num_steps": _fmt_value(t.get("num_steps")),
            "encoding": t.get("encoding", "") or "",
            "val_auc": format_auc(t.get("val_auc")),
            "test_auc": format_auc(t.get("test_auc")),
            "test_accuracy": format_accuracy(t.get("test_accuracy")),
            "energy": [format_energy((t["energy"].get(d) or {}).get("dynamic_j")) for d in devices],
            "status": str(t.get("status") or ("ok" if _trial_ok(t) else "no energy")),
        })
    return rows


def _operating_rows(op: dict[str, Any]) -> list[dict[str, str]]:
    if not op:
        return []
    rows = []
    for label, key, thr in (("float model (PyTorch)", "float_test", op.get("float_threshold")),
                            ("chip (Loihi emulator)", "chip_test", op.get("threshold"))):
        m = op.get(key) or {}
        rows.append({
            "what": label,
            "threshold": "—" if not _finite(thr) else f"{float(thr):.4f}",
            "accuracy": format_accuracy(m.get("accuracy")),
            "sensitivity": format_accuracy(m.get("sensitivity")),
            "specificity": format_accuracy(m.get("specificity")),
            "auc": format_auc(m.get("roc_auc")),
        })
    return rows


def _code_version(provenance: dict[str, Any]) -> str:
    git = (provenance or {}).get("git") or {}
    if not git.get("commit"):
        return ""
    return str(git["commit"])[:10] + (" (uncommitted changes)" if git.get("dirty") else "")


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (inline CSS, embedded PNG plots, escaped text)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    notes = _Footnotes()
    common = set(_common_footnotes(report.summary))
    headline = [r for r in report.summary if is_headline(r)]
    table = _table_context(headline, notes, common)
    first_notes = list(notes.texts)
    other_table = _table_context([r for r in report.summary if not is_headline(r)], notes, common)
    sweep_plot = _plot_sweep(report.sweep, report.summary) if report.sweep is not None else None
    from markupsafe import Markup as markup
    op = report.operating_point
    context = {
        "r": report,
        "verdict": verdict(report),
        "verdict_caveats": verdict_caveats(report),
        "sweep_sentence": sweep_sentence(report),
        "code_version": _code_version(report.provenance),
        "main_plot": sweep_plot or _plot_accuracy_vs_energy([r for r in report.summary if is_headline(r)]),
        "main_plot_is_sweep": sweep_plot is not None,
        "rows_plot": (_plot_accuracy_vs_energy([r for r in report.summary if is_headline(r)])
                      if sweep_plot is not None else None),
        "table": table,
        "footnotes": first_notes,
        "other_table": other_table,
        "other_footnotes": notes.texts[len(first_notes):],
        "other_footnotes_start": len(first_notes) + 1,
        "common_notes": [t for t in _common_footnotes(report.summary)],
        "basis_legend": _basis_legend(report.summary),
        "not_measurable": report.not_measurable,
        "no_measurements": not report.measurements,
        "operating_rows": _operating_rows(op),
        "operating": op,
        "bases": _bases_rows(report),
        "bases_total": _bases_total(report),
        "bases_plot": _plot_counting_bases(report.counting_bases),
        "timing": _timing_rows(report),
        "layer_plot": _plot_layer_breakdown(_headline_estimates(report)),
        "spikes_plot": _plot_spikes_per_layer(report.layer_counts),
        "measurements": [
            {"model": m.model, "device": m.device, "runtime": m.runtime, "batch": _fmt_value(m.batch_size),
             "latency": format_seconds(m.latency_s), "fps": format_rate(m.throughput_sps),
             "dynamic": format_energy(m.dynamic_j), "total": format_energy(m.total_j), "kind": m.kind,
             "badge_class": "badge-" + m.kind.replace(" ", "-"), "method": m.method}
            for m in report.measurements
        ],
        "sweep_rows": _sweep_rows(report.sweep),
        "sweep_devices": sweep_devices(report.sweep) if report.sweep is not None else [],
        "sources": _sources(report),
        "clinical": {model: markup(_kv_table(metrics)) for model, metrics in report.accuracy.items()},
        "export_html": markup(_export_section(report.export)) if report.export else None,
        "parity_html": markup(_kv_table(report.parity)) if report.parity else None,
        "provenance_html": markup(_kv_table(report.provenance)) if report.provenance else None,
        "environment_html": markup(_kv_table(report.environment)) if report.environment else None,
    }
    return env.get_template("report.html.j2").render(**context)


def _export_section(export: dict[str, Any]) -> str:
    parts = []
    if _is_records(export.get("layers")):
        parts.append("<h3>Layers (scale, quantisation error)</h3>" + _records_table(export["layers"]))
    for key, value in export.items():
        if key == "layers" and _is_records(value):
            continue
        if isinstance(value, dict):
            parts.append(f"<h3>{_e(key)}</h3>" + _kv_table(value))
        elif _is_records(value):
            parts.append(f"<h3>{_e(key)}</h3>" + _records_table(value))
        else:
            parts.append(_kv_table({key: value}))
    return "".join(parts)


# ----------------------------------------------------------------------------------------------
# Writing


def write_report(report: Report, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` into ``out_dir`` (created if needed), atomically.

    Returns ``(html_path, json_path)``. The summary is built from the estimates and measurements
    when ``report.summary`` is empty.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not report.summary and (report.estimates or report.measurements):
        report.summary = summary_from(report.estimates, report.measurements, auc=report.auc)
    html_path, json_path = out / "report.html", out / "report.json"
    payload = dumps_json(report_to_json(report))
    page = render_html(report)
    write_text(json_path, payload + "\n")
    write_text(html_path, page)
    return html_path, json_path
