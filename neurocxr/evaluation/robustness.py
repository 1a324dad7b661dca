"""Robustness to image degradation: the hybrid CNN-GRU-SNN paper's protocol (Slimi et al. 2025:
Gaussian blur sigma 0.2/0.4/0.6, salt-and-pepper p 0.05/0.10/0.15, speckle sigma 0.1/0.2/0.3) plus
additive Gaussian noise, applied to a split (test by default) of images in [0, 1].

Every model is scored at the threshold chosen on validation when it was trained (kept fixed: the
perturbation must not move the operating point). Deployable SNNs are also run bit-exactly on the
Loihi emulator, with the chip threshold chosen once on the clean validation split.

Parameters, as we apply them at the model's resolution (28 px for PneumoniaMNIST):
- ``gaussian_blur``: sigma in pixels; separable kernel of radius ceil(3 sigma), reflected borders.
  At sigma 0.2 the kernel's side weights are ~4e-6 (the image is practically unchanged); the paper
  worked at 128 px, so the same sigma blurs its images even less relative to their content.
- ``salt_and_pepper``: fraction p of pixels replaced, half by 0 and half by 1.
- ``speckle``: multiplicative noise x + x * n, n ~ N(0, sigma^2), clipped to [0, 1].
- ``gaussian_noise``: additive x + n, n ~ N(0, sigma^2), clipped to [0, 1] (our addition; the
  ResNet-50 seed paper trains with low-variance Gaussian noise).
Noise is seeded per (perturbation, level), so every model sees exactly the same degraded images.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from neurocxr.errors import NeurocxrError
from neurocxr.evaluation.common import (
    EvaluatedOn,
    check_max_samples,
    check_split,
    evaluated_on,
    float_logits_of,
    is_snn_model,
    prepare_chip,
    readout_difference,
    run_chip,
    softmax_positive,
)
from neurocxr.fileio import atomic_write
from neurocxr.metrics import clinical_metrics

PROTOCOL: dict[str, dict[str, Any]] = {
    "gaussian_blur": {
        "levels": (0.2, 0.4, 0.6),
        "parameter": "sigma (pixels)",
        "source": "Slimi et al. 2025",
    },
    "salt_and_pepper": {
        "levels": (0.05, 0.10, 0.15),
        "parameter": "p (fraction of pixels)",
        "source": "Slimi et al. 2025",
    },
    "speckle": {
        "levels": (0.1, 0.2, 0.3),
        "parameter": "sigma (multiplicative)",
        "source": "Slimi et al. 2025",
    },
    "gaussian_noise": {
        "levels": (0.05, 0.10, 0.20),
        "parameter": "sigma (additive, image range 0-1)",
        "source": "added here",
    },
}

OUTPUT_FILES = ("robustness.json", "robustness.png")


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, C, H, W] images, sigma in pixels (0 = unchanged)."""
    if sigma <= 0:
        return images.clone()
    radius = max(1, math.ceil(3 * sigma))
    r = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(r**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(images.dtype)
    c = images.shape[1]
    x = (
        F.pad(images, (radius, radius, radius, radius), mode="reflect")
        if min(images.shape[-2:]) > radius
        else F.pad(images, (radius, radius, radius, radius), mode="replicate")
    )
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return x.clamp(0.0, 1.0)


def salt_and_pepper(images: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Replace a fraction ``p`` of pixels (all channels of a pixel together): half by 0, half by 1."""
    u = torch.rand((images.shape[0], 1, *images.shape[2:]), generator=generator).expand_as(images)
    out = images.clone()
    out[u < p / 2] = 0.0
    out[(u >= p / 2) & (u < p)] = 1.0
    return out


def speckle(images: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Multiplicative noise x + x * n, n ~ N(0, sigma^2), clipped to [0, 1]."""
    n = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    return (images + images * sigma * n).clamp(0.0, 1.0)


def gaussian_noise(images: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Additive noise x + n, n ~ N(0, sigma^2), clipped to [0, 1]."""
    n = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    return (images + sigma * n).clamp(0.0, 1.0)


_APPLY: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian_blur": lambda x, level, g: gaussian_blur(x, level),
    "salt_and_pepper": salt_and_pepper,
    "speckle": speckle,
    "gaussian_noise": gaussian_noise,
}


def perturb(images: torch.Tensor, kind: str, level: float, *, seed: int = 0) -> torch.Tensor:
    """``images`` [B, C, H, W] in [0, 1] degraded by ``kind`` at ``level`` (seeded; input untouched)."""
    if kind not in _APPLY:
        raise NeurocxrError(f"unknown perturbation {kind!r}; choose one of {', '.join(PROTOCOL)}")
    if images.dim() != 4:
        raise NeurocxrError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    # One stream per (kind, level): every model sees the same degraded images.
    g = torch.Generator().manual_seed(
        int(seed) * 1_000_003 + list(PROTOCOL).index(kind) * 1000 + int(round(level * 1000))
    )
    return _APPLY[kind](images.float(), float(level), g)


def _scored(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:

    m = clinical_metrics(y, scores, threshold=threshold)
    return {
        "accuracy": m.accuracy,
        "roc_auc": m.roc_auc,
        "sensitivity": m.sensitivity,
        "specificity": m.specificity,
    }


@dataclass
class RobustnessThresholds:
    """The operating points the robustness run scored at: the float model's on P(pneumonia) and,
    when the chip ran, the chip's on its readout difference (both chosen on validation)."""

    float_model: float
    float_source: str
    chip: float | None
    chip_source: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "float": self.float_model,
            "float_source": self.float_source,
            "chip": self.chip,
            "chip_source": self.chip_source,
        }


@dataclass
class ChipRun:
    """Whether the Loihi emulator path was evaluated, why not when it was not, and on what."""

    evaluated: bool
    reason: str | None
    simulator: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"evaluated": self.evaluated, "reason": self.reason, "simulator": self.simulator}


@dataclass
class RobustnessResult:
    """`evaluate_robustness`: what was evaluated, the protocol, the thresholds, one row per
    condition (``{"perturbation", "level", "float": metrics, "chip": metrics}``), the degradation
    summary and, with ``keep_scores``, the per-image scores and labels. ``provenance`` is set by
    the caller that writes the result."""

    evaluated_on: EvaluatedOn
    seed: int
    protocol: dict[str, dict[str, Any]]
    thresholds: RobustnessThresholds
    chip: ChipRun
    results: list[dict[str, Any]]
    summary: DegradationSummary
    seconds: float
    scores: dict[str, Any] | None = None  # condition "kind@level" -> path -> score/prediction
    labels: np.ndarray | None = None
    provenance: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.evaluated_on.to_dict(),
            "seed": self.seed,
            "protocol": self.protocol,
            "thresholds": self.thresholds.to_dict(),
            "chip": self.chip.to_dict(),
            "results": self.results,
            "summary": self.summary.to_dict(),
            "seconds": self.seconds,
        }
        if self.scores is not None:
            out["scores"] = self.scores
            out["labels"] = self.labels
        if self.provenance is not None:
            out["provenance"] = self.provenance
        return out


