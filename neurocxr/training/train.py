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
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, WeightedRandomSampler

from neurocxr.data.datasets import Augment
from neurocxr.data.encoding import encode
from neurocxr.errors import ConfigError, DataError
from neurocxr.metrics import ClinicalMetrics, choose_threshold, clinical_metrics
from neurocxr.models.base import ModelConfig, build_model, is_snn
from neurocxr.models.checkpoint import load_checkpoint, save_checkpoint
from neurocxr.models.loaded import forward_model, load
from neurocxr.models.vgg import vgg_channels, vgg_strides
from neurocxr.threads import restores_torch_threads
from neurocxr.training.chip_cost import ChipCostModel
from neurocxr.training.conversion import (
    DEFAULT_BALANCE_SAMPLES,
    DEFAULT_CONVERSION_ENCODING,
    convert_checkpoint,
    relu_activations,
    snn_config_for,
)
from neurocxr.training.pruning import WeightPruner
from neurocxr.training.qat import FakeQuantiser
from neurocxr.validation import check_both_classes, check_choice, check_float, check_int

BALANCE_MODES = ("weights", "sampler", "none")


# none | light (flip, small rotation, brightness/contrast) | shift (light + acquisition differences:
# gamma, blur, noise, scale/crop jitter; neurocxr.data.datasets.Augment.for_mode)
AUGMENT_MODES = ("none", "light", "shift")


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
    augment: bool | str = False  # an AUGMENT_MODES name; True = "light", False = "none"
    max_train_samples: int | None = None
    num_threads: int | None = None
    schedule: str = "onecycle"  # or "cosine"
    label_smoothing: float = 0.0  # CrossEntropyLoss label smoothing (0 = none)
    # Energy levers (issue 9), all off by default and chosen on validation:
    chip_cost_weight: float = (
        0.0  # lambda x differentiable chip energy in uJ per sample (neurocxr.training.chip_cost)
    )
    chip_cost_profile: str = "loihi2"  # device profile whose per-op constants weigh the chip cost
    early_readout_weight: float = (
        0.0  # weight of the loss on the readout averaged over the first t steps, all t
    )
    distill_teacher: str | None = (
        None  # checkpoint of a (CNN) teacher; soft targets from its logits
    )
    distill_weight: float = 0.0  # weight of the KL(teacher || student) term (0 = off)
    distill_temperature: float = 4.0
    # feature distillation: weight of the mean squared error between the student's hidden spike rates
    # and the teacher's ReLU activations / their batch 99.9th percentile, layer by layer; needs a
    # cnn_vgg teacher with the student's (snn_vgg) layer shapes, e.g. the conversion source
    distill_feature_weight: float = 0.0
    qat_epochs: int = (
        0  # quantisation-aware fine-tuning epochs after training (neurocxr.training.qat)
    )
    qat_lr_factor: float = 0.1  # QAT learning rate = lr x this
    # magnitude pruning (neurocxr.training.pruning): this fraction of each conv/linear layer's weights
    # (readout apart) is zeroed, rising along a cubic ramp over the first third of the epochs (at
    # least one); only epochs at the full fraction can be the best. The chip stores no zero weight,
    # so the synaptic ops (most of an SNN's dynamic energy) fall with it. 0 = off.
    prune: float = 0.0
    # ANN->SNN conversion (neurocxr.training.conversion): start from a converted cnn_vgg checkpoint instead of a
    # random init; epochs = 0 keeps the converted network as it is (pure conversion).
    convert_from: str | None = None
    convert_percentile: float = 99.9

    def __post_init__(self) -> None:
        # ConfigError (a ValueError too) names the field and what it accepts.

        check_choice("balance", self.balance, BALANCE_MODES)
        check_choice("schedule", self.schedule, ("onecycle", "cosine"))
        self.epochs = check_int("epochs", self.epochs, 0 if self.convert_from else 1, 100_000)
        self.augment = augment_mode(self.augment)
        self.convert_percentile = check_float(
            "convert_percentile", self.convert_percentile, 0.0, 100.0, low_open=True
        )
        self.batch_size = check_int("batch_size", self.batch_size, 1, 1_000_000)
        self.lr = check_float("lr", self.lr, 0.0, 10.0, low_open=True)
        self.weight_decay = check_float("weight_decay", self.weight_decay, 0.0, None)
        self.patience = check_int("patience", self.patience, 1)
        self.seed = check_int("seed", self.seed, 0, 2**32 - 1)
        self.max_train_samples = check_int(
            "max_train_samples", self.max_train_samples, 2, allow_none=True
        )
        self.num_threads = check_int("num_threads", self.num_threads, 1, allow_none=True)
        self.label_smoothing = check_float(
            "label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True
        )
        self.chip_cost_weight = check_float("chip_cost_weight", self.chip_cost_weight, 0.0, None)
        self.early_readout_weight = check_float(
            "early_readout_weight", self.early_readout_weight, 0.0, None
        )
        self.distill_weight = check_float("distill_weight", self.distill_weight, 0.0, 1.0)
        self.distill_temperature = check_float(
            "distill_temperature", self.distill_temperature, 0.0, None, low_open=True
        )
        self.distill_feature_weight = check_float(
            "distill_feature_weight", self.distill_feature_weight, 0.0, None
        )
        self.qat_epochs = check_int("qat_epochs", self.qat_epochs, 0, 100_000)
        self.prune = check_float("prune", self.prune, 0.0, 1.0, high_open=True)
        if self.prune > 0 and self.epochs == 0:
            raise ConfigError(
                "prune needs epochs >= 1: the network is pruned gradually while it trains "
                "(with convert_from, epochs = 0 keeps the converted network unpruned)"
            )
        self.qat_lr_factor = check_float(
            "qat_lr_factor", self.qat_lr_factor, 0.0, 10.0, low_open=True
        )
        if (
            self.distill_weight > 0 or self.distill_feature_weight > 0
        ) and not self.distill_teacher:
            raise ConfigError(
                "distill_weight / distill_feature_weight > 0 needs distill_teacher (a checkpoint path "
                "of the teacher model)"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def augment_mode(value: bool | str) -> str:
    """The augmentation mode name of a TrainConfig.augment value (booleans kept for old configs)."""

    if isinstance(value, (bool, np.bool_)):
        return "light" if value else "none"
    check_choice("augment", value, AUGMENT_MODES)
    return str(value)


# The accuracy/energy levers by the one name `neurocxr train`, `neurocxr.api.train` and the sweep grid
# all use (issue 18): where each lands is `lever_configs`.
LEVERS = (
    "convert_from",
    "teacher",
    "feature_distill",
    "depth",
    "width",
    "strides",
    "augment",
    "regulariser",
    "num_steps",
    "qat_epochs",
    "prune",
)


def check_feature_teacher(teacher: ModelConfig, student: ModelConfig, where: str) -> None:
    """ConfigError (one line) unless ``teacher`` is the cnn_vgg twin of the snn_vgg ``student``
    (same channels, hidden sizes and strides): feature distillation compares layer by layer."""
    if not (
        is_snn(student)
        and teacher.name == "cnn_vgg"
        and student.name == "snn_vgg"
        and tuple(teacher.channels) == tuple(student.channels)
        and tuple(teacher.hidden) == tuple(student.hidden)
        and teacher.extra.get("strides") == student.extra.get("strides")
    ):
        raise ConfigError(
            f"feature distillation needs a cnn_vgg teacher with the snn_vgg student's channels, hidden sizes "
            f"and strides (teacher {where}: {teacher.name} {list(teacher.channels)}, strides "
            f"{teacher.extra.get('strides')}; student {student.name} {list(student.channels)}, strides "
            f"{student.extra.get('strides')}); use logit distillation (teacher alone) otherwise"
        )


def default_encoding(encoding: str | None, convert_from: str | Path | None) -> str:
    """The SNN input when none is named: regular spike trains for a converted network (its input
    neurons would quantise the image coarsely; `neurocxr.training.conversion`), direct otherwise."""
    if encoding is not None:
        return encoding
    return DEFAULT_CONVERSION_ENCODING if convert_from else "direct"


def lever_configs(
    model: str,
    *,
    image_size: int = 28,
    num_steps: int = 16,
    encoding: str | None = None,
    depth: int | None = None,
    width: float = 1.0,
    convert_from: str | None = None,
    teacher: str | None = None,
    distill_weight: float | None = None,
    feature_distill: float = 0.0,
    strides: Sequence[int] | None = None,
    augment: bool | str = "none",
    regulariser: float = 0.0,
    qat_epochs: int = 0,
    prune: float = 0.0,
    model_fields: dict[str, Any] | None = None,
    **train_fields: Any,
) -> tuple[ModelConfig, TrainConfig]:
    """(ModelConfig, TrainConfig) of a training run described by its levers; ConfigError (one line)
    names the first impossible combination, before any data is read.

    - ``convert_from``: checkpoint of a trained `cnn_vgg`; the model becomes its `snn_vgg` twin
      (`neurocxr.training.conversion`), so ``model`` must be snn_vgg and depth/width come from the CNN;
      its input is ``encoding``: a rate code (regular, the default when None; rate) or direct (on-chip
      input neurons);
    - ``depth``: conv layers of a VGG plan (`neurocxr.models.vgg.vgg_channels`, snn_vgg/cnn_vgg only);
    - ``width``: multiplies the channels and hidden sizes (of the VGG plan when ``depth`` is given);
    - ``teacher``: checkpoint of a CNN to distil from (logits; ``distill_weight`` default 0.5);
    - ``feature_distill``: weight of feature distillation (hidden spike rates vs the teacher's
      normalised ReLU activations, layer by layer), from ``teacher`` or, without one, from the
      ``convert_from`` CNN; the teacher must be the student's cnn_vgg twin;
    - ``strides``: stride (1 or 2) of each conv of a VGG plan (with ``depth``; default: 2 at every
      second conv), e.g. (2, 1, 2, 1, 2, 1) for a first layer with a quarter of the neurons;
    - ``augment``: none | light | shift; ``regulariser``: chip-cost lambda per uJ; ``qat_epochs``;
    - ``prune``: fraction of each conv/linear layer's weights zeroed by magnitude while training
      (SNNs; `neurocxr.training.pruning`).
    ``model_fields``: other ModelConfig fields (channels, hidden, beta, threshold, dropout);
    ``train_fields``: other TrainConfig fields (epochs, lr, seed, ...).
    """

    fields_ = dict(model_fields or {})
    encoding = default_encoding(encoding, convert_from)
    feature_distill = check_float("feature_distill", feature_distill, 0.0, None)
    if strides is not None:
        if convert_from:
            raise ConfigError(
                "convert_from takes the strides from the converted CNN; leave strides unset"
            )
        if model not in ("snn_vgg", "cnn_vgg") or depth is None:
            raise ConfigError(
                "strides apply to the VGG-style chains snn_vgg and cnn_vgg, with depth (one stride per conv)"
            )
        fields_["extra"] = {
            **dict(fields_.get("extra") or {}),
            "strides": [check_int("strides", v, 1, 2) for v in strides],
        }
    width = check_float("width", width, 0.0, None, low_open=True)
    if depth is not None:
        depth = check_int("depth", depth, 1, 12)
        if model not in ("snn_vgg", "cnn_vgg"):
            raise ConfigError(
                f"depth applies to the VGG-style chains snn_vgg and cnn_vgg, not {model!r}"
            )
    if convert_from:
        if model != "snn_vgg":
            raise ConfigError(
                f"convert_from makes an snn_vgg (the spiking twin of a cnn_vgg); got model {model!r}"
            )
        if depth is not None or width != 1.0:
            raise ConfigError(
                "convert_from takes depth and width from the converted CNN; leave depth and width unset"
            )
        path = Path(convert_from).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"convert_from: {path} is not a file; pass the checkpoint of a trained cnn_vgg"
            )

        cnn_config = load_checkpoint(path).config
        if cnn_config.image_size != image_size:
            raise ConfigError(
                f"convert_from: {path} was trained on {cnn_config.image_size} px images, not {image_size}"
            )
        config = snn_config_for(
            cnn_config, num_steps, float(fields_.get("threshold", 1.0)), encoding=encoding
        )
    else:
        if depth is not None:
            fields_["channels"] = vgg_channels(depth, width)
            fields_["hidden"] = tuple(
                max(1, int(round(h * width))) for h in fields_.get("hidden", (128,))
            )
        elif width != 1.0:
            fields_["channels"] = tuple(
                max(1, int(round(c * width))) for c in fields_.get("channels", (16, 32))
            )
            fields_["hidden"] = tuple(
                max(1, int(round(h * width))) for h in fields_.get("hidden", (128,))
            )
        config = ModelConfig(
            name=model, image_size=image_size, num_steps=num_steps, encoding=encoding, **fields_
        )
        if strides is not None:
            try:
                vgg_strides(config)
            except ValueError:
                raise ConfigError(
                    f"strides must hold {len(config.channels)} values of 1 or 2, one per conv "
                    f"(depth {depth}), got {list(strides)}"
                ) from None
    if feature_distill > 0 and not teacher:
        if not convert_from:
            raise ConfigError(
                "feature_distill needs a teacher: --teacher <cnn_vgg checkpoint>, or --convert-from (its CNN)"
            )
        teacher = convert_from
    if teacher:
        path = Path(teacher).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"teacher: {path} is not a file; pass the checkpoint of a trained CNN"
            )
        if feature_distill > 0:
            check_feature_teacher(load_checkpoint(path).config, config, str(path))
            train_fields["distill_feature_weight"] = feature_distill
        train_fields["distill_teacher"] = str(path)
        train_fields["distill_weight"] = 0.5 if distill_weight is None else distill_weight
    elif distill_weight is not None:
        train_fields["distill_weight"] = (
            distill_weight  # TrainConfig refuses it without distill_teacher
        )
    train_cfg = TrainConfig(
        augment=augment,
        chip_cost_weight=regulariser,
        qat_epochs=qat_epochs,
        prune=prune,
        convert_from=str(Path(convert_from).expanduser()) if convert_from else None,
        **train_fields,
    )
    if (regulariser or qat_epochs or prune) and not is_snn(config):
        raise ConfigError(
            f"regulariser, qat_epochs and prune act on SNNs; {config.name!r} is a CNN"
        )
    return config, train_cfg


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
    conversion: dict[str, Any] | None = (
        None  # neurocxr.training.conversion.ConversionReport when converted
    )
    weight_sparsity: float | None = None  # zero weights in the pruned layers (with prune > 0)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and random so a training run repeats."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _labels_of(ds: Dataset) -> np.ndarray:
    """Labels of a dataset without loading its images when it exposes ``labels``."""
    if isinstance(ds, Subset):
        return _labels_of(ds.dataset)[np.asarray(ds.indices)]
    labels = getattr(ds, "labels", None)
    if labels is not None:
        return (
            np.asarray(labels.cpu() if torch.is_tensor(labels) else labels).astype(np.int64).ravel()
        )
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
                # seed + batch index: the same convention as neurocxr.models.loaded.float_logits
                logits = forward_model(model, images.float(), config, seed=seed + i)
                scores.append(torch.softmax(logits.float(), dim=1)[:, 1].numpy())
                labels.append(np.asarray(y).astype(np.int64).ravel())
    finally:
        model.train(was_training)
    if not scores:
        raise ValueError("cannot score an empty dataset")
    return np.concatenate(scores), np.concatenate(labels)


