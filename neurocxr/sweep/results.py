"""A sweep's results: the per-trial files (resume bookkeeping), the table with seed ensembles, the
validation-selected Pareto front, and the clean-up after Ctrl-C.

The sweep directory holds ``trials/<id>.json`` (one per finished trial, keyed by a hash of
everything that defines the trial: a rerun skips those with status "ok"), ``results.jsonl`` (one
row per trial, the table), ``pareto.json`` and ``pareto.png``, and ``checkpoints/<id>.pt`` (the
trained model of each trial, loadable with `neurocxr.load`; on a cluster the sweep directory must
be on a shared file system). A trial that fails is recorded with status "failed" and its error;
the sweep goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurocxr.fileio import atomic_write, dumps_json, write_json
from neurocxr.metrics import choose_threshold, clinical_metrics
from neurocxr.sweep.plots import plot_pareto

RESULTS_FILE = "results.jsonl"


@dataclass
class SweepResult:
    """What `run_sweep` returns: the table's rows, the Pareto front, counts and the files written."""

    out_dir: Path
    rows: list[dict[str, Any]]
    front: list[dict[str, Any]]
    ran: int
    skipped: int
    failed: int
    files: dict[str, Path]


def _public_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as results.jsonl has it: without the chip scores and the traceback."""
    return {k: v for k, v in row.items() if k not in ("scores", "traceback")}


def ensemble_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed ensembles: trials equal but for the seed, chip scores averaged (each member's score
    divided by its validation spread), energy summed (every member runs on the chip)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("status") != "ok" or "scores" not in r or r.get("ensemble_of"):
            continue
        key = json.dumps(
            {k: v for k, v in r["params"].items() if k != "seed"}, sort_keys=True, default=str
        )
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        row = _ensemble_row(sorted(members, key=lambda r: r["seed"]))
        if row is not None:
            out.append(row)
    return out


def _ensemble_row(members: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row of one seed ensemble (members sorted by seed); None when a member lacks its scores."""
    try:
        y_val = np.asarray(members[0]["scores"]["val_labels"])
        y_test = np.asarray(members[0]["scores"]["test_labels"])
        # each member's scores over its validation spread, averaged (already arrays; asarray types them)
        val = np.asarray(
            sum(
                np.asarray(m["scores"]["val"]) / (np.std(m["scores"]["val"]) or 1.0)
                for m in members
            )
            / len(members)
        )
        test = np.asarray(
            sum(
                np.asarray(m["scores"]["test"]) / (np.std(m["scores"]["val"]) or 1.0)
                for m in members
            )
            / len(members)
        )
    except (KeyError, ValueError):
        return None
    threshold = choose_threshold(y_val, val, "youden")
    tm = clinical_metrics(y_test, test, threshold)
    energy: dict[str, dict[str, float | None]] = {}
    for prof in members[0]["energy"]:
        dyn = sum(m["energy"][prof]["dynamic_j"] for m in members)
        totals = [m["energy"][prof]["total_j"] for m in members]
        energy[prof] = {
            "dynamic_j": dyn,
            "total_j": None if any(t is None for t in totals) else sum(totals),
        }
    base = dict(members[0])
    base.update(
        trial_id="ens-"
        + hashlib.sha256("".join(m["trial_id"] for m in members).encode()).hexdigest()[:12],
        model=f"{members[0]['model']} x{len(members)} seeds",
        seed=[m["seed"] for m in members],
        ensemble_of=[m["trial_id"] for m in members],
        val_auc=clinical_metrics(y_val, val).roc_auc,
        test_auc=tm.roc_auc,
        test_accuracy=tm.accuracy,
        test_sensitivity=tm.sensitivity,
        test_specificity=tm.specificity,
        energy=energy,
        val_auc_float=None,
        test_auc_float=None,
        float_chip_agreement=None,
        seconds=sum(m.get("seconds", 0.0) for m in members),
    )
    base["params"] = {**members[0]["params"], "seed": [m["seed"] for m in members]}
    for per_member in (
        "scores",
        "best_epoch",
        "epochs_run",
        "seconds_per_epoch",
        "resources",
        "chip_threshold",
        "val_float_chip_agreement",
        "test_float_chip_agreement",
    ):
        base.pop(per_member, None)
    base["chip_threshold"] = float(threshold)
    base["ensemble_rule"] = (
        "mean of member chip scores, each divided by its validation std; energy = sum of members"
    )
    return base


