"""``report.html``: one self-contained page rendered from the jinja2 templates in
``neurocxr/report/templates`` (autoescaped, plus a few pre-escaped tables): inline CSS, plots as
base64 PNG data URIs (no external files), every piece of text escaped. The first screen is a
one-sentence verdict with numbers, the accuracy-vs-energy plot and one compact table (one row per
model x device, a measured / estimated / not-measurable badge, footnotes instead of repeated notes);
sources, per-layer detail and the rest follow below."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from neurocxr.energy.types import EnergyEstimate, EnergyMeasurement
from neurocxr.report.formatting import (
    _finite,
    _fmt_value,
    _is_number,
    _si,
    format_accuracy,
    format_auc,
    format_energy,
    format_rate,
    format_seconds,
)
from neurocxr.report.model import (
    BASIS_LABELS,
    SCOPE_LABELS,
    Report,
    SummaryRow,
    SweepTable,
    _basis_of,
    _pick,
    _sentences,
    _trial_ok,
    is_headline,
    sweep_devices,
)
from neurocxr.report.plots import (
    _plot_accuracy_vs_energy,
    _plot_counting_bases,
    _plot_layer_breakdown,
    _plot_spikes_per_layer,
    _plot_sweep,
)
from neurocxr.report.verdict import sweep_sentence, verdict, verdict_caveats

__all__ = ["TEMPLATE_DIR", "render_html"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


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
        if (
            "not measurable" in low
            or low.startswith("latency and throughput are measured")
            or low.startswith("method:")
            or _is_basis_note(text)
        ):
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


def _headline_estimates(report: Report) -> list[EnergyEstimate]:
    """Estimates of the first-screen table: one layer naming per model (chip layers for the SNN)."""
    baselines = {r.model for r in report.summary if r.is_baseline}
    out = []
    for e in report.estimates:
        basis, scope = _basis_of(e)
        if e.model in baselines or (
            basis == BASIS_LABELS["chip"] and scope == SCOPE_LABELS["device"]
        ):
            out.append(e)
    return out


def _table_context(
    rows: Sequence[SummaryRow], notes: _Footnotes, common: set[str]
) -> list[dict[str, Any]]:
    rows = sorted(rows, key=lambda r: (r.is_baseline, _KIND_ORDER.get(r.kind, 9)))
    out = []
    for r in rows:
        refs = [notes.ref(text) for text in _row_footnotes(r) if text not in common]
        badge = r.kind
        if r.kind == "not measurable" and _finite(r.latency_s):
            badge_text = "latency measured, energy not measurable"
        else:
            badge_text = r.kind
        out.append(
            {
                "model": r.model,
                "device": r.device,
                "basis": ", ".join(x for x in (r.basis, r.scope) if x),
                "accuracy": format_accuracy(r.accuracy),
                "auc": format_auc(r.auc),
                "latency": format_seconds(r.latency_s),
                "fps": format_rate(r.throughput_fps),
                **_slow_bound_cells(
                    r.latency_s_slow_bound, r.throughput_fps_slow_bound, r.total_j_slow_bound
                ),
                "dynamic": format_energy(r.dynamic_j) if r.kind != "not measurable" else "—",
                "total": format_energy(r.total_j) if r.kind != "not measurable" else "—",
                "dynamic_exact": "" if r.dynamic_j is None else f"{float(r.dynamic_j):.6g} J",
                "total_exact": "" if r.total_j is None else f"{float(r.total_j):.6g} J",
                "badge": badge,
                "badge_class": "badge-" + badge.replace(" ", "-"),
                "badge_text": badge_text,
                "refs": sorted(set(refs)),
                "baseline": r.is_baseline,
            }
        )
    return out


# Timing keys already shown in their own columns of the timing table.
_TIMING_SHOWN = {
    "latency_s",
    "throughput_fps",
    "static_j",
    "fps_basis",
    "latency_s_slow_bound",
    "throughput_fps_slow_bound",
    "static_j_slow_bound",
}


def _slow_bound_cells(
    latency_slow: float | None,
    fps_slow: float | None,
    total_slow: float | None = None,
    static_slow: float | None = None,
) -> dict[str, str]:
    """Latency, frames/s, total and static energy at the profile's slow-bound synaptic time, shown
    under the point estimate (empty where the profile gives no bracket)."""
    return {
        "latency_slow": "" if latency_slow is None else format_seconds(latency_slow),
        "fps_slow": "" if fps_slow is None else format_rate(fps_slow),
        "total_slow": "" if total_slow is None else format_energy(total_slow),
        "static_slow": "" if static_slow is None else format_energy(static_slow),
    }


def _timing_rows(report: Report) -> list[dict[str, Any]]:
    rows = []
    for e in report.estimates:
        if (
            e.latency_s is None
            and getattr(e, "throughput_fps", None) is None
            and not getattr(e, "timing", None)
        ):
            continue
        timing = getattr(e, "timing", None) or {}
        basis, _ = _basis_of(e)
        rows.append(
            {
                "model": e.model,
                "device": e.device,
                "basis": basis,
                "latency": format_seconds(e.latency_s),
                "fps": format_rate(getattr(e, "throughput_fps", None)),
                **_slow_bound_cells(
                    timing.get("latency_s_slow_bound"),
                    timing.get("throughput_fps_slow_bound"),
                    getattr(e, "total_j_slow_bound", None),
                    timing.get("static_j_slow_bound"),
                ),
                "static": format_energy(getattr(e, "static_j", None)),
                "dynamic": format_energy(e.dynamic_j),
                "total": format_energy(e.total_j),
                "timing": ", ".join(
                    f"{k} = {_fmt_unit(k, v)}"
                    for k, v in timing.items()
                    if not isinstance(v, (dict, list)) and k not in _TIMING_SHOWN and v is not None
                ),
            }
        )
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


def _bases_rows(report: Report) -> list[dict[str, Any]]:
    """Rows of the counting-bases table; reads energy.bases.compare_bases keys (and shorter aliases)."""
    rows = []
    for b in report.counting_bases:
        ratio = _pick(b, "synaptic_ops_ratio", "ratio_chip_to_neurobench", "ratio")
        dense_ratio = _pick(b, "dense_ops_ratio")
        chip_fan, nb_fan = _pick(b, "chip_fan_in"), _pick(b, "neurobench_fan_in")
        why = _pick(b, "explanation", "why") or ""
        if not why and _finite(ratio):
            why = (
                "pooling fused into this layer on the chip: a larger kernel per spike"
                if b.get("pool_fused")
                else "same network on both bases; counts differ only where quantisation changes spikes"
            )
        rows.append(
            {
                "layer": _pick(b, "chip_layer", "layer"),
                "float_layer": _pick(b, "neurobench_layer", "float_layer") or "",
                "op_type": _pick(b, "neurobench_op_type", "op_type") or "",
                "fan_in": ""
                if chip_fan is None
                else (f"{chip_fan} / {nb_fan}" if nb_fan is not None else str(chip_fan)),
                "chip": _fmt_ops(_pick(b, "chip_synaptic_ops", "chip_effective_ops")),
                "neurobench": _fmt_ops(
                    _pick(b, "neurobench_synaptic_ops", "neurobench_effective_ops")
                ),
                "ratio": "—" if not _finite(ratio) else f"{float(ratio):.2f}×",
                "chip_dense": _fmt_ops(_pick(b, "chip_dense_ops")),
                "neurobench_dense": _fmt_ops(_pick(b, "neurobench_dense_ops")),
                "dense_ratio": "—" if not _finite(dense_ratio) else f"{float(dense_ratio):.2f}×",
                "why": why,
            }
        )
    return rows


def _fmt_ops(v: Any) -> str:
    return "—" if not _finite(v) else f"{float(v):,.0f}"


def _bases_total(report: Report) -> str | None:
    total = (report.counting_bases_summary or {}).get("total") or {}
    ratio = _pick(total, "synaptic_ops_ratio", "ratio")
    if _finite(ratio):
        return f"{float(ratio):.2f}"
    chip = sum(
        float(_pick(b, "chip_synaptic_ops", "chip_effective_ops") or 0)
        for b in report.counting_bases
    )
    nb = sum(
        float(_pick(b, "neurobench_synaptic_ops", "neurobench_effective_ops") or 0)
        for b in report.counting_bases
    )
    if chip <= 0 or nb <= 0:
        return None
    return f"{chip / nb:.2f}"


def _sweep_rows(sweep: SweepTable | None) -> list[dict[str, Any]]:
    if sweep is None:
        return []
    devices = sweep_devices(sweep)
    rows = []
    for t in sorted(sweep.trials, key=lambda t: -(t.get("val_auc") or -1)):
        rows.append(
            {
                "model": t.get("model", ""),
                "num_steps": _fmt_value(t.get("num_steps")),
                "encoding": t.get("encoding", "") or "",
                "val_auc": format_auc(t.get("val_auc")),
                "test_auc": format_auc(t.get("test_auc")),
                "test_accuracy": format_accuracy(t.get("test_accuracy")),
                "energy": [
                    format_energy((t["energy"].get(d) or {}).get("dynamic_j")) for d in devices
                ],
                "status": str(t.get("status") or ("ok" if _trial_ok(t) else "no energy")),
            }
        )
    return rows


def _operating_rows(op: dict[str, Any]) -> list[dict[str, str]]:
    if not op:
        return []
    rows = []
    for label, key, thr in (
        ("float model (PyTorch)", "float_test", op.get("float_threshold")),
        ("chip (Loihi emulator)", "chip_test", op.get("threshold")),
    ):
        m = op.get(key) or {}
        rows.append(
            {
                "what": label,
                "threshold": "—" if not _finite(thr) else f"{float(thr):.4f}",  # type: ignore[arg-type]
                "accuracy": format_accuracy(m.get("accuracy")),
                "sensitivity": format_accuracy(m.get("sensitivity")),
                "specificity": format_accuracy(m.get("specificity")),
                "auc": format_auc(m.get("roc_auc")),
            }
        )
    return rows


def _code_version(provenance: dict[str, Any]) -> str:
    git = (provenance or {}).get("git") or {}
    if not git.get("commit"):
        return ""
    return str(git["commit"])[:10] + (" (uncommitted changes)" if git.get("dirty") else "")


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (inline CSS, embedded PNG plots, escaped text)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    context = {
        "r": report,
        **_first_screen_context(report),
        **_summary_tables_context(report),
        **_detail_context(report),
    }
    return env.get_template("report.html.j2").render(**context)


def _first_screen_context(report: Report) -> dict[str, Any]:
    """Verdict, caveats and the main plot: the sweep panels when the report has a sweep (the
    report's own rows then get their plot further down), else accuracy vs energy of the rows."""
    sweep_plot = _plot_sweep(report.sweep, report.summary) if report.sweep is not None else None
    rows_plot = _plot_accuracy_vs_energy([r for r in report.summary if is_headline(r)])
    return {
        "verdict": verdict(report),
        "verdict_caveats": verdict_caveats(report),
        "sweep_sentence": sweep_sentence(report),
        "code_version": _code_version(report.provenance),
        "main_plot": sweep_plot or rows_plot,
        "main_plot_is_sweep": sweep_plot is not None,
        "rows_plot": rows_plot if sweep_plot is not None else None,
    }


def _summary_tables_context(report: Report) -> dict[str, Any]:
    """The first-screen table and the second one below it, sharing one footnote numbering (the
    first table's notes are numbered first)."""
    notes = _Footnotes()
    common = set(_common_footnotes(report.summary))
    table = _table_context([r for r in report.summary if is_headline(r)], notes, common)
    first_notes = list(notes.texts)
    other_table = _table_context([r for r in report.summary if not is_headline(r)], notes, common)
    return {
        "table": table,
        "footnotes": first_notes,
        "other_table": other_table,
        "other_footnotes": notes.texts[len(first_notes) :],
        "other_footnotes_start": len(first_notes) + 1,
        "common_notes": _common_footnotes(report.summary),
        "basis_legend": _basis_legend(report.summary),
        "not_measurable": report.not_measurable,
        "no_measurements": not report.measurements,
    }


def _detail_context(report: Report) -> dict[str, Any]:
    """Everything below the first screen: operating point, counting bases, timing, per-layer plots,
    measurements, sweep table, sources and the pre-escaped key/value tables."""
    op = report.operating_point
    return {
        "operating_rows": _operating_rows(op),
        "operating": op,
        "bases": _bases_rows(report),
        "bases_total": _bases_total(report),
        "bases_plot": _plot_counting_bases(report.counting_bases),
        "timing": _timing_rows(report),
        "layer_plot": _plot_layer_breakdown(_headline_estimates(report)),
        "spikes_plot": _plot_spikes_per_layer(report.layer_counts),
        "measurements": [_measurement_row(m) for m in report.measurements],
        "sweep_rows": _sweep_rows(report.sweep),
        "sweep_devices": sweep_devices(report.sweep) if report.sweep is not None else [],
        "sources": _sources(report),
        "clinical": {
            model: Markup(_kv_table(metrics)) for model, metrics in report.accuracy.items()
        },
        "export_html": Markup(_export_section(report.export)) if report.export else None,
        "parity_html": Markup(_kv_table(report.parity)) if report.parity else None,
        "provenance_html": Markup(_kv_table(report.provenance)) if report.provenance else None,
        "environment_html": Markup(_kv_table(report.environment)) if report.environment else None,
    }


def _measurement_row(m: EnergyMeasurement) -> dict[str, Any]:
    return {
        "model": m.model,
        "device": m.device,
        "runtime": m.runtime,
        "batch": _fmt_value(m.batch_size),
        "latency": format_seconds(m.latency_s),
        "fps": format_rate(m.throughput_sps),
        "dynamic": format_energy(m.dynamic_j),
        "total": format_energy(m.total_j),
        "kind": m.kind,
        "badge_class": "badge-" + m.kind.replace(" ", "-"),
        "method": m.method,
    }


def _export_section(export: dict[str, Any]) -> str:
    parts = []
    if _is_records(export.get("layers")):
        parts.append(
            "<h3>Layers (scale, quantisation error)</h3>" + _records_table(export["layers"])
        )
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
