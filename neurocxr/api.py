"""The small Python API: a few calls from a checkpoint to a Loihi program, counts, energy and a report.

    import neurocxr
    m = neurocxr.load("runs/demo/snn.pt")
    exp = neurocxr.export_loihi(m, "out/")          # model.nir, model.net, export_report.{json,md}
    run = neurocxr.emulate(exp.program, images)      # spikes + per-layer counts, bit-exact with Lava
    e = neurocxr.estimate_energy(run.counts, "loihi")

Every function here is also a CLI command; both call the same stage functions in `neurocxr.pipeline`.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from neurocxr.errors import NeurocxrError
from neurocxr.pipeline import (
    LoadedModel,
    chip_scores,
    encoded_inputs,
    environment,
    export_loihi,
    float_logits,
    load,
    parity_check,
    to_program,
)


def emulate(program: Any, inputs: Any, **kwargs: Any) -> Any:
    """Run a LoihiProgram on the batched fixed-point emulator (see neurocxr.hardware_sims.emulator)."""
    from neurocxr.hardware_sims.emulator import emulate as _emulate

    return _emulate(program, inputs, **kwargs)


def estimate_energy(counts: Any, profile: Any = "loihi", **kwargs: Any) -> Any:
    """Energy per inference from per-layer counts on a device profile (see neurocxr.energy.estimate)."""
    from neurocxr.energy.estimate import estimate_energy as _estimate

    return _estimate(counts, profile, **kwargs)


def _console(console: Any) -> Any:
    if console is None:
        from rich.console import Console

        console = Console()
    return console


# ----------------------------------------------------------------------------------------------
# Training and evaluation


def train(
    model: str = "snn_conv",
    *,
    data: str | Path | None = None,
    out: str | Path = "runs/train",
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    num_steps: int = 16,
    encoding: str = "direct",
    image_size: int = 28,
    seed: int = 0,
    augment: bool = False,
    max_train_samples: int | None = None,
    force: bool = False,
    console: Any = None,
    label: str | None = None,
) -> dict[str, Any]:
    """Train ``model`` and write ``<out>/<model>.pt`` (best epoch by validation AUC)."""
    from neurocxr.data import load_dataset
    from neurocxr.fileio import prepare_out_dir
    from neurocxr.models import ModelConfig
    from neurocxr.training import TrainConfig
    from neurocxr.training import train as _train

    console = _console(console)
    config = ModelConfig(name=model, image_size=image_size, num_steps=num_steps, encoding=encoding)
    ckpt_name = f"{label or model}.pt"
    out_dir = prepare_out_dir(out, [ckpt_name], force)
    splits = load_dataset(data, image_size=image_size)
    if splits.synthetic:
        console.print(f"[bold yellow]data: {splits.source} — SYNTHETIC phantoms, not real X-rays[/]")
    else:
        console.print(f"[bold]data:[/] {splits.source}")
    tc = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, augment=augment, max_train_samples=max_train_samples
    )
    result = _train(config, splits, tc, progress=True, checkpoint_path=out_dir / ckpt_name)
    return {
        "model": model,
        "checkpoint": str(out_dir / ckpt_name),
        "best_epoch": result.best_epoch,
        "threshold": result.threshold,
        "val": result.val_metrics.to_dict(),
        "seconds_per_epoch": result.seconds_per_epoch,
        "data": splits.source,
        "synthetic": splits.synthetic,
        "result": result,
    }


def evaluate(
    checkpoint: str | Path | LoadedModel, *, data: str | Path | None = None, split: str = "test"
) -> dict[str, Any]:
    """Clinical metrics at the checkpoint's validation-chosen threshold."""
    from neurocxr.data import load_dataset
    from neurocxr.metrics import clinical_metrics

    loaded = load(checkpoint)
    splits = load_dataset(data, image_size=loaded.config.image_size)
    if split not in ("train", "val", "test"):
        raise NeurocxrError(f"unknown split {split!r}; choose train, val or test")
    ds = getattr(splits, split)
    logits = float_logits(loaded, ds.images)
    scores = torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy()
    metrics = clinical_metrics(ds.labels.numpy(), scores, threshold=loaded.threshold)
    return {
        "model": loaded.name,
        "split": split,
        "data": ds.source,
        "synthetic": bool(ds.synthetic),
        "metrics": metrics.to_dict(),
    }


