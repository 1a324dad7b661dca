"""Clinical metrics agree with scikit-learn; thresholds are chosen on the scores they are given."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from neurocxr.metrics import ClinicalMetrics, choose_threshold, clinical_metrics


@st.composite
def labelled_scores(draw: st.DrawFn, min_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Labels with both classes present and scores in [0, 1] (ties allowed: scores on a grid)."""
    n = draw(st.integers(min_size, 60))
    labels = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    labels[0], labels[1] = 0, 1  # both classes present
    scores = np.array(draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))) / 20.0
    return labels, scores


def _close(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) < 1e-12


@settings(max_examples=60, deadline=None)
@given(data=labelled_scores(), threshold=st.sampled_from([0.0, 0.25, 0.5, 0.7, 1.0]))
@pytest.mark.slow
def test_metrics_equal_sklearn(data: tuple[np.ndarray, np.ndarray], threshold: float) -> None:
    labels, scores = data
    m = clinical_metrics(labels, scores, threshold)
    pred = (scores >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(labels, pred, labels=[0, 1]).ravel()
    assert m.confusion == [[tn, fp], [fn, tp]]
    assert m.n == len(labels) and m.positives == int(labels.sum())
    assert _close(m.accuracy, skm.accuracy_score(labels, pred))
    assert _close(m.sensitivity, tp / (tp + fn))
    assert _close(m.specificity, tn / (tn + fp))
    assert _close(m.precision, skm.precision_score(labels, pred, zero_division=0))
    assert _close(m.f1, skm.f1_score(labels, pred, zero_division=0))
    assert _close(m.roc_auc, skm.roc_auc_score(labels, scores))
    assert _close(m.cohen_kappa, skm.cohen_kappa_score(labels, pred, labels=[0, 1]))
    assert _close(m.mcc, skm.matthews_corrcoef(labels, pred))
    assert m.threshold == threshold


def _youden(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    pred = scores >= threshold
    sens = (pred & (labels == 1)).sum() / (labels == 1).sum()
    spec = (~pred & (labels == 0)).sum() / (labels == 0).sum()
    return float(sens + spec - 1)


@settings(max_examples=60, deadline=None)
@given(data=labelled_scores())
# the best choice can be "everything positive" while roc_curve's argmax is its +inf threshold
@example(data=(np.array([0, 1, 0, 0]), np.array([0.0, 0.0, 0.0, 1.0])))
def test_youden_threshold_is_best_on_the_given_scores(data: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = data
    chosen = choose_threshold(labels, scores, "youden")
    assert 0.0 <= chosen <= 1.0
    best_possible = max(_youden(labels, scores, t) for t in np.unique(scores))
    assert _youden(labels, scores, chosen) == pytest.approx(best_possible, abs=1e-12)


def test_threshold_depends_only_on_the_validation_scores() -> None:
    rng = np.random.default_rng(0)
    val_labels = rng.integers(0, 2, 200)
    val_scores = np.clip(0.3 + 0.3 * val_labels + rng.normal(0, 0.1, 200), 0, 1)
    test_labels = rng.integers(0, 2, 200)
    test_scores = np.clip(0.5 + 0.3 * test_labels + rng.normal(0, 0.1, 200), 0, 1)  # shifted
    t_val = choose_threshold(val_labels, val_scores)
    assert t_val == choose_threshold(val_labels, val_scores)  # deterministic
    assert t_val != choose_threshold(test_labels, test_scores)
    # applied unchanged to test: the metrics carry the validation threshold
    assert clinical_metrics(test_labels, test_scores, t_val).threshold == t_val


def test_f1_and_fixed_threshold_methods() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.55, 0.8, 0.9])
    assert choose_threshold(labels, scores, "fixed") == 0.5
    t = choose_threshold(labels, scores, "f1")
    best_f1 = max(skm.f1_score(labels, scores >= s) for s in np.unique(scores))
    assert skm.f1_score(labels, scores >= t) == pytest.approx(best_f1)
    with pytest.raises(ValueError, match="unknown threshold method"):
        choose_threshold(labels, scores, "magic")


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="labels"):
        clinical_metrics(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="scores"):
        clinical_metrics(np.array([0, 1]), np.array([0.1]))
    with pytest.raises(ValueError, match="NaN"):
        clinical_metrics(np.array([0, 1]), np.array([0.1, np.nan]))


def test_single_class_gives_nan_auc_and_serialises() -> None:
    m = clinical_metrics(np.array([1, 1, 1]), np.array([0.9, 0.4, 0.8]), 0.5)
    assert np.isnan(m.roc_auc)
    assert m.confusion == [[0, 0], [1, 2]]
    assert isinstance(m, ClinicalMetrics)
    d = m.to_dict()
    assert d["confusion"] == [[0, 0], [1, 2]] and d["n"] == 3
    text = m.table()
    assert "sensitivity" in text and "[0 0; 1 2]" in text
    assert len(m.rows()) == len(text.splitlines())
