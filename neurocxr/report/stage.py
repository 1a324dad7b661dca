"""The energy report as a pipeline stage: a plain function from inputs to a `Report` value.

`energy_report_stage` counts on the emulator, estimates per device profile, measures what this
machine allows and returns a `neurocxr.report.Report`. It writes nothing and prints nothing:
`neurocxr.api.energy_report` writes the files, `neurocxr.cli` prints. Progress of the slow parts
goes through an optional ``on_status`` callback (the CLI shows it; the API passes nothing).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from neurocxr.deploy.deployment import Deployment, OperatingPoint, ParityReport
from neurocxr.energy.bases import BasisComparison
from neurocxr.energy.estimate import estimate_ann_energy, inference_macs
from neurocxr.energy.measure import gpu_available, measurability, measure_cpu, measure_gpu
from neurocxr.energy.neurobench import neurobench_counts
from neurocxr.energy.profiles import get_profile
from neurocxr.energy.suite import SNN_PROFILES, cnn_estimates, snn_estimates
from neurocxr.energy.suite import counting_bases as suite_counting_bases
from neurocxr.energy.types import EnergyEstimate
from neurocxr.exporters.onnx import check_onnx_equivalence, export_onnx, onnx_session
from neurocxr.hardware_sims.results import RunResult
from neurocxr.metrics import ClinicalMetrics, clinical_metrics
from neurocxr.models import is_snn
from neurocxr.models.base import SpikingSequential
from neurocxr.models.loaded import LoadedModel, encoded_batches, encoded_inputs, float_logits
from neurocxr.provenance import environment
from neurocxr.report import Report, summary_from

# Count-based estimates on neuromorphic profiles (constants and citations in neurocxr.energy.profiles).
DEFAULT_SNN_PROFILES = SNN_PROFILES

Status = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _softmax_scores(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy()


def neurobench_entries(
    snn: LoadedModel,
    images: torch.Tensor,
    chunk: int = 128,
    encoded: list[torch.Tensor] | None = None,
) -> list[dict[str, Any]] | None:
    """NeuroBench-style counts of the float SNN on ``images`` (the same samples as the chip counts),
    in chunks so the [T, B, ...] input stays small (``encoded``: those chunks already encoded, chunk
    k with seed k, as `neurocxr.models.loaded.encoded_batches` gives them); None for models it cannot count."""

    if not isinstance(snn.model, SpikingSequential):
        return None
    if encoded is None:
        encoded = encoded_batches(snn.config, images, batch_size=chunk)
    parts = [neurobench_counts(snn.model, x) for x in encoded]
    merged = []
    for layer_parts in zip(*parts):
        entry = dict(layer_parts[0])
        for key, value in entry.items():
            if isinstance(value, np.ndarray):
                entry[key] = np.concatenate([p[key] for p in layer_parts])
        outputs, updates = np.sum(entry["output_spikes"]), np.sum(entry["neuron_updates"])
        if "activation_sparsity" in entry:
            entry["activation_sparsity"] = (
                (1.0 - float(outputs) / float(updates)) if updates else None
            )
        merged.append(entry)
    return merged


def _measure_rows(
    name: str,
    fn_for_batch: Callable[[int], Callable[[], None]],
    batch_sizes: Sequence[int],
    runtime: str,
    accuracy: float | None,
    window_s: float,
) -> list[Any]:
    """CPU measurements of one runnable model at several batch sizes."""

    rows = []
    for bs in batch_sizes:
        m = measure_cpu(
            fn_for_batch(bs), batch_size=bs, model=name, runtime=runtime, window_s=window_s
        )
        m.accuracy = accuracy
        rows.append(m)
    return rows


def _gpu_rows(snn: LoadedModel, images: torch.Tensor, acc: float) -> tuple[list[Any], str | None]:
    """NVML-measured SNN inference on the GPU when there is one; otherwise no rows and the reason."""

    ok, reason = gpu_available()
    if not ok:
        return [], reason
    model = snn.model.to("cuda")
    rows = []
    try:
        for bs in (1, 256):
            x = encoded_inputs(
                snn.config, images[:bs].repeat(max(1, bs // len(images) + 1), 1, 1, 1)[:bs]
            ).to("cuda")

            def run_once(x: torch.Tensor = x) -> None:
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

    try:
        return get_profile(device).kind == "neuromorphic"
    except Exception:  # KerasSpiking rows and user devices: decide by name
        return any(k in device.lower() for k in ("loihi", "spinnaker", "truenorth"))


@dataclass(frozen=True)
class _TestSlice:
    """The test samples the report runs on, their labels, and how the data source reads."""

    images: torch.Tensor
    labels: torch.Tensor
    y: np.ndarray
    n: int
    data_source: str


@dataclass(frozen=True)
class _ChipResult:
    """The quantised model on the emulator: its deployment, run, parity and operating point."""

    deployment: Deployment
    run: RunResult
    parity: ParityReport
    operating: OperatingPoint
    metrics: ClinicalMetrics


def _test_slice(splits: Any, max_samples: int | None) -> _TestSlice:
    """The first ``max_samples`` test samples (all when None) and the report's data-source line."""

    test = splits.test
    n = len(test) if max_samples is None else min(max_samples, len(test))
    images, labels = test.images[:n], test.labels[:n]
    data_source = f"{test.source} [test, {n} samples]" + (
        " (synthetic)" if splits.synthetic and "synthetic" not in test.source.lower() else ""
    )
    return _TestSlice(images, labels, labels.numpy(), n, data_source)


