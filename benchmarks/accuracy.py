"""Accuracy benchmark on the real PneumoniaMNIST split: train, choose the threshold on validation,
report the test metrics once.

    NEUROCXR_DATA=/path/pneumoniamnist.npz python benchmarks/accuracy.py --epochs 8 --models snn_conv,cnn_small

Writes benchmarks/results/accuracy.json (per model: test accuracy, AUC, sensitivity, specificity,
epochs run, best epoch, seconds per epoch, data source, threshold, full metrics, history, and the
provenance block: git commit + dirty flag, checkpoint and data hashes, threads) and prints a table.
Each model's best checkpoint goes to benchmarks/results/checkpoints/<model>.pt: `make bench` trains
once here and passes these very files to export, emulator-vs-Lava and energy (which never retrain).
Refuses to run on synthetic phantoms unless --allow-synthetic is given (the numbers would not be
PneumoniaMNIST numbers).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from neurocxr.data.datasets import load_dataset
from neurocxr.fileio import write_json
from neurocxr.metrics import clinical_metrics
from neurocxr.models import ModelConfig, is_snn
from neurocxr.provenance import provenance
from neurocxr.training.train import TrainConfig, predict_scores, train

RESULTS = Path(__file__).resolve().parent / "results" / "accuracy.json"
CHECKPOINTS = Path(__file__).resolve().parent / "results" / "checkpoints"

# Tuned toward the SNN target on validation: threshold 0.5 keeps the fc layer firing at
# initialisation (with 1.0 it starts silent and learns slower); 16 steps of direct coding.
SNN_OVERRIDES: dict[str, Any] = {"num_steps": 16, "threshold": 0.5}


def model_config(
    name: str,
    image_size: int,
    num_steps: int | None,
    channels: tuple[int, ...] | None = None,
    hidden: tuple[int, ...] | None = None,
    dropout: float | None = None,
) -> ModelConfig:
    """The benchmark's config for ``name``; SNNs get SNN_OVERRIDES plus any width/steps/dropout given."""
    config = ModelConfig(name=name, image_size=image_size)
    if is_snn(config):
        overrides: dict[str, Any] = dict(SNN_OVERRIDES)
        if num_steps is not None:
            overrides["num_steps"] = num_steps
        if channels is not None:
            overrides["channels"] = channels
        if hidden is not None:
            overrides["hidden"] = hidden
        if dropout is not None:
            overrides["dropout"] = dropout
        config = ModelConfig(**{**config.to_dict(), **overrides})
    return config


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    splits = load_dataset(args.data, image_size=args.image_size, synthetic_ok=args.allow_synthetic)
    if splits.synthetic and not args.allow_synthetic:
        raise SystemExit(
            "no real data: set NEUROCXR_DATA or --data to pneumoniamnist.npz (or --allow-synthetic)"
        )
    console.print(f"data: {splits.source}")
    results: dict[str, Any] = {
        "data_source": splits.source,
        "synthetic": splits.synthetic,
        "models": {},
    }
    for name in args.models:
        config = model_config(
            name, args.image_size, args.num_steps, args.channels, args.hidden, args.dropout
        )
        train_cfg = TrainConfig(
            epochs=args.epochs,
            lr=args.lr if is_snn(config) else args.cnn_lr,
            batch_size=args.batch_size,
            seed=args.seed,
            augment=args.augment,
            max_train_samples=args.max_train_samples,
            num_threads=args.threads,
            patience=args.patience,
            label_smoothing=args.label_smoothing,
        )
        ckpt = args.checkpoint_dir / f"{name}.pt" if args.checkpoint_dir else None
        started = time.perf_counter()
        result = train(config, splits, train_cfg, progress=not args.quiet, checkpoint_path=ckpt)
        test_scores = predict_scores(result.model, config, splits.test, seed=args.seed)
        test = clinical_metrics(splits.test.labels.numpy(), test_scores, result.threshold)
        results["models"][name] = {
            "test_accuracy": test.accuracy,
            "test_auc": test.roc_auc,
            "test_sensitivity": test.sensitivity,
            "test_specificity": test.specificity,
            "threshold": result.threshold,
            "threshold_chosen_on": "validation (Youden)",
            "epochs_run": len(result.history),
            "epochs_max": args.epochs,
            "best_epoch": result.best_epoch,
            "seconds_per_epoch": result.seconds_per_epoch,
            "total_seconds": time.perf_counter() - started,
            "data_source": result.data_source,
            "model_config": config.to_dict(),
            "train_config": train_cfg.to_dict(),
            "val_metrics": result.val_metrics.to_dict(),
            "test_metrics": test.to_dict(),
            "history": result.history,
            "checkpoint": str(ckpt) if ckpt else None,
        }
        console.print(
            f"{name}: test acc {test.accuracy:.4f}  AUC {test.roc_auc:.4f}  "
            f"(best epoch {result.best_epoch}, {result.seconds_per_epoch:.0f} s/epoch)"
        )
    return results


def print_table(results: dict[str, Any], console: Console) -> None:
    table = Table(title=f"PneumoniaMNIST test (threshold chosen on val) — {results['data_source']}")
    for col in ("model", "test acc", "AUC", "sens", "spec", "thr", "epochs (best)", "s/epoch"):
        table.add_column(col)
    for name, r in results["models"].items():
        table.add_row(
            name,
            f"{r['test_accuracy']:.4f}",
            f"{r['test_auc']:.4f}",
            f"{r['test_sensitivity']:.4f}",
            f"{r['test_specificity']:.4f}",
            f"{r['threshold']:.3f}",
            f"{r['epochs_run']} ({r['best_epoch']})",
            f"{r['seconds_per_epoch']:.1f}",
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--models", type=lambda s: [m for m in s.split(",") if m], default=["snn_conv", "cnn_small"]
    )
    parser.add_argument(
        "--data",
        default=os.environ.get("NEUROCXR_DATA"),
        help="pneumoniamnist.npz (default $NEUROCXR_DATA)",
    )
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--num-steps", type=int, default=None, help="SNN time steps (default 16)")
    ints = lambda s: tuple(int(v) for v in s.split(",") if v)  # noqa: E731
    parser.add_argument(
        "--channels", type=ints, default=None, help="SNN conv widths, e.g. 24,48 (default 16,32)"
    )
    parser.add_argument(
        "--hidden", type=ints, default=None, help="SNN hidden fc widths, e.g. 256 (default 128)"
    )
    parser.add_argument(
        "--dropout", type=float, default=None, help="SNN dropout after hidden fc (default 0)"
    )
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--lr", type=float, default=2e-3, help="SNN peak learning rate (OneCycle)")
    parser.add_argument("--cnn-lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (the benchmark machine is shared)"
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=CHECKPOINTS,
        help="save each model's best checkpoint here as <model>.pt (default benchmarks/results/checkpoints)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--allow-synthetic", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    console = Console()
    results = run(args, console)
    results["command"] = " ".join(sys.argv)
    results["measured"] = (
        "test metrics of each model trained here from scratch, threshold chosen on val "
        "(Youden), test scored once"
    )
    results["provenance"] = provenance(
        checkpoints={name: r["checkpoint"] for name, r in results["models"].items()},
        data=args.data if args.data and Path(args.data).is_file() else None,
        data_source=results["data_source"],
    )
    write_json(args.out, results)
    print_table(results, console)
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