def export_onnx_checkpoint(checkpoint: str | Path | LoadedModel, out: str | Path, *, force: bool = False) -> dict[str, Any]:
    """CNN baseline -> ``<out>/model.onnx``, checked with onnx.checker and against PyTorch."""
    from neurocxr.exporters.onnx import check_onnx_equivalence, export_onnx
    from neurocxr.fileio import prepare_out_dir

    loaded = load(checkpoint)
    out_dir = prepare_out_dir(out, ["model.onnx"], force)
    shape = (1, loaded.config.in_channels, loaded.config.image_size, loaded.config.image_size)
    path = export_onnx(loaded.model, out_dir / "model.onnx", input_shape=shape)
    probe = torch.rand((4,) + shape[1:], generator=torch.Generator().manual_seed(0)).numpy()
    check = check_onnx_equivalence(loaded.model, path, probe)
    return {"path": path, **check}


# ----------------------------------------------------------------------------------------------
# Energy report


# Count-based estimates on neuromorphic profiles (constants and citations in neurocxr.energy.profiles).
DEFAULT_SNN_PROFILES = ("loihi", "loihi2", "spinnaker", "spinnaker2", "truenorth")
# KerasSpiking ModelEnergy devices reproduced with its own formulas (neurocxr.energy.estimate).
KERAS_SPIKING_DEVICES = ("cpu", "gpu", "loihi")



def _measure_rows(
    name: str, fn_for_batch, batch_sizes: Sequence[int], runtime: str, accuracy: float | None, window_s: float
) -> list[Any]:
    """CPU (and GPU when present) measurements of one runnable model at several batch sizes."""
    from neurocxr.energy.measure import measure_cpu

    rows = []
    for bs in batch_sizes:
        fn = fn_for_batch(bs)
        m = measure_cpu(fn, batch_size=bs, model=name, runtime=runtime, window_s=window_s)
        m.accuracy = accuracy
        rows.append(m)
    return rows


