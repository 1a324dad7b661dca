"""Uncertainty that can flag cases for referral: MC-dropout predictive entropy and mutual
information (Gal & Ghahramani 2016), calibration (expected calibration error, reliability
diagram), and referral curves (accuracy on the cases kept when the most uncertain fraction is
referred to a clinician).

Measures, each ranking the same cases from most to least uncertain:
- ``mc_predictive_entropy``: H[mean_p] over ``passes`` stochastic forward passes with dropout on
  (only models with dropout; predictions from the mean probability);
- ``mc_mutual_information``: H[mean_p] - mean H[p] (the model's epistemic disagreement);
- ``softmax_entropy``: entropy of the deterministic model's softmax (any model);
- ``float_margin``: |d - t| for the float model, d = logit[pneumonia] - logit[normal] and
  t = logit(threshold): distance from the validation operating point (any model);
- ``chip_spike_margin``: |d - t| on the Loihi emulator for deployable SNNs, d = readout[pneumonia]
  - readout[normal] (the integer accumulator of weighted output spikes, or spike counts when the
  program has no readout) and t the chip threshold chosen on validation: the SNN's confidence as
  the chip itself would report it.
Entropies are in nats. Calibration is computed on P(pneumonia) (the positive class: bins of the
score against the fraction of pneumonia cases) and top-label (confidence of the called class
against its accuracy at threshold 0.5); the reliability diagram shows the positive class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurocxr.errors import NeurocxrError
from neurocxr.evaluation.common import (
    EvaluatedOn,
    check_max_samples,
    check_split,
    dropout_modules,
    evaluated_on,
    float_logits_of,
    is_snn_model,
    prepare_chip,
    readout_difference,
    run_chip,
    softmax_positive,
)
from neurocxr.fileio import atomic_write
from neurocxr.models.loaded import forward_model

DEFAULT_PASSES = 20
REFERRAL_FRACTIONS = tuple(round(f, 2) for f in np.arange(0.0, 0.91, 0.05))
OUTPUT_FILES = ("uncertainty.json", "uncertainty.png")


def _entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in nats along the last axis (0 log 0 = 0)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(-1)


def require_dropout(loaded: Any) -> list[torch.nn.Module]:
    """The model's dropout modules; NeurocxrError when it has none (MC dropout is impossible)."""
    mods = dropout_modules(loaded.model)
    if not mods:
        raise NeurocxrError(
            f"{loaded.name} has no dropout layer (p > 0), so Monte Carlo dropout cannot sample it; "
            "use a model trained with dropout (e.g. resnet50, or dropout > 0 in the model config), "
            "or leave out --mc-passes for the deterministic measures"
        )
    return mods


@torch.no_grad()
def mc_dropout_probabilities(
    loaded: Any,
    images: torch.Tensor,
    *,
    passes: int = DEFAULT_PASSES,
    seed: int = 0,
    batch_size: int = 128,
) -> np.ndarray:
    """Softmax probabilities [passes, N, K] with only the dropout modules in training mode
    (BatchNorm and everything else stay in eval). The global torch RNG is left as it was."""

    if int(passes) < 2:
        raise NeurocxrError(f"MC dropout needs at least 2 passes, got {passes}")
    mods = require_dropout(loaded)
    model = loaded.model.eval()
    out = np.empty((int(passes), len(images), loaded.config.num_classes), dtype=np.float64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for m in mods:
            m.train()
        try:
            for k in range(int(passes)):
                for i, start in enumerate(range(0, len(images), batch_size)):
                    logits = forward_model(
                        model, images[start : start + batch_size], loaded.config, seed=seed + i
                    )
                    out[k, start : start + batch_size] = torch.softmax(logits.double(), 1).numpy()
        finally:
            model.eval()
    return out


def mc_measures(probs: np.ndarray) -> dict[str, np.ndarray]:
    """From MC probabilities [P, N, K]: mean probability, predictive entropy, expected entropy,
    mutual information (all per sample)."""
    mean = probs.mean(0)
    predictive = _entropy(mean)
    expected = _entropy(probs).mean(0)
    return {
        "mean_probability": mean,
        "predictive_entropy": predictive,
        "expected_entropy": expected,
        "mutual_information": np.clip(predictive - expected, 0.0, None),
    }


@dataclass
class CalibrationBin:
    """One bin of a reliability diagram: its score range, how many cases fell in it, their mean
    score and the observed frequency (None for an empty bin)."""

    lo: float
    hi: float
    count: int
    mean_score: float | None
    observed: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lo": self.lo,
            "hi": self.hi,
            "count": self.count,
            "mean_score": self.mean_score,
            "observed": self.observed,
        }


