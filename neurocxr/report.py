"""The report people read: one self-contained HTML page and a JSON file with every number.

Input is a `Report` (plain dataclass) assembled from what the pipeline produced: energy estimates
and measurements, per-layer counts, clinical metrics, export and parity results. Output:

- ``report.html``: inline CSS, plots as base64 PNG data URIs (no external files, safe to e-mail),
  every piece of text escaped; one summary table whose energy cells are tagged measured /
  estimated / not measurable, with their source;
- ``report.json``: the same content, every energy number as ``{"value", "unit", "kind", "source"}``
  and every other physical number with its unit, numpy types converted.

Missing pieces are stated, not hidden: no measurements gives "not measurable here: <reason>".
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from neurocxr.energy.types import EnergyEstimate, EnergyMeasurement, Kind
from neurocxr.fileio import write_text

__all__ = [
    "DEFAULT_ASSUMPTIONS",
    "SummaryRow",
    "Report",
    "summary_from",
    "write_report",
    "report_to_json",
    "render_html",
    "collect_environment",
    "format_energy",
    "format_seconds",
    "format_accuracy",
]

# Default text of the assumptions paragraph (from the project's energy method notes, docs/energy.md).
DEFAULT_ASSUMPTIONS: list[str] = [
    "Estimated energy is operation counts times per-operation constants. It leaves out data movement "
    "(memory traffic, mesh routing beyond what a profile's constants include), input/output to and "
    "from the chip, the host CPU that drives the accelerator, and static (leakage) power wherever a "
    "device profile has no static power; such profiles give dynamic energy only and no total.",
    "Loihi 2 has no public per-operation energy table. A Loihi 2 estimate applies Loihi 1 per-op "
    "constants (Davies et al., IEEE Micro 38(1), 2018, Table 2; pre-silicon simulation values) to "
    "Loihi 2 op counts, or constants the user supplied; treat it as an order of magnitude.",
    "KerasSpiking-style numbers (keras-spiking ModelEnergy, device constants from Degnan et al. "
    "2015, Davies et al. 2018, Hoppner et al. 2019) charge every neuron every time step and take "
    "the mean input magnitude as a firing rate; they are reproduced for comparison with published "
    "work, not because they are the most faithful model.",
    "Spike counts are not energy: an SNN may well lose to a quantised CNN on conventional hardware "
    "(Davies et al., Proc. IEEE 2021: plain feed-forward networks show modest if any benefit on Loihi).",
    "Measured GPU energy is the NVML board energy counter over multi-second windows with an idle "
    "baseline subtracted (dynamic) or not (total); CPU energy is measured only where Intel RAPL is "
    "readable, and otherwise reported as not measurable here rather than guessed from TDP.",
]

_KINDS = ("measured", "estimated", "not measurable")


@dataclass
class SummaryRow:
    """One line of the summary table: a model on a device, with where each number comes from."""

    model: str
    device: str
    accuracy: float | None  # fraction in [0, 1]
    latency_s: float | None  # time for one inference to come back (per batch for batched runs)
    dynamic_j: float | None  # J per inference
    total_j: float | None  # J per inference, including static / idle power
    kind: Kind
    source: str
    notes: str = ""


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

    @property
    def is_synthetic(self) -> bool:
        return "synthetic" in self.data_source.lower()


# ----------------------------------------------------------------------------------------------
# Summary rows


def summary_from(
    estimates: Iterable[EnergyEstimate], measurements: Iterable[EnergyMeasurement]
) -> list[SummaryRow]:
    """Summary rows: one per measurement (runtime and batch size in the device), one per estimate.

    Measurements come first: a measured number outranks an estimate of the same thing.
    """
    rows: list[SummaryRow] = []
    for m in measurements:
        rows.append(
            SummaryRow(
                model=m.model,
                device=(f"{m.device} (batch {m.batch_size})" if m.runtime in m.device
                        else f"{m.device} ({m.runtime}, batch {m.batch_size})"),
                accuracy=m.accuracy,
                latency_s=m.latency_s,
                dynamic_j=m.dynamic_j,
                total_j=m.total_j,
                kind=m.kind,
                source=m.method,
                notes=m.notes,
            )
        )
    for e in estimates:
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
            )
        )
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


def format_energy(joules: float | None) -> str:
    """Energy with an SI prefix, 3 significant digits (``2.7e-5`` -> ``27 µJ``); ``—`` when None."""
    if joules is None or not math.isfinite(float(joules)):
        return "—"
    return _si(float(joules), "J")


def format_seconds(seconds: float | None) -> str:
    """Duration with an SI prefix, 3 significant digits (``0.00123`` -> ``1.23 ms``)."""
    if seconds is None or not math.isfinite(float(seconds)):
        return "—"
    return _si(float(seconds), "s")


def format_accuracy(fraction: float | None) -> str:
    """Accuracy fraction as a percentage with one decimal (``0.854`` -> ``85.4%``)."""
    if fraction is None or not math.isfinite(float(fraction)):
        return "—"
    return f"{100.0 * float(fraction):.1f}%"


def _fmt_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if _is_number(value):
        v = float(value)
        if float(v).is_integer() and abs(v) < 1e15:
            return f"{int(v):,}"
        return f"{v:.4g}"
    if isinstance(value, (dict, list, tuple, np.ndarray)):
        return json.dumps(_jsonable(value), separators=(", ", ": "))
    return str(value)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


# ----------------------------------------------------------------------------------------------
# JSON


def _jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays, tuples, Paths, dataclasses; NaN/inf become None."""
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return _jsonable(obj.to_dict())
    return str(obj)


