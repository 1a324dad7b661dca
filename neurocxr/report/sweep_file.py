"""Reading a sweep's results table (from `neurocxr sweep` or benchmarks/pareto.py) into a
`SweepTable`: a sweep output folder, JSON lines, CSV or JSON, energy nested or in flat columns."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from neurocxr.errors import NeurocxrError
from neurocxr.report.model import SweepTable

__all__ = ["read_sweep"]

_SWEEP_FILES = (
    "results.jsonl",
    "trials.jsonl",
    "results.csv",
    "trials.csv",
    "results.json",
    "pareto.json",
)


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
                energy[str(device)] = {
                    "dynamic_j": _num(v.get("dynamic_j")),
                    "total_j": _num(v.get("total_j")),
                }
            else:
                energy[str(device)] = {"dynamic_j": _num(v), "total_j": None}
    for key, value in raw.items():
        m = _FLAT_ENERGY.match(str(key))
        if m:
            energy.setdefault(m["device"], {"dynamic_j": None, "total_j": None})[m["field"]] = _num(
                value
            )
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
            raise NeurocxrError(
                f"{p} holds no sweep results table ({', '.join(_SWEEP_FILES)}); "
                "run `neurocxr sweep` first"
            )
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
                pareto = [
                    _normalise_trial(t) for t in data.get("pareto") or [] if isinstance(t, dict)
                ]
            else:
                raw = list(data)
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as err:
        raise NeurocxrError(f"{p} is not a readable sweep table: {err}") from None
    trials = [_normalise_trial(t) for t in raw if isinstance(t, dict)]
    if not trials:
        raise NeurocxrError(f"{p} lists no trials")
    return SweepTable(source=str(p), trials=trials, pareto=pareto)
