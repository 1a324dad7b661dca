"""The verdict compares the SNN with the accuracy-matched CNN baseline and the plot shows both
fronts (issue 18 item 7)."""

from __future__ import annotations

import json

import pytest

from neurocxr.energy.types import EnergyEstimate
from neurocxr.report import (
    Report,
    pareto_front,
    report_to_json,
    summary_from,
    verdict,
    write_report,
)

ARITH = "MACs x E_MAC (arithmetic only)"


def _est(model: str, device: str, joules: float, acc: float, method: str = ARITH) -> EnergyEstimate:
    return EnergyEstimate(
        model=model,
        device=device,
        dynamic_j=joules,
        total_j=None,
        latency_s=None,
        per_layer_j={"l": joules},
        constants={},
        source="test constants",
        method=method,
        accuracy=acc,
    )


def _report(snn_auc: float | None, aucs: dict[str, float] | None = None) -> Report:
    estimates = [
        _est(
            "snn_strided",
            "loihi2",
            10e-6,
            0.88,
            "synaptic ops x E_synop + neuron updates x E_update",
        ),
        _est("cnn_small", "horowitz45-int8", 3e-6, 0.87),
        _est("medspectralnet", "horowitz45-int8", 11e-6, 0.91),
        _est("resnet18_sa", "horowitz45-int8", 50e-6, 0.90),
    ]
    auc = dict(
        aucs
        if aucs is not None
        else {"cnn_small": 0.920, "medspectralnet": 0.970, "resnet18_sa": 0.959}
    )
    if snn_auc is not None:
        auc["snn_strided"] = snn_auc
    summary = summary_from(
        estimates, [], baselines=["cnn_small", "medspectralnet", "resnet18_sa"], auc=auc
    )
    return Report(
        title="t",
        created="2026-01-01T00:00:00+00:00",
        data_source="PneumoniaMNIST test split",
        summary=summary,
        estimates=estimates,
        auc=auc,
        neuromorphic_devices=["loihi2"],
    )


def test_verdict_names_the_cheapest_baseline_at_least_as_accurate() -> None:
    report = _report(0.930)
    text = verdict(report)
    # cnn_small (3 µJ) is cheaper but less accurate (0.920 < 0.930): medspectralnet (11 µJ, 0.970) is named
    assert text.startswith("snn_strided is cheaper: 10 µJ") and "11 µJ for medspectralnet" in text
    assert "1.1× less" in text
    assert (
        "medspectralnet is the cheapest CNN baseline whose test ROC-AUC (0.970) "
        "is at least that of snn_strided (0.930)"
    ) in text
    assert "cnn_small" not in text
    # the table keeps every baseline, cnn_small included
    assert {r.model for r in report.summary if r.is_baseline} == {
        "cnn_small",
        "medspectralnet",
        "resnet18_sa",
    }
    choice = report_to_json(report)["verdict_baseline"]
    assert (
        choice["model"],
        choice["match"],
        choice["snn_test_auc"],
        choice["baseline_test_auc"],
    ) == ("medspectralnet", "matched", 0.930, 0.970)


def test_an_snn_below_every_baseline_is_matched_by_the_cheapest_one() -> None:
    text = verdict(_report(0.900))
    assert text.startswith("cnn_small is cheaper: 3 µJ") and "10 µJ for snn_strided" in text
    assert (
        "cnn_small is the cheapest CNN baseline whose test ROC-AUC (0.920) "
        "is at least that of snn_strided (0.900)"
    ) in text


def test_verdict_says_so_when_no_baseline_reaches_the_snn() -> None:
    report = _report(0.990)
    text = verdict(report)
    assert "No CNN baseline reaches the test ROC-AUC of snn_strided (0.990)" in text
    assert (
        "the most accurate one, medspectralnet (0.970)" in text
        and "11 µJ for medspectralnet" in text
    )
    assert report_to_json(report)["verdict_baseline"]["match"] == "none reaches"


def test_verdict_without_auc_falls_back_to_the_cheapest_and_says_it_is_not_matched() -> None:
    text = verdict(_report(None))
    assert text.startswith("cnn_small is cheaper: 3 µJ") and "not accuracy-matched" in text


def test_pareto_front_keeps_only_undominated_points() -> None:
    pts = [(5.0, 0.90), (1.0, 0.80), (2.0, 0.78), (3.0, 0.95), (3.0, 0.85), (9.0, 0.94)]
    assert pareto_front(pts) == [(1.0, 0.80), (3.0, 0.95)]
    assert pareto_front([]) == []


@pytest.mark.slow
def test_rendered_report_opens_on_the_verdict_and_draws_both_fronts(tmp_path, monkeypatch) -> None:
    import neurocxr.report.plots as rep

    drawn: list[dict] = []
    real = rep._draw_fronts

    def spy(ax, families, what):  # record what each plot draws, then draw it
        drawn.append({k: rep.pareto_front(v) for k, v in families.items()})
        real(ax, families, what)

    monkeypatch.setattr(rep, "_draw_fronts", spy)
    report = _report(0.930)
    html_path, json_path = write_report(report, tmp_path)
    page = html_path.read_text(encoding="utf-8")
    body = page[page.index("<body>") :]
    assert body.index('id="verdict"') < body.index("<img")  # the verdict comes first
    assert "medspectralnet is the cheapest CNN baseline" in page
    fronts = drawn[0]
    # SNN: one point; CNN front through cnn_small (3 µJ, 0.920) and medspectralnet (11 µJ, 0.970),
    # resnet18_sa (50 µJ, 0.959) is dominated
    assert fronts["SNN"] == [(pytest.approx(10e-6), pytest.approx(0.930))]
    assert fronts["CNN"] == [
        (pytest.approx(3e-6), pytest.approx(0.920)),
        (pytest.approx(11e-6), pytest.approx(0.970)),
    ]
    assert json.loads(json_path.read_text())["verdict_baseline"]["model"] == "medspectralnet"