def _chip_result(
    snn: LoadedModel,
    splits: Any,
    data: _TestSlice,
    batches: list[torch.Tensor] | None,
    float_scores: np.ndarray,
    float_metrics: ClinicalMetrics,
    say: Status,
) -> _ChipResult:
    """Emulate the quantised model: threshold on validation, parity and metrics on the test slice."""

    deployment = Deployment.from_checkpoint(snn)
    say("choosing the chip's threshold on the validation split (emulator)...")
    operating = deployment.operating_point(splits.val.images, splits.val.labels)
    say("emulating the Loihi program on the test set...")
    test_inputs = deployment.encode(data.images)
    if (
        batches is not None and len(batches) == 1
    ):  # one batch: the same tensor as the parity run's encoding (seed 0)
        test_inputs = replace(test_inputs, _float_input=batches[0])
    parity, run = deployment.parity(test_inputs, data.labels)
    chip_metrics = clinical_metrics(data.y, deployment.scores(run), threshold=operating.threshold)
    float_pred = float_scores >= snn.threshold
    chip_pred = operating.decide(run).astype(bool)
    operating = operating.with_test(
        prediction_changed_fraction=float(np.mean(float_pred != chip_pred)),
        float_test={
            k: float_metrics.to_dict()[k]
            for k in ("accuracy", "sensitivity", "specificity", "roc_auc")
        },
        chip_test={
            k: chip_metrics.to_dict()[k]
            for k in ("accuracy", "sensitivity", "specificity", "roc_auc")
        },
    )
    parity.operating_point = operating
    return _ChipResult(deployment, run, parity, operating, chip_metrics)


def _snn_estimates(
    snn: LoadedModel,
    data: _TestSlice,
    batches: list[torch.Tensor] | None,
    chip: _ChipResult,
    float_acc: float,
    profiles: list[Any],
    say: Status,
) -> tuple[list[EnergyEstimate], BasisComparison | None]:
    """Per-profile SNN estimates from the chip's and NeuroBench counts, and the two compared."""

    say("counting the float model the NeuroBench way...")
    nb = neurobench_entries(snn, data.images, encoded=batches)
    estimates = snn_estimates(
        chip.deployment.program,
        chip.run.counts,
        model=snn.name,
        accuracy=chip.metrics.accuracy,
        neurobench_entries=nb,
        float_accuracy=float_acc,
        profiles=profiles,
    )
    bases = suite_counting_bases(chip.run.counts, nb) if nb else None
    return estimates, bases