def predict_scores(
    model: nn.Module, config: ModelConfig, ds: Dataset, *, batch_size: int = 128, seed: int = 0
) -> np.ndarray:
    """P(pneumonia) per sample (softmax[:, 1]), in eval mode; rate coding seeded per batch."""
    return _scores_and_labels(model, config, ds, batch_size, seed)[0]


def evaluate(
    model: nn.Module, config: ModelConfig, ds: Dataset, threshold: float, *, seed: int = 0
) -> ClinicalMetrics:
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
    """A view of the training dataset that augments in ``__getitem__`` (neurocxr.data.datasets.ImageDataset
    applies its ``augment`` per sample; validation/test datasets are left untouched)."""
    import dataclasses

    if isinstance(ds, Subset):
        return Subset(_with_augment(ds.dataset, augment), ds.indices)
    if not (dataclasses.is_dataclass(ds) and hasattr(ds, "augment")):
        raise ValueError(
            f"augment=True needs a neurocxr.data.datasets.ImageDataset, got {type(ds).__name__}"
        )
    return dataclasses.replace(ds, augment=augment)  # type: ignore[type-var]


def _source_of(splits: Any) -> str:
    train = splits.train
    base = train.dataset if isinstance(train, Subset) else train
    source = str(getattr(base, "source", "unknown"))
    return (
        f"synthetic:{source}"
        if getattr(base, "synthetic", False) and "synthetic" not in source
        else source
    )