def energy_report(
    checkpoint: str | Path | LoadedModel,
    *,
    baselines: Iterable[str | Path | LoadedModel] = (),
    data: str | Path | None = None,
    out: str | Path = "runs/energy",
    profiles: Sequence[str] | None = None,
    profiles_file: str | Path | None = None,
    max_samples: int | None = None,
    measure: bool = True,
    measure_seconds: float = 3.0,
    force: bool = False,
    export_report: dict[str, Any] | None = None,
    console: Any = None,
) -> Any:
    """Count on the emulator, estimate per profile, measure what this machine allows, write report.{html,json}."""
    from neurocxr.data import load_dataset
    from neurocxr.energy.estimate import count_cnn_macs, estimate_ann_energy, estimate_energy
    from neurocxr.energy.estimate import keras_layers_from_program, keras_spiking_energy, keras_spiking_estimate
    from neurocxr.energy.estimate import estimate_snn_ac_energy
    from neurocxr.energy.profiles import get_profile, load_profiles, register_profile
    from neurocxr.exporters.loihi import quantisation_table
    from neurocxr.exporters.resources import estimate_resources
    from neurocxr.fileio import prepare_out_dir
    from neurocxr.metrics import clinical_metrics
    from neurocxr.report import Report, summary_from, write_report

    console = _console(console)
    out_dir = prepare_out_dir(out, ["report.html", "report.json"], force)
    extra_profiles = []
    if profiles_file is not None:
        extra_profiles = load_profiles(profiles_file)
        for p in extra_profiles:
            register_profile(p)
    names = list(profiles) if profiles else list(DEFAULT_SNN_PROFILES) + [p.name for p in extra_profiles]
    chosen = [get_profile(n) for n in names]

    snn = load(checkpoint)
    splits = load_dataset(data, image_size=snn.config.image_size)
    test = splits.test
    n = len(test) if max_samples is None else min(max_samples, len(test))
    images, labels = test.images[:n], test.labels[:n]
    y = labels.numpy()
    console.print(
        ("[bold yellow]data: SYNTHETIC phantoms — [/]" if splits.synthetic else "[bold]data:[/] ")
        + f"{test.source} [test, {n} samples]"
    )

    # Float model metrics.
    accuracy: dict[str, dict] = {}
    logits = float_logits(snn, images)
    scores = torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy()
    accuracy[f"{snn.name} (float, PyTorch)"] = clinical_metrics(y, scores, threshold=snn.threshold).to_dict()

    # Quantised model on the emulator: the counts every estimate uses.
    graph, program = to_program(snn)
    with console.status("emulating the Loihi program on the test set..."):
        parity, run = parity_check(snn, program, images, labels)
    emu_metrics = clinical_metrics(y, chip_scores(run), threshold=0.5)
    accuracy[f"{snn.name} (Loihi emulator)"] = emu_metrics.to_dict()
    emu_acc = float(np.mean(run.predictions() == y))
    console.print(
        f"emulator: {n} samples in {parity['emulator_seconds']:.2f} s; accuracy {emu_acc:.4f} "
        f"(float {parity['float_accuracy']:.4f}); predictions changed {100 * parity['prediction_changed_fraction']:.2f}%"
    )
    estimates = [estimate_energy(run.counts, p, model=snn.name, accuracy=emu_acc) for p in chosen]
    # The conventions published CXR SNN work used: KerasSpiking's ModelEnergy rows, and the
    # Horowitz AC/MAC arithmetic-only estimate (Spikformer/SpikingJelly style).
    ks_layers = keras_layers_from_program(program, run.counts)
    for device in KERAS_SPIKING_DEVICES:
        ks = keras_spiking_energy(ks_layers, device, timesteps=program.num_steps)
        estimates.append(keras_spiking_estimate(ks, model=snn.name, accuracy=emu_acc))
    estimates.append(estimate_snn_ac_energy(run.counts, "horowitz45-fp32", model=snn.name, accuracy=emu_acc))

    measurements = []
    if measure:
        snn_acc = float(np.mean(logits.argmax(1) == y))

        def snn_fn(bs: int):
            x = images[:bs]
            xe = encoded_inputs(snn.config, x)

            def run_once() -> None:
                with torch.no_grad():
                    snn.model(xe)

            return run_once

        with console.status("measuring the SNN in PyTorch on this CPU..."):
            measurements += _measure_rows(snn.name, snn_fn, (1, min(64, n)), "pytorch", snn_acc, measure_seconds)
        measurements += _gpu_rows(snn, images, snn_acc, console)

    layer_counts = {snn.name: [c.to_dict() for c in run.counts]}

    for base in baselines:
        b = load(base)
        b_logits = float_logits(b, images)
        b_scores = torch.softmax(torch.from_numpy(b_logits), 1)[:, 1].numpy()
        accuracy[f"{b.name} (float, PyTorch)"] = clinical_metrics(y, b_scores, threshold=b.threshold).to_dict()
        b_acc = float(np.mean(b_logits.argmax(1) == y))
        macs = count_cnn_macs(b.model, (1,) + tuple(images.shape[1:]))
        for prof in ("horowitz45-fp32", "horowitz45-int8"):
            estimates.append(estimate_ann_energy(macs, prof, model=b.name, accuracy=b_acc))
        if measure:
            from neurocxr.exporters.onnx import check_onnx_equivalence, export_onnx, onnx_session

            onnx_path = export_onnx(b.model, out_dir / f"{b.name}.onnx", input_shape=(1,) + tuple(images.shape[1:]))
            check_onnx_equivalence(b.model, onnx_path, images[:8].numpy())
            sess = onnx_session(onnx_path)
            in_name = sess.get_inputs()[0].name

            def onnx_fn(bs: int):
                x = images[:bs].numpy()
                return lambda: sess.run(None, {in_name: x})

            with console.status(f"measuring {b.name} in ONNX Runtime on this CPU..."):
                measurements += _measure_rows(
                    f"{b.name} (ONNX)", onnx_fn, (1, min(64, n)), "onnxruntime", b_acc, measure_seconds
                )

    export_info = export_report or {
        "layers": quantisation_table(program),
        "resources": _asdict(estimate_resources(program)),
        "input": {"kind": program.input_kind, "num_steps": program.num_steps, "input_scale": program.input_scale},
    }
    report = Report(
        title=f"neurocxr energy report: {snn.name}",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        data_source=f"{test.source} [test, {n} samples]" + (" — SYNTHETIC phantoms" if splits.synthetic else ""),
        summary=summary_from(estimates, measurements),
        estimates=estimates,
        measurements=measurements,
        layer_counts=layer_counts,
        accuracy=accuracy,
        parity=parity,
        export=export_info,
        environment=environment(),
    )
    paths = write_report(report, out_dir)
    report.paths = paths  # type: ignore[attr-defined]
    return report


