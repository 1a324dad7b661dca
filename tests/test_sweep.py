"""`neurocxr sweep`: a real two-trial sweep on Ray in local mode, resuming, failure recording,
config checking (one line, exit code 2, before anything starts) and the Pareto front."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest

from neurocxr.errors import ConfigError
from neurocxr.sweep import (
    load_sweep_config,
    pareto_front,
    run_sweep,
    run_trial,
    sweep_config_from_dict,
    trial_id,
)
from neurocxr.sweep.config import TrialSettings
from neurocxr.sweep.trial import row_base

TINY_TRAIN = {"epochs": 1, "batch_size": 16}


def _config_text(npz: Path, extra: str = "") -> str:
    return f"""
[sweep]
data = "{npz}"
profiles = ["loihi", "loihi2", "horowitz45-fp32"]
max_eval_samples = 12

[grid]
model = ["snn_strided"]
num_steps = [2]
regulariser = [0.0, 0.001]
width = [0.5]
seed = [0]

[train]
epochs = 4
batch_size = 8
lr = 5e-3
schedule = "cosine"
{extra}
"""


@pytest.fixture
def tiny_npz(medmnist_npz) -> Path:
    return medmnist_npz(counts={"train": (16, 16), "val": (6, 6), "test": (6, 6)})


@pytest.mark.slow
def test_two_trial_sweep_on_local_ray_then_resume(tiny_npz: Path, tmp_path: Path) -> None:
    cfg_path = tmp_path / "sweep.toml"
    cfg_path.write_text(_config_text(tiny_npz, "[ray]\nnum_cpus = 2\nmax_concurrent = 2\n"))
    cfg = load_sweep_config(cfg_path)
    out = tmp_path / "sweep"
    seen: list[dict] = []
    environ, amdsmi_entry = dict(os.environ), sys.modules.get("amdsmi", "absent")
    # progress=True: Tune pickles its callbacks, and the progress bar (a lock) must stay out of that.
    result = run_sweep(cfg, out, progress=True, on_trial=seen.append)
    # no RAY_/TUNE_ variable, amdsmi workaround or Ray start-up setting outlives the sweep
    assert dict(os.environ) == environ and sys.modules.get("amdsmi", "absent") is amdsmi_entry
    assert result.ran == 2 and result.skipped == 0 and result.failed == 0
    assert len(seen) == 2 and {r["regulariser"] for r in seen} == {0.0, 0.001}
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["status"] == "ok", row.get("error")
        assert row["deployable"] is True and row["model"] == "snn_strided"
        assert set(row["energy"]) == {"loihi", "loihi2", "horowitz45-fp32"}
        assert all(e["dynamic_j"] > 0 for e in row["energy"].values())
        assert 0.0 <= row["val_auc"] <= 1.0 and 0.0 <= row["test_auc"] <= 1.0
        assert "scores" not in row  # per-sample scores stay in the per-trial files
        assert (out / "trials" / f"{row['trial_id']}.json").is_file()
        assert Path(row["checkpoint"]) == (out / "checkpoints" / f"{row['trial_id']}.pt").resolve()
    # The checkpoint is the trained (quantisation-ready) model: it reloads and exports.
    from neurocxr.exporters.loihi import to_program
    from neurocxr.models.loaded import load

    loaded = load(rows[0]["checkpoint"])
    assert loaded.config.name == "snn_strided" and to_program(loaded)[1].num_steps == 2
    pareto = json.loads((out / "pareto.json").read_text())
    assert {"trials", "pareto"} <= set(pareto)
    assert [r["trial_id"] for r in pareto["pareto"]] == [r["trial_id"] for r in pareto_front(rows)]
    assert (
        1 <= len(pareto["pareto"]) <= 2
    )  # the toy task is learnt (val AUC > 0.5), so the front is not empty
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Resume: nothing left to run, Ray is not even started, the table is the same.
    again = run_sweep(load_sweep_config(cfg_path), out, progress=False)
    assert again.ran == 0 and again.skipped == 2
    assert sorted(r["trial_id"] for r in again.rows) == sorted(r["trial_id"] for r in rows)


def test_resume_reruns_only_missing_and_failed_trials(
    tiny_npz: Path, tmp_path: Path, monkeypatch
) -> None:
    """The resume bookkeeping without Ray: finished 'ok' trials are skipped, failed ones rerun."""
    from neurocxr.sweep import ray_runner
    from neurocxr.sweep.trial import row_base

    cfg = sweep_config_from_dict(
        {
            "sweep": {"data": str(tiny_npz), "max_eval_samples": 6},
            "grid": {"regulariser": [0.0, 0.1, 0.2], "width": [0.25], "num_steps": [1]},
            "train": TINY_TRAIN,
        }
    )
    out = tmp_path / "sweep"
    calls: list[list[str]] = []

    def fake_ray(todo, settings, options, out_dir, record, progress):
        calls.append([t for t, _ in todo])
        for i, (tid, params) in enumerate(todo):
            row = row_base(params).to_dict()
            failed = len(calls) == 1 and i == 0
            row.update(
                trial_id=tid,
                status="failed" if failed else "ok",
                error="boom" if failed else None,
                val_auc=0.6 + 0.1 * i,
                test_auc=0.5,
                test_accuracy=0.5,
                energy={"loihi2": {"dynamic_j": 1e-6 * (i + 1), "total_j": None}},
            )
            record(row)

    monkeypatch.setattr(ray_runner, "run_on_ray", fake_ray)
    first = run_sweep(cfg, out, progress=False)
    assert first.ran == 3 and first.failed == 1
    assert any(r["status"] == "failed" and r["error"] == "boom" for r in first.rows)
    second = run_sweep(cfg, out, progress=False)
    assert second.ran == 1 and second.skipped == 2 and second.failed == 0
    assert calls[1] == [calls[0][0]]  # only the failed trial ran again


def test_a_failing_trial_is_recorded_not_raised(tmp_path: Path) -> None:
    params = {
        "model": "snn_strided",
        "num_steps": 2,
        "encoding": "direct",
        "regulariser": 0.0,
        "width": 0.25,
        "seed": 0,
    }
    row = run_trial(
        params, TrialSettings(data=str(tmp_path / "missing.npz"), train=TINY_TRAIN, model={})
    )
    assert row.status == "failed" and row.result is None and row.traceback
    assert "missing.npz" in (row.error or "")
    assert row.point.model == "snn_strided" and row.seconds >= 0
    as_dict = row.to_dict()
    assert list(as_dict)[:9] == list(row_base(params).to_dict())
    assert list(as_dict)[9:] == ["status", "error", "traceback", "seconds"]


@pytest.mark.parametrize(
    "data,needle",
    [
        ({"grid": {"modle": ["snn_conv"]}}, "grid.modle"),
        ({"train": {"epochz": 1}}, "train.epochz"),
        ({"sweeep": {}}, "sweeep"),
        ({"sweep": {"profiles": ["no-such-chip"]}}, "no-such-chip"),
        ({"grid": {"num_steps": [0]}}, "num_steps"),
        ({"grid": {"num_steps": [17]}}, "num_steps"),
        ({"grid": {"model": []}}, "grid.model"),
        ({"grid": {"model": ["resnet18"]}}, "CNN"),
        ({"grid": {"model": ["nope"]}}, "nope"),
        ({"grid": {"width": [0]}}, "width"),
        ({"grid": {"regulariser": [-1]}}, "regulariser"),
        ({"grid": {"num_steps": [2], "readout_steps": [4]}}, "no possible trial"),
        ({"grid": {"epochs": [1]}, "train": {"epochs": 2}}, "grid.epochs"),
        ({"train": {"seed": 1}}, "grid.seed"),
        ({"ray": {"cpus": 2}}, "ray.cpus"),
    ],
)
def test_bad_configs_name_the_problem(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        sweep_config_from_dict(data, "cfg.toml")
    assert needle in str(err.value)


def test_grid_union_and_readout_steps_and_stable_ids() -> None:
    from neurocxr.sweep import expand_grid

    cfg = sweep_config_from_dict(
        {"grid": [{"num_steps": [2, 4], "readout_steps": [2, 3]}, {"num_steps": [2]}]}
    )
    points = expand_grid(cfg)
    pairs = sorted((p["num_steps"], p.get("readout_steps", 0)) for p in points)
    assert pairs == [
        (2, 0),
        (2, 2),
        (4, 2),
        (4, 3),
    ]  # (2, 3) skipped: cannot read out after step 3 of 2
    s = cfg.settings().to_dict()
    assert list(s) == [
        "data",
        "train",
        "model",
        "profiles",
        "max_eval_samples",
        "regulariser_profile",
    ]
    assert trial_id(points[0], s) == trial_id(dict(points[0]), dict(s))
    assert len({trial_id(p, s) for p in points}) == len(points)


def test_unreachable_ray_address_fails_before_anything_starts(
    tmp_path: Path, tiny_npz: Path
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = sweep_config_from_dict({"sweep": {"data": str(tiny_npz)}, "train": TINY_TRAIN})
    with pytest.raises(ConfigError, match="unreachable"):
        run_sweep(cfg, tmp_path / "out", address=f"127.0.0.1:{port}", progress=False)
    assert not (tmp_path / "out").exists()


def test_pareto_front_uses_validation_and_deployable_trials_only() -> None:
    def row(
        val: float, uj: float, test: float = 0.5, deployable: bool = True, status: str = "ok"
    ) -> dict:
        return {
            "status": status,
            "deployable": deployable,
            "val_auc": val,
            "test_auc": test,
            "energy": {"loihi2": {"dynamic_j": uj * 1e-6, "total_j": None}},
        }

    rows = [
        row(0.90, 5),
        row(0.95, 10),
        row(0.93, 20, test=0.99),
        row(0.97, 40),
        row(0.99, 1, deployable=False),
        row(0.999, 1, status="failed"),
        row(0.5, 0.5),
    ]
    front = pareto_front(rows)
    assert [(r["val_auc"], r["energy"]["loihi2"]["dynamic_j"] * 1e6) for r in front] == [
        (0.90, 5),
        (0.95, 10),
        (0.97, 40),
    ]


def test_cli_sweep_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from neurocxr.cli import app

    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nmodel = ['snn_strided']\nunknown_axis = [1]\n")
    result = CliRunner().invoke(app, ["sweep", str(bad), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "grid.unknown_axis" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    broken = tmp_path / "broken.toml"
    broken.write_text("[grid\n")
    result = CliRunner().invoke(app, ["sweep", str(broken), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_reading_out_early_runs_fewer_chip_steps(tiny_npz: Path) -> None:
    """readout_steps < num_steps: the same trained network, exported to run fewer steps, costs less."""
    base = {
        "model": "snn_strided",
        "num_steps": 2,
        "encoding": "direct",
        "regulariser": 0.0,
        "width": 0.25,
        "seed": 0,
    }
    settings = TrialSettings(
        data=str(tiny_npz), train=TINY_TRAIN, model={}, profiles=["loihi2"], max_eval_samples=6
    )
    full = run_trial(base, settings)
    early = run_trial({**base, "readout_steps": 1}, settings)
    assert full.status == "ok" and early.status == "ok", (full.error, early.error)
    assert full.result is not None and early.result is not None
    assert early.point.readout_steps == 1 and full.point.readout_steps == 2
    assert early.result.energy["loihi2"]["dynamic_j"] < full.result.energy["loihi2"]["dynamic_j"]
    assert len(early.result.scores["test"]) == 6
    row = full.to_dict()  # the results.jsonl row: grid point, training, chip results, status
    assert row["readout_steps"] == 2 and row["energy"] == full.result.energy
    assert list(row)[9:15] == [
        "checkpoint",
        "data",
        "synthetic",
        "best_epoch",
        "epochs_run",
        "seconds_per_epoch",
    ]
    assert list(row)[-3:] == ["status", "error", "seconds"] and "traceback" not in row


def _broken_amdsmi(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `amdsmi` that raises KeyError on import (a wheel without its native library), importable
    by this process, by the probe's subprocess and by Ray's processes."""
    from neurocxr.sweep import ray_runner

    (root / "amdsmi").mkdir(parents=True)
    (root / "amdsmi" / "__init__.py").write_text("raise KeyError('libamd_smi.so')\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", str(root))
    ray_runner._amdsmi_is_broken.cache_clear()
    assert ray_runner._amdsmi_is_broken()


