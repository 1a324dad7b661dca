"""The energy report as a pipeline stage: a plain function from inputs to a `Report` value.

`energy_report_stage` counts on the emulator, estimates per device profile, measures what this
machine allows and returns a `neurocxr.report.Report`. It writes nothing and prints nothing:
`neurocxr.api.energy_report` writes the files, `neurocxr.cli` prints. Progress of the slow parts
goes through an optional ``on_status`` callback (the CLI shows it; the API passes nothing).
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from neurocxr.pipeline import (
    LoadedModel,
    chip_operating_point,
    chip_scores,
    encoded_inputs,
    environment,
    float_logits,
    parity_check,
    to_program,
)

# Count-based estimates on neuromorphic profiles (constants and citations in neurocxr.energy.profiles).
DEFAULT_SNN_PROFILES = ("loihi", "loihi2", "spinnaker", "spinnaker2", "truenorth")
# KerasSpiking ModelEnergy devices reproduced with its own formulas (neurocxr.energy.estimate).
KERAS_SPIKING_DEVICES = ("cpu", "gpu", "loihi")
# The NeuroBench float-model count runs on at most this many test samples (it is a Python loop
# over layers and steps; the per-sample mean settles long before the whole test set).
NEUROBENCH_SAMPLES = 256

Status = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _softmax_scores(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy()


def counting_bases(snn: LoadedModel, program: Any, chip_counts: Sequence[Any], images: torch.Tensor) -> list[dict[str, Any]]:
    """Per layer, both counting bases side by side: the chip's counts (fixed point, pooling fused
    into the next layer's synapses: what the energy estimates use) and NeuroBench's float-model
    counts (the convention of published SNN work), with their ratio and why they differ."""
    from neurocxr.energy.neurobench import neurobench_counts
    from neurocxr.models.base import SpikingSequential

    if not isinstance(snn.model, SpikingSequential):
        return []
    x = encoded_inputs(snn.config, images[:NEUROBENCH_SAMPLES])
    float_entries = [e for e in neurobench_counts(snn.model, x) if e["kind"] != "input"]
    chip = [c for c in chip_counts if c.kind != "input"]
    chip_layers = [layer for layer in program.layers if layer.kind != "input"]
    rows = []
    for i in range(max(len(float_entries), len(chip))):
        f = float_entries[i] if i < len(float_entries) else None
        c = chip[i] if i < len(chip) else None
        layer = chip_layers[i] if i < len(chip_layers) else None
        chip_ops = float(np.mean(c.synaptic_ops)) if c is not None else None
        float_ops = float(np.mean(f["synaptic_ops"])) if f is not None else None
        chip_dense = float(np.mean(c.dense_synaptic_ops)) if c is not None else None
        float_dense = float(np.mean(f["dense_synaptic_ops"])) if f is not None else None
        fused = bool(layer is not None and (layer.quant or {}).get("fused_pool"))
        ratio = chip_ops / float_ops if chip_ops is not None and float_ops else None
        if ratio is not None and abs(ratio - 1.0) < 1e-6:
            why = "same counts: the chip runs this layer as the float model does"
        elif fused or (ratio is not None and ratio > 1.0 and layer is not None and layer.kind == "conv"
                       and c is not None and f is not None and c.fan_in > (f.get("fan_in") or 0)):
            why = ("pooling fused into this layer on the chip: every pre-pool spike reaches a larger "
                   "kernel (a 2x2 pool before a 3x3 conv becomes a 6x6 stride-2 kernel)")
        elif ratio is not None:
            why = "fixed-point weights and thresholds change which neurons spike (quantisation)"
        else:
            why = "no matching layer in the other basis"
        rows.append({
            "layer": c.name if c is not None else f["name"],
            "float_layer": f["name"] if f is not None else None,
            "op_type": f.get("op_type") if f is not None else None,
            "chip_effective_ops": chip_ops,
            "neurobench_effective_ops": float_ops,
            "ratio_chip_to_neurobench": ratio,
            "chip_dense_ops": chip_dense,
            "neurobench_dense_ops": float_dense,
            "why": why,
        })
    return rows


def _measure_rows(name: str, fn_for_batch: Callable[[int], Callable[[], None]], batch_sizes: Sequence[int],
                  runtime: str, accuracy: float | None, window_s: float) -> list[Any]:
    """CPU measurements of one runnable model at several batch sizes."""
    from neurocxr.energy.measure import measure_cpu

    rows = []
    for bs in batch_sizes:
        m = measure_cpu(fn_for_batch(bs), batch_size=bs, model=name, runtime=runtime, window_s=window_s)
        m.accuracy = accuracy
        rows.append(m)
    return rows


def _gpu_rows(snn: LoadedModel, images: torch.Tensor, acc: float) -> tuple[list[Any], str | None]:
    """NVML-measured SNN inference on the GPU when there is one; otherwise no rows and the reason."""
    from neurocxr.energy.measure import gpu_available, measure_gpu

    ok, reason = gpu_available()
    if not ok:
        return [], reason
    model = snn.model.to("cuda")
    rows = []
    try:
        for bs in (1, 256):
            x = encoded_inputs(snn.config, images[:bs].repeat(max(1, bs // len(images) + 1), 1, 1, 1)[:bs]).to("cuda")

            def run_once() -> None:
                with torch.no_grad():
                    model(x)

            m = measure_gpu(run_once, batch_size=bs, model=snn.name)
            m.accuracy = acc
            rows.append(m)
    finally:
        snn.model.to("cpu")
    return rows, None


def _asdict(obj: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) else obj


def _is_neuromorphic(device: str) -> bool:
    from neurocxr.energy.profiles import get_profile

    try:
        return get_profile(device).kind == "neuromorphic"
    except Exception:  # KerasSpiking rows and user devices: decide by name
        return any(k in device.lower() for k in ("loihi", "spinnaker", "truenorth"))


def energy_report_stage(
    snn: LoadedModel,
    splits: Any,
    *,
    baselines: Sequence[LoadedModel] = (),
    profiles: Sequence[Any] = (),
    max_samples: int | None = None,
    measure: bool = True,
    measure_seconds: float = 3.0,
    export_report: dict[str, Any] | None = None,
    sweep: Any = None,
    provenance: dict[str, Any] | None = None,
    on_status: Status | None = None,
) -> Any:
    """Count, estimate, measure: everything the energy report shows, as a `Report` value.

    ``splits`` is a loaded data set (`neurocxr.data.load_dataset`); ``profiles`` DeviceProfiles (or
    names); ``sweep`` an already-read sweep table (`neurocxr.report.read_sweep`) to plot beside
    the models. The chip's decision threshold is chosen on the validation split exactly as the
    float model's was, so float-vs-chip differences are quantisation only.
    """
    from neurocxr.energy.estimate import (
        count_cnn_macs,
        estimate_ann_energy,
        estimate_energy,
        estimate_snn_ac_energy,
        keras_layers_from_program,
        keras_spiking_energy,
        keras_spiking_estimate,
    )
    from neurocxr.energy.profiles import get_profile
    from neurocxr.exporters.loihi import quantisation_table
    from neurocxr.exporters.resources import estimate_resources
    from neurocxr.metrics import clinical_metrics
    from neurocxr.report import Report, summary_from

    say = on_status or _quiet
    chosen = [get_profile(p) if isinstance(p, str) else p for p in (profiles or DEFAULT_SNN_PROFILES)]
    test = splits.test
    n = len(test) if max_samples is None else min(max_samples, len(test))
    images, labels = test.images[:n], test.labels[:n]
    y = labels.numpy()
    data_source = f"{test.source} [test, {n} samples]" + (" — SYNTHETIC phantoms" if splits.synthetic else "")

    # Float model at its validation-chosen threshold.
    accuracy: dict[str, dict] = {}
    auc: dict[str, float] = {}
    logits = float_logits(snn, images)
    float_metrics = clinical_metrics(y, _softmax_scores(logits), threshold=snn.threshold)
    accuracy[f"{snn.name} (float, PyTorch)"] = float_metrics.to_dict()

    # Quantised model on the emulator: the counts every estimate uses.
    _, program = to_program(snn)
    say("choosing the chip's threshold on the validation split (emulator)...")
    operating = chip_operating_point(snn, program, splits.val.images, splits.val.labels)
    say("emulating the Loihi program on the test set...")
    parity, run = parity_check(snn, program, images, labels)
    chip_metrics = clinical_metrics(y, chip_scores(run, program), threshold=operating["threshold"])
    accuracy[f"{snn.name} (Loihi emulator)"] = chip_metrics.to_dict()
    float_pred = _softmax_scores(logits) >= snn.threshold
    chip_pred = chip_scores(run, program) >= operating["threshold"]
    operating.update(
        test_prediction_changed_fraction=float(np.mean(float_pred != chip_pred)),
        float_test={k: float_metrics.to_dict()[k] for k in ("accuracy", "sensitivity", "specificity", "roc_auc")},
        chip_test={k: chip_metrics.to_dict()[k] for k in ("accuracy", "sensitivity", "specificity", "roc_auc")},
    )
    parity["operating_point"] = operating
    chip_acc, float_acc = chip_metrics.accuracy, float_metrics.accuracy
    auc[snn.name] = chip_metrics.roc_auc

    estimates = [estimate_energy(run.counts, p, model=snn.name, accuracy=chip_acc) for p in chosen]
    # The conventions published CXR SNN work used: KerasSpiking's ModelEnergy rows, and the
    # Horowitz AC/MAC arithmetic-only estimate (Spikformer/SpikingJelly style).
    ks_layers = keras_layers_from_program(program, run.counts)
    for device in KERAS_SPIKING_DEVICES:
        ks = keras_spiking_energy(ks_layers, device, timesteps=program.num_steps)
        estimates.append(keras_spiking_estimate(ks, model=snn.name, accuracy=chip_acc if device == "loihi" else float_acc))
    estimates.append(estimate_snn_ac_energy(run.counts, "horowitz45-fp32", model=snn.name, accuracy=float_acc))

    not_measurable: dict[str, str] = {}
    measurements: list[Any] = []
    if measure:
        def snn_fn(bs: int) -> Callable[[], None]:
            xe = encoded_inputs(snn.config, images[:bs])

            def run_once() -> None:
                with torch.no_grad():
                    snn.model(xe)

            return run_once

        say("measuring the SNN in PyTorch on this CPU...")
        measurements += _measure_rows(snn.name, snn_fn, (1, min(64, n)), "pytorch", float_acc, measure_seconds)
        gpu_rows, gpu_reason = _gpu_rows(snn, images, float_acc)
        measurements += gpu_rows
        if gpu_reason:
            not_measurable["GPU energy"] = gpu_reason

    layer_counts = {snn.name: [c.to_dict() for c in run.counts]}
    say("counting the float model the NeuroBench way...")
    bases = counting_bases(snn, program, run.counts, images)

    with tempfile.TemporaryDirectory(prefix="neurocxr-onnx-") as tmp:
        for b in baselines:
            b_logits = float_logits(b, images)
            b_metrics = clinical_metrics(y, _softmax_scores(b_logits), threshold=b.threshold)
            accuracy[f"{b.name} (float, PyTorch)"] = b_metrics.to_dict()
            auc[b.name] = b_metrics.roc_auc
            macs = count_cnn_macs(b.model, (1,) + tuple(images.shape[1:]))
            for prof in ("horowitz45-fp32", "horowitz45-int8"):
                estimates.append(estimate_ann_energy(macs, prof, model=b.name, accuracy=b_metrics.accuracy))
            if measure:
                from neurocxr.exporters.onnx import check_onnx_equivalence, export_onnx, onnx_session

                onnx_path = export_onnx(b.model, Path(tmp) / f"{b.name}.onnx", input_shape=(1,) + tuple(images.shape[1:]))
                check_onnx_equivalence(b.model, onnx_path, images[:8].numpy())
                sess = onnx_session(onnx_path)
                in_name = sess.get_inputs()[0].name

                def onnx_fn(bs: int, sess: Any = sess, in_name: str = in_name) -> Callable[[], None]:
                    x = images[:bs].numpy()
                    return lambda: sess.run(None, {in_name: x})

                say(f"measuring {b.name} in ONNX Runtime on this CPU...")
                measurements += _measure_rows(f"{b.name} (ONNX)", onnx_fn, (1, min(64, n)), "onnxruntime",
                                              b_metrics.accuracy, measure_seconds)
    for m in measurements:
        if m.kind == "not measurable" and m.device.startswith("CPU"):
            reason = m.notes.split(": ", 1)[-1].split(". Latency")[0] if m.notes else "no energy counter"
            not_measurable.setdefault("CPU energy", reason)

    export_info = export_report or {
        "layers": quantisation_table(program),
        "resources": _asdict(estimate_resources(program)),
        "input": {"kind": program.input_kind, "num_steps": program.num_steps, "input_scale": program.input_scale},
    }
    summary = summary_from(estimates, measurements, baselines=[b.name for b in baselines], auc=auc)
    for row in summary:
        # The SNN's rows on conventional devices run the float model: its AUC, not the chip's.
        if row.model.split(" (")[0] == snn.name and not _is_neuromorphic(row.device):
            row.auc = float_metrics.roc_auc
    return Report(
        title=f"neurocxr energy report: {snn.name}",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        data_source=data_source,
        summary=summary,
        estimates=estimates,
        measurements=measurements,
        layer_counts=layer_counts,
        accuracy=accuracy,
        parity=parity,
        export=export_info,
        environment=environment(),
        provenance=provenance or {},
        operating_point=operating,
        counting_bases=bases,
        not_measurable=not_measurable,
        auc=auc,
        sweep=sweep,
        neuromorphic_devices=sorted({e.device for e in estimates if _is_neuromorphic(e.device)}),
    )
