"""The wheel a plain `pip install .` builds holds every module and template, and the installed wheel
runs from outside the checkout (an editable install would hide a forgotten package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds and installs a wheel

REPO = Path(__file__).resolve().parents[1]
# Source folder -> package it installs as (setup.py remaps the two top-level folders).
TREES = {
    "neurocxr": "neurocxr",
    "exporters": "neurocxr/exporters",
    "hardware_sims": "neurocxr/hardware_sims",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    # Build from a copy so the build leaves no build/ or *.egg-info in the checkout.
    for name in ["pyproject.toml", "setup.py", "README.md", *TREES]:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("neurocxr-*.whl")
    return whl


def _expected_files() -> set[str]:
    expected = set()
    for folder, package in TREES.items():
        for path in (REPO / folder).rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix == ".py" or path.suffix in {".j2", ".css"} or path.name == "py.typed":
                expected.add(f"{package}/{path.relative_to(REPO / folder).as_posix()}")
    return expected


def test_wheel_holds_every_module_and_template(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _expected_files()
    assert (
        "neurocxr/evaluation/__init__.py" in expected
        and "neurocxr/report/templates/report.html.j2" in expected
    )
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing}"


def test_installed_wheel_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Only the installed copy may be importable: the target folder first on the path, the checkout
    # nowhere (cwd is elsewhere; the editable install's finder comes after PYTHONPATH).
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import neurocxr, neurocxr.evaluation, neurocxr.exporters.netx, "
            "neurocxr.hardware_sims.emulator; print(neurocxr.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert where.returncode == 0, where.stderr[-2000:]
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout
    for args in (["--help"], ["explain", "--help"], ["evaluate", "--help"]):
        run = subprocess.run(
            [str(site / "bin" / "neurocxr"), *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=300,
        )
        assert run.returncode == 0, (args, run.stdout[-1000:], run.stderr[-2000:])
        assert "Usage" in run.stdout
