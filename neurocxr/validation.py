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

from neurocxr.errors import CheckpointError, ConfigError, DataError

SPLITS = ("train", "val", "test")


def check_int(
    name: str,
    value: Any,
    low: int | None = None,
    high: int | None = None,
    *,
    allow_none: bool = False,
) -> int | None:
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


def check_float(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
) -> float | None:
    """``value`` as a finite float in the interval (bounds optional), else ConfigError naming it."""
    if value is None and allow_none:
        return None
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    interval = (
        ("(" if low_open or low is None else "[")
        + f"{lo}, {hi}"
        + (")" if high_open or high is None else "]")
    )
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(float(value))
    ):
        raise ConfigError(f"{name} must be a finite number in {interval}, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ConfigError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def parse_int_list(name: str, text: str) -> tuple[int, ...]:
    """A comma-separated list of integers from the command line ("2,1,2"), else ConfigError naming it."""
    parts = [part.strip() for part in str(text).split(",")]
    try:
        values = tuple(int(part) for part in parts)
    except ValueError:
        raise ConfigError(
            f"{name} must be comma-separated integers such as 2,1,2,1, got {text!r}"
        ) from None
    return values


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
    what = " and ".join(
        p for p in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} inf" if n_inf else "") if p
    )
    return f"{what} value{'s' if bad.sum() > 1 else ''} (first at index {first})"


def check_finite_state(tensors: Mapping[str, Any], where: str) -> None:
    """Refuse a state_dict (weights, biases, thresholds, buffers) holding NaN or inf, naming the tensor."""

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
        raise DataError(
            f"{what} hold {problem}; clean the data (NaN/inf pixels cannot be classified)"
        )


# Process-wide default for progress bars: the CLI's --no-progress (or NEUROCXR_PROGRESS=0) turns them off.
_progress_default = os.environ.get("NEUROCXR_PROGRESS", "1").strip().lower() not in (
    "0",
    "false",
    "no",
    "off",
)


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


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def file_kind(path: Any) -> str:
    """What ``path`` holds, sniffed from its bytes (suffix only as a tie-break): "missing",
    "directory", "empty", "checkpoint" (a torch zip), "npz", "zip", "npy", "nir", "netx", "hdf5",
    "onnx", "toml", "image" or "unknown"."""
    from pathlib import Path

    p = Path(path).expanduser()
    if p.is_dir():
        return "directory"
    if not p.exists():
        return "missing"
    try:
        if p.stat().st_size == 0:
            return "empty"
        with open(p, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return "unknown"
    suffix = p.suffix.lower()
    if head.startswith(b"PK"):
        import zipfile

        try:
            with zipfile.ZipFile(p) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return (
                "checkpoint"
                if suffix in (".pt", ".pth")
                else ("npz" if suffix == ".npz" else "zip")
            )
        if any(n.endswith("data.pkl") for n in names):
            return "checkpoint"  # torch.save writes <name>/data.pkl into its zip
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        return "zip"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(_HDF5_MAGIC):
        if suffix == ".nir":
            return "nir"
        if suffix == ".net":
            return "netx"
        try:
            import h5py

            with h5py.File(p, "r") as h5:
                keys = set(h5.keys())
        except Exception:  # noqa: BLE001  an unreadable HDF5 file is still HDF5
            return "hdf5"
        return "nir" if "node" in keys else ("netx" if "layer" in keys else "hdf5")
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff"):
        return "image"
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".toml":
        return "toml"
    if head[:2] == b"\x80\x02" or head[:1] == b"\x80":  # legacy (non-zip) torch pickle
        return "checkpoint" if suffix in (".pt", ".pth") else "unknown"
    return "unknown"


_KIND_HINTS = {
    "directory": "is a directory, not a file",
    "empty": "is empty (0 bytes)",
    "checkpoint": "is a torch checkpoint (.pt); commands take it as their CHECKPOINT argument "
    "(`neurocxr evaluate / export / energy`)",
    "npz": "is an npz data archive; give it as --data (e.g. `neurocxr evaluate model.pt --data file.npz`)",
    "npy": "is a single .npy array; data must be a MedMNIST .npz (train/val/test) or a Kermany folder, "
    "spike trains go to `neurocxr export graph.nir --spikes file.npy`",
    "nir": "is a NIR graph (HDF5); export it with `neurocxr export graph.nir -o OUT --target loihi`",
    "netx": "is a Loihi netx network (HDF5); read it with `neurocxr netx file.net`",
    "hdf5": "is an HDF5 file, neither a NIR graph nor a netx network neurocxr recognises",
    "onnx": "is an ONNX model (an export output); neurocxr reads checkpoints (.pt), not ONNX files",
    "toml": "is a TOML file; sweep configs go to `neurocxr sweep config.toml -o OUT`, device "
    "profiles to `neurocxr energy --profiles-file`",
    "image": "is an image; single images go to `neurocxr explain CHECKPOINT IMAGE... -o OUT`, "
    "data sets are a MedMNIST .npz or a Kermany folder",
    "zip": "is a zip archive but neither an npz data archive nor a torch checkpoint",
}


def describe_file(path: Any) -> str | None:
    """A clause saying what ``path`` really is and which command reads it ("is a NIR graph ...;
    export it with ..."), or None when it is missing or of no kind neurocxr recognises."""
    return _KIND_HINTS.get(file_kind(path))


def check_threshold(value: Any, where: str) -> float:
    """A stored operating threshold: a finite number in [0, 1], else CheckpointError (a NaN or
    out-of-range threshold would call every case one class with exit code 0)."""

    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float, np.integer, np.floating))
        and math.isfinite(float(value))
        and 0.0 <= float(value) <= 1.0
    )
    if not ok:
        raise CheckpointError(
            f"{where}: its stored operating threshold is {value!r}, not a probability in [0, 1]; the file is "
            "damaged or was edited — retrain it (`neurocxr train`) or fix metadata['threshold']"
        )
    return float(value)