def _energy(value: float | None, kind: str, source: str, unit: str = "J per inference") -> dict[str, Any]:
    return {"value": _jsonable(value), "unit": unit, "kind": kind, "source": source}


def _quantity(value: Any, unit: str) -> dict[str, Any]:
    return {"value": _jsonable(value), "unit": unit}


def _estimate_json(e: EnergyEstimate) -> dict[str, Any]:
    return {
        "model": e.model,
        "device": e.device,
        "kind": e.kind,
        "source": e.source,
        "method": e.method,
        "dynamic_energy": _energy(e.dynamic_j, e.kind, e.source),
        "total_energy": _energy(e.total_j, e.kind, e.source),
        "latency": _quantity(e.latency_s, "s per inference"),
        "accuracy": _quantity(e.accuracy, "fraction"),
        "per_layer_energy": {
            str(layer): _energy(j, e.kind, e.source) for layer, j in e.per_layer_j.items()
        },
        "constants": {
            str(name): {"value": _jsonable(v), "unit": "J per op", "kind": "constant", "source": e.source}
            for name, v in e.constants.items()
        },
        "notes": e.notes,
    }


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
        "extra": _jsonable(m.extra),
    }


def _row_json(r: SummaryRow) -> dict[str, Any]:
    return {
        "model": r.model,
        "device": r.device,
        "kind": r.kind,
        "source": r.source,
        "accuracy": _quantity(r.accuracy, "fraction"),
        "latency": _quantity(r.latency_s, "s"),
        "dynamic_energy": _energy(r.dynamic_j, r.kind, r.source),
        "total_energy": _energy(r.total_j, r.kind, r.source),
        "notes": r.notes,
    }