class LossTerms:
    """The training loss of one batch: cross-entropy plus the optional energy and accuracy levers.

    - chip cost (``chip_cost_weight`` = lambda): lambda x the differentiable chip energy per
      sample in uJ on ``chip_cost_profile`` (`neurocxr.training.chip_cost`, the energy report's formula);
    - early readout (``early_readout_weight``): cross-entropy of the readout averaged over the
      first t steps, averaged over t = 1..T, so the decision can be read out before step T;
    - distillation (``distill_weight``): Hinton's KL(teacher || student) at ``distill_temperature``
      (x T^2), mixed as (1 - w) x CE + w x KL;
    - feature distillation (``distill_feature_weight``, where shapes allow: a cnn_vgg teacher of
      the snn_vgg student's shape): + w_f x mean over hidden layers of MSE(spike rate,
      clamp(teacher ReLU activation / its batch 99.9th percentile, 0, 1)), the rates conversion aims at.
    """

    def __init__(
        self,
        model: nn.Module,
        config: ModelConfig,
        train_cfg: TrainConfig,
        class_weight: torch.Tensor | None,
    ) -> None:
        self.config, self.cfg, self.class_weight = config, train_cfg, class_weight
        self.snn = is_snn(config)
        self.chip_cost = None
        if train_cfg.chip_cost_weight > 0 and self.snn:
            shape = (config.in_channels, config.image_size, config.image_size)
            self.chip_cost = ChipCostModel(
                model, shape, config.num_steps, train_cfg.chip_cost_profile
            )
        self.teacher = None
        self.feature_teacher = False
        if (
            train_cfg.distill_weight > 0 or train_cfg.distill_feature_weight > 0
        ) and train_cfg.distill_teacher:
            self.teacher = load(train_cfg.distill_teacher)
            if self.teacher.config.image_size != config.image_size:
                raise DataError(
                    f"teacher {train_cfg.distill_teacher} was trained on {self.teacher.config.image_size} px images, "
                    f"the student on {config.image_size} px"
                )
            if train_cfg.distill_feature_weight > 0:
                check_feature_teacher(self.teacher.config, config, str(train_cfg.distill_teacher))
                self.feature_teacher = True

    def __call__(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        parts: dict[str, float] = {}
        readout_steps = None
        cost = None
        if self.snn:
            x = encode(images, self.config.encoding, self.config.num_steps)
            out = model(x, record=self.chip_cost is not None or self.feature_teacher)
            logits, readout_steps = out.logits, out.readout_steps
            if self.chip_cost is not None:
                cost = self.chip_cost(x, out.spikes or [])
        else:
            logits = model(images)
        loss = F.cross_entropy(
            logits, labels, weight=self.class_weight, label_smoothing=cfg.label_smoothing
        )
        parts["ce"] = float(loss)
        if self.feature_teacher:
            targets = relu_activations(self.teacher.model.eval(), images)
            rates = [s.mean(0) for s in (out.spikes or [])][
                -len(targets) :
            ]  # hidden layers (after input neurons)
            terms = []
            for rate, act in zip(rates, targets):
                flat = act.flatten()
                scale = torch.quantile(
                    flat[torch.randperm(flat.numel())[:100_000]], 0.999
                ).clamp_min(1e-6)
                terms.append(F.mse_loss(rate.reshape(act.shape), (act / scale).clamp(0, 1)))
            feat = torch.stack(terms).mean()
            loss = loss + cfg.distill_feature_weight * feat
            parts["distill_feature_mse"] = float(feat)
        if self.teacher is not None and cfg.distill_weight > 0:
            with torch.no_grad():
                t_logits = forward_model(self.teacher.model.eval(), images, self.teacher.config)
            temp = cfg.distill_temperature
            kl = (
                F.kl_div(
                    F.log_softmax(logits / temp, 1),
                    F.softmax(t_logits / temp, 1),
                    reduction="batchmean",
                )
                * temp**2
            )
            loss = (1.0 - cfg.distill_weight) * loss + cfg.distill_weight * kl
            parts["distill_kl"] = float(kl)
        if (
            cfg.early_readout_weight > 0
            and readout_steps is not None
            and readout_steps.shape[0] > 1
        ):
            steps = readout_steps.shape[0]
            running = readout_steps.cumsum(0) / torch.arange(
                1, steps + 1, dtype=readout_steps.dtype
            ).view(-1, 1, 1)
            early = F.cross_entropy(
                running.reshape(-1, running.shape[-1]),
                labels.repeat(steps),
                weight=self.class_weight,
            )
            loss = loss + cfg.early_readout_weight * early
            parts["early_readout_ce"] = float(early)
        if cost is not None:
            energy_uj = cost.energy_j.mean() * 1e6
            loss = loss + cfg.chip_cost_weight * energy_uj
            parts["chip_uj"] = float(energy_uj)
        return loss, parts


def _quantisation_aware_finetune(
    model: nn.Module,
    config: ModelConfig,
    train_cfg: TrainConfig,
    splits: Any,
    loader: DataLoader,
    loss_terms: "LossTerms",
    val_labels: np.ndarray,
    history: list[dict[str, float]],
    progress: bool,
    pruner: WeightPruner | None = None,
) -> tuple[float, float, int]:
    """``qat_epochs`` more epochs with the exporter's integers in the forward pass (`neurocxr.training.qat`),
    constant lr = lr x qat_lr_factor, the epoch with the best validation AUC (of the quantised
    forward pass) kept; the weights end exactly on the chip's grid. Returns (threshold, val AUC, epoch)."""
    from tqdm.auto import tqdm

    fq = FakeQuantiser(model, config)
    fq.refresh()
    optimiser = torch.optim.AdamW(
        model.parameters(),
        lr=train_cfg.lr * train_cfg.qat_lr_factor,
        weight_decay=train_cfg.weight_decay,
    )
    refresh_every = max(1, len(loader) // 8)  # the exporter's scale follows the largest weight

    def after_batch(b: int) -> None:
        if pruner is not None:
            pruner.apply()  # pruned weights stay at 0, which the chip's grid keeps at 0
        if (b + 1) % refresh_every == 0:
            fq.refresh()

    start = len(history)
    best = _BestEpoch()
    row, val_scores = _validation_row(model, config, splits, val_labels, train_cfg.seed)
    best.offer(model, start, row["val_auc"], val_labels, val_scores)
    for q in range(1, train_cfg.qat_epochs + 1):
        started = time.perf_counter()
        train_loss, _ = _train_one_epoch(
            model,
            loader,
            loss_terms,
            optimiser,
            None,
            f"{config.name} QAT epoch {q}/{train_cfg.qat_epochs}",
            progress,
            after_batch=after_batch,
        )
        fq.refresh()
        row, val_scores = _validation_row(model, config, splits, val_labels, train_cfg.seed)
        history.append(
            {
                "epoch": start + q,
                "train_loss": train_loss,
                **row,
                "seconds": time.perf_counter() - started,
                "qat": 1.0,
            }
        )
        if progress:
            tqdm.write(f"{config.name} QAT epoch {q}: val AUC {row['val_auc']:.4f}")
        best.offer(model, start + q, row["val_auc"], val_labels, val_scores)
    assert best.state is not None
    model.load_state_dict(best.state)
    fq.finalise()
    model.eval()
    return best.threshold, best.auc, best.epoch


def _converted_model(
    config: ModelConfig, train_cfg: TrainConfig, train_ds: Dataset
) -> tuple[nn.Module, Any]:
    """The `snn_vgg` converted from ``train_cfg.convert_from`` with thresholds balanced on (at most
    1000, seeded) training images; ``config`` must be the checkpoint's SNN twin (`neurocxr.training.conversion`)."""

    n = len(train_ds)  # type: ignore[arg-type]
    pick = np.sort(
        np.random.default_rng(train_cfg.seed).choice(
            n, size=min(n, DEFAULT_BALANCE_SAMPLES), replace=False
        )
    )
    images = torch.stack([train_ds[int(i)][0] for i in pick]).float()
    model, converted_cfg, report = convert_checkpoint(
        str(train_cfg.convert_from),
        images,
        num_steps=config.num_steps,
        threshold=config.threshold,
        percentile=train_cfg.convert_percentile,
        encoding=config.encoding,
    )
    if converted_cfg.to_dict() != config.to_dict():
        diff = sorted(k for k, v in converted_cfg.to_dict().items() if config.to_dict().get(k) != v)
        raise ConfigError(
            f"the model config differs from the SNN twin of {train_cfg.convert_from} in {', '.join(diff)}; "
            "build it with neurocxr.training.conversion.snn_config_for(<the CNN's config>, num_steps, threshold, "
            "encoding=...)"
        )
    return model, report


def check_validation_classes(labels: Any) -> None:
    """Refuse a validation split without both classes: the best epoch (val AUC) and the operating
    threshold are chosen on it, and one class gives AUC NaN (`train`, and `sweep` before Ray)."""
    check_both_classes(
        labels, "the validation split", "choosing the best epoch (AUC) and the threshold"
    )


def _train_loader(
    train_ds: Dataset, train_labels: np.ndarray, class_weight: torch.Tensor, train_cfg: TrainConfig
) -> DataLoader:
    """Shuffled batches, or class-balanced ones drawn with replacement (``balance="sampler"``)."""
    generator = torch.Generator().manual_seed(train_cfg.seed)
    if train_cfg.balance == "sampler":
        sample_weight = class_weight[torch.as_tensor(train_labels)].double()
        return DataLoader(
            train_ds,
            batch_size=train_cfg.batch_size,
            sampler=WeightedRandomSampler(sample_weight, len(train_labels), generator=generator),
        )
    return DataLoader(train_ds, batch_size=train_cfg.batch_size, shuffle=True, generator=generator)


def _class_weight(train_labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Balanced class weights; DataError (one line) when the training split holds one class."""
    present = np.unique(train_labels)
    if len(present) < 2:
        raise DataError(
            f"the training split holds class {present.tolist()} only; a classifier needs both "
            "normal (0) and pneumonia (1) images (check the data source or max_train_samples)"
        )
    class_weight = torch.ones(num_classes)
    class_weight[present] = torch.tensor(
        compute_class_weight("balanced", classes=present, y=train_labels), dtype=torch.float32
    )
    return class_weight


def _optimiser(
    model: nn.Module, train_cfg: TrainConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW and its per-batch learning-rate schedule (OneCycle or cosine)."""
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay
    )
    if train_cfg.schedule == "onecycle":
        scheduler: Any = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=train_cfg.lr, total_steps=total_steps
        )
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=total_steps)
    return optimiser, scheduler


