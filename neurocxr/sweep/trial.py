"""One sweep trial on the deployment object: train a grid point's SNN, build its hardware-valid
`neurocxr.deploy.deployment.Deployment`, run the emulator on val and test, and measure chip AUC, the
operating point chosen on validation, counts and energy per profile (`TrialResult`)."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurocxr.data.datasets import DataSplits, load_dataset
from neurocxr.deploy.deployment import (
    Deployment,
    OperatingPoint,
    readout_difference,
    threshold_method,
)
from neurocxr.energy.profiles import available_profiles
from neurocxr.metrics import clinical_metrics
from neurocxr.models import MODEL_REGISTRY, ModelConfig
from neurocxr.models.loaded import LoadedModel, float_logits
from neurocxr.sweep.config import TrialSettings, trial_configs
from neurocxr.threads import torch_threads
from neurocxr.training.train import TrainConfig, default_encoding, train


@dataclass
class GridPoint:
    """The grid point's part of a results row (also the row of a trial that never ran)."""

    params: dict[str, Any]
    model: str | None
    deployable: bool
    num_steps: int | None
    readout_steps: int | None
    encoding: str | None
    regulariser: float | None
    width: float | None
    seed: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "model": self.model,
            "deployable": self.deployable,
            "num_steps": self.num_steps,
            "readout_steps": self.readout_steps,
            "encoding": self.encoding,
            "regulariser": self.regulariser,
            "width": self.width,
            "seed": self.seed,
        }


@dataclass
class TrialTraining:
    """How a trial's SNN was trained: where its checkpoint went, on what data, for how long."""

    checkpoint: str | None
    data: str
    synthetic: bool
    best_epoch: int
    epochs_run: int
    seconds_per_epoch: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "data": self.data,
            "synthetic": self.synthetic,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "seconds_per_epoch": self.seconds_per_epoch,
        }


@dataclass
class TrialRow:
    """One trial as run (`run_trial`): the grid point, then, when it succeeded, its training and the
    chip measurements (`TrialResult`); ``status`` "ok" or "failed" with the error. ``to_dict()`` is
    the results.jsonl row."""

    point: GridPoint
    status: str
    error: str | None
    seconds: float
    training: TrialTraining | None = None
    result: TrialResult | None = None
    traceback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        row = self.point.to_dict()
        if self.training is not None:
            row.update(self.training.to_dict())
        if self.result is not None:
            row.update(self.result.to_dict())
        row["status"], row["error"] = self.status, self.error
        if self.traceback is not None:
            row["traceback"] = self.traceback
        row["seconds"] = self.seconds
        return row


def run_trial(params: dict[str, Any], settings: TrialSettings) -> TrialRow:
    """Train -> export (hardware-valid) -> emulate val and test -> counts -> energy per profile.

    Never raises: a failure returns ``status="failed"`` with the error, so the sweep goes on.
    Chip metrics come from the emulator's integer readout (what Loihi computes); the threshold for
    test accuracy is chosen on validation chip scores.
    """
    t0 = time.perf_counter()
    point = row_base(params, settings.train)
    try:
        training, result = _run_trial(params, settings)
    except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
        return TrialRow(
            point=point,
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(limit=8),
            seconds=time.perf_counter() - t0,
        )
    return TrialRow(
        point=point,
        status="ok",
        error=None,
        training=training,
        result=result,
        seconds=time.perf_counter() - t0,
    )


def row_base(params: dict[str, Any], train_fields: dict[str, Any] | None = None) -> GridPoint:
    """The grid point's part of a results row (also the row of a trial that never ran);
    ``train_fields``: the sweep's fixed [train] keys (a convert_from there sets the default encoding)."""
    convert_from = params.get("convert_from", (train_fields or {}).get("convert_from"))
    info = MODEL_REGISTRY.get(str(params.get("model")))
    return GridPoint(
        params=dict(params),
        model=params.get("model"),
        deployable=bool(info.loihi_deployable) if info else False,
        num_steps=params.get("num_steps"),
        readout_steps=params.get("readout_steps", params.get("num_steps")),
        encoding=default_encoding(params.get("encoding"), convert_from),
        regulariser=params.get("regulariser"),
        width=params.get("width"),
        seed=params.get("seed"),
    )