def report_to_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready dicts: energy numbers as {value, unit, kind, source}."""
    return {
        "title": report.title,
        "created": report.created,
        "data_source": report.data_source,
        "synthetic_data": report.is_synthetic,
        "summary": [_row_json(r) for r in report.summary],
        "estimates": [_estimate_json(e) for e in report.estimates],
        "measurements": [_measurement_json(m) for m in report.measurements],
        "layer_counts": {
            "units": "per sample, summed over time steps: spikes, synaptic operations, neuron updates (counts)",
            "models": _jsonable(report.layer_counts),
        },
        "accuracy": _jsonable(report.accuracy),
        "parity": _jsonable(report.parity),
        "export": _jsonable(report.export),
        "assumptions": list(report.assumptions),
        "environment": _jsonable(report.environment),
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


def _plot_energy_per_device(rows: Sequence[SummaryRow]) -> str | None:
    data = [r for r in rows if r.dynamic_j is not None and r.dynamic_j > 0]
    if not data:
        return None
    fig = _figure(7.5, 0.8 + 0.45 * len(data) + 1.0)
    ax = fig.add_subplot(1, 1, 1)
    labels = [_short(f"{r.model} @ {r.device}", 48) for r in data]
    y = np.arange(len(data))
    ax.barh(
        y,
        [r.dynamic_j for r in data],
        color=[_KIND_COLOR.get(r.kind, "#607d8b") for r in data],
        hatch=None,
        edgecolor="black",
    )
    for bar, r in zip(ax.patches, data):
        bar.set_hatch(_KIND_HATCH.get(r.kind, ""))
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    values = [float(r.dynamic_j) for r in data]  # type: ignore[arg-type]
    ax.set_xlim(min(values) / 10, max(values) * 10)  # bars start a decade below the smallest value
    for yi, v in zip(y, values):
        ax.annotate(format_energy(v), (v, yi), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_xlabel("dynamic energy per inference (J, log scale)")
    ax.set_title("Energy per inference by device")
    from matplotlib.patches import Patch

    present = sorted({r.kind for r in data}, key=lambda k: _KINDS.index(k) if k in _KINDS else 9)
    ax.legend(
        handles=[Patch(facecolor=_KIND_COLOR.get(k, "#607d8b"), hatch=_KIND_HATCH.get(k, ""), edgecolor="black", label=k) for k in present],
        fontsize=8,
        loc="best",
    )
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


def _plot_accuracy_vs_energy(rows: Sequence[SummaryRow]) -> str | None:
    data = [r for r in rows if r.accuracy is not None and r.dynamic_j is not None and r.dynamic_j > 0]
    if not data:
        return None
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for kind in sorted({r.kind for r in data}):
        pts = [r for r in data if r.kind == kind]
        ax.scatter(
            [r.dynamic_j for r in pts],
            [100 * r.accuracy for r in pts],  # type: ignore[operator]
            c=_KIND_COLOR.get(kind, "#607d8b"),
            marker="o" if kind == "measured" else "^",
            label=kind,
            edgecolors="black",
        )
        for r in pts:
            # Points of one model share a height: label them by device, slanted so neighbours stay legible.
            ax.annotate(_short(r.device, 24), (r.dynamic_j, 100 * r.accuracy), fontsize=6,  # type: ignore[operator]
                        xytext=(2, 4), textcoords="offset points", rotation=40, ha="left", va="bottom")
    ax.set_xscale("log")
    energies = [float(r.dynamic_j) for r in data]  # type: ignore[arg-type]
    ax.set_xlim(min(energies) / 30, max(energies) * 30)
    for model in dict.fromkeys(r.model for r in data):
        acc = next(100 * r.accuracy for r in data if r.model == model)  # type: ignore[operator]
        ax.annotate(_short(model, 24), (min(energies) / 25, acc), fontsize=7, fontweight="bold", va="center")
    ax.margins(y=0.35)
    ax.set_xlabel("dynamic energy per inference (J, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy vs energy")
    ax.legend(fontsize=8)
    return _png_data_uri(fig)


# ----------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;line-height:1.4}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.tag{display:inline-block;padding:.05em .5em;border-radius:.8em;font-size:.8em;font-weight:600;white-space:nowrap}
.tag-measured{background:#c8e6c9;color:#1b5e20;border:1px solid #2e7d32}
.tag-estimated{background:#ffe0b2;color:#8a4b00;border:1px dashed #ef8f00}
.tag-not-measurable{background:#eee;color:#555;border:1px dotted #777}
.source{color:#555;font-size:.85em} .muted{color:#777}
.datasource{padding:.4em .8em;background:#e3f2fd;border-left:4px solid #1565c0}
.synthetic{padding:.6em .8em;background:#ffebee;border:2px solid #c62828;color:#b71c1c;font-weight:700;font-size:1.1em}
img{max-width:100%;border:1px solid #ddd;margin:.4em 0}
"""


def _tag(kind: str) -> str:
    cls = "tag-" + kind.replace(" ", "-")
    return f'<span class="tag {_e(cls)}">{_e(kind)}</span>'


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
    return f"<table>{rows}</table>"


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


def _energy_cell(value: float | None, row: SummaryRow) -> str:
    if value is not None:
        return f'<td class="num" title="{_e(repr(float(value)))} J">{_e(format_energy(value))}</td>'
    if row.kind == "not measurable":
        reason = row.notes or "no counter available"
        text = reason if "not measurable" in reason.lower() else f"not measurable here: {reason}"
        return f'<td class="muted">{_e(text)}</td>'
    return '<td class="muted">—</td>'


def _summary_table(report: Report) -> str:
    head = (
        "<tr><th>model</th><th>device</th><th>accuracy</th><th>latency</th>"
        "<th>energy / inference (dynamic)</th><th>energy / inference (total)</th>"
        "<th>measured / estimated</th><th>source</th><th>notes</th></tr>"
    )
    body = ""
    for r in report.summary:
        body += (
            f"<tr><td>{_e(r.model)}</td><td>{_e(r.device)}</td>"
            f'<td class="num">{_e(format_accuracy(r.accuracy))}</td>'
            f'<td class="num">{_e(format_seconds(r.latency_s))}</td>'
            f"{_energy_cell(r.dynamic_j, r)}{_energy_cell(r.total_j, r)}"
            f"<td>{_tag(r.kind)}</td><td class=source>{_e(r.source)}</td><td class=source>{_e(r.notes)}</td></tr>"
        )
    if not report.measurements:
        body += (
            '<tr><td colspan="9" class="muted">Measured energy: not measurable here: '
            "no measurement was taken in this run (no energy counter was read); every energy figure "
            "above is an estimate.</td></tr>"
        )
    if not report.summary:
        return f"<table>{head}{body}</table><p class=muted>No results were given to this report.</p>"
    return f"<table>{head}{body}</table>"