@dataclass
class Calibration:
    """Expected calibration error for P(pneumonia) and for the top label, Brier score, and the
    reliability-diagram bins of both."""

    bins: int
    ece_positive_class: float
    ece_top_label: float
    brier: float
    reliability_positive_class: list[CalibrationBin]
    reliability_top_label: list[CalibrationBin]

    def to_dict(self) -> dict[str, Any]:
        return {
            "bins": self.bins,
            "ece_positive_class": self.ece_positive_class,
            "ece_top_label": self.ece_top_label,
            "brier": self.brier,
            "reliability_positive_class": [b.to_dict() for b in self.reliability_positive_class],
            "reliability_top_label": [b.to_dict() for b in self.reliability_top_label],
        }


def calibration(y: np.ndarray, p_positive: np.ndarray, *, bins: int = 10) -> Calibration:
    """Expected calibration error (equal-width bins) for P(pneumonia) and for the top label."""
    y = np.asarray(y).astype(np.int64)
    p = np.asarray(p_positive, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)

    def table(score: np.ndarray, outcome: np.ndarray) -> tuple[float, list[CalibrationBin]]:
        idx = np.clip(np.digitize(score, edges[1:-1], right=False), 0, bins - 1)
        rows, ece = [], 0.0
        for b in range(bins):
            sel = idx == b
            cnt = int(sel.sum())
            row = CalibrationBin(
                lo=float(edges[b]),
                hi=float(edges[b + 1]),
                count=cnt,
                mean_score=float(score[sel].mean()) if cnt else None,
                observed=float(outcome[sel].mean()) if cnt else None,
            )
            if row.mean_score is not None and row.observed is not None:
                ece += cnt / len(score) * abs(row.mean_score - row.observed)
            rows.append(row)
        return float(ece), rows

    ece_pos, rows_pos = table(p, y.astype(np.float64))
    called = (p >= 0.5).astype(np.int64)
    confidence = np.where(called == 1, p, 1.0 - p)
    ece_top, rows_top = table(confidence, (called == y).astype(np.float64))
    brier = float(np.mean((p - y) ** 2))
    return Calibration(
        bins=bins,
        ece_positive_class=ece_pos,
        ece_top_label=ece_top,
        brier=brier,
        reliability_positive_class=rows_pos,
        reliability_top_label=rows_top,
    )


@dataclass
class ReferralCurve:
    """Accuracy, sensitivity and specificity on the cases kept when each fraction of the most
    uncertain cases is referred (sensitivity/specificity None when no case of that class is kept)."""

    fraction_referred: list[float]
    accuracy_kept: list[float]
    sensitivity_kept: list[float | None]
    specificity_kept: list[float | None]
    kept: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "fraction_referred": self.fraction_referred,
            "accuracy_kept": self.accuracy_kept,
            "sensitivity_kept": self.sensitivity_kept,
            "specificity_kept": self.specificity_kept,
            "kept": self.kept,
        }


def referral_curve(
    y: np.ndarray,
    predictions: np.ndarray,
    uncertainty: np.ndarray,
    fractions: tuple[float, ...] = REFERRAL_FRACTIONS,
) -> ReferralCurve:
    """Refer the ``fraction`` most uncertain cases (ties: earlier index referred first); accuracy,
    sensitivity and specificity on the cases kept."""
    y = np.asarray(y).astype(np.int64)
    pred = np.asarray(predictions).astype(np.int64)
    order = np.argsort(-np.asarray(uncertainty, dtype=np.float64), kind="stable")
    n = len(y)
    acc, sens, spec, kept = [], [], [], []
    for f in fractions:
        k = min(n - 1, int(round(f * n)))  # always keep at least one case
        keep = np.sort(order[k:])
        yy, pp = y[keep], pred[keep]
        acc.append(float(np.mean(yy == pp)))
        sens.append(float(np.mean(pp[yy == 1] == 1)) if (yy == 1).any() else None)
        spec.append(float(np.mean(pp[yy == 0] == 0)) if (yy == 0).any() else None)
        kept.append(int(len(keep)))
    return ReferralCurve(
        fraction_referred=list(fractions),
        accuracy_kept=acc,
        sensitivity_kept=sens,
        specificity_kept=spec,
        kept=kept,
    )