def _run_trial(
    params: dict[str, Any], settings: TrialSettings
) -> tuple[TrialTraining, TrialResult]:
    model_cfg, train_cfg, readout_steps = trial_configs(params, settings)
    threads = settings.threads
    if threads:
        train_cfg = replace(train_cfg, num_threads=int(threads))
    # the whole trial runs on the trial's threads; the caller's count is back afterwards
    with torch_threads(int(threads) if threads else None):
        return _train_and_evaluate(params, settings, model_cfg, train_cfg, readout_steps)


def _train_and_evaluate(
    params: dict[str, Any],
    settings: TrialSettings,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    readout_steps: int,
) -> tuple[TrialTraining, TrialResult]:
    splits = load_dataset(settings.data, image_size=model_cfg.image_size)
    checkpoint = None
    if settings.checkpoint_dir and settings.trial_id:
        checkpoint = Path(settings.checkpoint_dir) / f"{settings.trial_id}.pt"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    result = train(model_cfg, splits, train_cfg, progress=False, checkpoint_path=checkpoint)
    training = TrialTraining(
        checkpoint=str(checkpoint) if checkpoint is not None else None,
        data=splits.source,
        synthetic=bool(splits.synthetic),
        best_epoch=result.best_epoch,
        epochs_run=len(result.history),
        seconds_per_epoch=result.seconds_per_epoch,
    )
    trial = chip_evaluation(
        result.model,
        model_cfg,
        splits,
        threshold=result.threshold,
        readout_steps=readout_steps,
        max_eval_samples=settings.max_eval_samples,
        profiles=settings.profiles,
        energy_model=str(params["model"]),
    )
    return training, trial


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
        out.update(
            test_accuracy=self.test_accuracy,
            test_sensitivity=self.test_sensitivity,
            test_specificity=self.test_specificity,
            chip_threshold=self.chip_threshold,
            float_chip_agreement=self.float_chip_agreement,
            energy=self.energy,
            energy_basis=self.energy_basis,
            resources=self.resources,
            scores=self.scores,
        )
        return out


def chip_evaluation(
    model: Any,
    model_cfg: ModelConfig,
    splits: DataSplits,
    *,
    threshold: float = 0.5,
    readout_steps: int | None = None,
    max_eval_samples: int | None = None,
    profiles: list[str] | None = None,
    energy_model: str | None = None,
) -> TrialResult:
    """A trained SNN -> hardware-valid Loihi program (8-bit weights, fits the chip; a
    `neurocxr.deploy.deployment.Deployment`) -> emulator on val and test -> chip and float AUC, test
    metrics at the chip's operating point chosen on the validation chip scores (`OperatingPoint`),
    energy per profile from the test counts, cores. ``threshold``: the float model's (validation)
    threshold, kept with it; ``energy_model``: the name energy estimates carry (default: the config's)."""
    model = model.eval()
    readout_steps = model_cfg.num_steps if readout_steps is None else readout_steps
    # Reading out early = the chip runs only readout_steps steps of the same network.
    loaded = LoadedModel(
        model, replace(model_cfg, num_steps=readout_steps), {"threshold": threshold}
    )
    deployment = Deployment.from_checkpoint(loaded, num_steps=readout_steps)

    metrics: dict[str, Any] = {}  # TrialResult fields, all floats
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
    operating = OperatingPoint.choose(
        runs["val"],
        deployment.program,
        labels["val"],
        rule=threshold_method(loaded),
        float_threshold=threshold,
    )
    test_metrics = clinical_metrics(labels["test"], diffs["test"], operating.readout_threshold)
    names = profiles or available_profiles()
    estimates = deployment.energy(runs["test"], names, model=energy_model or str(model_cfg.name))
    energy = {
        name: {
            "dynamic_j": float(est.dynamic_j),
            "total_j": None if est.total_j is None else float(est.total_j),
        }
        for name, est in zip(names, estimates)
    }
    resources = deployment.resources
    return TrialResult(
        **metrics,
        test_accuracy=test_metrics.accuracy,
        test_sensitivity=test_metrics.sensitivity,
        test_specificity=test_metrics.specificity,
        chip_threshold=float(operating.readout_threshold),
        energy=energy,
        resources={
            "neurons": getattr(resources, "total_neurons", None),
            "cores": getattr(resources, "cores", None),
        },
        scores={
            "val": diffs["val"].tolist(),
            "test": diffs["test"].tolist(),
            "val_labels": labels["val"].tolist(),
            "test_labels": labels["test"].tolist(),
        },
    )