def evaluate_robustness(
    loaded: Any,
    splits: Any,
    *,
    split: str = "test",
    chip: bool = True,
    max_samples: int | None = None,
    perturbations: dict[str, tuple[float, ...]] | None = None,
    seed: int = 0,
    progress: bool = False,
    keep_scores: bool = False,
) -> RobustnessResult:
    """Accuracy, ROC-AUC, sensitivity and specificity of ``loaded`` on ``splits.<split>`` under
    every perturbation and level (plus the clean images), for the float model and, when ``chip``
    and the model is a deployable SNN, for the Loihi emulator. Returns a `RobustnessResult`;
    ``keep_scores`` adds ``scores``: per condition "kind@level" the per-image scores and
    predictions of each path (for paired statistics), and ``"labels"``."""
    from tqdm.auto import tqdm

    check_split(split)
    check_max_samples(max_samples)
    protocol = {
        k: tuple(v)
        for k, v in (perturbations or {k: v["levels"] for k, v in PROTOCOL.items()}).items()
    }
    for kind in protocol:
        if kind not in PROTOCOL:
            raise NeurocxrError(
                f"unknown perturbation {kind!r}; choose one of {', '.join(PROTOCOL)}"
            )
    ds = getattr(splits, split)
    n = len(ds) if max_samples is None else min(int(max_samples), len(ds))
    images, labels = ds.images[:n], ds.labels[:n]
    y = labels.numpy()
    if len(np.unique(y)) < 2:
        raise NeurocxrError(
            f"the first {n} {split} images hold one class only; ROC-AUC needs both (use more samples)"
        )

    chip_state, chip_reason = (None, "not requested (--no-chip)")
    if chip:
        if is_snn_model(loaded):
            chip_state, chip_reason = prepare_chip(
                loaded, splits.val.images, splits.val.labels, seed=seed
            )
        else:
            chip_reason = f"{loaded.name} is not a spiking model"

    conditions = [("clean", 0.0)] + [
        (k, float(level)) for k, levels in protocol.items() for level in levels
    ]
    rows = []
    kept: dict[str, Any] = {}
    started = time.perf_counter()
    for kind, level in tqdm(
        conditions, desc=f"robustness {loaded.name}", disable=not progress, leave=False
    ):
        x = images.clone() if kind == "clean" else perturb(images, kind, level, seed=seed)
        row: dict[str, Any] = {"perturbation": kind, "level": level}
        p = softmax_positive(float_logits_of(loaded, x, seed=seed))
        row["float"] = _scored(y, p, loaded.threshold)
        cond = {"float": {"score": p, "prediction": (p >= loaded.threshold).astype(np.int64)}}
        if chip_state is not None:
            d = readout_difference(run_chip(loaded, chip_state.program, x, seed=seed))
            row["chip"] = _scored(y, d, chip_state.threshold)
            cond["chip"] = {"score": d, "prediction": (d >= chip_state.threshold).astype(np.int64)}
        rows.append(row)
        if keep_scores:
            kept[f"{kind}@{level:g}"] = cond
    return RobustnessResult(
        evaluated_on=evaluated_on(loaded, ds, split, y),
        seed=int(seed),
        protocol={
            k: {**{kk: vv for kk, vv in PROTOCOL[k].items() if kk != "levels"}, "levels": list(v)}
            for k, v in protocol.items()
        },
        thresholds=RobustnessThresholds(
            float_model=loaded.threshold,
            float_source=str(loaded.metadata.get("threshold_method", "checkpoint")),
            chip=None if chip_state is None else chip_state.threshold,
            chip_source=None if chip_state is None else chip_state.threshold_source,
        ),
        chip=ChipRun(
            evaluated=chip_state is not None,
            reason=chip_reason,
            simulator="neurocxr Loihi emulator (bit-exact with Lava fixed_pt)"
            if chip_state
            else None,
        ),
        results=rows,
        summary=degradation_summary(rows),
        seconds=time.perf_counter() - started,
        scores=kept if keep_scores else None,
        labels=y if keep_scores else None,
    )


