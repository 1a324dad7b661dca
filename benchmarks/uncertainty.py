"""Uncertainty for referral on the real PneumoniaMNIST test split: calibration (ECE, reliability
diagram) and referral curves (accuracy on the cases kept when the most uncertain fraction is
referred) for trained checkpoints: MC-dropout predictive entropy and mutual information for models
with dropout (20 passes), softmax entropy and the margin from the validation threshold for every
model, and the chip's spike-count (readout) margin for deployable SNNs on the Loihi emulator.

    NEUROCXR_DATA=/path/pneumoniamnist.npz python benchmarks/uncertainty.py \
        --model snn_conv=/tmp/ckpt/snn_conv.pt --model cnn_small_dropout=/tmp/ckpt/cnn_small_dropout.pt

Writes benchmarks/results/uncertainty.json (with provenance; per-sample arrays left out) and one
reliability/referral plot per model (uncertainty_<name>.png). Never trains.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from _trained_models import load_models_and_data

from neurocxr.data.datasets import resolve_data_source
from neurocxr.evaluation.uncertainty import evaluate_uncertainty, plot_uncertainty
from neurocxr.fileio import write_json
from neurocxr.provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT")
    parser.add_argument("--data", default=os.environ.get("NEUROCXR_DATA"))
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument(
        "--passes", type=int, default=20, help="MC-dropout passes for models with dropout"
    )
    parser.add_argument("--allow-synthetic", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "uncertainty.json")
    parser.add_argument(
        "--note", default="", help="how the checkpoints were trained (recorded in the JSON)"
    )
    args = parser.parse_args(argv)
    checkpoints, models, splits = load_models_and_data(parser, args)
    from neurocxr.evaluation.common import dropout_modules

    runs: dict[str, Any] = {}
    for name, loaded in models.items():
        print(f"evaluating {name} ...", flush=True)
        passes = args.passes if dropout_modules(loaded.model) else None
        res = evaluate_uncertainty(
            loaded, splits, passes=passes, max_samples=args.max_samples
        ).to_dict()  # written below without the per-sample arrays
        res.pop("per_sample")
        res["training"] = {
            k: loaded.metadata.get(k)
            for k in ("best_epoch", "val_auc", "train_config", "threshold_method")
        }
        png = args.out.parent / f"uncertainty_{name}.png"
        plot_uncertainty(res, png)
        res["plot"] = png.name
        runs[name] = res
    data_path = resolve_data_source(args.data)
    write_json(
        args.out,
        {
            "what": "calibration and referral curves on the test split, trained checkpoints, "
            "thresholds from validation",
            "note": args.note,
            "data": splits.test.source,
            "models": runs,
            "provenance": provenance(
                checkpoints=checkpoints,
                data=data_path if isinstance(data_path, Path) else None,
                data_source=splits.test.source,
            ),
        },
    )
    print(f"wrote {args.out}")
    for name, res in runs.items():
        cal = res["float"]["calibration"]
        line = (
            f"{name}: accuracy {res['float']['accuracy']:.3f}, ECE "
            f"{cal['ece_positive_class']:.3f}, Brier {cal['brier']:.3f}"
        )
        if res["mc_dropout"]:
            mc = res["mc_dropout"]
            line += (
                f"; MC mean accuracy {mc['accuracy_of_mean']:.3f}, ECE "
                f"{mc['calibration']['ece_positive_class']:.3f}"
            )
        print(line)
        for measure, curve in res["referral"].items():
            acc = dict(zip(curve["fraction_referred"], curve["accuracy_kept"]))
            print(
                f"  {measure:<24} kept-accuracy at 0/10/20/30% referred: "
                + " ".join(f"{acc[f]:.3f}" for f in (0.0, 0.1, 0.2, 0.3))
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
