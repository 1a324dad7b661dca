"""Training and inference for every registered model (SNNs by surrogate-gradient BPTT, CNNs by
plain backprop), with early stopping on validation AUC and a Youden threshold chosen on validation.

`forward_model` is the one place that knows how to run any model on images: SNNs get the
configured encoding ([T, B, C, H, W]) and return `SNNOutput`; CNNs take the images directly.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, WeightedRandomSampler

from neurocxr.errors import DataError
from neurocxr.metrics import ClinicalMetrics, choose_threshold, clinical_metrics
from neurocxr.models.base import ModelConfig, build_model, is_snn

BALANCE_MODES = ("weights", "sampler", "none")


@dataclass
class TrainConfig:
    """How to train (not what): optimiser, schedule, early stopping, class balance, subsampling."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 4  # epochs without a better val AUC before stopping
    seed: int = 0
    balance: str = "weights"  # class-weighted loss | balanced sampler | none
    augment: bool = False
    max_train_samples: int | None = None
    num_threads: int | None = None
    schedule: str = "onecycle"  # or "cosine"
    label_smoothing: float = 0.0  # CrossEntropyLoss label smoothing (0 = none)

    def __post_init__(self) -> None:
        # ConfigError (a ValueError too) names the field and what it accepts.
        from neurocxr.validation import check_choice, check_float, check_int

        check_choice("balance", self.balance, BALANCE_MODES)
        check_choice("schedule", self.schedule, ("onecycle", "cosine"))
        self.epochs = check_int("epochs", self.epochs, 1, 100_000)
        self.batch_size = check_int("batch_size", self.batch_size, 1, 1_000_000)
        self.lr = check_float("lr", self.lr, 0.0, 10.0, low_open=True)
        self.weight_decay = check_float("weight_decay", self.weight_decay, 0.0, None)
        self.patience = check_int("patience", self.patience, 1)
        self.seed = check_int("seed", self.seed, 0, 2**32 - 1)
        self.max_train_samples = check_int("max_train_samples", self.max_train_samples, 2, allow_none=True)
        self.num_threads = check_int("num_threads", self.num_threads, 1, allow_none=True)
        self.label_smoothing = check_float("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """The best-validation-AUC model, its validation metrics at the chosen threshold, and history."""

    model: nn.Module
    config: ModelConfig
    history: list[dict[str, float]]
    best_epoch: int
    threshold: float
    val_metrics: ClinicalMetrics
    seconds_per_epoch: float
    data_source: str
    checkpoint_path: Path | None = None
    train_config: TrainConfig = field(default_factory=TrainConfig)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and random so a training run repeats."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def forward_model(model: nn.Module, images: torch.Tensor, config: ModelConfig, *, seed: int | None = None) -> torch.Tensor:
    """Logits [B, K] of any registered model for images [B, C, H, W] in [0, 1].

    SNNs receive ``encode(images, config.encoding, config.num_steps, seed)``; ``seed`` makes rate
    coding repeatable (None: draw from torch's global generator).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    if is_snn(config):
        from neurocxr.encoding import encode

        out = model(encode(images, config.encoding, config.num_steps, seed=seed))
        return out.logits
    return model(images)


def _labels_of(ds: Dataset) -> np.ndarray:
    """Labels of a dataset without loading its images when it exposes ``labels``."""
    if isinstance(ds, Subset):
        return _labels_of(ds.dataset)[np.asarray(ds.indices)]
    labels = getattr(ds, "labels", None)
    if labels is not None:
        return np.asarray(labels.cpu() if torch.is_tensor(labels) else labels).astype(np.int64).ravel()
    return np.asarray([int(ds[i][1]) for i in range(len(ds))], dtype=np.int64)  # type: ignore[arg-type]


def _scores_and_labels(
    model: nn.Module, config: ModelConfig, ds: Dataset, batch_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    was_training = model.training
    model.eval()
    scores, labels = [], []
    try:
        with torch.no_grad():
            loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
            for i, (images, y) in enumerate(loader):
                # seed + batch index: the same convention as neurocxr.pipeline.float_logits
                logits = forward_model(model, images.float(), config, seed=seed + i)
                scores.append(torch.softmax(logits.float(), dim=1)[:, 1].numpy())
                labels.append(np.asarray(y).astype(np.int64).ravel())
    finally:
        model.train(was_training)
    if not scores:
        raise ValueError("cannot score an empty dataset")
    return np.concatenate(scores), np.concatenate(labels)


def predict_scores(model: nn.Module, config: ModelConfig, ds: Dataset, *, batch_size: int = 128, seed: int = 0) -> np.ndarray:
    """P(pneumonia) per sample (softmax[:, 1]), in eval mode; rate coding seeded per batch."""
    return _scores_and_labels(model, config, ds, batch_size, seed)[0]


def evaluate(model: nn.Module, config: ModelConfig, ds: Dataset, threshold: float, *, seed: int = 0) -> ClinicalMetrics:
    """Clinical metrics of ``model`` on ``ds`` at a threshold chosen beforehand (on validation)."""
    scores, labels = _scores_and_labels(model, config, ds, 128, seed)
    return clinical_metrics(labels, scores, threshold)


def _train_subset(ds: Dataset, max_samples: int | None, seed: int) -> Dataset:
    n = len(ds)  # type: ignore[arg-type]
    if max_samples is None or max_samples >= n:
        return ds
    if max_samples < 2:
        raise ValueError("max_train_samples must be >= 2")
    generator = np.random.default_rng(seed)
    return Subset(ds, sorted(generator.choice(n, size=max_samples, replace=False).tolist()))


def _with_augment(ds: Dataset, augment: Any) -> Dataset:
    """A view of the training dataset that augments in ``__getitem__`` (neurocxr.data.ImageDataset
    applies its ``augment`` per sample; validation/test datasets are left untouched)."""
    import dataclasses

    if isinstance(ds, Subset):
        return Subset(_with_augment(ds.dataset, augment), ds.indices)
    if not (dataclasses.is_dataclass(ds) and hasattr(ds, "augment")):
        raise ValueError(f"augment=True needs a neurocxr.data.ImageDataset, got {type(ds).__name__}")
    return dataclasses.replace(ds, augment=augment)  # type: ignore[type-var]


def _source_of(splits: Any) -> str:
    train = splits.train
    base = train.dataset if isinstance(train, Subset) else train
    source = str(getattr(base, "source", "unknown"))
    return f"synthetic:{source}" if getattr(base, "synthetic", False) and "synthetic" not in source else source


def train(
    config: ModelConfig,
    splits: Any,
    train_cfg: TrainConfig | None = None,
    *,
    progress: bool = True,
    checkpoint_path: Path | None = None,
) -> TrainResult:
    """Train a fresh ``build_model(config)`` on ``splits.train``, select the epoch with the best
    ``splits.val`` ROC AUC (early stopping after ``patience`` epochs without improvement), choose
    the Youden threshold on validation, and (if ``checkpoint_path``) save the best epoch.

    AdamW with a OneCycle (or cosine) schedule, class-weighted cross-entropy on the logits (or a
    balanced sampler), surrogate-gradient BPTT for SNNs.
    """
    from tqdm.auto import tqdm

    train_cfg = train_cfg or TrainConfig()
    if train_cfg.num_threads:
        torch.set_num_threads(train_cfg.num_threads)
    seed_everything(train_cfg.seed)
    model = build_model(config)
    train_ds = _train_subset(splits.train, train_cfg.max_train_samples, train_cfg.seed)
    augment = None
    if train_cfg.augment:
        from neurocxr.data import Augment

        augment = Augment(seed=train_cfg.seed)
        train_ds = _with_augment(train_ds, augment)
    train_labels = _labels_of(train_ds)
    present = np.unique(train_labels)
    if len(present) < 2:
        raise DataError(f"the training split holds class {present.tolist()} only; a classifier needs both "
                        "normal (0) and pneumonia (1) images (check the data source or max_train_samples)")
    class_weight = torch.ones(config.num_classes)
    class_weight[present] = torch.tensor(
        compute_class_weight("balanced", classes=present, y=train_labels), dtype=torch.float32
    )
    generator = torch.Generator().manual_seed(train_cfg.seed)
    if train_cfg.balance == "sampler":
        sample_weight = class_weight[torch.as_tensor(train_labels)].double()
        loader = DataLoader(train_ds, batch_size=train_cfg.batch_size,
                            sampler=WeightedRandomSampler(sample_weight, len(train_labels), generator=generator))
    else:
        loader = DataLoader(train_ds, batch_size=train_cfg.batch_size, shuffle=True, generator=generator)
    loss_weight = class_weight if train_cfg.balance == "weights" else None

    optimiser = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    total_steps = train_cfg.epochs * len(loader)
    if train_cfg.schedule == "onecycle":
        scheduler: Any = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=train_cfg.lr, total_steps=total_steps)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=total_steps)

    val_labels = _labels_of(splits.val)
    history: list[dict[str, float]] = []
    best_auc, best_epoch, best_state, best_threshold = -np.inf, 0, None, 0.5
    epochs_without_gain = 0
    data_source = _source_of(splits)
    for epoch in range(1, train_cfg.epochs + 1):
        model.train()
        if augment is not None:
            augment.set_epoch(epoch)  # fresh, still seeded, transforms each epoch
        started = time.perf_counter()
        loss_sum, seen = 0.0, 0
        bar = tqdm(loader, desc=f"{config.name} epoch {epoch}/{train_cfg.epochs}", disable=not progress, leave=False)
        for images, labels in bar:
            images = images.float()
            labels = torch.as_tensor(labels).long().view(-1)
            logits = forward_model(model, images, config)
            loss = F.cross_entropy(logits, labels, weight=loss_weight, label_smoothing=train_cfg.label_smoothing)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            loss_sum += float(loss) * len(labels)
            seen += len(labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        val_scores = predict_scores(model, config, splits.val, seed=train_cfg.seed)
        val_auc = clinical_metrics(val_labels, val_scores).roc_auc
        val_acc = float(((val_scores >= 0.5) == val_labels).mean())
        seconds = time.perf_counter() - started
        history.append({"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "val_auc": val_auc,
                        "val_acc": val_acc, "seconds": seconds})
        if progress:
            tqdm.write(f"{config.name} epoch {epoch}: loss {loss_sum / max(seen, 1):.4f}  "
                       f"val AUC {val_auc:.4f}  val acc@0.5 {val_acc:.4f}  ({seconds:.1f} s)")
        if val_auc > best_auc or best_state is None:
            best_auc, best_epoch, epochs_without_gain = val_auc, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            best_threshold = choose_threshold(val_labels, val_scores, "youden")
            if checkpoint_path is not None:
                from neurocxr.checkpoint import save_checkpoint

                save_checkpoint(checkpoint_path, model, config, {
                    "threshold": best_threshold, "threshold_method": "youden (validation)",
                    "data_source": data_source, "best_epoch": best_epoch, "val_auc": val_auc,
                    "history": copy.deepcopy(history), "train_config": train_cfg.to_dict(),
                })
        else:
            epochs_without_gain += 1
            if epochs_without_gain >= train_cfg.patience:
                if progress:
                    tqdm.write(f"early stop: no better val AUC for {train_cfg.patience} epochs")
                break

    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    val_metrics = evaluate(model, config, splits.val, best_threshold, seed=train_cfg.seed)
    if checkpoint_path is not None:  # final metadata: full history and the validation metrics
        from neurocxr.checkpoint import save_checkpoint

        save_checkpoint(checkpoint_path, model, config, {
            "threshold": best_threshold, "threshold_method": "youden (validation)",
            "data_source": data_source, "best_epoch": best_epoch, "val_auc": best_auc,
            "history": history, "train_config": train_cfg.to_dict(), "val_metrics": val_metrics.to_dict(),
        })
    return TrainResult(
        model=model,
        config=config,
        history=history,
        best_epoch=best_epoch,
        threshold=best_threshold,
        val_metrics=val_metrics,
        seconds_per_epoch=float(np.mean([h["seconds"] for h in history])),
        data_source=data_source,
        checkpoint_path=Path(checkpoint_path) if checkpoint_path is not None else None,
        train_config=train_cfg,
    )