@dataclass
class PerturbationDrop:
    """One perturbation on one path: the clean value and the mean and worst drop over its levels
    of accuracy and ROC-AUC (positive = worse than clean)."""

    accuracy_clean: float
    accuracy_mean_drop: float
    accuracy_worst_drop: float
    roc_auc_clean: float
    roc_auc_mean_drop: float
    roc_auc_worst_drop: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy_clean": self.accuracy_clean,
            "accuracy_mean_drop": self.accuracy_mean_drop,
            "accuracy_worst_drop": self.accuracy_worst_drop,
            "roc_auc_clean": self.roc_auc_clean,
            "roc_auc_mean_drop": self.roc_auc_mean_drop,
            "roc_auc_worst_drop": self.roc_auc_worst_drop,
        }


@dataclass
class PathDegradation:
    """The drops of one path (float or chip) per perturbation and their means over all of them."""

    per_perturbation: dict[str, PerturbationDrop]
    accuracy_mean_drop_all: float
    roc_auc_mean_drop_all: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_perturbation": {k: v.to_dict() for k, v in self.per_perturbation.items()},
            "accuracy_mean_drop_all": self.accuracy_mean_drop_all,
            "roc_auc_mean_drop_all": self.roc_auc_mean_drop_all,
        }


@dataclass
class DegradationSummary:
    """`degradation_summary` per path: the float model and, when evaluated, the chip (None
    otherwise; absent from `to_dict`)."""

    float_path: PathDegradation | None
    chip_path: PathDegradation | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.float_path is not None:
            out["float"] = self.float_path.to_dict()
        if self.chip_path is not None:
            out["chip"] = self.chip_path.to_dict()
        return out


