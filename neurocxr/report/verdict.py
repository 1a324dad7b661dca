"""The verdict: one sentence with numbers comparing the SNN on its neuromorphic device with the
accuracy-matched CNN baseline, the sweep's validation-selected trial in one sentence, and the
caveats the comparison leaves out."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from neurocxr.report.formatting import _finite, format_accuracy, format_auc, format_energy
from neurocxr.report.model import (
    BASIS_LABELS,
    SCOPE_LABELS,
    Report,
    SummaryRow,
    _trial_ok,
    sweep_devices,
)

__all__ = ["BaselineChoice", "verdict", "verdict_caveats", "sweep_sentence"]


def _ratio_text(ratio: float) -> str:
    return f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.1f}×"


def _pick_snn_row(report: Report) -> SummaryRow | None:
    snn = [
        r
        for r in report.summary
        if not r.is_baseline
        and r.kind == "estimated"
        and r.dynamic_j
        and (r.device in report.neuromorphic_devices or r.device in ("loihi", "loihi2"))
    ]
    for preferred in ("loihi", "loihi2"):
        for r in sorted(snn, key=lambda r: r.basis != BASIS_LABELS["chip"]):  # chip counts first
            if r.device == preferred:
                return r
    return snn[0] if snn else None


def _cheapest_like_for_like(rows: Sequence[SummaryRow]) -> SummaryRow | None:
    """The cheapest row, preferring measured rows, then memory-inclusive estimates, then any."""
    measured = [r for r in rows if r.kind == "measured"]
    if measured:
        return min(measured, key=lambda r: r.dynamic_j or math.inf)
    memory = [r for r in rows if r.scope == SCOPE_LABELS["memory-inclusive"]]
    pool = memory or list(rows)
    return min(pool, key=lambda r: r.dynamic_j or math.inf) if pool else None


@dataclass
class BaselineChoice:
    """Which CNN baseline the verdict compares with, and why (``match``):
    "matched": the cheapest baseline whose test ROC-AUC is at least the SNN's;
    "none reaches": no baseline reaches the SNN's AUC (the most accurate one is shown);
    "auc unknown": the SNN's or every baseline's AUC is missing (the cheapest baseline is shown)."""

    row: SummaryRow | None
    match: str
    snn_auc: float | None = None
    baseline_auc: float | None = None
    snn_model: str = "the SNN"


def _pick_cnn_choice(report: Report, snn: SummaryRow | None = None) -> BaselineChoice:
    """The accuracy-matched CNN baseline for the verdict (issue 18 item 7): among baselines whose test
    ROC-AUC is at least the SNN's, the cheapest like-for-like row (measured, else memory-inclusive,
    else any); the table keeps every baseline (cnn_small included)."""
    rows = [r for r in report.summary if r.is_baseline and r.dynamic_j]
    snn = snn if snn is not None else _pick_snn_row(report)
    snn_auc = snn.auc if snn is not None and _finite(snn.auc) else None
    name = snn.model if snn is not None else "the SNN"
    with_auc = [r for r in rows if _finite(r.auc)]
    if snn_auc is None or not with_auc:
        return BaselineChoice(_cheapest_like_for_like(rows), "auc unknown", snn_auc, None, name)
    reaching = [r for r in with_auc if float(r.auc) >= float(snn_auc)]  # type: ignore[arg-type]
    if reaching:
        row = _cheapest_like_for_like(reaching)
        return BaselineChoice(row, "matched", snn_auc, row.auc if row is not None else None, name)
    best_auc = max(float(r.auc) for r in with_auc)  # type: ignore[arg-type]
    row = _cheapest_like_for_like([r for r in with_auc if float(r.auc) == best_auc])  # type: ignore[arg-type]
    return BaselineChoice(row, "none reaches", snn_auc, best_auc, name)


def _pick_cnn_row(report: Report) -> SummaryRow | None:
    return _pick_cnn_choice(report).row


def _describe(r: SummaryRow) -> str:
    what = ", ".join(x for x in (r.basis, r.scope) if x and x != "measured" and x not in r.device)
    kind = "measured" if r.kind == "measured" else "estimated"
    return f"{r.model} on {r.device} ({kind}{'; ' + what if what else ''})"


def _match_clause(choice: BaselineChoice) -> str:
    if choice.row is None:
        return ""
    if choice.match == "matched":
        return (
            f" {choice.row.model} is the cheapest CNN baseline whose test ROC-AUC "
            f"({format_auc(choice.baseline_auc)}) is at least that of {choice.snn_model} "
            f"({format_auc(choice.snn_auc)})."
        )
    if choice.match == "none reaches":
        return (
            f" No CNN baseline reaches the test ROC-AUC of {choice.snn_model} ({format_auc(choice.snn_auc)}); the "
            f"comparison is with the most accurate one, {choice.row.model} ({format_auc(choice.baseline_auc)})."
        )
    return " Test ROC-AUC is not known for both sides, so this comparison is not accuracy-matched."


def verdict(report: Report) -> str:
    """One sentence with numbers: which is cheaper per inference, by how much, on which basis,
    measured or estimated. Compares the SNN on Loihi (chip counts) with the accuracy-matched CNN
    baseline (`_pick_cnn_choice`: the cheapest whose test ROC-AUC is at least the SNN's; like for
    like: measured, else memory-inclusive, else arithmetic-only, said so), and says so when no
    baseline reaches the SNN's AUC."""
    snn = _pick_snn_row(report)
    choice = _pick_cnn_choice(report, snn)
    cnn = choice.row
    if snn is None and cnn is None:
        return "No energy figures in this report: nothing to compare."
    if snn is None or cnn is None:
        r = snn or cnn
        assert r is not None
        return (
            f"Only one side to compare: {_describe(r)} uses {format_energy(r.dynamic_j)} of dynamic energy "
            f"per inference; add a CNN baseline (--baseline) for a verdict.{_sample_sentence(report)}"
        )
    cheap, dear = (snn, cnn) if snn.dynamic_j <= cnn.dynamic_j else (cnn, snn)  # type: ignore[operator]
    ratio = float(dear.dynamic_j) / float(cheap.dynamic_j) if cheap.dynamic_j else math.inf  # type: ignore[arg-type]
    acc = ""
    if _finite(cheap.accuracy) and _finite(dear.accuracy):
        acc = (
            f", at {format_accuracy(cheap.accuracy)} vs {format_accuracy(dear.accuracy)} test accuracy "
            "(each model at its validation-chosen threshold)"
        )
    return (
        f"{cheap.model} is cheaper: {format_energy(cheap.dynamic_j)} of dynamic energy per inference for "
        f"{_describe(cheap)} against {format_energy(dear.dynamic_j)} for {_describe(dear)}, "
        f"{_ratio_text(ratio)} less{acc}.{_match_clause(choice)}{_sample_sentence(report)}"
    )