@dataclass
class ReferralByMeasure:
    """The referral curve of one uncertainty measure and the path (float, mc_dropout, chip)
    whose predictions it refers."""

    path: str
    curve: ReferralCurve

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, **self.curve.to_dict()}


@dataclass
class FloatUncertainty:
    """The deterministic float model: accuracy at the checkpoint threshold and calibration."""

    accuracy: float
    calibration: Calibration

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "calibration": self.calibration.to_dict()}


@dataclass
class McDropoutUncertainty:
    """MC dropout: passes, dropout modules sampled, accuracy of the mean prediction, mean
    entropies (nats) and calibration of the mean probability."""

    passes: int
    dropout_modules: int
    accuracy_of_mean: float
    mean_predictive_entropy: float
    mean_mutual_information: float
    calibration: Calibration

    def to_dict(self) -> dict[str, Any]:
        return {
            "passes": self.passes,
            "dropout_modules": self.dropout_modules,
            "accuracy_of_mean": self.accuracy_of_mean,
            "mean_predictive_entropy": self.mean_predictive_entropy,
            "mean_mutual_information": self.mean_mutual_information,
            "calibration": self.calibration.to_dict(),
        }


@dataclass
class ChipUncertainty:
    """The Loihi emulator path: accuracy at the chip threshold chosen on validation."""

    accuracy: float
    threshold: float
    threshold_source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
        }


@dataclass
class UncertaintyResult:
    """`evaluate_uncertainty`: what was evaluated, the float model (and MC dropout and chip when
    run), one referral curve per measure, why the chip did not run, and the per-sample arrays.
    ``provenance`` is set by the caller that writes the result."""

    evaluated_on: EvaluatedOn
    threshold: float
    threshold_source: str
    float_model: FloatUncertainty
    mc_dropout: McDropoutUncertainty | None
    chip: ChipUncertainty | None
    referral: dict[str, ReferralByMeasure]
    entropy_unit: str
    chip_reason: str | None
    per_sample: dict[str, Any]  # name -> per-sample array
    provenance: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.evaluated_on.to_dict(),
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "float": self.float_model.to_dict(),
            "mc_dropout": None if self.mc_dropout is None else self.mc_dropout.to_dict(),
            "chip": None if self.chip is None else self.chip.to_dict(),
            "referral": {k: v.to_dict() for k, v in self.referral.items()},
            "entropy_unit": self.entropy_unit,
            "chip_reason": self.chip_reason,
            "per_sample": self.per_sample,
        }
        if self.provenance is not None:
            out["provenance"] = self.provenance
        return out


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-12), 1 - 1e-12)
    return float(np.log(p / (1 - p)))


