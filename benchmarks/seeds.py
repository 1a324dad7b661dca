"""The seed papers' systems on the real PneumoniaMNIST split (issue 10 item 1).

    OMP_NUM_THREADS=1 python benchmarks/seeds.py train --runs resnet18_sa,medspectralnet,resnet50
    OMP_NUM_THREADS=1 python benchmarks/seeds.py train --runs resnet18_sa_sgan,slimi2025,gatti2025
    OMP_NUM_THREADS=1 python benchmarks/seeds.py report

``train`` trains each run (best epoch by validation AUC, Youden threshold on validation) and saves
``runs/seeds/<run>.pt``. ``report`` evaluates every checkpoint once on the test split at its
validation threshold, exports the CNNs to ONNX (MACs from the ONNX graph and from PyTorch hooks),
measures the whole-test-set inference energy of the Gatti SNN CodeCarbon-style, and writes
benchmarks/results/seeds.json (with provenance) and benchmarks/results/seeds.md (the README table),
each beside the paper's reported numbers (../shared/docs/models.md).

Sizes are adapted to 28 px and a shared 2-core CPU; RUNS below says how for each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurocxr.energy.estimate import inference_macs
from neurocxr.models import ModelConfig
from neurocxr.training.train import TrainConfig

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_OUT = Path("runs/seeds")


@dataclass
class SeedRun:
    """One trained system: model config, training config, balance mode and how it was adapted."""

    config: ModelConfig
    train: TrainConfig
    balance: str = "weights"  # weights | sgan
    adaptation: str = ""
    paper: dict[str, Any] = field(default_factory=dict)


# The paper figures as models.md gives them (authors' claims on their own splits; not verified here).
PAPER_XU_ZHANG = {
    "source": "Xu & Zhang, Sci. Rep. 2026 (Double SGAN + ResNet18-SA), PneumoniaMNIST",
    "accuracy": 0.9583,
    "precision": 0.9587,
    "recall": 0.9521,
    "f1": 0.9552,
}
PAPER_AFRIN = {
    "source": "Afrin et al., PLoS One 21(4) e0346128, 2026 (MedSpectralNet), PneumoniaMNIST",
    "accuracy": 0.942,
    "params": 8.5e6,
    "flops": 2.0e9,
}
PAPER_RESNET50 = {
    "source": "XAI-guided ResNet-50 (arXiv), Kermany dataset",
    "accuracy": 0.9594,
    "roc_auc": 0.989,
    "cohen_kappa": 0.913,
    "mcc": 0.913,
    "medmnist_v2_resnet50_28": {"accuracy": 0.854, "roc_auc": 0.948},
}
PAPER_SLIMI = {
    "source": "Slimi et al., Sci. Rep. 2025 (hybrid CNN-GRU-SNN), Kermany 80/20 split, 128 px",
    "accuracy": 0.9935,
    "f1": 0.991,
    "roc_auc": 0.99,
    "params": 8.63e6,
    "macs": 4.43e9,
}
PAPER_GATTI = {
    "source": "Gatti et al., KBS 314, 2025; PyTorch replication by Ifty (COVID-19 CXR, 1,400 test images)",
    "accuracy_replication": 0.59,
    "energy_kwh_test_set": 0.00054,
    "test_images": 1400,
    "energy_method": "CodeCarbon",
}


def _runs() -> dict[str, SeedRun]:
    cnn_train = TrainConfig(epochs=4, batch_size=64, lr=2e-3, patience=4, seed=0, num_threads=1)
    return {
        "resnet18_sa": SeedRun(
            ModelConfig(name="resnet18_sa"),
            cnn_train,
            adaptation="28 px: 3x3 stride-1 stem, no max pool; base width 16 (paper/torchvision 64; "
            "1/16 of the MACs); 4 epochs; class-weighted loss",
            paper=PAPER_XU_ZHANG,
        ),
        "resnet18_sa_sgan": SeedRun(
            ModelConfig(name="resnet18_sa"),
            cnn_train,
            balance="sgan",
            adaptation="as resnet18_sa, but the training split is balanced with Double-SGAN normal images "
            "(neurocxr.training.gan; short GAN training, see sgan record) and an unweighted loss",
            paper=PAPER_XU_ZHANG,
        ),
        "medspectralnet": SeedRun(
            ModelConfig(name="medspectralnet"),
            cnn_train,
            adaptation="SpectralFlow stages at 28/14/7 px, widths 32-64-128 (0.2 M parameters; paper 8.5 M "
            "at 224 px); 4 epochs",
            paper=PAPER_AFRIN,
        ),
        "resnet50": SeedRun(
            ModelConfig(name="resnet50"),
            cnn_train,
            adaptation="bottleneck 3-4-6-3, 28 px stem, base width 8 (torchvision 64), dropout 0.3 before "
            "the classifier for MC dropout; 4 epochs; trained from scratch (paper: ImageNet fine-tuning)",
            paper=PAPER_RESNET50,
        ),
        "slimi2025": SeedRun(
            ModelConfig(
                name="slimi2025", encoding="latency", num_steps=16, extra={"gru_hidden": 128}
            ),
            TrainConfig(epochs=4, batch_size=64, lr=2e-3, patience=4, seed=0, num_threads=1),
            adaptation="1x28x28 input (paper 3x128x128): conv 32-64-128 gives 128x3x3 features; latency "
            "coding over 16 steps (paper 25), the CNN sees the time-weighted input (decodes latency); "
            "BiGRU hidden 128 (paper 256); AdamW lr 2e-3 OneCycle, 4 epochs (paper Adam 1e-5, early stop 5)",
            paper=PAPER_SLIMI,
        ),
        "gatti2025": SeedRun(
            ModelConfig(name="gatti2025", num_steps=4, channels=(8, 32, 64), hidden=(128, 64, 8)),
            TrainConfig(epochs=3, batch_size=64, lr=2e-3, patience=4, seed=0, num_threads=1),
            adaptation="28 px (paper 256 px); conv widths 8-32-64 (paper 8-64-128, 3x the cost), AvgPool 2x2 "
            "for MaxPool 4x4/2 (Loihi), 4 time steps of direct coding, 3 epochs (paper 20)",
            paper=PAPER_GATTI,
        ),
    }


RUNS = _runs()


def _load_splits(data: str | None):
    from neurocxr.data.datasets import load_dataset

    splits = load_dataset(data, image_size=28, synthetic_ok=False)
    if splits.synthetic:
        raise SystemExit("no real data: pass --data /path/pneumoniamnist.npz")
    return splits


def train_runs(names: list[str], out: Path, data: str | None, sgan_steps: int) -> None:
    """Train each named run and save ``out/<name>.pt`` (plus the SGAN files for *_sgan runs)."""
    from neurocxr.training.train import train

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        run = RUNS[name]
        splits = _load_splits(data)
        started = time.perf_counter()
        tc = run.train
        extra_meta: dict[str, Any] = {}
        if run.balance == "sgan":
            from dataclasses import replace

            from neurocxr.training.gan import SganConfig, balance_with_sgan

            splits, record = balance_with_sgan(
                splits, SganConfig(steps=sgan_steps, seed=tc.seed), out, prefix=name
            )
            extra_meta["sgan"] = record
            tc = replace(tc, balance="none")  # the GAN images balance the classes
            print(
                f"{name}: SGAN done in {record['seconds']:.0f} s, {record['generated']} normal images added",
                flush=True,
            )
        result = train(run.config, splits, tc, progress=False, checkpoint_path=out / f"{name}.pt")
        record = {
            "run": name,
            "best_epoch": result.best_epoch,
            "threshold": result.threshold,
            "val": result.val_metrics.to_dict(),
            "seconds_per_epoch": result.seconds_per_epoch,
            "train_seconds": time.perf_counter() - started,
            "history": result.history,
            "balance": run.balance,
            **extra_meta,
        }
        (out / f"{name}.train.json").write_text(json.dumps(record, indent=2, default=str))
        print(
            f"{name}: best epoch {result.best_epoch}, val AUC {result.val_metrics.roc_auc:.4f}, "
            f"{record['train_seconds']:.0f} s",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="stage", required=True)
    p_train = sub.add_parser("train")
    p_train.add_argument("--runs", default=",".join(RUNS))
    p_train.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p_train.add_argument("--data", default=os.environ.get("NEUROCXR_DATA"))
    p_train.add_argument("--sgan-steps", type=int, default=600)
    p_report = sub.add_parser("report")
    p_report.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p_report.add_argument("--data", default=os.environ.get("NEUROCXR_DATA"))
    args = parser.parse_args(argv)
    if args.stage == "train":
        names = [n.strip() for n in args.runs.split(",") if n.strip()]
        unknown = [n for n in names if n not in RUNS]
        if unknown:
            parser.error(f"unknown runs {unknown}; choose from {', '.join(RUNS)}")
        train_runs(names, args.out, args.data, args.sgan_steps)
    else:
        report(args.out, args.data)
    return 0


# CodeCarbon's "constant mode" (no RAPL, no NVML): power = 50% of the CPU's TDP; for a CPU missing
# from its table it assumes a TDP of 85 W. This machine (AMD EPYC VM, no /sys/class/powercap) has no
# energy counter, so the Gatti whole-test-set figure is that estimate, labelled as such.
CODECARBON_TDP_W = 85.0
CODECARBON_LOAD = 0.5


def _params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _onnx(loaded: Any, images: torch.Tensor, folder: Path) -> dict[str, Any]:
    from neurocxr.energy.macs import onnx_macs
    from neurocxr.errors import NeurocxrError
    from neurocxr.exporters.onnx import check_onnx_equivalence, export_onnx
    from neurocxr.models import is_snn

    if is_snn(loaded.config):
        return {
            "exported": False,
            "why": "spiking network: exported to NIR/Loihi (gatti2025) or not exportable "
            "(slimi2025: GRU + stateful LIF over time); ONNX is for CNN baselines",
        }
    try:
        path = export_onnx(
            loaded.model, folder / f"{loaded.name}.onnx", input_shape=(1,) + tuple(images.shape[1:])
        )
        check = check_onnx_equivalence(loaded.model, path, images[:16].numpy())
    except NeurocxrError as exc:
        return {"exported": False, "why": str(exc)}
    return {
        "exported": True,
        "file": path.name,
        "macs_onnx_graph": int(sum(onnx_macs(path).values())),
        "max_abs_diff": check.max_abs_diff,
        "argmax_agreement": check.argmax_agreement,
    }


def _whole_test_set_energy(loaded: Any, images: torch.Tensor) -> dict[str, Any]:
    """CodeCarbon-style kWh for classifying the whole test set once (PyTorch, this CPU, batch 64)."""
    from neurocxr.energy.measure import measurability, whole_test_set_energy
    from neurocxr.models.loaded import float_logits

    float_logits(loaded, images[:64])  # warm-up
    wall0, cpu0 = time.perf_counter(), time.process_time()
    float_logits(loaded, images, batch_size=64)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    tdp = CODECARBON_TDP_W * CODECARBON_LOAD
    figure = whole_test_set_energy(
        None, len(images), latency_s=wall, tdp_w=tdp, batch_size=len(images), model=loaded.name
    ).to_dict()
    figure.update(
        {
            "wall_seconds": wall,
            "process_cpu_seconds": cpu,
            "torch_threads": torch.get_num_threads(),
            "assumed_power_w": tdp,
            "assumption": f"CodeCarbon constant mode: {CODECARBON_LOAD:.0%} of an assumed {CODECARBON_TDP_W:g} W TDP "
            "(its default for a CPU not in its table) x wall time; the machine is shared, so wall time "
            "includes waiting for the CPU",
            "measurability": measurability().sentence,
        }
    )
    return figure


def report(out: Path, data: str | None) -> None:
    """Evaluate every trained run once on test; write seeds.json and seeds.md."""
    from neurocxr.fileio import write_json, write_text
    from neurocxr.metrics import clinical_metrics
    from neurocxr.models.loaded import float_logits, load
    from neurocxr.provenance import provenance

    torch.set_num_threads(1)
    splits = _load_splits(data)
    test = splits.test
    y = test.labels.numpy()
    results: dict[str, Any] = {}
    checkpoints: dict[str, Path] = {}
    onnx_dir = out / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    for name, run in RUNS.items():
        ckpt = out / f"{name}.pt"
        if not ckpt.is_file():
            results[name] = {
                "trained": False,
                "why": f"{ckpt} not found (run `seeds.py train --runs {name}`)",
            }
            continue
        checkpoints[name] = ckpt
        loaded = load(ckpt)
        logits = float_logits(loaded, test.images)
        scores = torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy()
        metrics = clinical_metrics(y, scores, threshold=loaded.threshold)
        meta = loaded.metadata
        train_record_path = out / f"{name}.train.json"
        train_record = (
            json.loads(train_record_path.read_text()) if train_record_path.is_file() else {}
        )
        history = meta.get("history", [])
        entry: dict[str, Any] = {
            "trained": True,
            "model": loaded.name,
            "what": f"{loaded.name} trained from scratch on the PneumoniaMNIST train split, best epoch by "
            "validation AUC, threshold chosen on validation (Youden), evaluated once on test",
            "adaptation": run.adaptation,
            "balance": meta.get("balance", run.train.balance if run.balance != "sgan" else "sgan"),
            "test": metrics.to_dict(),
            "params": _params(loaded.model),
            **inference_macs(loaded.model, loaded.config).to_dict(),
            "onnx": _onnx(loaded, test.images, onnx_dir),
            "threshold": loaded.threshold,
            "best_epoch": meta.get("best_epoch"),
            "epochs_run": len(history),
            "epochs_planned": run.train.epochs,
            # No train record: the run was stopped (deadline) after its last saved best epoch.
            "training_finished": bool(train_record),
            "val_auc": meta.get("val_auc"),
            "seconds_per_epoch": train_record.get("seconds_per_epoch")
            or (float(np.mean([h["seconds"] for h in history])) if history else None),
            "train_seconds": train_record.get("train_seconds"),
            "model_config": loaded.config.to_dict(),
            "train_config": meta.get("train_config"),
            "paper": run.paper,
        }
        if run.balance == "sgan":
            sgan = train_record.get("sgan") or meta.get("sgan") or {}
            entry["sgan"] = {k: v for k, v in sgan.items() if k != "loss_log"}
            grid = out / f"{name}.sgan_samples.png"
            if (
                grid.is_file()
            ):  # kept beside the results: what the generated normal images look like
                shutil.copyfile(grid, RESULTS_DIR / "seeds_sgan_samples.png")
                entry["sgan"]["samples_png_copy"] = "benchmarks/results/seeds_sgan_samples.png"
        if name == "gatti2025":
            entry["whole_test_set_energy"] = _whole_test_set_energy(loaded, test.images)
        results[name] = entry
        print(f"{name}: test acc {metrics.accuracy:.4f} AUC {metrics.roc_auc:.4f}", flush=True)
    doc = {
        "what": "Seed papers' systems trained and evaluated by neurocxr on the official PneumoniaMNIST split "
        "(28 px); test reported once at the threshold chosen on validation. Paper numbers are the "
        "authors' claims on their own data/splits (../shared/docs/models.md), not verified here.",
        "data_source": test.source,
        "test_samples": int(len(test)),
        "test_majority_floor": float(np.mean(y == 1)),
        "runs": results,
        "provenance": provenance(
            checkpoints={k: v for k, v in checkpoints.items()},
            data=_data_file(data),
            data_source=test.source,
        ),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS_DIR / "seeds.json", doc)
    write_text(RESULTS_DIR / "seeds.md", markdown_table(doc))
    print(markdown_table(doc))


def _data_file(data: str | None) -> str | None:
    from neurocxr.data.datasets import resolve_data_source

    source = resolve_data_source(data)
    return str(source) if source is not None and Path(str(source)).is_file() else None


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _paper_cell(paper: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("accuracy", "acc"),
        ("accuracy_replication", "acc (replication)"),
        ("roc_auc", "AUC"),
        ("f1", "F1"),
        ("recall", "recall"),
    ):
        if key in paper:
            parts.append(f"{label} {paper[key]:.3f}")
    if "params" in paper:
        parts.append(f"{paper['params'] / 1e6:.2f} M params")
    if "energy_kwh_test_set" in paper:
        parts.append(
            f"{paper['energy_kwh_test_set']:g} kWh / {paper['test_images']} test images (CodeCarbon)"
        )
    return "; ".join(parts)


def markdown_table(doc: dict[str, Any]) -> str:
    """The README table: our test numbers beside each paper's reported ones."""
    lines = [
        "| system (ours, 28 px) | test acc | AUC | sens | spec | F1 | params | MACs/inference "
        "| ONNX | paper reports (own data) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in doc["runs"].items():
        if not r.get("trained"):
            lines.append(
                f"| {name} | not trained | | | | | | | | {_paper_cell(RUNS[name].paper)} |"
            )
            continue
        t = r["test"]
        onnx = "yes" if r["onnx"].get("exported") else "no"
        if not r["training_finished"]:
            name = f"{name} (stopped early: best of the first {r['epochs_run']}/{r['epochs_planned']} epochs)"
        lines.append(
            f"| {name} | {_fmt(t['accuracy'])} | {_fmt(t['roc_auc'])} | {_fmt(t['sensitivity'])} | "
            f"{_fmt(t['specificity'])} | {_fmt(t['f1'])} | {r['params'] / 1e6:.2f} M | {r['macs'] / 1e6:.1f} M | "
            f"{onnx} | {_paper_cell(r['paper'])} |"
        )
    lines.append("")
    lines.append(
        f"Test split: {doc['test_samples']} images, {doc['test_majority_floor']:.1%} pneumonia (majority floor). "
        "Thresholds chosen on validation. Paper figures are the authors' claims on their own splits "
        "(Kermany or PneumoniaMNIST, larger images), not reproduced here."
    )
    gatti = doc["runs"].get("gatti2025", {})
    energy = gatti.get("whole_test_set_energy")
    if energy:
        lines.append(
            f"Gatti SNN, whole test set ({energy['samples']} images) on this CPU: {energy['kwh']:.2e} kWh, "
            f"{energy['label']} ({energy['assumption']}; {energy['wall_seconds']:.1f} s wall)."
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