def _sample_sentence(report: Report) -> str:
    """' Counted on N test images.' (the verdict's sample size), or '' when the report does not say."""
    n = (report.parity or {}).get("samples")
    if not isinstance(n, int):
        found = re.search(r"(\d+) (?:samples|images)", report.data_source or "")
        n = int(found.group(1)) if found else None
    if n is None:
        return ""
    return f" Counted on {n} test image{'' if n == 1 else 's'}" + (" only." if n < 100 else ".")


def sweep_sentence(report: Report) -> str | None:
    """The validation-selected sweep trial in one sentence: what it reaches on test and what it costs."""
    if report.sweep is None:
        return None
    devices = sweep_devices(report.sweep, limit=1)
    trials = [t for t in report.sweep.trials if _trial_ok(t) and _finite(t.get("val_auc"))]
    if not devices or not trials:
        return None
    device = devices[0]
    trials = [t for t in trials if _finite((t["energy"].get(device) or {}).get("dynamic_j"))]
    if not trials:
        return None
    best = max(trials, key=lambda t: t["val_auc"])
    energy = best["energy"][device]["dynamic_j"]
    steps = f", {best['num_steps']} steps" if best.get("num_steps") is not None else ""
    text = (
        f"Sweep ({len(report.sweep.trials)} trials): the trial chosen on validation AUC, "
        f"{best.get('model', '?')}{steps}, reaches test AUC {format_auc(best.get('test_auc'))} and accuracy "
        f"{format_accuracy(best.get('test_accuracy'))} at {format_energy(energy)} per inference on {device} "
        "(chip counts, estimated)"
    )
    cnn = _pick_cnn_row(report)
    if cnn is not None and cnn.dynamic_j:
        ratio = energy / float(cnn.dynamic_j)
        text += (
            f", {_ratio_text(ratio)} the {cnn.model} figure above"
            if ratio >= 1
            else f", {_ratio_text(1 / ratio)} less than the {cnn.model} figure above"
        )
    return text + "."


def verdict_caveats(report: Report) -> list[str]:
    """What the verdict's comparison leaves out, in a sentence each (shown under it)."""
    snn, cnn = _pick_snn_row(report), _pick_cnn_row(report)
    out = []
    if cnn is not None and snn is not None and cnn.scope == SCOPE_LABELS["arithmetic"]:
        out.append(
            "The CNN figure is arithmetic only (no memory traffic), while Loihi's per-op constants "
            "include its synaptic memory; no memory-inclusive CNN estimate was available."
        )
    if cnn is not None and snn is not None and cnn.scope == SCOPE_LABELS["memory-inclusive"]:
        out.append(
            "Like for like: the CNN figure includes on-chip SRAM and off-chip DRAM traffic, as Loihi's "
            "per-op constants include its synaptic memory."
        )
    if not any(r.kind == "measured" and r.dynamic_j is not None for r in report.summary):
        out.append(
            "Every energy figure here is an estimate; no energy counter was readable on this machine."
        )
    return out