def _train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_terms: LossTerms,
    optimiser: torch.optim.Optimizer,
    scheduler: Any,
    desc: str,
    progress: bool,
    after_batch: Callable[[int], None] | None = None,
) -> tuple[float, float]:
    """One pass over ``loader`` (``scheduler`` stepped per batch unless None, ``after_batch(i)``
    after batch i); returns (mean training loss, mean chip-cost estimate in uJ, or 0)."""
    from tqdm.auto import tqdm

    model.train()
    loss_sum, seen, chip_sum = 0.0, 0, 0.0
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False)
    for i, (images, labels) in enumerate(bar):
        images = images.float()
        labels = torch.as_tensor(labels).long().view(-1)
        loss, parts = loss_terms(model, images, labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if scheduler is not None:
            scheduler.step()
        if after_batch is not None:
            after_batch(i)
        loss_sum += float(loss) * len(labels)
        seen += len(labels)
        if "chip_uj" in parts:
            chip_sum += parts["chip_uj"] * len(labels)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
    return loss_sum / max(seen, 1), chip_sum / max(seen, 1)


@dataclass
class _BestEpoch:
    """The epoch with the best validation AUC so far: its weights and its Youden threshold."""

    auc: float = -np.inf
    epoch: int = 0
    state: dict[str, Any] | None = None
    threshold: float = 0.5

    def offer(
        self, model: nn.Module, epoch: int, auc: float, labels: np.ndarray, scores: np.ndarray
    ) -> bool:
        """Keep this epoch if it beats the best (or is the first); True when kept."""
        if auc > self.auc or self.state is None:
            self.auc, self.epoch = auc, epoch
            self.state = copy.deepcopy(model.state_dict())
            self.threshold = choose_threshold(labels, scores, "youden")
            return True
        return False


def _validation_row(
    model: nn.Module, config: ModelConfig, splits: Any, labels: np.ndarray, seed: int
) -> tuple[dict[str, float], np.ndarray]:
    """Validation AUC and accuracy at 0.5 of ``model`` now, with its scores."""
    scores = predict_scores(model, config, splits.val, seed=seed)
    row = {
        "val_auc": clinical_metrics(labels, scores).roc_auc,
        "val_acc": float(((scores >= 0.5) == labels).mean()),
    }
    return row, scores


def _pruner(
    model: nn.Module, config: ModelConfig, train_cfg: TrainConfig, batches_per_epoch: int
) -> WeightPruner | None:
    """The magnitude pruner of a ``prune`` > 0 run: its ramp spans the first third of the epochs
    (at least one), so the rest train at the full fraction; None when pruning is off."""
    if train_cfg.prune <= 0:
        return None
    if not is_snn(config):
        raise ConfigError(f"prune acts on SNNs (the chip's synapses); {config.name!r} is a CNN")
    ramp_epochs = max(1, train_cfg.epochs // 3)
    return WeightPruner(model, train_cfg.prune, ramp_epochs * batches_per_epoch)


def _prune_step(pruner: WeightPruner, loss_terms: LossTerms, model: nn.Module) -> None:
    """After an optimiser step: advance the pruning ramp; while the masks still grow, the chip-cost
    regulariser recounts its fan-outs so that pruned synapses cost nothing in it."""
    pruner.step()
    if loss_terms.chip_cost is not None and pruner.steps <= pruner.ramp_steps:
        loss_terms.chip_cost.refresh(model)


@restores_torch_threads  # train_cfg.num_threads applies to this call only
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
    train_ds = _train_subset(splits.train, train_cfg.max_train_samples, train_cfg.seed)
    conversion = None
    if train_cfg.convert_from:
        model, conversion = _converted_model(config, train_cfg, train_ds)
    else:
        model = build_model(config)
    augment = None
    if augment_mode(train_cfg.augment) != "none":
        augment = Augment.for_mode(augment_mode(train_cfg.augment), seed=train_cfg.seed)
        train_ds = _with_augment(train_ds, augment)
    train_labels = _labels_of(train_ds)
    class_weight = _class_weight(train_labels, config.num_classes)
    val_labels = _labels_of(splits.val)
    check_validation_classes(val_labels)
    loader = _train_loader(train_ds, train_labels, class_weight, train_cfg)
    loss_terms = LossTerms(
        model, config, train_cfg, class_weight if train_cfg.balance == "weights" else None
    )
    optimiser, scheduler = _optimiser(model, train_cfg, max(1, train_cfg.epochs * len(loader)))
    pruner = _pruner(model, config, train_cfg, len(loader))

    history: list[dict[str, float]] = []
    best = _BestEpoch()
    epochs_without_gain = 0
    data_source = _source_of(splits)

    def checkpoint_metadata(
        threshold: float, epoch: int, auc: float, epochs: list[dict[str, float]]
    ) -> dict[str, Any]:
        """What every checkpoint of this run records (the final one adds its val metrics)."""
        return {
            "threshold": threshold,
            "threshold_method": "youden (validation)",
            "data_source": data_source,
            "data_origin": getattr(splits, "origin", None),
            "best_epoch": epoch,
            "val_auc": auc,
            "history": epochs,
            "train_config": train_cfg.to_dict(),
        }

    if conversion is not None:  # epoch 0 = the converted network; fine-tuning must beat it on val
        row, val_scores = _validation_row(model, config, splits, val_labels, train_cfg.seed)
        if pruner is None:  # a pruned run must end pruned: the dense start is not a candidate
            best.offer(model, 0, row["val_auc"], val_labels, val_scores)
        history.append(
            {"epoch": 0, "train_loss": float("nan"), **row, "seconds": 0.0, "converted": 1.0}
        )
    for epoch in range(1, train_cfg.epochs + 1):
        if augment is not None:
            augment.set_epoch(epoch)  # fresh, still seeded, transforms each epoch
        started = time.perf_counter()
        train_loss, chip_uj = _train_one_epoch(
            model,
            loader,
            loss_terms,
            optimiser,
            scheduler,
            f"{config.name} epoch {epoch}/{train_cfg.epochs}",
            progress,
            after_batch=None
            if pruner is None
            else lambda _: _prune_step(pruner, loss_terms, model),
        )
        row, val_scores = _validation_row(model, config, splits, val_labels, train_cfg.seed)
        seconds = time.perf_counter() - started
        history.append({"epoch": epoch, "train_loss": train_loss, **row, "seconds": seconds})
        if loss_terms.chip_cost is not None:
            history[-1]["train_chip_uj"] = chip_uj
        if pruner is not None:
            history[-1]["weight_sparsity"] = pruner.measured_sparsity()
        if progress:
            tqdm.write(
                f"{config.name} epoch {epoch}: loss {train_loss:.4f}  "
                f"val AUC {row['val_auc']:.4f}  val acc@0.5 {row['val_acc']:.4f}  ({seconds:.1f} s)"
            )
        if pruner is not None and not pruner.reached:
            continue  # still on the ramp: not a candidate, not a stall either
        if best.offer(model, epoch, row["val_auc"], val_labels, val_scores):
            epochs_without_gain = 0
            if checkpoint_path is not None:
                save_checkpoint(
                    checkpoint_path,
                    model,
                    config,
                    checkpoint_metadata(best.threshold, epoch, best.auc, copy.deepcopy(history)),
                )
        else:
            epochs_without_gain += 1
            if epochs_without_gain >= train_cfg.patience:
                if progress:
                    tqdm.write(f"early stop: no better val AUC for {train_cfg.patience} epochs")
                break

    assert best.state is not None
    model.load_state_dict(best.state)
    model.eval()
    best_threshold, best_auc, best_epoch = best.threshold, best.auc, best.epoch
    if train_cfg.qat_epochs > 0 and is_snn(config):
        best_threshold, best_auc, best_epoch = _quantisation_aware_finetune(
            model,
            config,
            train_cfg,
            splits,
            loader,
            loss_terms,
            val_labels,
            history,
            progress,
            pruner,
        )
    val_metrics = evaluate(model, config, splits.val, best_threshold, seed=train_cfg.seed)
    if checkpoint_path is not None:  # final metadata: full history and the validation metrics
        save_checkpoint(
            checkpoint_path,
            model,
            config,
            {
                **checkpoint_metadata(best_threshold, best_epoch, best_auc, history),
                "val_metrics": val_metrics.to_dict(),
                "conversion": conversion.to_dict() if conversion is not None else None,
            },
        )
    trained = [h["seconds"] for h in history if not h.get("converted")]
    return TrainResult(
        model=model,
        config=config,
        history=history,
        best_epoch=best_epoch,
        threshold=best_threshold,
        val_metrics=val_metrics,
        seconds_per_epoch=float(np.mean(trained)) if trained else 0.0,
        data_source=data_source,
        checkpoint_path=Path(checkpoint_path) if checkpoint_path is not None else None,
        train_config=train_cfg,
        conversion=conversion.to_dict() if conversion is not None else None,
        weight_sparsity=None if pruner is None else pruner.measured_sparsity(),
    )
