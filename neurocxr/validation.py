"""Checks shared by every entry point: option values, finite tensors and inputs, progress bars.

Each check raises a `neurocxr.errors` type whose message names the value, what is accepted and
what to do, so the CLI can print it as one line (exit code 2) before anything is written.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Iterable, Mapping

import numpy as np

from neurocxr.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None, *,
              allow_none: bool = False) -> int | None:
    """``value`` as an int in [low, high] (bounds optional), else ConfigError with the accepted range."""
    if value is None and allow_none:
        return None
    parts = []
    if low is not None:
        parts.append(f">= {low}")
    if high is not None:
        parts.append(f"<= {high}")
    accepted = "an integer" + (" " + " and ".join(parts) if parts else "")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be {accepted}, got {value!r}")
    if not math.isfinite(float(value)) or float(value) != int(value):
        raise ConfigError(f"{name} must be {accepted}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{name} must be {accepted}, got {value!r}")
    return int(value)


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False, allow_none: bool = False) -> float | None:
    """``value`` as a finite float in the interval (bounds optional), else ConfigError naming it."""
    if value is None and allow_none:
        return None
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    interval = ("(" if low_open or low is None else "[") + f"{lo}, {hi}" + (")" if high_open or high is None else "]")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be a finite number in {interval}, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ConfigError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else ConfigError listing them."""
    options = list(choices)
    if value not in options:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(map(str, options))}")
    return value


def check_split(split: Any) -> str:
    return check_choice("split", split, SPLITS)


def nonfinite_summary(arr: Any) -> str | None:
    """None when every value is finite, else e.g. "3 NaN and 1 inf values (first at index (0, 2))"."""
    a = arr.detach().cpu().numpy() if hasattr(arr, "detach") else np.asarray(arr)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating)):
        return None
    bad = ~np.isfinite(a)
    if not bad.any():
        return None
    n_nan = int(np.isnan(a).sum())
    n_inf = int(bad.sum()) - n_nan
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    what = " and ".join(p for p in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} inf" if n_inf else "") if p)
    return f"{what} value{'s' if bad.sum() > 1 else ''} (first at index {first})"


def check_finite_state(tensors: Mapping[str, Any], where: str) -> None:
    """Refuse a state_dict (weights, biases, thresholds, buffers) holding NaN or inf, naming the tensor."""
    from neurocxr.errors import CheckpointError

    for key, value in tensors.items():
        if not hasattr(value, "shape"):
            continue
        problem = nonfinite_summary(value)
        if problem:
            raise CheckpointError(
                f"{where}: tensor {key!r} holds {problem}; the training diverged or the file is damaged — "
                "retrain (e.g. a lower --lr) or use another checkpoint"
            )


def check_finite_inputs(arr: Any, what: str = "inputs") -> None:
    """Refuse images or other inputs holding NaN or inf (they would be silently wrong answers)."""
    problem = nonfinite_summary(arr)
    if problem:
        raise DataError(f"{what} hold {problem}; clean the data (NaN/inf pixels cannot be classified)")


# Process-wide default for progress bars: the CLI's --no-progress (or NEUROCXR_PROGRESS=0) turns them off.
_progress_default = os.environ.get("NEUROCXR_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off")


def set_progress(enabled: bool) -> None:
    """Turn progress bars on or off for every later `show_progress(None)` in this process."""
    global _progress_default
    _progress_default = bool(enabled)


def show_progress(requested: bool | None = None, stream: Any = None) -> bool:
    """Whether to draw tqdm bars: when asked (None: the process default, see `set_progress`) and
    the stream (stderr) is a terminal, so logs and pipes never fill with bar redraws."""
    if requested is None:
        requested = _progress_default
    if not requested:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
