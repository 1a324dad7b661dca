"""`neurocxr evaluate --robustness/--uncertainty`: run the requested clinical evaluations of one
checkpoint and write their JSON and plots into one folder, atomically (nothing on error)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurocxr.data.datasets import data_for_checkpoint, load_dataset, resolve_data_source
from neurocxr.errors import NeurocxrError
from neurocxr.evaluation import robustness as rob
from neurocxr.evaluation import uncertainty as unc
from neurocxr.evaluation.common import check_max_samples, check_split
from neurocxr.evaluation.robustness import RobustnessResult, evaluate_robustness, plot_robustness
from neurocxr.evaluation.uncertainty import (
    UncertaintyResult,
    evaluate_uncertainty,
    plot_uncertainty,
    require_dropout,
)
from neurocxr.fileio import staged_output, write_json
from neurocxr.models.loaded import load
from neurocxr.provenance import provenance


def output_files(robustness: bool, uncertainty: bool) -> list[str]:

    return (list(rob.OUTPUT_FILES) if robustness else []) + (
        list(unc.OUTPUT_FILES) if uncertainty else []
    )


def check_request(
    checkpoint: Any,
    *,
    split: str = "test",
    robustness: bool = False,
    uncertainty: bool = False,
    mc_passes: int | None = None,
    max_samples: int | None = None,
    out: str | Path | None = None,
    force: bool = False,
) -> Any:
    """Refuse a bad request before any work or output: unknown split, too few samples, MC passes
    on a model without dropout, outputs that would overwrite files without ``force``. Returns the
    loaded model."""

    check_split(split)
    check_max_samples(max_samples)
    loaded = load(checkpoint)
    if mc_passes is not None:
        if mc_passes < 2:
            raise NeurocxrError(f"mc_passes / --mc-passes must be at least 2, got {mc_passes}")
        require_dropout(loaded)
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise NeurocxrError(f"{out} exists and is not a folder; choose another -o folder")
        existing = [f for f in output_files(robustness, uncertainty) if (out / f).exists()]
        if existing and not force:
            raise NeurocxrError(
                f"{out} already holds {', '.join(existing)}; pass force=True (--force) to "
                "overwrite, or choose another out folder (-o)"
            )
    return loaded


@dataclass
class ClinicalEvaluation:
    """`clinical_evaluation`: the robustness and uncertainty results asked for (None otherwise,
    each with its provenance) and the files written."""

    robustness: RobustnessResult | None = None
    uncertainty: UncertaintyResult | None = None
    files: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The shape `summary_lines` reads (and the JSON files hold, one result each)."""
        return {
            "robustness": None if self.robustness is None else self.robustness.to_dict(),
            "uncertainty": None if self.uncertainty is None else self.uncertainty.to_dict(),
            "files": self.files,
        }