@pytest.mark.slow
def test_a_ray_session_hides_a_broken_amdsmi_and_gives_everything_back(
    tmp_path: Path, monkeypatch
) -> None:
    """Ray starts with a broken amdsmi installed: hidden in this process while the session runs, and
    in the workers through runtime_env (the shim first on their PYTHONPATH); afterwards sys.modules,
    os.environ and the caller's RAY_/TUNE_ values are as they were."""
    from neurocxr.sweep import RayOptions, ray_runner

    _broken_amdsmi(tmp_path / "site", monkeypatch)
    monkeypatch.setenv("RAY_DEDUP_LOGS", "1")  # the caller's own value stays
    monkeypatch.delenv("TUNE_DISABLE_SIGINT_HANDLER", raising=False)
    environ, had_amdsmi = dict(os.environ), "amdsmi" in sys.modules
    try:
        with ray_runner.ray_session(RayOptions(num_cpus=1)) as ray:
            assert sys.modules["amdsmi"] is None
            assert os.environ["PYTHONPATH"] == str(
                tmp_path / "site"
            )  # the shim only while Ray started
            assert (
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
                and os.environ["RAY_DEDUP_LOGS"] == "1"
            )

            @ray.remote(num_cpus=1)
            def worker_amdsmi() -> str:
                try:
                    import amdsmi  # noqa: F401
                except ImportError as exc:
                    return f"ImportError: {exc}"
                except Exception as exc:  # noqa: BLE001 - what the test reports
                    return f"{type(exc).__name__}: {exc}"
                return "imported"

            said = ray.get(worker_amdsmi.remote(), timeout=120)
        assert said.startswith("ImportError: amdsmi hidden by neurocxr.sweep"), said
        assert not ray.is_initialized()
        assert ("amdsmi" in sys.modules) == had_amdsmi
        assert dict(os.environ) == environ
    finally:
        ray_runner._amdsmi_is_broken.cache_clear()