def _snn_measurements(
    snn: LoadedModel, data: _TestSlice, float_acc: float, measure_seconds: float, say: Status
) -> tuple[dict[str, str], list[Any]]:
    """What this machine cannot measure (and why), and the SNN's CPU and GPU measurements."""

    not_measurable: dict[str, str] = {}
    can = measurability()
    for what, device in (("GPU energy", can.gpu), ("CPU energy", can.cpu)):
        if not device.measurable:
            not_measurable[what] = device.reason

    def snn_fn(bs: int) -> Callable[[], None]:
        xe = encoded_inputs(snn.config, data.images[:bs])

        def run_once() -> None:
            with torch.no_grad():
                snn.model(xe)

        return run_once

    say("measuring the SNN in PyTorch on this CPU...")
    measurements = _measure_rows(
        snn.name, snn_fn, (1, min(64, data.n)), "pytorch", float_acc, measure_seconds
    )
    measurements += _gpu_rows(snn, data.images, float_acc)[0]
    return not_measurable, measurements


def _dense_spiking_estimates(b: LoadedModel, accuracy: float) -> list[EnergyEstimate]:
    """A spiking baseline the chip cannot hold, costed as dense MACs on conventional hardware."""

    # Layers the chip cannot hold (GRU, MaxPool...): dense-equivalent MACs over its time steps.
    # It has no ONNX form, so nothing is measured.
    macs = inference_macs(b.model, b.config)
    rows = []
    for precision in ("fp32", "int8"):
        row = estimate_ann_energy(
            {f"{b.name} ({macs.basis})": macs.macs},
            f"horowitz45-{precision}",
            model=b.name,
            accuracy=accuracy,
        )
        row.footnotes = list(row.footnotes or []) + [
            f"{b.name} is a spiking model run densely on conventional hardware: {macs.basis}."
        ]
        rows.append(row)
    return rows


def _onnx_measurements(
    b: LoadedModel,
    data: _TestSlice,
    tmp: str,
    accuracy: float,
    measure_seconds: float,
    say: Status,
) -> list[Any]:
    """Export a CNN baseline to ONNX, check it matches PyTorch, and measure it on this CPU."""

    onnx_path = export_onnx(
        b.model,
        Path(tmp) / f"{b.name}.onnx",
        input_shape=(1,) + tuple(data.images.shape[1:]),
    )
    check_onnx_equivalence(b.model, onnx_path, data.images[:8].numpy())
    sess = onnx_session(onnx_path)
    in_name = sess.get_inputs()[0].name

    def onnx_fn(bs: int, sess: Any = sess, in_name: str = in_name) -> Callable[[], None]:
        x = data.images[:bs].numpy()
        return lambda: sess.run(None, {in_name: x})

    say(f"measuring {b.name} in ONNX Runtime on this CPU...")
    return _measure_rows(
        f"{b.name} (ONNX)",
        onnx_fn,
        (1, min(64, data.n)),
        "onnxruntime",
        accuracy,
        measure_seconds,
    )


def _add_baselines(
    baselines: Sequence[LoadedModel],
    data: _TestSlice,
    measure: bool,
    measure_seconds: float,
    say: Status,
    accuracy: dict[str, dict],
    auc: dict[str, float],
    estimates: list[EnergyEstimate],
    measurements: list[Any],
) -> None:
    """Score, estimate and (when ``measure``) measure each baseline, appending to the given tables."""

    with tempfile.TemporaryDirectory(prefix="neurocxr-onnx-") as tmp:
        for b in baselines:
            b_logits = float_logits(b, data.images)
            b_metrics = clinical_metrics(data.y, _softmax_scores(b_logits), threshold=b.threshold)
            accuracy[f"{b.name} (float, PyTorch)"] = b_metrics.to_dict()
            auc[b.name] = b_metrics.roc_auc
            if is_snn(b.config):
                estimates += _dense_spiking_estimates(b, b_metrics.accuracy)
                continue
            estimates += cnn_estimates(
                b.model,
                (1,) + tuple(data.images.shape[1:]),
                name=b.name,
                accuracy=b_metrics.accuracy,
            )
            if measure:
                measurements += _onnx_measurements(
                    b, data, tmp, b_metrics.accuracy, measure_seconds, say
                )


