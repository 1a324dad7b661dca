"""How the report writes numbers: SI prefixes, percentages, AUCs, frame rates and plain values,
with ``—`` for a missing or non-finite number. Shared by the verdict, the plots and the HTML."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from neurocxr.fileio import to_jsonable

__all__ = ["format_energy", "format_seconds", "format_accuracy", "format_rate", "format_auc"]

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