def _asdict(obj: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) else obj


def _gpu_rows(snn: LoadedModel, images: torch.Tensor, acc: float, console: Any) -> list[Any]:
    """NVML-measured SNN inference on the GPU when there is one; nothing (and a note) otherwise."""
    from neurocxr.energy.measure import gpu_available, measure_gpu

    ok, reason = gpu_available()
    if not ok:
        console.print(f"GPU energy: not measurable here ({reason})")
        return []
    model = snn.model.to("cuda")
    rows = []
    for bs in (1, 256):
        x = encoded_inputs(snn.config, images[:bs].repeat(max(1, bs // len(images) + 1), 1, 1, 1)[:bs]).to("cuda")

        def run_once() -> None:
            with torch.no_grad():
                model(x)

        m = measure_gpu(run_once, batch_size=bs, model=snn.name)
        m.accuracy = acc
        rows.append(m)
    snn.model.to("cpu")
    return rows


# ----------------------------------------------------------------------------------------------
# Demo


def demo(
    *,
    out: str | Path = "runs/demo",
    data: str | Path | None = None,
    epochs: int = 4,
    max_train_samples: int | None = None,
    lava_samples: int = 2,
    console: Any = None,
) -> dict[str, Any]:
    """Train the default SNN and a CNN baseline briefly, export to Loihi, verify, count, estimate, measure, report."""
    from neurocxr.cli import print_parity

    console = _console(console)
    out = Path(out)
    t0 = time.perf_counter()
    console.rule("1/4 train the default SNN (snn_conv) and the small CNN baseline")
    snn = train("snn_conv", data=data, out=out, epochs=epochs, max_train_samples=max_train_samples, force=True, console=console)
    cnn = train("cnn_small", data=data, out=out, epochs=max(2, epochs // 2), max_train_samples=max_train_samples, force=True, console=console)
    for res in (snn, cnn):
        console.print(f"{res['model']}: best epoch {res['best_epoch']}, val AUC {res['val']['roc_auc']:.4f}, {res['seconds_per_epoch']:.1f} s/epoch")
    ev = evaluate(snn["checkpoint"], data=data, split="test")
    from neurocxr.cli import _metrics_table

    ev_cnn = evaluate(cnn["checkpoint"], data=data, split="test")
    console.print(_metrics_table("test metrics (threshold chosen on val)", {"snn_conv": ev["metrics"], "cnn_small": ev_cnn["metrics"]}))

    console.rule("2/4 export snn_conv to Loihi 2 (NIR -> netx) and verify on emulator + Lava")
    exp = export_loihi(snn["checkpoint"], out / "loihi", data=data, lava_samples=lava_samples, force=True)
    for name, path in exp.files.items():
        console.print(f"wrote {name}: {path}")
    print_parity(exp.report)

    console.rule("3/4 count, estimate, measure")
    rep = energy_report(
        snn["checkpoint"], baselines=[cnn["checkpoint"]], data=data, out=out, force=True, export_report=exp.report, console=console
    )
    from neurocxr.cli import print_summary

    console.rule("4/4 report")
    print_summary(rep)
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return {"snn": snn, "cnn": cnn, "test": ev, "export": exp.report, "report": rep}