def evaluate_uncertainty(
    loaded: Any,
    splits: Any,
    *,
    split: str = "test",
    passes: int | None = None,
    chip: bool = True,
    max_samples: int | None = None,
    seed: int = 0,
) -> UncertaintyResult:
    """Calibration and referral curves of ``loaded`` on ``splits.<split>``.

    ``passes``: MC-dropout passes; None = 20 when the model has dropout, none otherwise; a number
    on a model without dropout is an error (NeurocxrError). Returns an `UncertaintyResult` (the
    per-sample arrays in ``per_sample``)."""
    check_split(split)
    check_max_samples(max_samples)
    if passes is not None:
        require_dropout(loaded)
    elif dropout_modules(loaded.model):
        passes = DEFAULT_PASSES
    ds = getattr(splits, split)
    n = len(ds) if max_samples is None else min(int(max_samples), len(ds))
    images, y = ds.images[:n], ds.labels[:n].numpy().astype(np.int64)
    thr = loaded.threshold

    logits = float_logits_of(loaded, images, seed=seed)
    p = softmax_positive(logits)
    pred = (p >= thr).astype(np.int64)
    d_float = logits[:, 1] - logits[:, 0]
    curves: dict[str, ReferralByMeasure] = {}
    per_sample: dict[str, Any] = {"label": y, "float_p_pneumonia": p, "float_prediction": pred}
    sm_entropy = _entropy(np.stack([1 - p, p], 1))
    curves["softmax_entropy"] = ReferralByMeasure("float", referral_curve(y, pred, sm_entropy))
    margin = np.abs(d_float - _logit(thr))
    curves["float_margin"] = ReferralByMeasure("float", referral_curve(y, pred, -margin))
    per_sample["softmax_entropy"], per_sample["float_margin"] = sm_entropy, margin
    result = UncertaintyResult(
        evaluated_on=evaluated_on(loaded, ds, split, y),
        threshold=thr,
        threshold_source=str(loaded.metadata.get("threshold_method", "checkpoint")),
        float_model=FloatUncertainty(
            accuracy=float(np.mean(pred == y)), calibration=calibration(y, p)
        ),
        mc_dropout=None,
        chip=None,
        referral=curves,
        entropy_unit="nats",
        chip_reason=None,
        per_sample=per_sample,
    )
    if passes:
        probs = mc_dropout_probabilities(loaded, images, passes=passes, seed=seed)
        mc = mc_measures(probs)
        p_mc = mc["mean_probability"][:, 1]
        pred_mc = (p_mc >= thr).astype(np.int64)
        curves["mc_predictive_entropy"] = ReferralByMeasure(
            "mc_dropout", referral_curve(y, pred_mc, mc["predictive_entropy"])
        )
        curves["mc_mutual_information"] = ReferralByMeasure(
            "mc_dropout", referral_curve(y, pred_mc, mc["mutual_information"])
        )
        result.mc_dropout = McDropoutUncertainty(
            passes=int(passes),
            dropout_modules=len(dropout_modules(loaded.model)),
            accuracy_of_mean=float(np.mean(pred_mc == y)),
            mean_predictive_entropy=float(mc["predictive_entropy"].mean()),
            mean_mutual_information=float(mc["mutual_information"].mean()),
            calibration=calibration(y, p_mc),
        )
        per_sample.update(
            {
                "mc_p_pneumonia": p_mc,
                "mc_predictive_entropy": mc["predictive_entropy"],
                "mc_mutual_information": mc["mutual_information"],
            }
        )
    chip_reason = "not requested (--no-chip)"
    if chip and is_snn_model(loaded):
        state, chip_reason = prepare_chip(loaded, splits.val.images, splits.val.labels, seed=seed)
        if state is not None:
            d = readout_difference(run_chip(loaded, state.program, images, seed=seed))
            pred_chip = (d >= state.threshold).astype(np.int64)
            chip_margin = np.abs(d - state.threshold)
            curves["chip_spike_margin"] = ReferralByMeasure(
                "chip", referral_curve(y, pred_chip, -chip_margin)
            )
            result.chip = ChipUncertainty(
                accuracy=float(np.mean(pred_chip == y)),
                threshold=state.threshold,
                threshold_source=state.threshold_source,
            )
            per_sample.update({"chip_readout_difference": d, "chip_prediction": pred_chip})
            chip_reason = None
    elif chip:
        chip_reason = f"{loaded.name} is not a spiking model"
    result.chip_reason = chip_reason
    return result


def plot_uncertainty(result: dict[str, Any], path: str | Path) -> Path:
    """Reliability diagram (P(pneumonia), float and MC mean) and the referral curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    sources = [("float softmax", result["float"]["calibration"])]
    if result.get("mc_dropout"):
        sources.append(
            (
                f"MC dropout mean ({result['mc_dropout']['passes']} passes)",
                result["mc_dropout"]["calibration"],
            )
        )
    for name, cal in sources:
        rows = [r for r in cal["reliability_positive_class"] if r["count"]]
        ax1.plot(
            [r["mean_score"] for r in rows],
            [r["observed"] for r in rows],
            "-o",
            ms=3,
            label=f"{name}: ECE {cal['ece_positive_class']:.3f}",
        )
    ax1.set_xlabel("mean predicted P(pneumonia) in bin")
    ax1.set_ylabel("fraction with pneumonia")
    ax1.set_title("reliability diagram")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    for name, curve in result["referral"].items():
        ax2.plot(
            np.array(curve["fraction_referred"]),
            curve["accuracy_kept"],
            "-",
            marker=".",
            label=name.replace("_", " "),
        )
    ax2.axhline(result["float"]["accuracy"], color="grey", ls=":", label="random referral (float)")
    ax2.set_xlabel("fraction of cases referred (most uncertain first)")
    ax2.set_ylabel("accuracy on cases kept")
    ax2.set_title("referral curve")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    fig.suptitle(
        f"{result['model']} on {result['split']} ({result['samples']} images); threshold "
        f"{result['threshold']:.3f} from validation",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    try:
        return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    finally:
        plt.close(fig)