def degradation_summary(rows: list[dict[str, Any]]) -> DegradationSummary:
    """Per path (float/chip) and perturbation: the clean value and the mean and worst drop of
    accuracy and AUC over the levels (positive = worse than clean)."""
    clean = next(r for r in rows if r["perturbation"] == "clean")
    out: dict[str, PathDegradation] = {}
    for path in ("float", "chip"):
        if path not in clean:
            continue
        per: dict[str, PerturbationDrop] = {}
        for kind in dict.fromkeys(r["perturbation"] for r in rows if r["perturbation"] != "clean"):
            sel = [r[path] for r in rows if r["perturbation"] == kind]
            acc_drops = [clean[path]["accuracy"] - s["accuracy"] for s in sel]
            auc_drops = [clean[path]["roc_auc"] - s["roc_auc"] for s in sel]
            per[kind] = PerturbationDrop(
                accuracy_clean=clean[path]["accuracy"],
                accuracy_mean_drop=float(np.mean(acc_drops)),
                accuracy_worst_drop=float(np.max(acc_drops)),
                roc_auc_clean=clean[path]["roc_auc"],
                roc_auc_mean_drop=float(np.mean(auc_drops)),
                roc_auc_worst_drop=float(np.max(auc_drops)),
            )
        all_acc = [v.accuracy_mean_drop for v in per.values()]
        all_auc = [v.roc_auc_mean_drop for v in per.values()]
        out[path] = PathDegradation(
            per_perturbation=per,
            accuracy_mean_drop_all=float(np.mean(all_acc)) if all_acc else 0.0,
            roc_auc_mean_drop_all=float(np.mean(all_auc)) if all_auc else 0.0,
        )
    return DegradationSummary(float_path=out.get("float"), chip_path=out.get("chip"))


def plot_robustness(results: list[dict[str, Any]], path: str | Path) -> Path:
    """One panel per perturbation: accuracy (solid) and ROC-AUC (dashed) against level, one colour
    per model/path (float, chip); level 0 is the clean split. ``results``: evaluate_robustness outputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(
        dict.fromkeys(
            r["perturbation"]
            for res in results
            for r in res["results"]
            if r["perturbation"] != "clean"
        )
    )
    fig, axes = plt.subplots(
        1, max(1, len(kinds)), figsize=(4.2 * max(1, len(kinds)), 3.6), squeeze=False
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, kind in zip(axes[0], kinds):
        c = 0
        for res in results:
            clean = next(r for r in res["results"] if r["perturbation"] == "clean")
            sel = [r for r in res["results"] if r["perturbation"] == kind]
            for which in ("float", "chip"):
                if which not in clean:
                    continue
                levels = [0.0] + [r["level"] for r in sel]
                label = f"{res['model']} ({'Loihi emulator' if which == 'chip' else 'float'})"
                colour = colours[c % len(colours)]
                ax.plot(
                    levels,
                    [clean[which]["accuracy"]] + [r[which]["accuracy"] for r in sel],
                    "-o",
                    color=colour,
                    label=f"{label} acc",
                    ms=3,
                )
                ax.plot(
                    levels,
                    [clean[which]["roc_auc"]] + [r[which]["roc_auc"] for r in sel],
                    "--s",
                    color=colour,
                    label=f"{label} AUC",
                    ms=3,
                )
                c += 1
        param = PROTOCOL.get(kind, {}).get("parameter", "level")
        ax.set_title(kind.replace("_", " "))
        ax.set_xlabel(param)
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (solid) / ROC-AUC (dashed)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=max(1, min(len(labels), 2 * len(kinds))),
        fontsize=7,
        frameon=False,
    )
    first = results[0]
    fig.suptitle(
        f"robustness on {first['split']} ({first['samples']} images of {Path(str(first['data'])).name}); "
        "thresholds fixed from validation",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.12, 1, 0.95))
    try:
        return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    finally:
        plt.close(fig)
