"""Do spiking models degrade less than CNNs under image noise? The hybrid CNN-GRU-SNN paper's
robustness protocol (Gaussian blur, salt-and-pepper, speckle) plus additive Gaussian noise, on the
real PneumoniaMNIST test split, for trained checkpoints given on the command line:

    NEUROCXR_DATA=/path/pneumoniamnist.npz python benchmarks/robustness.py \
        --model snn_conv=/tmp/ckpt/snn_conv.pt --model cnn_small=/tmp/ckpt/cnn_small.pt

Every model keeps the threshold chosen on validation when it was trained; deployable SNNs are also
run bit-exactly on the Loihi emulator (chip threshold chosen on the clean validation split). For
each perturbation the "drop" is clean accuracy minus perturbed accuracy, averaged over the three
levels; the SNN-minus-CNN difference of drops gets a paired bootstrap 95% interval over test images
(the same degraded images for every model). ``--stress`` adds stronger levels (STRESS_LEVELS),
compared separately. Writes benchmarks/results/robustness.json (with
provenance) robustness.png and the per-image scores (robustness_scores.npz), and prints a table. Never trains.
Accuracy drops are at each model's fixed validation threshold (so they include score shifts that
move cases across it); ROC-AUC drops are threshold-free (ranking only); both are compared.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from _trained_models import load_models_and_data

from neurocxr.data.datasets import resolve_data_source
from neurocxr.evaluation.robustness import PROTOCOL, evaluate_robustness, plot_robustness
from neurocxr.fileio import write_json
from neurocxr.models import is_snn
from neurocxr.provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results"
# Stronger levels than the paper's (--stress): at 28 px the protocol's mildest levels barely change
# an image (blur sigma 0.2 px has side weights ~4e-6), so the claim is also tested where images
# are clearly degraded. Reported separately from the protocol levels.
STRESS_LEVELS: dict[str, tuple[float, ...]] = {
    "gaussian_blur": (1.0, 1.5),
    "salt_and_pepper": (0.25, 0.40),
    "speckle": (0.5, 0.8),
    "gaussian_noise": (0.3, 0.5),
}


def fast_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC-AUC via the Mann-Whitney rank sum (ties averaged), as sklearn's roc_auc_score."""
    from scipy.stats import rankdata

    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def paired_drop_difference(
    a: dict[str, Any],
    b: dict[str, Any],
    labels: np.ndarray,
    kind: str,
    levels: list[float],
    reps: int = 2000,
    seed: int = 0,
    metric: str = "accuracy",
) -> dict[str, float]:
    """Mean-over-levels drop of path ``a`` minus that of path ``b`` (each {cond: correct[n]} for
    accuracy, {cond: score[n]} for "auc"), with a paired percentile bootstrap over images."""
    n = len(labels)

    def value(v: np.ndarray, idx: np.ndarray) -> float:
        return float(v[idx].mean()) if metric == "accuracy" else fast_auc(labels[idx], v[idx])

    def drops(per_cond: dict[str, np.ndarray], idx: np.ndarray) -> float:
        clean = value(per_cond["clean@0"], idx)
        return float(np.mean([clean - value(per_cond[f"{kind}@{lv:g}"], idx) for lv in levels]))

    full = np.arange(n)
    point = drops(a, full) - drops(b, full)
    rng = np.random.default_rng(seed)
    boot = np.empty(reps)
    for r in range(reps):
        idx = rng.integers(0, n, n)
        boot[r] = drops(a, idx) - drops(b, idx)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"difference": point, "ci95_low": float(lo), "ci95_high": float(hi)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=CHECKPOINT",
        help="a trained checkpoint to test (repeatable; at least one SNN and one CNN)",
    )
    parser.add_argument(
        "--data",
        default=os.environ.get("NEUROCXR_DATA"),
        help="pneumoniamnist.npz (default $NEUROCXR_DATA)",
    )
    parser.add_argument(
        "--max-samples", type=int, default=None, help="first N test images (default: all)"
    )
    parser.add_argument("--allow-synthetic", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "robustness.json")
    parser.add_argument(
        "--note", default="", help="how the checkpoints were trained (recorded in the JSON)"
    )
    parser.add_argument(
        "--stress", action="store_true", help="also test the stronger STRESS_LEVELS"
    )
    args = parser.parse_args(argv)
    levels = {
        k: tuple(v["levels"]) + (STRESS_LEVELS[k] if args.stress else ())
        for k, v in PROTOCOL.items()
    }
    checkpoints, models, splits = load_models_and_data(parser, args)
    data_path = resolve_data_source(args.data)

    runs: dict[str, Any] = {}
    correct: dict[str, dict[str, np.ndarray]] = {}  # path label -> condition -> correct[n]
    scores_of: dict[str, dict[str, np.ndarray]] = {}  # path label -> condition -> score[n]
    labels = None
    for name, loaded in models.items():
        print(f"evaluating {name} ...", flush=True)
        result = evaluate_robustness(
            loaded,
            splits,
            max_samples=args.max_samples,
            seed=args.seed,
            progress=True,
            keep_scores=True,
            perturbations=levels,
        )
        labels, scores = result.labels, result.scores
        assert labels is not None and scores is not None  # keep_scores=True
        result.labels = result.scores = None  # written below without the per-image arrays
        res = result.to_dict()
        for path in ("float", "chip"):
            if path in scores["clean@0"]:
                correct[f"{name} ({path})"] = {
                    c: (v[path]["prediction"] == labels).astype(np.float64)
                    for c, v in scores.items()
                }
                scores_of[f"{name} ({path})"] = {
                    c: np.asarray(v[path]["score"], dtype=np.float64) for c, v in scores.items()
                }
        res["training"] = {
            k: loaded.metadata.get(k)
            for k in ("best_epoch", "val_auc", "train_config", "threshold_method", "data_source")
        }
        runs[name] = res
        print(
            f"  {name}: {res['seconds']:.0f} s; chip: {res['chip']['reason'] or 'evaluated'}",
            flush=True,
        )

    snn_paths = [p for p in correct if is_snn(models[p.split(" (")[0]].config)]
    cnn_paths = [p for p in correct if not is_snn(models[p.split(" (")[0]].config)]
    comparisons = []
    assert labels is not None
    groups = {"protocol": {k: list(v["levels"]) for k, v in PROTOCOL.items()}}
    if args.stress:
        groups["stress"] = {k: list(v) for k, v in STRESS_LEVELS.items()}
    for s in snn_paths:
        for c in cnn_paths:
            for group, group_levels in groups.items():
                for kind, kind_levels in group_levels.items():
                    diff = paired_drop_difference(
                        correct[s], correct[c], labels, kind, kind_levels, seed=args.seed
                    )
                    if diff["ci95_high"] < 0:
                        reading = "SNN degrades less (interval below 0)"
                    elif diff["ci95_low"] > 0:
                        reading = "SNN degrades more (interval above 0)"
                    else:
                        reading = "no clear difference (interval includes 0)"
                    drops = {
                        p: float(
                            np.mean(
                                [
                                    correct[p]["clean@0"].mean()
                                    - correct[p][f"{kind}@{lv:g}"].mean()
                                    for lv in kind_levels
                                ]
                            )
                        )
                        for p in (s, c)
                    }
                    auc = paired_drop_difference(
                        scores_of[s],
                        scores_of[c],
                        labels,
                        kind,
                        kind_levels,
                        reps=500,
                        seed=args.seed,
                        metric="auc",
                    )
                    auc_reading = (
                        "SNN's AUC degrades less"
                        if auc["ci95_high"] < 0
                        else "SNN's AUC degrades more"
                        if auc["ci95_low"] > 0
                        else "no clear AUC difference"
                    )
                    comparisons.append(
                        {
                            "snn": s,
                            "cnn": c,
                            "levels": group,
                            "perturbation": kind,
                            "level_values": kind_levels,
                            "accuracy_mean_drop": drops,
                            "accuracy_drop_snn_minus_cnn": diff,
                            "reading": reading,
                            "auc_drop_snn_minus_cnn": auc,
                            "auc_reading": auc_reading,
                        }
                    )

    result = {
        "what": "accuracy and ROC-AUC under the robustness protocol (test split), trained checkpoints, thresholds "
        "fixed from validation; drops = clean minus perturbed accuracy, mean over levels; each model's "
        "'summary' averages over every level evaluated (protocol and, with --stress, stress levels), the "
        "'comparisons' keep the two groups apart",
        "note": args.note,
        "data": splits.test.source,
        "synthetic": bool(splits.synthetic),
        "protocol": {
            k: {kk: (list(vv) if kk == "levels" else vv) for kk, vv in v.items()}
            for k, v in PROTOCOL.items()
        },
        "stress_levels": {k: list(v) for k, v in STRESS_LEVELS.items()} if args.stress else None,
        "models": runs,
        "comparisons": comparisons,
        "provenance": provenance(
            checkpoints=checkpoints,
            data=data_path if isinstance(data_path, Path) else None,
            data_source=splits.test.source,
        ),
    }
    write_json(args.out, result)
    # Per-image scores of every path and condition, so the comparison can be re-analysed without re-running.
    arrays = {
        f"{p}|{cond}": v.astype(np.float32)
        for p, conds in scores_of.items()
        for cond, v in conds.items()
    }
    np.savez_compressed(
        args.out.with_name(args.out.stem + "_scores.npz"), labels=labels.astype(np.int8), **arrays
    )
    plot_robustness(list(runs.values()), args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    for name, res in runs.items():
        for row in res["results"]:
            cells = "   ".join(
                f"{p} acc {row[p]['accuracy']:.3f} AUC {row[p]['roc_auc']:.3f}"
                for p in ("float", "chip")
                if p in row
            )
            print(f"{name:<12} {row['perturbation']:<16} {row['level']:<5g} {cells}")
    for cmp in comparisons:
        d = cmp["accuracy_drop_snn_minus_cnn"]
        print(
            f"[{cmp['levels']}] {cmp['snn']} vs {cmp['cnn']}, {cmp['perturbation']}: accuracy drop "
            f"{cmp['accuracy_mean_drop'][cmp['snn']]:+.3f} vs {cmp['accuracy_mean_drop'][cmp['cnn']]:+.3f}, difference "
            f"{d['difference']:+.3f} [{d['ci95_low']:+.3f}, {d['ci95_high']:+.3f}] -> {cmp['reading']}; AUC drop "
            f"difference {cmp['auc_drop_snn_minus_cnn']['difference']:+.3f} "
            f"[{cmp['auc_drop_snn_minus_cnn']['ci95_low']:+.3f}, "
            f"{cmp['auc_drop_snn_minus_cnn']['ci95_high']:+.3f}] -> {cmp['auc_reading']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