PIXEL_RULE = (
    "images are read as: uint8 / 255, uint16 / 65535 (the dtype's full range, never stretched "
    "per image), floats as they are and must lie in [0, 1]"
)


def images_to_unit_range(arr: Any, what: str = "images") -> np.ndarray:
    """The one pixel rule for every entry point (README "Image values"): uint8 divided by 255,
    uint16 by 65535, floats kept and required to lie in [0, 1]; bool, other integers, NaN/inf
    and negative or > 1 floats are refused with DataError. Returns float32."""
    a = arr.detach().cpu().numpy() if hasattr(arr, "detach") else np.asarray(arr)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(65535.0)
    if not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"{what} have dtype {a.dtype}; {PIXEL_RULE}")
    check_finite_inputs(a, what)
    if a.size:
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(f"{what} hold values {lo:g}..{hi:g} outside [0, 1]; {PIXEL_RULE}")
    return a.astype(np.float32, copy=False)


def check_both_classes(labels: Any, what: str, why: str) -> None:
    """Refuse a split that lacks a class where a threshold or an AUC must be computed from it."""
    y = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    present = set(np.unique(y).astype(int).tolist()) if y.size else set()
    missing = [name for k, name in enumerate(("normal (0)", "pneumonia (1)")) if k not in present]
    if missing:
        raise DataError(
            f"{what} holds {len(y)} image(s) and no {' or '.join(missing)} ones; {why} needs both classes "
            "(use a data set whose split has both)"
        )


def refuse_unused_options(given: Mapping[str, Any], why: str) -> None:
    """Refuse options that were given (not None) but would be ignored: saying so beats a silent no-op
    that the user believes changed the answer. ``why`` says where they do apply."""
    unused = [name for name, value in given.items() if value is not None]
    if unused:
        raise ConfigError(
            f"{' and '.join(unused)} {'has' if len(unused) == 1 else 'have'} no effect here: "
            f"{'it applies' if len(unused) == 1 else 'they apply'} {why}; leave "
            f"{'it' if len(unused) == 1 else 'them'} out"
        )


def missing_file_message(path: Any, what: str) -> str:
    """Why ``path`` cannot be read as a ``what`` file: "is a directory, not a file" for a folder (not
    the misleading "does not exist"), else "does not exist"."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        return f"{what} {p} is a directory, not a file; give a file"
    return f"{what} {p} does not exist"
