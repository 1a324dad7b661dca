"""Atomic writes and the no-overwrite rule for output folders."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import math
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from neurocxr.errors import Interrupted, NeurocxrError


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp creates 0600 files; give the result the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types for anything the project writes: numpy scalars and arrays, tuples and sets,
    Paths, enums, dataclasses and objects with ``to_dict``. NaN and +-inf become ``None`` (JSON has no
    such numbers); anything else unknown becomes its ``str``. The one converter behind every JSON file."""
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "tolist") and callable(obj.tolist):  # torch tensors
        return to_jsonable(obj.tolist())
    return str(obj)


def dumps_json(data: Any, *, indent: int | None = 2, **kwargs: Any) -> str:
    """Strict JSON text (``allow_nan=False``: the output always parses with a strict parser)."""
    kwargs.setdefault("ensure_ascii", False)
    return json.dumps(to_jsonable(data), indent=indent, allow_nan=False, **kwargs)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as strict JSON, atomically."""
    return write_text(path, dumps_json(data) + "\n")


def prepare_out_dir(out_dir: str | Path, files: Iterable[str], force: bool) -> Path:
    """Create ``out_dir``; refuse when any of ``files`` already exists there unless ``force``."""
    out = Path(out_dir)
    existing = [f for f in files if (out / f).exists()]
    if existing and not force:
        raise NeurocxrError(
            f"{out} already holds {', '.join(existing)}; pass force=True (--force) to "
            "overwrite, or choose another out folder (-o)"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.contextmanager
def staged_output(out_dir: str | Path, files: Iterable[str], force: bool) -> Iterator[Path]:
    """Write a command's outputs into a hidden staging folder beside ``out_dir``; move them into
    place only when the block finishes. On any error (Ctrl-C included) nothing is left behind and
    existing files in ``out_dir`` are untouched.

    ``files`` are the names the command will write (checked for the no-overwrite rule up front).
    Usage::

        with staged_output(out, ["model.net", "report.json"], force) as stage:
            write_netx(program, stage / "model.net")
    """
    out = Path(out_dir)
    names = list(files)
    if out.exists() and not out.is_dir():
        raise NeurocxrError(f"{out} exists and is not a folder; choose another -o folder")
    _refuse_existing(out, names, force)
    # The staging folder sits in the nearest existing ancestor (same file system, so the final
    # os.replace is atomic per file) and no folder is created before the block succeeds.
    anchor = out.resolve().parent
    while not anchor.exists():
        anchor = anchor.parent
    try:
        stage = Path(
            tempfile.mkdtemp(prefix=f".{out.name or 'out'}.", suffix=".staging", dir=anchor)
        )
    except OSError as exc:
        raise NeurocxrError(
            f"cannot write under {anchor} ({exc.strerror or exc}); choose another -o folder"
        ) from None
    try:
        yield stage
        staged = sorted(p for p in stage.rglob("*") if not p.is_dir())
        # Names the command did not announce up front get the same no-overwrite rule.
        _refuse_existing(out, [str(p.relative_to(stage)) for p in staged], force)
        moved = False
        try:
            with _sigint_deferred():
                try:
                    out.mkdir(parents=True, exist_ok=True)
                    for item in staged:
                        target = out / item.relative_to(stage)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(item, target)
                    moved = True
                except OSError as exc:
                    raise NeurocxrError(
                        f"cannot move the outputs into {out} ({exc.strerror or exc})"
                    ) from None
        except KeyboardInterrupt:
            if not moved:
                raise
            # Ctrl-C came while the finished files were being moved: all of them are in place now
            raise Interrupted(f"the outputs were complete and have been written to {out}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _refuse_existing(out: Path, names: Iterable[str], force: bool) -> None:
    existing = [f for f in names if (out / f).exists()]
    if existing and not force:
        raise NeurocxrError(
            f"{out} already holds {', '.join(existing)}; pass force=True (--force) to "
            "overwrite, or choose another out folder (-o)"
        )
    folders = [f for f in existing if (out / f).is_dir()]
    if folders:
        raise NeurocxrError(
            f"{out}: {', '.join(folders)} is a folder where a file goes; remove it or choose another -o folder"
        )


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C while finished files are moved into place (a few renames), then deliver it:
    the output folder never holds half of a command's files."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[Any] = []
    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: received.append((signum, frame)))
    except (
        ValueError,
        OSError,
    ):  # not allowed here (e.g. embedded interpreter): move without deferral
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(*received[0])
        elif received and previous == signal.SIG_DFL:
            raise KeyboardInterrupt
