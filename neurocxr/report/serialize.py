"""``report.json``: the report's content as JSON-ready dicts, every energy number as
``{"value", "unit", "kind", "source"}`` and every other physical number with its unit, numpy types
converted (the one place the report becomes JSON)."""

from __future__ import annotations

from typing import Any

from neurocxr.energy.types import EnergyEstimate, EnergyMeasurement
from neurocxr.fileio import to_jsonable
from neurocxr.report.model import Report, SummaryRow, _basis_of
from neurocxr.report.verdict import (
    BaselineChoice,
    _pick_cnn_choice,
    sweep_sentence,
    verdict,
    verdict_caveats,
)

__all__ = ["report_to_json"]


def _energy(
    value: float | None, kind: str, source: str, unit: str = "J per inference"
) -> dict[str, Any]:
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
            str(name): {
                "value": to_jsonable(v),
                "unit": "J per op",
                "kind": "constant",
                "source": e.source,
            }
            for name, v in e.constants.items()
        },
        "notes": e.notes,
    }
    if getattr(e, "static_j", None) is not None:
        out["static_energy"] = _energy(e.static_j, e.kind, e.source)  # type: ignore[attr-defined]
    if getattr(e, "total_j_slow_bound", None) is not None:  # bracketed profiles only (Loihi 2)
        out["total_energy_slow_bound"] = _energy(e.total_j_slow_bound, e.kind, e.source)  # type: ignore[attr-defined]
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
    out: dict[str, Any] = {
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
    if r.latency_s_slow_bound is not None:  # only rows whose profile gives a bracket (Loihi 2)
        out["latency_slow_bound"] = _quantity(r.latency_s_slow_bound, "s")
        out["throughput_slow_bound"] = _quantity(r.throughput_fps_slow_bound, "inferences per s")
    if r.total_j_slow_bound is not None:  # bracketed profiles with static power
        out["total_energy_slow_bound"] = _energy(r.total_j_slow_bound, r.kind, r.source)
    return out


def _choice_json(choice: BaselineChoice) -> dict[str, Any]:
    """Which baseline the verdict names and why, for report.json."""
    r = choice.row
    return {
        "model": r.model if r else None,
        "device": r.device if r else None,
        "match": choice.match,
        "snn_test_auc": choice.snn_auc,
        "baseline_test_auc": choice.baseline_auc,
        "rule": "cheapest CNN baseline whose test ROC-AUC is at least the SNN's (like for like: measured, "
        "else memory-inclusive, else any)",
    }


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
