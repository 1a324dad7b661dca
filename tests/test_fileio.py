"""The one JSON writer: whatever the project writes parses with a strict JSON parser."""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurocxr.fileio import dumps_json, to_jsonable, write_json


def _strict_loads(text: str) -> object:
    def refuse(token: str) -> object:
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Inner:
    value: float
    colour: Colour


def test_nan_and_inf_become_null_everywhere(tmp_path: Path) -> None:
    data = {
        "py": [float("nan"), float("inf"), -float("inf"), 1.5],
        "np": np.array([np.nan, 2.0], dtype=np.float32),
        "scalar": np.float64("nan"),
        "int": np.int64(7),
        "flag": np.bool_(True),
        "nested": Inner(value=float("nan"), colour=Colour.RED),
        "tensor": torch.tensor([1.0, float("inf")]),
        "path": Path("/a/b"),
        "tuple": (1, 2),
    }
    path = write_json(tmp_path / "x.json", data)
    parsed = _strict_loads(path.read_text(encoding="utf-8"))
    assert parsed == {
        "py": [None, None, None, 1.5],
        "np": [None, 2.0],
        "scalar": None,
        "int": 7,
        "flag": True,
        "nested": {"value": None, "colour": "red"},
        "tensor": [1.0, None],
        "path": "/a/b",
        "tuple": [1, 2],
    }


def test_dumps_json_never_emits_nan() -> None:
    text = dumps_json({"a": float("nan")}, indent=None)
    assert text == '{"a": null}'
    assert to_jsonable(np.float16("inf")) is None


@pytest.mark.parametrize("value", [object(), b"bytes"])
def test_unknown_objects_become_strings(value: object) -> None:
    assert isinstance(_strict_loads(dumps_json({"v": value}))["v"], str)  # type: ignore[index]


def test_git_state_is_dirty_for_code_not_for_benchmark_results_or_markdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A benchmark rewrites its own JSON (and the README its table) while it runs: that must not
    mark the code that computed the numbers as uncommitted; a changed source file must."""
    import subprocess

    from neurocxr import provenance

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    files = {"code.py": "x = 1\n", "README.md": "# r\n", "benchmarks/results/run.json": "{}\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    assert provenance.git_state()["dirty"] is False
    (tmp_path / "benchmarks/results/run.json").write_text('{"rows": 1}\n')
    (tmp_path / "README.md").write_text("# table\n")
    assert provenance.git_state()["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.git_state()["dirty"] is True