def _measurements_section(measurements: Sequence[EnergyMeasurement]) -> str:
    if not measurements:
        return "<p class=muted>No measurements in this run.</p>"
    body = "".join(
        f"<tr><td>{_e(m.model)}</td><td>{_e(m.device)}</td><td>{_e(m.runtime)}</td>"
        f'<td class="num">{_e(_fmt_value(m.batch_size))}</td>'
        f'<td class="num">{_e(format_seconds(m.latency_s))}</td>'
        f'<td class="num">{_e("—" if m.throughput_sps is None else f"{m.throughput_sps:.4g}")}</td>'
        f'<td class="num">{_e(format_energy(m.dynamic_j))}</td><td class="num">{_e(format_energy(m.total_j))}</td>'
        f"<td>{_tag(m.kind)}</td><td class=source>{_e(m.method)}</td><td class=source>{_e(m.notes)}</td></tr>"
        for m in measurements
    )
    head = (
        "<tr><th>model</th><th>device</th><th>runtime</th><th>batch</th><th>latency / batch</th>"
        "<th>throughput (samples/s)</th><th>dynamic / sample</th><th>total / sample</th><th>kind</th>"
        "<th>method</th><th>notes</th></tr>"
    )
    return f"<table>{head}{body}</table>"


def _plot_section(title: str, uri: str | None, missing: str) -> str:
    if uri is None:
        return f"<h3>{_e(title)}</h3><p class=muted>{_e(missing)}</p>"
    return f'<h3>{_e(title)}</h3><img alt="{_e(title)}" src="{uri}">'


def _export_section(export: dict[str, Any]) -> str:
    if not export:
        return "<p class=muted>No Loihi export in this run.</p>"
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


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (inline CSS, embedded PNG plots, escaped text)."""
    if report.is_synthetic:
        source_html = (
            f'<p class="synthetic">DATA: SYNTHETIC PHANTOMS — not real chest X-rays; accuracy numbers say '
            f"nothing about clinical use. ({_e(report.data_source)})</p>"
        )
    else:
        source_html = f'<p class="datasource">Data: {_e(report.data_source)}</p>'

    plots = "".join(
        [
            _plot_section("Energy per inference per device", _plot_energy_per_device(report.summary),
                          "No energy figures to plot."),
            _plot_section("Per-layer energy breakdown", _plot_layer_breakdown(report.estimates),
                          "No per-layer energy estimates to plot."),
            _plot_section("Spikes per layer", _plot_spikes_per_layer(report.layer_counts),
                          "No per-layer spike counts to plot."),
            _plot_section("Accuracy vs energy", _plot_accuracy_vs_energy(report.summary),
                          "No rows with both accuracy and energy to plot."),
        ]
    )

    if report.accuracy:
        clinical = "".join(f"<h3>{_e(model)}</h3>{_kv_table(metrics)}" for model, metrics in report.accuracy.items())
    else:
        clinical = "<p class=muted>No clinical metrics in this run.</p>"

    parity = _kv_table(report.parity) if report.parity else "<p class=muted>No parity check in this run.</p>"
    assumptions = "".join(f"<p>{_e(a)}</p>" for a in report.assumptions) or "<p class=muted>None stated.</p>"
    environment = _kv_table(report.environment) if report.environment else "<p class=muted>Not recorded.</p>"

    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{_e(report.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(report.title)}</h1><p class=muted>Created {_e(report.created)}</p>{source_html}"
        f"<h2>Summary</h2>{_summary_table(report)}"
        "<p class=source>Tags: " + _tag("measured") + " read from a hardware energy counter; "
        + _tag("estimated") + " operation counts × published per-op constants; "
        + _tag("not measurable") + " no counter available here.</p>"
        f"<h2>Measurements</h2>{_measurements_section(report.measurements)}"
        f"<h2>Plots</h2>{plots}"
        f"<h2>Clinical metrics</h2>{clinical}"
        f"<h2>Loihi export</h2>{_export_section(report.export)}"
        f"<h2>Parity: float model vs emulator vs Lava</h2>{parity}"
        f"<h2>Assumptions and what is left out</h2>{assumptions}"
        f"<h2>Environment</h2>{environment}"
        "</body></html>\n"
    )


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
        report.summary = summary_from(report.estimates, report.measurements)
    html_path, json_path = out / "report.html", out / "report.json"
    payload = json.dumps(report_to_json(report), indent=2, allow_nan=False, ensure_ascii=False)
    page = render_html(report)
    write_text(json_path, payload + "\n")
    write_text(html_path, page)
    return html_path, json_path


def collect_environment() -> dict[str, Any]:
    """Versions and hardware for the report: python, torch, lava, onnxruntime, CPU, GPU or 'none'."""
    from importlib import metadata

    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("neurocxr", "torch", "snntorch", "norse", "nir", "lava-nc", "lava-dl", "onnxruntime", "numpy"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = "not installed"
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env["cpu"] = f"{cpu or platform.machine()} ({os.cpu_count()} logical cores)"
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception:  # a broken CUDA setup must not break the report
        gpu = "none (CUDA not usable)"
    env["gpu"] = gpu
    return env