def pareto_front(rows: list[dict[str, Any]], profile: str = "loihi2") -> list[dict[str, Any]]:
    """Deployable, successful trials not beaten on both validation AUC (higher) and ``profile``
    dynamic energy (lower), cheapest first. Selection uses validation only; a trial no better than
    chance on validation (AUC <= 0.5, e.g. a network the regulariser silenced) is not a front point."""
    ok = [
        r
        for r in rows
        if r.get("status") == "ok"
        and r.get("deployable")
        and r.get("val_auc") is not None
        and profile in (r.get("energy") or {})
        and np.isfinite(r["val_auc"])
        and r["val_auc"] > 0.5
    ]
    ok.sort(key=lambda r: (r["energy"][profile]["dynamic_j"], -r["val_auc"]))
    front, best = [], -np.inf
    for r in ok:
        if r["val_auc"] > best:
            front.append(r)
            best = r["val_auc"]
    return front


def read_trials(trials_dir: Path) -> dict[str, dict[str, Any]]:
    """The finished trials' rows by trial id (a broken file is left out, so its trial runs again)."""
    done = {}
    for p in sorted(trials_dir.glob("*.json")):
        try:
            row = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a broken file is rerun
        if isinstance(row, dict) and "trial_id" in row:
            done[row["trial_id"]] = row
    return done


def write_tables(
    out_dir: Path, trials: list[dict[str, Any]], profile: str, ensembles: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """results.jsonl, pareto.json and pareto.png from the per-trial files of this sweep."""
    rows = list(trials) + (ensemble_rows(trials) if ensembles else [])
    public = [_public_row(r) for r in rows]
    front = pareto_front(public, profile)

    def write_jsonl(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            for r in public:
                fh.write(dumps_json(r, indent=None) + "\n")

    atomic_write(out_dir / RESULTS_FILE, write_jsonl)
    write_json(
        out_dir / "pareto.json",
        {
            "trials": public,
            "pareto": front,
            "pareto_profile": profile,
            "selection": "validation ROC-AUC (chip) vs dynamic energy; test reported, not used",
        },
    )
    if any(r.get("status") == "ok" for r in public):
        plot_pareto(public, front, out_dir / "pareto.png", profile)
    return public, front


def sweep_outputs(out: Path) -> tuple[Path, ...]:
    """The files and folders of a sweep directory besides the finished trials."""
    return (
        out / "sweep_config.toml",
        out / "ray",
        out / RESULTS_FILE,
        out / "pareto.json",
        out / "pareto.png",
    )


@dataclass
class SweepJournal:
    """What a sweep run created and finished, for the clean-up after Ctrl-C."""

    created: list[Path]
    recorded: list[dict[str, Any]] = field(default_factory=list)  # rows this run wrote
    todo_ids: list[str] = field(default_factory=list)  # trials this run was to run
    started_at: float = field(
        default_factory=time.time
    )  # files of those trials modified since are this run's


def discard_interrupted(out: Path, journal: SweepJournal) -> str:
    """After Ctrl-C: remove what this run wrote except finished trials (their row and checkpoint,
    which a rerun skips); return what is left, for the user."""
    created = journal.created
    kept = {r["trial_id"] for r in journal.recorded if r.get("status") == "ok"}
    trials_dir, checkpoints = out / "trials", out / "checkpoints"
    for tid in journal.todo_ids:
        if (
            tid not in kept
        ):  # this run's row or checkpoint of an unfinished trial (or one failed by the interrupt)
            for path in (trials_dir / f"{tid}.json", checkpoints / f"{tid}.pt"):
                with contextlib.suppress(OSError):
                    if path.stat().st_mtime >= journal.started_at:
                        path.unlink()
            for path in checkpoints.glob(
                f".{tid}.pt.*.tmp"
            ):  # a checkpoint write cut short when Ray stopped its worker
                path.unlink(missing_ok=True)
    for path in sweep_outputs(out):
        if path in created:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(
                missing_ok=True
            )
    for path in (
        checkpoints,
        trials_dir,
        out,
    ):  # folders this run made, when nothing is left in them
        if path in created and path.is_dir():
            with contextlib.suppress(OSError):
                path.rmdir()
    if kept:
        return (
            f"kept {len(kept)} finished trial(s) in {trials_dir} (rerun the same command to continue from them); "
            "nothing else was written"
        )
    return "no output was written"
