"""Accuracy-vs-energy sweeps on Ray Tune: every trial trains, exports, runs on the chip emulator, counts
and estimates energy; the validation-selected Pareto front comes out as a table and a plot.

    neurocxr sweep sweep.toml -o runs/sweep            # Ray starts locally
    neurocxr sweep sweep.toml -o runs/sweep --address 10.0.0.5:6379

The config (TOML)::

    [sweep]                      # all optional
    data = "/path/pneumoniamnist.npz"   # default: $NEUROCXR_DATA, ~/.medmnist, else synthetic phantoms
    profiles = ["loihi", "loihi2"]      # energy on these device profiles (default: every registered one)
    max_eval_samples = 200              # cap val/test samples (default: all)
    ensembles = true                    # also score seed ensembles of otherwise equal trials
    pareto_profile = "loihi2"           # the energy axis of the Pareto front
    max_trials = 2000                   # confirm a grid over 1000 combinations (also --max-trials)

    [grid]                       # lists; every combination is a trial
    model = ["snn_strided", "snn_conv"]
    num_steps = [4, 8]
    encoding = ["direct"]
    regulariser = [0.0, 0.01]    # lambda of the chip-cost regulariser (uJ per sample), 0 = off
    width = [1.0, 0.5]           # multiplies channels and hidden sizes
    seed = [0]
    # also allowed as grid axes: readout_steps (read the decision out after that many steps;
    # combinations with readout_steps > num_steps are skipped), the levers of `neurocxr train` under
    # the same names -- depth (snn_vgg), teacher (CNN checkpoint to distil from), convert_from (a
    # cnn_vgg checkpoint to convert; model snn_vgg), augment (none/light/shift), qat_epochs --
    # and any [train] / [model] key

    [train]                      # fixed neurocxr.training.TrainConfig fields
    epochs = 6
    [model]                      # fixed neurocxr.models.ModelConfig fields (beta, threshold, channels, hidden, dropout)
    [ray]                        # num_cpus, max_concurrent, cpus_per_trial, address

Every Ray quirk of neurocxr lives in this module. The sweep directory holds ``trials/<id>.json``
(one per finished trial, keyed by a hash of everything that defines the trial: a rerun skips those
with status "ok"), ``results.jsonl`` (one row per trial, the table), ``pareto.json`` and
``pareto.png``, and ``checkpoints/<id>.pt`` (the trained model of each trial, loadable with
`neurocxr.load`; on a cluster the sweep directory must be on a shared file system). A trial that fails is recorded with status "failed" and its error; the sweep goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neurocxr.errors import ConfigError, Interrupted, NeurocxrError
from neurocxr.fileio import dumps_json

if sys.version_info >= (3, 11):  # pragma: no cover - the project runs on 3.10
    import tomllib
else:
    import tomli as tomllib

SWEEP_KEYS = ("data", "profiles", "max_eval_samples", "ensembles", "pareto_profile", "regulariser_profile", "max_trials")
RAY_KEYS = ("num_cpus", "max_concurrent", "cpus_per_trial", "address")
SECTIONS = ("sweep", "grid", "train", "model", "ray")
# The levers carry the names of `neurocxr train`'s options (neurocxr.training.LEVERS); convert_from,
# augment and qat_epochs are TrainConfig fields, so they are axes as [train] keys are.
CORE_AXES = ("model", "num_steps", "encoding", "regulariser", "width", "seed", "readout_steps", "depth", "teacher")
MODEL_KEYS = ("beta", "threshold", "channels", "hidden", "dropout", "image_size")
DEFAULT_GRID: dict[str, list[Any]] = {
    "model": ["snn_strided"], "num_steps": [4], "encoding": ["direct"], "regulariser": [0.0], "width": [1.0], "seed": [0],
}
MAX_STEPS = 16
# A grid with more combinations than this is refused unless confirmed (--max-trials / sweep.max_trials):
# every trial trains a model, and Ray spends minutes generating very large grids before the first trial.
DEFAULT_MAX_TRIALS = 1000
RESULTS_FILE = "results.jsonl"


def _train_keys() -> tuple[str, ...]:
    from neurocxr.training import TrainConfig

    # seed and the regulariser weight are grid axes with their own names
    return tuple(f.name for f in fields(TrainConfig) if f.name not in ("seed", "chip_cost_weight"))


@dataclass
class RayOptions:
    """How trials are scheduled: a local Ray (``address`` None) with ``num_cpus``, or a cluster."""

    address: str | None = None
    num_cpus: int | None = None
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0


@dataclass
class SweepConfig:
    grid: list[dict[str, list[Any]]]  # one or more blocks; the trials are the union of their combinations
    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    profiles: list[str] | None = None
    max_eval_samples: int | None = None
    ensembles: bool = True
    pareto_profile: str = "loihi2"
    regulariser_profile: str = "loihi2"
    ray: RayOptions = field(default_factory=RayOptions)
    source: str = "<dict>"

    def settings(self) -> dict[str, Any]:
        """What every trial needs besides its grid point (sent to the Ray workers)."""
        return {"data": self.data, "train": dict(self.train), "model": dict(self.model), "profiles": self.profiles,
                "max_eval_samples": self.max_eval_samples, "regulariser_profile": self.regulariser_profile}


# ----------------------------------------------------------------------------------------------
# Config


def _as_list(name: str, value: Any) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(f"grid.{name} is an empty list: the grid has no trials")
    return values


def grid_size(grid: list[dict[str, list[Any]]]) -> int:
    """Combinations in the grid blocks (before duplicates and impossible readouts are dropped)."""
    return sum(math.prod(len(values) for values in block.values()) for block in grid)


def sweep_config_from_dict(data: dict[str, Any], source: str = "<dict>", *, max_trials: int | None = None) -> SweepConfig:
    """Check every section and key; raise ConfigError naming the first problem. ``max_trials``
    (default: sweep.max_trials, else DEFAULT_MAX_TRIALS) caps the grid's combinations."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the sweep config must be a table")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: unknown section [{unknown[0]}]; sections are {', '.join(SECTIONS)}")
    for section in SECTIONS:
        if section in data and not isinstance(data[section], dict) and not (section == "grid" and isinstance(data[section], list)):
            raise ConfigError(f"{source}: [{section}] must be a table of key = value")
    train_keys = _train_keys()
    sweep = dict(data.get("sweep", {}))
    for key in sweep:
        if key not in SWEEP_KEYS:
            raise ConfigError(f"{source}: unknown key sweep.{key}; allowed: {', '.join(SWEEP_KEYS)}")
    ray = dict(data.get("ray", {}))
    for key in ray:
        if key not in RAY_KEYS:
            raise ConfigError(f"{source}: unknown key ray.{key}; allowed: {', '.join(RAY_KEYS)}")
    train = dict(data.get("train", {}))
    for key in train:
        if key not in train_keys:
            hint = " (use grid.seed / grid.regulariser)" if key in ("seed", "chip_cost_weight") else ""
            raise ConfigError(f"{source}: unknown key train.{key}{hint}; allowed: {', '.join(train_keys)}")
    model = dict(data.get("model", {}))
    for key in model:
        if key not in MODEL_KEYS:
            raise ConfigError(f"{source}: unknown key model.{key}; allowed: {', '.join(MODEL_KEYS)}")
    blocks_in = data.get("grid", {})
    blocks_in = blocks_in if isinstance(blocks_in, list) else [blocks_in]  # [[grid]] tables: a union of grids
    if not blocks_in:
        raise ConfigError(f"{source}: [[grid]] is empty: the grid has no trials")
    allowed_axes = CORE_AXES + train_keys + MODEL_KEYS
    grid: list[dict[str, list[Any]]] = []
    for block in blocks_in:
        if not isinstance(block, dict):
            raise ConfigError(f"{source}: every [[grid]] entry must be a table of axis = [values]")
        axes: dict[str, list[Any]] = {}
        for key, value in block.items():
            if key not in allowed_axes:
                raise ConfigError(f"{source}: unknown key grid.{key}; grid axes: {', '.join(CORE_AXES)} or any [train]/[model] key")
            if key in train or key in model:
                raise ConfigError(f"{source}: grid.{key} is also fixed in [{'train' if key in train else 'model'}]; give it once")
            axes[key] = _as_list(key, value)
        for key, value in DEFAULT_GRID.items():
            axes.setdefault(key, list(value))
        grid.append(axes)

    def opt_int(section: dict, key: str, low: int) -> int | None:
        v = section.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"{source}: {key} must be an integer >= {low}, got {v!r}")
        return v

    profiles = sweep.get("profiles")
    if profiles is not None and (not isinstance(profiles, list) or not profiles or not all(isinstance(p, str) for p in profiles)):
        raise ConfigError(f"{source}: sweep.profiles must be a non-empty list of profile names, got {profiles!r}")
    from neurocxr.energy.profiles import get_profile

    for name in (profiles or []) + [sweep.get("pareto_profile", "loihi2"), sweep.get("regulariser_profile", "loihi2")]:
        try:
            get_profile(name)
        except NeurocxrError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    if profiles is not None and sweep.get("pareto_profile", "loihi2") not in profiles:
        raise ConfigError(f"{source}: sweep.pareto_profile {sweep.get('pareto_profile', 'loihi2')!r} is not in sweep.profiles")
    cpus_per_trial = ray.get("cpus_per_trial", 1.0)
    if isinstance(cpus_per_trial, bool) or not isinstance(cpus_per_trial, (int, float)) or not cpus_per_trial > 0:
        raise ConfigError(f"{source}: ray.cpus_per_trial must be a number > 0, got {cpus_per_trial!r}")
    address = ray.get("address")
    if address is not None and not isinstance(address, str):
        raise ConfigError(f"{source}: ray.address must be a string like 'host:6379', got {address!r}")
    data_path = sweep.get("data")
    if data_path is not None and not isinstance(data_path, str):
        raise ConfigError(f"{source}: sweep.data must be a path string, got {data_path!r}")
    ensembles = sweep.get("ensembles", True)
    if not isinstance(ensembles, bool):
        raise ConfigError(f"{source}: sweep.ensembles must be true or false, got {ensembles!r}")
    limit = max_trials if max_trials is not None else opt_int(sweep, "max_trials", 1) or DEFAULT_MAX_TRIALS
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"--max-trials must be an integer >= 1, got {limit!r}")
    combinations = grid_size(grid)
    if combinations > limit:  # counted, not expanded: a huge grid is refused at once
        raise ConfigError(
            f"{source}: the grid has {combinations:,} combinations, over the limit of {limit:,} trials (each trains "
            f"a model); narrow the grid, or confirm with --max-trials {combinations} (or sweep.max_trials)"
        )
    cfg = SweepConfig(
        grid=grid, train=train, model=model, data=data_path, profiles=profiles,
        max_eval_samples=opt_int(sweep, "max_eval_samples", 2), ensembles=ensembles,
        pareto_profile=sweep.get("pareto_profile", "loihi2"), regulariser_profile=sweep.get("regulariser_profile", "loihi2"),
        ray=RayOptions(address=address, num_cpus=opt_int(ray, "num_cpus", 1), max_concurrent=opt_int(ray, "max_concurrent", 1),
                       cpus_per_trial=float(cpus_per_trial)),
        source=source,
    )
    expand_grid(cfg)  # an impossible grid fails here, before anything starts
    return cfg