def _export_info(deployment: Deployment) -> dict[str, Any]:
    """The export section when the caller gave none: layer quantisation, resources, input."""

    program = deployment.program
    return {
        "layers": [q.to_row() for q in deployment.layer_quant],
        "resources": _asdict(deployment.resources),
        "input": {
            "kind": program.input_kind,
            "num_steps": program.num_steps,
            "input_scale": program.input_scale,
        },
    }


def _summary_rows(
    snn: LoadedModel,
    estimates: list[EnergyEstimate],
    measurements: list[Any],
    baselines: Sequence[LoadedModel],
    auc: dict[str, float],
    float_auc: float,
) -> list[Any]:
    """The summary table, each SNN row carrying the AUC of the model its counts come from."""

    summary = summary_from(estimates, measurements, baselines=[b.name for b in baselines], auc=auc)
    for row in summary:
        # AUC follows the counts a row rests on: chip counts -> the chip's AUC; the float model's
        # counts (NeuroBench, KerasSpiking) or a float-model measurement -> the float model's AUC.
        if row.model == snn.name and row.basis != "chip counts":
            row.auc = float_auc
    return summary


def _counting_bases_fields(bases: BasisComparison | None) -> dict[str, Any]:
    """The report's per-layer and total counting-basis comparison (empty when not counted)."""

    return {
        "counting_bases": [row.to_dict() for row in bases.layers] if bases is not None else [],
        "counting_bases_summary": (
            {"total": bases.total.to_dict(), "explanations": list(bases.explanations)}
            if bases is not None
            else {}
        ),
    }


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

    ``splits`` is a loaded data set (`neurocxr.data.datasets.load_dataset`); ``profiles`` DeviceProfiles (or
    names); ``sweep`` an already-read sweep table (`neurocxr.report.read_sweep`) to plot beside
    the models. The chip's decision threshold is chosen on the validation split exactly as the
    float model's was, so float-vs-chip differences are quantisation only.
    """

    say = on_status or _quiet
    chosen = [
        get_profile(p) if isinstance(p, str) else p for p in (profiles or DEFAULT_SNN_PROFILES)
    ]
    data = _test_slice(splits, max_samples)

    # Float model at its validation-chosen threshold. The test images are encoded once, in the
    # seeded batches of 128 that the float model and NeuroBench counting both use (and the
    # chip's parity run too when they are one batch).
    batches = encoded_batches(snn.config, data.images) if is_snn(snn.config) else None
    float_scores = _softmax_scores(float_logits(snn, data.images, encoded=batches))
    float_metrics = clinical_metrics(data.y, float_scores, threshold=snn.threshold)
    # Quantised model on the emulator: the counts every estimate uses.
    chip = _chip_result(snn, splits, data, batches, float_scores, float_metrics, say)
    accuracy: dict[str, dict] = {
        f"{snn.name} (float, PyTorch)": float_metrics.to_dict(),
        f"{snn.name} (Loihi emulator)": chip.metrics.to_dict(),
    }
    auc: dict[str, float] = {snn.name: chip.metrics.roc_auc}

    estimates, bases = _snn_estimates(snn, data, batches, chip, float_metrics.accuracy, chosen, say)

    not_measurable: dict[str, str] = {}
    measurements: list[Any] = []
    if measure:
        not_measurable, measurements = _snn_measurements(
            snn, data, float_metrics.accuracy, measure_seconds, say
        )
    _add_baselines(
        baselines, data, measure, measure_seconds, say, accuracy, auc, estimates, measurements
    )
    export_info = export_report or _export_info(chip.deployment)
    summary = _summary_rows(snn, estimates, measurements, baselines, auc, float_metrics.roc_auc)
    return Report(
        title=f"neurocxr energy report: {snn.name}",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        data_source=data.data_source,
        summary=summary,
        estimates=estimates,
        measurements=measurements,
        layer_counts={snn.name: [c.to_dict() for c in chip.run.counts]},
        accuracy=accuracy,
        parity=chip.parity.to_dict(),
        export=export_info,
        environment=environment(),
        provenance=provenance or {},
        operating_point=chip.operating.to_dict(),
        **_counting_bases_fields(bases),
        not_measurable=not_measurable,
        auc=auc,
        sweep=sweep,
        neuromorphic_devices=sorted({e.device for e in estimates if _is_neuromorphic(e.device)}),
    )
