"""Clinical metrics for binary pneumonia detection, computed with scikit-learn.

Scores are P(pneumonia) in [0, 1] (softmax[:, 1]); a case is called positive when
``score >= threshold``. Thresholds are chosen on validation scores only and then applied,
unchanged, to the test set (the official test split is shifted; see ../shared/data/README.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn import metrics as skm

THRESHOLD_METHODS = ("youden", "f1", "fixed")


@dataclass
class ClinicalMetrics:
    """Binary classification metrics at one decision threshold (positive class = pneumonia)."""

    accuracy: float
    sensitivity: float
    specificity: float
    precision: float
    f1: float
    roc_auc: float
    cohen_kappa: float
    mcc: float
    confusion: list[list[int]]  # [[tn, fp], [fn, tp]]
    threshold: float
    n: int
    positives: int

    def to_dict(self) -> dict:
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """(name, formatted value) rows, ready for ``rich.table.Table.add_row``."""
        (tn, fp), (fn, tp) = self.confusion
        return [
            ("accuracy", f"{self.accuracy:.4f}"),
            ("sensitivity (recall)", f"{self.sensitivity:.4f}"),
            ("specificity", f"{self.specificity:.4f}"),
            ("precision (PPV)", f"{self.precision:.4f}"),
            ("F1", f"{self.f1:.4f}"),
            ("ROC AUC", f"{self.roc_auc:.4f}"),
            ("Cohen's kappa", f"{self.cohen_kappa:.4f}"),
            ("MCC", f"{self.mcc:.4f}"),
            ("confusion [tn fp; fn tp]", f"[{tn} {fp}; {fn} {tp}]"),
            ("threshold", f"{self.threshold:.4f}"),
            ("n (positives)", f"{self.n} ({self.positives})"),
        ]

    def table(self) -> str:
        """The rows as aligned plain text, one metric per line (also valid rich markup)."""
        rows = self.rows()
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _as_binary_inputs(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if y.size == 0:
        raise ValueError("no samples to score")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (pneumonia)")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf; the model output is broken")
    return y, s


def choose_threshold(y_true: np.ndarray, scores: np.ndarray, method: str = "youden") -> float:
    """Decision threshold from *validation* scores.

    ``youden`` maximises sensitivity + specificity - 1 over the ROC thresholds; ``f1`` maximises
    F1 over the precision-recall thresholds; ``fixed`` returns 0.5. With one class only the ROC is
    undefined and 0.5 is returned.
    """
    y, s = _as_binary_inputs(y_true, scores)
    if method == "fixed" or len(np.unique(y)) < 2:
        return 0.5
    if method == "youden":
        fpr, tpr, thresholds = skm.roc_curve(y, s)
        # roc_curve's first point has threshold +inf (nothing called positive, J = 0); the last
        # point (everything positive) also has J = 0, so skipping the first never loses the optimum.
        best = 1 + int(np.argmax((tpr - fpr)[1:]))
        return float(thresholds[best])
    if method == "f1":
        precision, recall, thresholds = skm.precision_recall_curve(y, s)
        f1 = np.divide(
            2 * precision * recall,
            precision + recall,
            out=np.zeros_like(precision),
            where=(precision + recall) > 0,
        )
        return float(thresholds[int(np.argmax(f1[:-1]))])
    raise ValueError(
        f"unknown threshold method {method!r}; choose one of {', '.join(THRESHOLD_METHODS)}"
    )


def clinical_metrics(
    y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5
) -> ClinicalMetrics:
    """All metrics at ``threshold`` (prediction = score >= threshold); AUC from the raw scores.
    AUC, Cohen's kappa and MCC are NaN when only one class is present (undefined)."""
    y, s = _as_binary_inputs(y_true, scores)
    pred = (s >= threshold).astype(np.int64)
    (tn, fp), (fn, tp) = skm.confusion_matrix(y, pred, labels=[0, 1])
    two_classes = len(np.unique(y)) == 2
    return ClinicalMetrics(
        accuracy=float(skm.accuracy_score(y, pred)),
        sensitivity=float(skm.recall_score(y, pred, pos_label=1, zero_division=0)),
        specificity=float(skm.recall_score(y, pred, pos_label=0, zero_division=0)),
        precision=float(skm.precision_score(y, pred, pos_label=1, zero_division=0)),
        f1=float(skm.f1_score(y, pred, pos_label=1, zero_division=0)),
        roc_auc=float(skm.roc_auc_score(y, s)) if two_classes else float("nan"),
        # Undefined with one class in y (sklearn would warn, and give MCC 0.0 as if it were measured).
        cohen_kappa=float(skm.cohen_kappa_score(y, pred, labels=[0, 1]))
        if two_classes
        else float("nan"),
        mcc=float(skm.matthews_corrcoef(y, pred)) if two_classes else float("nan"),
        confusion=[[int(tn), int(fp)], [int(fn), int(tp)]],
        threshold=float(threshold),
        n=int(y.size),
        positives=int(y.sum()),
    )