def load_sweep_config(path: str | Path, *, max_trials: int | None = None) -> SweepConfig:
    """Read and check a sweep TOML file (ConfigError naming the key on any problem); ``max_trials``
    as in `sweep_config_from_dict`."""
    p = Path(path)
    if not p.is_file():
        from neurocxr.validation import missing_file_message

        raise ConfigError(missing_file_message(p, "sweep config"))
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"sweep config {p} is not valid TOML: {exc}") from None
    return sweep_config_from_dict(data, str(p), max_trials=max_trials)


def trial_configs(params: dict[str, Any], settings: dict[str, Any]) -> tuple[Any, Any, int]:
    """(ModelConfig, TrainConfig, readout_steps) of one grid point; ConfigError naming what is wrong."""
    from neurocxr.models import model_info

    train_keys = set(_train_keys())
    model_kw = dict(settings.get("model", {}))
    train_kw = dict(settings.get("train", {}))
    for key, value in params.items():
        if key in train_keys:
            train_kw[key] = value
        elif key in MODEL_KEYS:
            model_kw[key] = value
    name = params["model"]
    try:
        info = model_info(str(name))
    except (ValueError, NeurocxrError) as exc:
        raise ConfigError(f"grid.model: {exc}") from None
    if info.kind != "snn":
        raise ConfigError(f"grid.model: {name!r} is a CNN; a sweep trains SNNs for the chip (CNN baselines go in the energy report)")
    steps = params["num_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ConfigError(f"grid.num_steps: {steps!r} is not an integer in 1..{MAX_STEPS}")
    readout = params.get("readout_steps", steps)
    if isinstance(readout, bool) or not isinstance(readout, int) or not 1 <= readout <= steps:
        raise ConfigError(f"grid.readout_steps: {readout!r} must be an integer in 1..num_steps ({steps})")
    lam = params["regulariser"]
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
        raise ConfigError(f"grid.regulariser: {lam!r} must be a number >= 0 (lambda per uJ)")
    width = params["width"]
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ConfigError(f"grid.width: {width!r} must be a number > 0")
    from neurocxr.training import lever_configs

    model_kw.setdefault("channels", (16, 32))
    model_kw.setdefault("hidden", (128,))
    image_size = model_kw.pop("image_size", 28)
    try:
        model_cfg, train_cfg = lever_configs(
            str(name), image_size=image_size, num_steps=steps, encoding=params["encoding"], depth=params.get("depth"),
            width=float(width), teacher=params.get("teacher"), regulariser=float(lam),
            convert_from=train_kw.pop("convert_from", None), augment=train_kw.pop("augment", "none"),
            qat_epochs=train_kw.pop("qat_epochs", 0), model_fields=model_kw, seed=params["seed"],
            chip_cost_profile=settings.get("regulariser_profile", "loihi2"), **train_kw)
    except (ValueError, TypeError, NeurocxrError) as exc:
        raise ConfigError(f"grid point {params}: {exc}") from None
    from neurocxr.validation import check_model_options

    try:  # an image size export would refuse fails here, not in every trial after training
        check_model_options(model_cfg, size_option="model.image_size", encoding_option="grid.encoding")
    except ConfigError as exc:
        raise ConfigError(f"grid point {params}: {exc}") from None
    return model_cfg, train_cfg, readout


def expand_grid(cfg: SweepConfig) -> list[dict[str, Any]]:
    """Every combination of the grid axes, checked (ConfigError names the first impossible one)."""
    points: list[dict[str, Any]] = []
    seen: set[str] = set()
    combos = []
    for block in cfg.grid:
        keys = sorted(block)
        combos += [dict(zip(keys, values)) for values in itertools.product(*(block[k] for k in keys))]
    for params in combos:
        key = json.dumps(params, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        if "readout_steps" in params and isinstance(params["readout_steps"], int) and isinstance(params["num_steps"], int) \
                and not isinstance(params["readout_steps"], bool) and params["readout_steps"] > params["num_steps"]:
            continue  # reading out after more steps than the model runs is not a trial
        trial_configs(params, cfg.settings())
        points.append(params)
    if not points:
        raise ConfigError(f"{cfg.source}: the grid has no possible trial (every readout_steps exceeds num_steps)")
    return points


def check_sweep_data(data: str | None) -> None:
    """Refuse, before Ray starts, a data path (sweep.data or $NEUROCXR_DATA) that does not exist
    or is not a data set, so the sweep never runs every trial into the same failure. (Relative
    paths are read from the folder the sweep is started in.)"""
    from neurocxr.data import check_data_path

    check_data_path(data, "sweep.data" if data is not None else "$NEUROCXR_DATA")


def trial_id(params: dict[str, Any], settings: dict[str, Any]) -> str:
    """Stable hash of everything that defines a trial's result."""
    blob = json.dumps({"params": params, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# One trial


def run_trial(params: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Train -> export (hardware-valid) -> emulate val and test -> counts -> energy per profile.

    Never raises: a failure returns ``status="failed"`` with the error, so the sweep goes on.
    Chip metrics come from the emulator's integer readout (what Loihi computes); the threshold for
    test accuracy is chosen on validation chip scores.
    """
    t0 = time.perf_counter()
    row: dict[str, Any] = _row_base(params)
    try:
        row.update(_run_trial(params, settings))
        row["status"], row["error"] = "ok", None
    except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
        row["status"] = "failed"
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc(limit=8)
    row["seconds"] = time.perf_counter() - t0
    return row


def _row_base(params: dict[str, Any]) -> dict[str, Any]:
    from neurocxr.models import MODEL_REGISTRY

    info = MODEL_REGISTRY.get(str(params.get("model")))
    return {
        "params": dict(params),
        "model": params.get("model"),
        "deployable": bool(info.loihi_deployable) if info else False,
        "num_steps": params.get("num_steps"),
        "readout_steps": params.get("readout_steps", params.get("num_steps")),
        "encoding": params.get("encoding"),
        "regulariser": params.get("regulariser"),
        "width": params.get("width"),
        "seed": params.get("seed"),
    }


def _run_trial(params: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    import torch

    from neurocxr.data import load_dataset
    from neurocxr.training import train

    model_cfg, train_cfg, readout_steps = trial_configs(params, settings)
    threads = settings.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
        train_cfg = replace(train_cfg, num_threads=int(threads))
    splits = load_dataset(settings.get("data"), image_size=model_cfg.image_size)
    checkpoint = None
    if settings.get("checkpoint_dir") and settings.get("trial_id"):
        checkpoint = Path(settings["checkpoint_dir"]) / f"{settings['trial_id']}.pt"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    result = train(model_cfg, splits, train_cfg, progress=False, checkpoint_path=checkpoint)
    out: dict[str, Any] = {"checkpoint": str(checkpoint) if checkpoint is not None else None,
                           "data": splits.source, "synthetic": bool(splits.synthetic), "best_epoch": result.best_epoch,
                           "epochs_run": len(result.history), "seconds_per_epoch": result.seconds_per_epoch}
    trial = chip_evaluation(result.model, model_cfg, splits, threshold=result.threshold, readout_steps=readout_steps,
                            max_eval_samples=settings.get("max_eval_samples"), profiles=settings.get("profiles"),
                            energy_model=str(params["model"]))
    out.update(trial.to_dict())
    return out


@dataclass
class TrialResult:
    """What one trial measured on the chip (`chip_evaluation`): chip and float AUC on val and test,
    test metrics at the chip's operating point (readout-difference units, chosen on validation),
    energy per profile from the test counts, resources, and the chip scores ensembles average.
    ``to_dict()`` is the measured part of a results.jsonl row (the keys rows have always had)."""

    val_auc_float: float
    val_auc: float
    val_float_chip_agreement: float
    test_auc_float: float
    test_auc: float
    test_float_chip_agreement: float
    test_accuracy: float
    test_sensitivity: float
    test_specificity: float
    chip_threshold: float
    energy: dict[str, dict[str, float | None]]
    resources: dict[str, int | None]
    scores: dict[str, list[float]]
    energy_basis: str = "chip (emulator counts, mean per test sample)"

    @property
    def float_chip_agreement(self) -> float:
        return self.test_float_chip_agreement

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for split in ("val", "test"):
            for key in (f"{split}_auc_float", f"{split}_auc", f"{split}_float_chip_agreement"):
                out[key] = getattr(self, key)
        out.update(test_accuracy=self.test_accuracy, test_sensitivity=self.test_sensitivity,
                   test_specificity=self.test_specificity, chip_threshold=self.chip_threshold,
                   float_chip_agreement=self.float_chip_agreement, energy=self.energy,
                   energy_basis=self.energy_basis, resources=self.resources, scores=self.scores)
        return out


def chip_evaluation(model: Any, model_cfg: Any, splits: Any, *, threshold: float = 0.5, readout_steps: int | None = None,
                    max_eval_samples: int | None = None, profiles: list[str] | None = None,
                    energy_model: str | None = None) -> TrialResult:
    """A trained SNN -> hardware-valid Loihi program (8-bit weights, fits the chip; a
    `neurocxr.deployment.Deployment`) -> emulator on val and test -> chip and float AUC, test
    metrics at the chip's operating point chosen on the validation chip scores (`OperatingPoint`),
    energy per profile from the test counts, cores. ``threshold``: the float model's (validation)
    threshold, kept with it; ``energy_model``: the name energy estimates carry (default: the config's)."""
    import torch

    from neurocxr.deployment import Deployment, OperatingPoint, readout_difference, threshold_method
    from neurocxr.energy.profiles import available_profiles
    from neurocxr.metrics import clinical_metrics
    from neurocxr.pipeline import LoadedModel, float_logits

    model = model.eval()
    readout_steps = model_cfg.num_steps if readout_steps is None else readout_steps
    # Reading out early = the chip runs only readout_steps steps of the same network.
    loaded = LoadedModel(model, replace(model_cfg, num_steps=readout_steps), {"threshold": threshold})
    deployment = Deployment.from_checkpoint(loaded, num_steps=readout_steps)

    metrics: dict[str, float] = {}
    diffs: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    runs: dict[str, Any] = {}
    for split in ("val", "test"):
        ds = getattr(splits, split)
        n = len(ds) if max_eval_samples is None else min(int(max_eval_samples), len(ds))
        images, y = ds.images[:n], ds.labels[:n]
        parity, runs[split] = deployment.parity(deployment.encode(images, seed=0), y)
        diffs[split] = readout_difference(runs[split])
        labels[split] = y.numpy().astype(np.int64)
        logits = float_logits(loaded, images)
        float_scores = torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy()
        metrics[f"{split}_auc_float"] = clinical_metrics(labels[split], float_scores).roc_auc
        metrics[f"{split}_auc"] = clinical_metrics(labels[split], diffs[split]).roc_auc
        metrics[f"{split}_float_chip_agreement"] = 1.0 - float(parity.prediction_changed_fraction)
    operating = OperatingPoint.choose(runs["val"], deployment.program, labels["val"], rule=threshold_method(loaded),
                                      float_threshold=threshold)
    test_metrics = clinical_metrics(labels["test"], diffs["test"], operating.readout_threshold)
    names = profiles or available_profiles()
    estimates = deployment.energy(runs["test"], names, model=energy_model or str(model_cfg.name))
    energy = {name: {"dynamic_j": float(est.dynamic_j), "total_j": None if est.total_j is None else float(est.total_j)}
              for name, est in zip(names, estimates)}
    resources = deployment.resources
    return TrialResult(
        **metrics,
        test_accuracy=test_metrics.accuracy,
        test_sensitivity=test_metrics.sensitivity,
        test_specificity=test_metrics.specificity,
        chip_threshold=float(operating.readout_threshold),
        energy=energy,
        resources={"neurons": getattr(resources, "total_neurons", None), "cores": getattr(resources, "cores", None)},
        scores={"val": diffs["val"].tolist(), "test": diffs["test"].tolist(),
                "val_labels": labels["val"].tolist(), "test_labels": labels["test"].tolist()},
    )


# ----------------------------------------------------------------------------------------------
# Results: table, ensembles, Pareto front, plot


def _public_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("scores", "traceback")}


def ensemble_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed ensembles: trials equal but for the seed, chip scores averaged (each member's score
    divided by its validation spread), energy summed (every member runs on the chip)."""
    from neurocxr.metrics import choose_threshold, clinical_metrics

    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("status") != "ok" or "scores" not in r or r.get("ensemble_of"):
            continue
        key = json.dumps({k: v for k, v in r["params"].items() if k != "seed"}, sort_keys=True, default=str)
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        members = sorted(members, key=lambda r: r["seed"])
        try:
            y_val = np.asarray(members[0]["scores"]["val_labels"])
            y_test = np.asarray(members[0]["scores"]["test_labels"])
            val = sum(np.asarray(m["scores"]["val"]) / (np.std(m["scores"]["val"]) or 1.0) for m in members) / len(members)
            test = sum(np.asarray(m["scores"]["test"]) / (np.std(m["scores"]["val"]) or 1.0) for m in members) / len(members)
        except (KeyError, ValueError):
            continue
        threshold = choose_threshold(y_val, val, "youden")
        tm = clinical_metrics(y_test, test, threshold)
        energy: dict[str, dict[str, float | None]] = {}
        for prof in members[0]["energy"]:
            dyn = sum(m["energy"][prof]["dynamic_j"] for m in members)
            totals = [m["energy"][prof]["total_j"] for m in members]
            energy[prof] = {"dynamic_j": dyn, "total_j": None if any(t is None for t in totals) else sum(totals)}
        base = dict(members[0])
        base.update(
            trial_id="ens-" + hashlib.sha256("".join(m["trial_id"] for m in members).encode()).hexdigest()[:12],
            model=f"{members[0]['model']} x{len(members)} seeds", seed=[m["seed"] for m in members],
            ensemble_of=[m["trial_id"] for m in members], val_auc=clinical_metrics(y_val, val).roc_auc,
            test_auc=tm.roc_auc, test_accuracy=tm.accuracy, test_sensitivity=tm.sensitivity,
            test_specificity=tm.specificity, energy=energy, val_auc_float=None, test_auc_float=None,
            float_chip_agreement=None, seconds=sum(m.get("seconds", 0.0) for m in members),
        )
        base["params"] = {**members[0]["params"], "seed": [m["seed"] for m in members]}
        for per_member in ("scores", "best_epoch", "epochs_run", "seconds_per_epoch", "resources", "chip_threshold",
                           "val_float_chip_agreement", "test_float_chip_agreement"):
            base.pop(per_member, None)
        base["chip_threshold"] = float(threshold)
        base["ensemble_rule"] = "mean of member chip scores, each divided by its validation std; energy = sum of members"
        out.append(base)
    return out


def pareto_front(rows: list[dict[str, Any]], profile: str = "loihi2") -> list[dict[str, Any]]:
    """Deployable, successful trials not beaten on both validation AUC (higher) and ``profile``
    dynamic energy (lower), cheapest first. Selection uses validation only; a trial no better than
    chance on validation (AUC <= 0.5, e.g. a network the regulariser silenced) is not a front point."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("deployable") and r.get("val_auc") is not None
          and profile in (r.get("energy") or {}) and np.isfinite(r["val_auc"]) and r["val_auc"] > 0.5]
    ok.sort(key=lambda r: (r["energy"][profile]["dynamic_j"], -r["val_auc"]))
    front, best = [], -np.inf
    for r in ok:
        if r["val_auc"] > best:
            front.append(r)
            best = r["val_auc"]
    return front


def plot_pareto(rows: list[dict[str, Any]], front: list[dict[str, Any]], path: Path, profile: str = "loihi2") -> Path:
    """Validation AUC against energy per inference (log x), every trial, the front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neurocxr.fileio import atomic_write

    ok = [r for r in rows if r.get("status") == "ok" and profile in (r.get("energy") or {})]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    models = sorted({str(r["model"]) for r in ok})
    for i, m in enumerate(models):
        pts = [r for r in ok if str(r["model"]) == m]
        ax.scatter([r["energy"][profile]["dynamic_j"] * 1e6 for r in pts], [r["val_auc"] for r in pts],
                   label=m, alpha=0.7, s=28, color=f"C{i % 10}")
    if front:
        ax.plot([r["energy"][profile]["dynamic_j"] * 1e6 for r in front], [r["val_auc"] for r in front],
                "k--", lw=1, label="Pareto front (validation)")
    ax.set_xscale("log")
    ax.set_xlabel(f"{profile} dynamic energy per inference (uJ, chip counts)")
    ax.set_ylabel("validation ROC-AUC (chip emulator)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, dpi=120, format="png")

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Ray


def check_ray_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast (ConfigError) when ``host:port`` does not answer; 'auto' and ray:// are left to Ray."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} is not host:port (or 'auto')")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(f"Ray address {address} is unreachable ({exc.strerror or exc})") from None


_SHIMS = Path(__file__).resolve().parent.parent / "_ray_shims"


def _amdsmi_is_broken() -> bool:
    """An installed `amdsmi` whose import fails with something other than ImportError (a wheel
    without libamd_smi.so raises KeyError), which would make `import ray` fail."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("amdsmi") is None:
        return False
    probe = subprocess.run([sys.executable, "-c", "import amdsmi"], capture_output=True, timeout=60)
    if probe.returncode == 0:
        return False
    last = probe.stderr.decode(errors="replace").strip().splitlines()[-1:]
    return not (last and last[0].startswith(("ImportError", "ModuleNotFoundError")))


def _import_ray() -> Any:
    """``import ray``, working around a broken `amdsmi` (Ray's AMD GPU probe catches only
    ImportError): hide it in this process and, through PYTHONPATH, in the workers Ray starts."""
    if "ray" not in sys.modules and _amdsmi_is_broken():
        sys.modules["amdsmi"] = None  # type: ignore[assignment]  # `import amdsmi` -> ImportError here
        old = os.environ.get("PYTHONPATH", "")
        os.environ["PYTHONPATH"] = str(_SHIMS) + (os.pathsep + old if old else "")  # and in local workers
    import ray

    return ray


def _start_ray(options: RayOptions) -> bool:
    """Start a local Ray or join a cluster; returns True when this call started it (so we stop it)."""
    import logging

    ray = _import_ray()

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                                  configure_logging=True)
    try:
        if options.address:
            ray.init(address=options.address, **kwargs)
        else:
            ray.init(num_cpus=options.num_cpus or os.cpu_count() or 1, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"could not start or join Ray ({options.address or 'local'}): {exc}") from None
    except BaseException:  # Ctrl-C during start-up: stop whatever Ray started so far
        _stop_ray(ray, interrupted=not options.address)
        raise
    return True


def _stop_ray(ray: Any, *, interrupted: bool) -> None:
    """``ray.shutdown()``; after a Ctrl-C also kill Ray processes left in this process group: a
    Ctrl-C during start-up can end the raylet before it stops the agents it started, which then
    linger for a minute or more."""
    with contextlib.suppress(BaseException):
        ray.shutdown()
    if not interrupted or not os.path.isdir("/proc"):
        return
    import signal

    ray_dir = os.path.dirname(ray.__file__).encode()
    group, me = os.getpgrp(), os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if os.getpgid(int(entry.name)) != group:
                continue
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            if argv[0].startswith(b"ray::") or any(arg.startswith(ray_dir) for arg in argv[:4]):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue  # gone already, or not ours to read


@dataclass
class SweepResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    front: list[dict[str, Any]]
    ran: int
    skipped: int
    failed: int
    files: dict[str, Path]


def _read_trials(trials_dir: Path) -> dict[str, dict[str, Any]]:
    done = {}
    for p in sorted(trials_dir.glob("*.json")):
        try:
            row = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a broken file is rerun
        if isinstance(row, dict) and "trial_id" in row:
            done[row["trial_id"]] = row
    return done


def write_tables(out_dir: Path, trials: list[dict[str, Any]], profile: str, ensembles: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """results.jsonl, pareto.json and pareto.png from the per-trial files of this sweep."""
    from neurocxr.fileio import atomic_write, write_json

    rows = list(trials) + (ensemble_rows(trials) if ensembles else [])
    public = [_public_row(r) for r in rows]
    front = pareto_front(public, profile)

    def write_jsonl(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            for r in public:
                fh.write(dumps_json(r, indent=None) + "\n")

    atomic_write(out_dir / RESULTS_FILE, write_jsonl)
    write_json(out_dir / "pareto.json", {"trials": public, "pareto": front, "pareto_profile": profile,
                                         "selection": "validation ROC-AUC (chip) vs dynamic energy; test reported, not used"})
    if any(r.get("status") == "ok" for r in public):
        plot_pareto(public, front, out_dir / "pareto.png", profile)
    return public, front


def run_sweep(
    cfg: SweepConfig,
    out_dir: str | Path,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    max_concurrent: int | None = None,
    cpus_per_trial: float | None = None,
    progress: bool | None = True,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Run every grid point not finished in ``out_dir`` on Ray Tune; write the tables; return them.

    Arguments override the config's [ray] table. ``on_trial`` is called (in this process) with each
    finished trial's row. ``progress``: a bar of trials, drawn only on a terminal (None: the
    process default, `neurocxr.validation.set_progress`). Ctrl-C stops Ray and raises
    `neurocxr.errors.Interrupted` after removing what this run wrote, except finished trials.
    """
    out = Path(out_dir)
    # what this run creates, so that a Ctrl-C can take it away again (`_discard_interrupted`)
    journal = _SweepJournal([p for p in (out, out / "trials", out / "checkpoints", *_sweep_outputs(out)) if not p.exists()])
    try:
        return _run_sweep(cfg, out, journal, address=address, num_cpus=num_cpus, max_concurrent=max_concurrent,
                          cpus_per_trial=cpus_per_trial, progress=progress, on_trial=on_trial)
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(_discard_interrupted(out, journal)) from None


def _sweep_outputs(out: Path) -> tuple[Path, ...]:
    """The files and folders of a sweep directory besides the finished trials."""
    return out / "sweep_config.toml", out / "ray", out / RESULTS_FILE, out / "pareto.json", out / "pareto.png"


@dataclass
class _SweepJournal:
    """What a sweep run created and finished, for the clean-up after Ctrl-C."""

    created: list[Path]
    recorded: list[dict[str, Any]] = field(default_factory=list)  # rows this run wrote
    todo_ids: list[str] = field(default_factory=list)  # trials this run was to run
    started_at: float = field(default_factory=time.time)  # files of those trials modified since are this run's


def _run_sweep(cfg: SweepConfig, out: Path, journal: _SweepJournal, *, address: str | None, num_cpus: int | None,
               max_concurrent: int | None, cpus_per_trial: float | None, progress: bool | None,
               on_trial: Callable[[dict[str, Any]], None] | None) -> SweepResult:
    from neurocxr.fileio import write_json

    options = replace(cfg.ray)
    if address is not None:
        options.address = address
    if num_cpus is not None:
        options.num_cpus = num_cpus
    if max_concurrent is not None:
        options.max_concurrent = max_concurrent
    if cpus_per_trial is not None:
        options.cpus_per_trial = cpus_per_trial
    if options.cpus_per_trial <= 0 or (options.num_cpus is not None and options.num_cpus < 1) or \
            (options.max_concurrent is not None and options.max_concurrent < 1):
        raise ConfigError("num_cpus and max_concurrent must be >= 1 and cpus_per_trial > 0")
    if options.num_cpus is not None and not options.address and options.cpus_per_trial > options.num_cpus:
        raise ConfigError(f"cpus_per_trial {options.cpus_per_trial:g} exceeds num_cpus {options.num_cpus}: no trial could start")
    points = expand_grid(cfg)
    check_sweep_data(cfg.data)  # a missing or wrong data path is refused before Ray starts
    if options.address:
        check_ray_address(options.address)
    trials_dir = out / "trials"
    try:
        trials_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NeurocxrError(f"cannot create sweep directory {out}: {exc}") from None
    if cfg.source != "<dict>" and Path(cfg.source).is_file():
        from neurocxr.fileio import write_text

        write_text(out / "sweep_config.toml", Path(cfg.source).read_text(encoding="utf-8"))
    settings = cfg.settings()
    settings["threads"] = max(1, int(options.cpus_per_trial))
    # Checkpoints are written by the workers: on a cluster the sweep directory must be shared.
    settings["checkpoint_dir"] = str((out / "checkpoints").resolve())
    id_settings = {k: v for k, v in settings.items() if k not in ("threads", "checkpoint_dir")}
    if settings.get("data") and str(settings["data"]).lower() != "synthetic":
        # Workers may run in another folder (Ray Tune's trial dirs): they get the absolute path; the
        # trial ids keep the configured one, so a rerun still finds its finished trials.
        settings["data"] = str(Path(settings["data"]).expanduser().resolve())
    todo: list[tuple[str, dict[str, Any]]] = []
    finished = _read_trials(trials_dir)
    skipped = 0
    for params in points:
        tid = trial_id(params, id_settings)
        if finished.get(tid, {}).get("status") == "ok":
            skipped += 1
        else:
            todo.append((tid, params))

    journal.todo_ids = [t for t, _ in todo]

    def record(row: dict[str, Any]) -> None:
        write_json(trials_dir / f"{row['trial_id']}.json", row)
        finished[row["trial_id"]] = row
        journal.recorded.append(row)
        if on_trial is not None:
            on_trial(row)

    if todo:
        _run_on_ray(todo, settings, options, out, record, progress)
    ids = {trial_id(p, id_settings) for p in points}
    trials = [finished[t] for t in sorted(ids) if t in finished]
    for params in points:  # a trial Ray lost without a result still gets a row
        tid = trial_id(params, id_settings)
        if tid not in finished:
            row = _row_base(params)
            row.update(trial_id=tid, status="failed", error="no result came back from Ray")
            trials.append(row)
    rows, front = write_tables(out, trials, cfg.pareto_profile, cfg.ensembles)
    files = {"results": out / RESULTS_FILE, "pareto_json": out / "pareto.json"}
    if (out / "pareto.png").is_file():
        files["pareto_png"] = out / "pareto.png"
    failed = sum(1 for r in rows if r.get("status") != "ok")
    return SweepResult(out, rows, front, ran=len(todo), skipped=skipped, failed=failed, files=files)


def _discard_interrupted(out: Path, journal: _SweepJournal) -> str:
    """After Ctrl-C: remove what this run wrote except finished trials (their row and checkpoint,
    which a rerun skips); return what is left, for the user."""
    import shutil

    created = journal.created
    kept = {r["trial_id"] for r in journal.recorded if r.get("status") == "ok"}
    trials_dir, checkpoints = out / "trials", out / "checkpoints"
    for tid in journal.todo_ids:
        if tid not in kept:  # this run's row or checkpoint of an unfinished trial (or one failed by the interrupt)
            for path in (trials_dir / f"{tid}.json", checkpoints / f"{tid}.pt"):
                with contextlib.suppress(OSError):
                    if path.stat().st_mtime >= journal.started_at:
                        path.unlink()
            for path in checkpoints.glob(f".{tid}.pt.*.tmp"):  # a checkpoint write cut short when Ray stopped its worker
                path.unlink(missing_ok=True)
    for path in _sweep_outputs(out):
        if path in created:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    for path in (checkpoints, trials_dir, out):  # folders this run made, when nothing is left in them
        if path in created and path.is_dir():
            with contextlib.suppress(OSError):
                path.rmdir()
    if kept:
        return (f"kept {len(kept)} finished trial(s) in {trials_dir} (rerun the same command to continue from them); "
                "nothing else was written")
    return "no output was written"


def _trainable(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Tune function trainable: one trial; the row travels back as a JSON string (Tune flattens dicts)."""
    row = run_trial(config["params"], {**config["settings"], "trial_id": config["trial_id"]})
    row["trial_id"] = config["trial_id"]
    return {"row_json": dumps_json(row, indent=None), "done": True}


def _run_on_ray(todo: list[tuple[str, dict[str, Any]]], settings: dict[str, Any], options: RayOptions, out: Path,
                record: Callable[[dict[str, Any]], None], progress: bool | None) -> None:
    ray = _import_ray()
    from ray import tune
    from tqdm.auto import tqdm

    from neurocxr.validation import show_progress

    # Tune's own SIGINT handler turns Ctrl-C into "stop gracefully, report the trials failed";
    # without it Ctrl-C raises KeyboardInterrupt here and the `finally` below stops Ray.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    from neurocxr.interrupts import install

    install()  # a Ctrl-C while Ray forks its services is not dropped
    started = _start_ray(options)
    bar = tqdm(total=len(todo), desc="sweep trials", disable=not show_progress(progress), unit="trial")

    class _Recorder(tune.Callback):
        """Records each finished trial and advances the bar. Tune pickles its callbacks with the
        experiment state; the bar (a lock) and the writer stay out of that state."""

        def __init__(self, record: Callable[[dict[str, Any]], None], bar: Any) -> None:
            self.record, self.bar = record, bar

        def __getstate__(self) -> dict[str, Any]:
            return {}

        def _done(self, row: dict[str, Any]) -> None:
            if getattr(self, "record", None) is None:  # an unpickled copy: nothing to write to
                return
            self.record(row)
            self.bar.update(1)
            self.bar.set_postfix_str(f"{row.get('model')} T={row.get('num_steps')}: {row.get('status')}")

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if "row_json" in result:
                self._done(json.loads(result["row_json"]))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            cfg = trial.config["trial"]
            row = _row_base(cfg["params"])
            row.update(trial_id=cfg["trial_id"], status="failed", error=f"Ray: {trial.error_msg or 'worker failed'}"[:2000])
            self._done(row)

    interrupted = False
    try:
        space = {"trial": tune.grid_search([{"trial_id": t, "params": p} for t, p in todo])}

        def unpack(config: dict[str, Any]) -> dict[str, Any]:
            return _trainable({**config["trial"], "settings": settings})

        trainable = tune.with_resources(unpack, {"cpu": options.cpus_per_trial})
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(max_concurrent_trials=options.max_concurrent or 0, reuse_actors=False),
            run_config=tune.RunConfig(
                name="tune", storage_path=str((out / "ray").resolve()), verbose=0, callbacks=[_Recorder(record, bar)],
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            ),
        )
        tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        bar.close()
        if started:
            _stop_ray(ray, interrupted=interrupted and not options.address)
