"""Where a number came from: git commit (and whether the tree was dirty), checkpoint and data
hashes, threads. Every benchmark JSON and report carries this block so a figure can be traced
back to the exact code, model and data that produced it."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


# Outputs, not code: a benchmark rewrites its JSON (and the README its tables) while it runs, which
# must not mark the code that computes the numbers as uncommitted.
NOT_CODE = (":(exclude)benchmarks/results", ":(exclude)*.md")


def git_state() -> dict[str, Any]:
    """Commit hash and dirty flag (uncommitted changes to tracked files other than benchmark
    results and Markdown) of the repository this package runs from (None outside git)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", *NOT_CODE)
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def file_record(path: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """Path, size and sha256 of a checkpoint or data file (None when there is none)."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        return {"path": str(p), "sha256": None, "bytes": None}
    return {"path": str(p.resolve()), "sha256": file_sha256(p), "bytes": p.stat().st_size}


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def threads() -> dict[str, Any]:
    import torch

    return {
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
    }


# Libraries whose versions decide what a model computes and how it is exported and simulated.
TRACKED_PACKAGES = (
    "neurocxr",
    "torch",
    "snntorch",
    "norse",
    "nir",
    "lava-nc",
    "lava-dl",
    "onnxruntime",
    "numpy",
)


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when it is not installed)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def gpu_name() -> str:
    """The CUDA devices torch sees, or 'none'."""
    try:
        import torch

        if torch.cuda.is_available():
            return ", ".join(
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            )
    except Exception:  # a broken CUDA setup must not break a report
        return "none (CUDA not usable)"
    return "none"


def environment() -> dict[str, Any]:
    """Software and hardware a report ran on: Python, platform, CPU, GPU, library versions."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cuda": gpu_name(),
        "packages": package_versions(),
    }


def provenance(
    *,
    checkpoints: dict[str, str | os.PathLike[str] | None] | None = None,
    data: str | os.PathLike[str] | None = None,
    data_source: str | None = None,
) -> dict[str, Any]:
    """The block every benchmark result and report records beside its numbers."""
    return {
        "git": git_state(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "threads": threads(),
        "checkpoints": {k: file_record(v) for k, v in (checkpoints or {}).items()},
        "data": {"source": data_source, "file": file_record(data) if data else None},
    }