def clinical_evaluation(
    checkpoint: Any,
    *,
    data: str | Path | None = None,
    split: str = "test",
    robustness: bool = False,
    uncertainty: bool = False,
    mc_passes: int | None = None,
    chip: bool = True,
    max_samples: int | None = None,
    out: str | Path = "runs/evaluate",
    force: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> ClinicalEvaluation:
    """Robustness and/or uncertainty of ``checkpoint``; writes robustness.{json,png} and/or
    uncertainty.{json,png} into ``out``. Returns a `ClinicalEvaluation`."""

    if not (robustness or uncertainty):
        raise NeurocxrError("nothing to do: ask for --robustness and/or --uncertainty")
    loaded = check_request(
        checkpoint,
        split=split,
        robustness=robustness,
        uncertainty=uncertainty,
        mc_passes=mc_passes,
        max_samples=max_samples,
        out=out,
        force=force,
    )

    data = data_for_checkpoint(
        data, loaded.metadata
    )  # the checkpoint's own data unless told otherwise
    splits = load_dataset(data, image_size=loaded.config.image_size)

    resolved = resolve_data_source(data)
    data_path = resolved if isinstance(resolved, Path) and resolved.is_file() else None
    ckpt_path = checkpoint if isinstance(checkpoint, (str, Path)) else None
    prov = provenance(
        checkpoints={loaded.name: ckpt_path},
        data=data_path,
        data_source=getattr(splits, split).source,
    )
    result = ClinicalEvaluation()
    if robustness:
        robustness_result = evaluate_robustness(
            loaded,
            splits,
            split=split,
            chip=chip,
            max_samples=max_samples,
            seed=seed,
            progress=progress,
        )
        robustness_result.provenance = prov
        result.robustness = robustness_result
    if uncertainty:
        uncertainty_result = evaluate_uncertainty(
            loaded,
            splits,
            split=split,
            passes=mc_passes,
            chip=chip,
            max_samples=max_samples,
            seed=seed,
        )
        uncertainty_result.provenance = prov
        result.uncertainty = uncertainty_result
    files = output_files(robustness, uncertainty)
    with staged_output(out, files, force) as stage:
        if result.robustness is not None:
            robustness_record = result.robustness.to_dict()
            write_json(stage / "robustness.json", robustness_record)
            plot_robustness([robustness_record], stage / "robustness.png")
        if result.uncertainty is not None:
            uncertainty_record = result.uncertainty.to_dict()
            write_json(stage / "uncertainty.json", uncertainty_record)
            plot_uncertainty(uncertainty_record, stage / "uncertainty.png")
    result.files = [Path(out) / f for f in files]
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Plain-text lines for the console: what was measured, in a few numbers."""
    lines: list[str] = []
    rob = result.get("robustness")
    if rob:
        # units: the float threshold is on P(pneumonia); the chip's on its integer readout difference
        lines.append(
            f"robustness of {rob['model']} on {rob['samples']} {rob['split']} images "
            f"(accuracy at the thresholds chosen on val / ROC-AUC; float threshold {rob['thresholds']['float']:.4f} "
            "on P(pneumonia)"
            + (
                f", chip threshold {rob['thresholds']['chip']:.0f} on the readout difference pneumonia - normal "
                "(Loihi integer units)"
                if rob["thresholds"]["chip"] is not None
                else ""
            )
            + "):"
        )
        for r in rob["results"]:
            cell = f"float {r['float']['accuracy']:.3f} / {r['float']['roc_auc']:.3f}"
            if "chip" in r:
                cell += f"   chip {r['chip']['accuracy']:.3f} / {r['chip']['roc_auc']:.3f}"
            parameter = (
                rob.get("protocol", {}).get(r["perturbation"], {}).get("parameter")
            )  # the level's unit
            level = (
                "-"
                if r["perturbation"] == "clean"
                else f"{parameter} {r['level']:g}"
                if parameter
                else f"{r['level']:g}"
            )
            lines.append(f"  {r['perturbation']:<16} {level:<36} {cell}")
        if not rob["chip"]["evaluated"]:
            lines.append(f"  no chip run: {rob['chip']['reason']}")
    unc = result.get("uncertainty")
    if unc:
        cal = unc["float"]["calibration"]
        lines.append(
            f"uncertainty of {unc['model']} on {unc['samples']} {unc['split']} images: accuracy "
            f"{unc['float']['accuracy']:.3f} (at threshold {unc['threshold']:.4f} on P(pneumonia), chosen on val), "
            f"ECE (P(pneumonia)) {cal['ece_positive_class']:.3f}, "
            f"ECE (top label) {cal['ece_top_label']:.3f}, Brier {cal['brier']:.3f}"
        )
        mc = unc.get("mc_dropout")
        if mc:
            lines.append(
                f"  MC dropout ({mc['passes']} passes): accuracy of mean {mc['accuracy_of_mean']:.3f}, "
                f"mean predictive entropy {mc['mean_predictive_entropy']:.3f} nats, mean MI "
                f"{mc['mean_mutual_information']:.4f} nats, ECE {mc['calibration']['ece_positive_class']:.3f}"
            )
        else:
            lines.append("  MC dropout: not computed (the model has no dropout layer)")
        for name, curve in unc["referral"].items():
            fr = curve["fraction_referred"]
            at = {f: a for f, a in zip(fr, curve["accuracy_kept"])}
            lines.append(
                f"  referral by {name:<22} accuracy kept: 0% {at.get(0.0, float('nan')):.3f}, "
                f"10% {at.get(0.1, float('nan')):.3f}, 20% {at.get(0.2, float('nan')):.3f}, "
                f"30% {at.get(0.3, float('nan')):.3f}"
            )
        if unc.get("chip_reason"):
            lines.append(f"  no chip run: {unc['chip_reason']}")
    for f in result.get("files", []):
        lines.append(f"wrote {f}")
    return lines
