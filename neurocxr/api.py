"""The small Python API: a few calls from a checkpoint to a Loihi program, counts, energy and a report.

    import neurocxr
    m = neurocxr.load("runs/demo/snn.pt")
    exp = neurocxr.export_loihi(m, "out/")          # model.nir, model.net, export_report.{json,md}
    run = neurocxr.emulate(exp.program, images)      # spikes + per-layer counts, bit-exact with Lava
    e = neurocxr.estimate_energy(run.counts, "loihi")

Every CLI command is one call here with the same options under their Python names (``neurocxr
evaluate --max-samples 8`` is ``evaluate(..., max_samples=8)``); each returns a typed result
(a dataclass) and prints nothing; `neurocxr.cli` parses, calls and prints. Commands and calls:
``train`` train, ``evaluate`` evaluate, ``explain`` explain, ``export`` export (checkpoints and
``.nir`` files), ``netx`` inspect_netx, ``energy``/``report`` energy_report, ``sweep`` sweep,
``data info`` data_info, ``data fetch`` fetch_data, ``models`` list_models, ``demo`` demo.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from neurocxr.data.datasets import (
    DataInfo,
    data_for_checkpoint,
    fetch_pneumoniamnist,
    info,
    load_dataset,
)
from neurocxr.deploy.deployment import Deployment
from neurocxr.deploy.export import DEFAULT_LAVA_SAMPLES, EXPORT_FILES, export_loihi
from neurocxr.deploy.nir_file import DEFAULT_PARITY_SAMPLES, export_nir_graph
from neurocxr.energy.estimate import estimate_energy as _estimate
from neurocxr.energy.profiles import get_profile, load_profiles
from neurocxr.errors import Interrupted, ModelKindError, NeurocxrError, SimulationError
from neurocxr.evaluation.explain import ExplainResult, write_explanations
from neurocxr.evaluation.robustness import RobustnessResult
from neurocxr.evaluation.run import ClinicalEvaluation, check_request, clinical_evaluation
from neurocxr.evaluation.uncertainty import UncertaintyResult
from neurocxr.exporters.model_checks import check_model_options, check_report_models
from neurocxr.exporters.onnx import check_onnx_equivalence, export_onnx
from neurocxr.exporters.program import LoihiProgram
from neurocxr.fileio import staged_output, write_json
from neurocxr.hardware_sims.emulator import emulate as _emulate
from neurocxr.hardware_sims.results import LayerCounts, RunResult
from neurocxr.metrics import clinical_metrics
from neurocxr.models import MODEL_REGISTRY, model_info
from neurocxr.models.loaded import LoadedModel, float_logits, load
from neurocxr.provenance import provenance
from neurocxr.report import read_sweep, write_report
from neurocxr.report.stage import DEFAULT_SNN_PROFILES, energy_report_stage
from neurocxr.sweep import load_sweep_config, run_sweep
from neurocxr.training.gan import SganConfig, balance_with_sgan, record_in_checkpoint, sgan_files
from neurocxr.training.train import lever_configs
from neurocxr.training.train import train as _train
from neurocxr.validation import (
    check_both_classes,
    check_choice,
    check_finite_inputs,
    check_float,
    check_int,
    check_split,
    describe_file,
    file_kind,
    refuse_unused_options,
    show_progress,
)

__all__ = [
    "load",
    "train",
    "evaluate",
    "explain",
    "export",
    "export_loihi",
    "export_onnx_checkpoint",
    "inspect_netx",
    "emulate",
    "estimate_energy",
    "energy_report",
    "sweep",
    "data_info",
    "fetch_data",
    "list_models",
    "demo",
    "TrainSummary",
    "EvaluationResult",
    "ExplainResult",
    "OnnxExport",
    "NetxInspection",
    "SweepRun",
    "DataInfo",
    "FetchedData",
    "ModelSummary",
    "DemoResult",
]


def emulate(program: Any, inputs: Any, *, raw_bias: bool = False, **kwargs: Any) -> Any:
    """Run a LoihiProgram on the batched fixed-point emulator (see neurocxr.hardware_sims.emulator):
    the one emulate entry, with the one input convention every backend shares
    (`neurocxr.hardware_sims.protocol.coerce_inputs`; `Deployment.run` and the engine itself follow it).

    For programs whose input is a bias (``direct`` encoding), ``inputs`` are images ``[B, C, H, W]``
    by the one pixel rule (README "Image values"): float in [0, 1] (kept in their dtype), uint8
    divided by 255, uint16 by 65535. Integer input-bias mantissas go in as they are only with
    ``raw_bias=True``; any other integer array is refused rather than guessed at, as are floats
    outside [0, 1], NaN/inf, an empty batch, a meta-device tensor, and anything but a LoihiProgram
    as ``program``. Spike-input programs take 0/1 trains ``[T, B, *shape]``. ``kwargs`` go to the
    engine (num_steps, record, batch_size, progress, threads).
    """

    _check_program(program, "emulate")
    return _emulate(
        program, _emulator_inputs(program, inputs, raw_bias), raw_bias=raw_bias, **kwargs
    )


def _check_program(program: Any, where: str) -> None:
    """Refuse anything but a LoihiProgram with a message saying how to get one from what was given."""

    if isinstance(program, LoihiProgram):
        return
    if isinstance(program, (str, Path)):
        got = f"the path {program}"
        how = (
            "read a netx file with neurocxr.exporters.netx.read_netx(path), or export a checkpoint with "
            "neurocxr.export_loihi(checkpoint, out).program"
        )
    elif hasattr(program, "program") and hasattr(program, "report"):
        got, how = "an export result", "pass its .program"
    elif isinstance(program, (torch.nn.Module, LoadedModel)):
        got, how = "a model", "export it first: neurocxr.export_loihi(model).program"
    else:
        got, how = (
            f"a {type(program).__name__}",
            "export a checkpoint with neurocxr.export_loihi(checkpoint).program",
        )
    raise SimulationError(f"{where} takes a Loihi program, got {got}; {how}")


def _emulator_inputs(program: Any, inputs: Any, raw_bias: bool) -> np.ndarray:
    """What the engine's `coerce_inputs` does not check (meta tensors, paths, non-numbers, empty
    batches, NaN/inf); the pixel rule and the raw-bias distinction are the engine's own."""

    if isinstance(inputs, torch.Tensor) and inputs.is_meta:
        raise SimulationError(
            "inputs are a tensor on the meta device, which holds no values; pass real images "
            "(a CPU or GPU tensor, or a numpy array)"
        )
    if isinstance(inputs, (str, Path)):
        raise SimulationError(
            f"inputs must be an array of images or spikes, got the path {inputs}; load it first"
        )
    try:
        arr = (
            inputs.detach().cpu().numpy()
            if isinstance(inputs, torch.Tensor)
            else np.asarray(inputs)
        )
    except (TypeError, ValueError) as exc:
        raise SimulationError(
            f"inputs must be an array of images or spikes, got {type(inputs).__name__} ({exc})"
        ) from None
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise SimulationError(
            f"inputs must be numbers (images or 0/1 spikes), got an array of {arr.dtype}"
        )
    batch_axis = 0 if getattr(program, "input_kind", None) == "bias" else 1
    if arr.ndim <= batch_axis or arr.shape[batch_axis] == 0 or arr.size == 0:
        raise SimulationError(
            f"no inputs: the batch has shape {arr.shape} (0 samples); pass at least one sample"
        )
    check_finite_inputs(arr, "emulator inputs")
    return arr


def estimate_energy(counts: Any, profile: Any = "loihi", **kwargs: Any) -> Any:
    """Energy per inference from per-layer counts on a device profile (see neurocxr.energy.estimate)."""

    if isinstance(counts, RunResult):
        raise NeurocxrError(
            "estimate_energy takes per-layer counts, got a run result; pass run.counts"
        )
    if isinstance(counts, (str, Path, dict)) or not isinstance(counts, Iterable):
        raise NeurocxrError(
            f"estimate_energy takes per-layer counts (run.counts), got {type(counts).__name__}"
        )
    counts = list(counts)
    wrong = [type(c).__name__ for c in counts if not isinstance(c, LayerCounts)]
    if wrong:
        raise NeurocxrError(
            f"estimate_energy takes a list of LayerCounts (run.counts), got {wrong[0]} in it"
        )
    if any(c.num_samples == 0 for c in counts):
        raise NeurocxrError(
            "the counts cover 0 samples (an empty batch was run); run at least one sample"
        )
    return _estimate(counts, profile, **kwargs)


# ----------------------------------------------------------------------------------------------
# Training and evaluation


class _DictView:
    """``result["key"]`` reads the field of that name in ``to_dict()``: the API returned plain dicts
    before these dataclasses, and callers (and the JSON files) keep working unchanged."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)


@dataclass
class TrainSummary(_DictView):
    """What `train` returns: the checkpoint written, its best epoch, validation metrics and how it was made."""

    model: str
    checkpoint: str
    best_epoch: int
    threshold: float
    val: dict[str, Any]
    seconds_per_epoch: float
    data: str
    synthetic: bool
    result: Any  # neurocxr.training.train.TrainResult (model, configs, history)
    sgan: dict[str, Any] | None = None
    conversion: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The dict `train` returned before TrainSummary existed, key for key."""
        return {
            "model": self.model,
            "checkpoint": self.checkpoint,
            "best_epoch": self.best_epoch,
            "threshold": self.threshold,
            "val": self.val,
            "seconds_per_epoch": self.seconds_per_epoch,
            "data": self.data,
            "synthetic": self.synthetic,
            "result": self.result,
            "sgan": self.sgan,
            "conversion": self.conversion,
        }


def train(
    model: str = "snn_conv",
    *,
    data: str | Path | None = None,
    out: str | Path = "runs/train",
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    num_steps: int = 16,
    encoding: str | None = None,
    image_size: int = 28,
    seed: int = 0,
    augment: bool | str = "none",
    max_train_samples: int | None = None,
    force: bool = False,
    label: str | None = None,
    balance: str = "weights",
    depth: int | None = None,
    width: float = 1.0,
    convert_from: str | Path | None = None,
    teacher: str | Path | None = None,
    distill_weight: float | None = None,
    feature_distill: float = 0.0,
    strides: Sequence[int] | None = None,
    regulariser: float = 0.0,
    qat_epochs: int = 0,
    prune: float = 0.0,
) -> TrainSummary:
    """Train ``model`` and write ``<out>/<model>.pt`` (best epoch by validation AUC).

    The accuracy/energy levers carry the same names as in a sweep grid (`neurocxr.training.train.LEVERS`,
    mapped by `neurocxr.training.train.lever_configs`): ``convert_from`` (a trained cnn_vgg checkpoint;
    model snn_vgg; ``epochs=0`` keeps the converted network, more fine-tunes it), ``teacher`` (CNN
    checkpoint to distil from, ``distill_weight``), ``feature_distill`` (weight of feature
    distillation from ``teacher``, or from the ``convert_from`` CNN), ``depth``/``width``/``strides``
    (snn_vgg's and cnn_vgg's VGG plan; width also scales other models), ``augment`` (none | light |
    shift), ``regulariser`` (chip-cost lambda), ``num_steps``, ``qat_epochs``, ``prune`` (fraction of
    each SNN layer's weights zeroed by magnitude while training). ``encoding`` (SNN input; one of
    `neurocxr.data.encoding.ENCODINGS`): None means direct, or regular spike trains with ``convert_from``.

    ``balance``: weights (class-weighted loss) | sampler | none | sgan (normal images from a Double
    SGAN trained on the training normals balance the split; `neurocxr.training.gan`; a PNG grid of samples
    and the generator are written next to the checkpoint)."""

    # Both configs are checked (ConfigError, one line in the CLI) before any folder or file exists.
    check_choice("balance", balance, ("weights", "sampler", "none", "sgan"))
    config, tc = lever_configs(
        model,
        image_size=image_size,
        num_steps=num_steps,
        encoding=encoding,
        depth=depth,
        width=width,
        convert_from=None if convert_from is None else str(convert_from),
        teacher=None if teacher is None else str(teacher),
        distill_weight=distill_weight,
        feature_distill=feature_distill,
        strides=strides,
        augment=augment,
        regulariser=regulariser,
        qat_epochs=qat_epochs,
        prune=prune,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        max_train_samples=max_train_samples,
        balance="none" if balance == "sgan" else balance,
    )
    check_model_options(config)  # an encoding a CNN ignores, an image size export would refuse
    ckpt_name = f"{label or model}.pt"
    out_dir = Path(out)
    files = [ckpt_name] + (sgan_files(label or model) if balance == "sgan" else [])
    # The checkpoint is staged and moved into place when training ends: Ctrl-C leaves nothing behind.
    with staged_output(out_dir, files, force) as stage:
        splits = load_dataset(data, image_size=image_size)
        sgan_record = None
        if balance == "sgan":
            splits, sgan_record = balance_with_sgan(
                splits,
                SganConfig(seed=seed),
                stage,
                prefix=label or model,
                progress=show_progress(),
            )
        result = _train(
            config, splits, tc, progress=show_progress(), checkpoint_path=stage / ckpt_name
        )
        if sgan_record is not None:
            record_in_checkpoint(stage / ckpt_name, sgan_record)
    result.checkpoint_path = out_dir / ckpt_name
    if sgan_record is not None:
        sgan_record = {
            **sgan_record,
            "samples_png": str(out_dir / sgan_record["samples_png"]),
            "generator_weights": str(out_dir / sgan_record["generator_weights"]),
        }
    return TrainSummary(
        model=model,
        checkpoint=str(out_dir / ckpt_name),
        best_epoch=result.best_epoch,
        threshold=result.threshold,
        val=result.val_metrics.to_dict(),
        seconds_per_epoch=result.seconds_per_epoch,
        data=splits.source,
        synthetic=splits.synthetic,
        result=result,
        sgan=sgan_record,
        conversion=result.conversion,
    )


@dataclass
class EvaluationResult(_DictView):
    """What `evaluate` returns: the metrics on a split (``to_dict()`` is what ``json`` holds) and,
    when asked for, the robustness / uncertainty results and their files."""

    model: str
    split: str
    data: str
    synthetic: bool
    metrics: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    json_path: Path | None = None
    robustness: RobustnessResult | None = None
    uncertainty: UncertaintyResult | None = None
    files: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The metrics record (the ``json`` file's content, as before this dataclass existed)."""
        return {
            "model": self.model,
            "split": self.split,
            "data": self.data,
            "synthetic": self.synthetic,
            "metrics": self.metrics,
            "warnings": self.warnings,
        }

    @property
    def clinical(self) -> ClinicalEvaluation:
        """The robustness / uncertainty part (its ``to_dict()`` is what
        `neurocxr.evaluation.run.summary_lines` reads)."""
        return ClinicalEvaluation(
            robustness=self.robustness, uncertainty=self.uncertainty, files=self.files
        )


def evaluate(
    checkpoint: str | Path | LoadedModel,
    *,
    data: str | Path | None = None,
    split: str = "test",
    json: str | Path | None = None,
    robustness: bool = False,
    uncertainty: bool = False,
    mc_passes: int | None = None,
    chip: bool | None = None,
    max_samples: int | None = None,
    out: str | Path = "runs/evaluate",
    force: bool = False,
    progress: bool | None = None,
    on_metrics: Callable[[EvaluationResult], None] | None = None,
) -> EvaluationResult:
    """Clinical metrics at the checkpoint's validation-chosen threshold (`neurocxr evaluate`).

    ``json``: also write the metrics record there. ``robustness`` / ``uncertainty`` (implied by
    ``mc_passes``): degradation sweeps and calibration on the first ``max_samples`` images of the
    split, written to ``out`` as robustness.{json,png} / uncertainty.{json,png}; ``chip`` runs
    deployable SNNs on the Loihi emulator too (default True). Every request is checked before any
    work or file: ``max_samples`` or ``chip`` without robustness / uncertainty is refused.
    ``on_metrics(result)`` hears the metrics as soon as they exist, before the slower evaluations."""

    uncertainty = uncertainty or mc_passes is not None
    if not (robustness or uncertainty):
        refuse_unused_options(
            {
                "max_samples / --max-samples": max_samples,
                f"chip / {'--chip' if chip else '--no-chip'}": chip,
            },
            "to robustness / uncertainty (--robustness / --uncertainty) only (the metrics "
            "table always uses the whole split and the float model)",
        )
    if robustness or uncertainty:  # refuse bad requests before any work or output
        check_request(
            checkpoint,
            split=split,
            robustness=robustness,
            uncertainty=uncertainty,
            mc_passes=mc_passes,
            max_samples=max_samples,
            out=out,
            force=force,
        )
    json_path = None if json is None else Path(json)
    if json_path is not None and json_path.exists() and (json_path.is_dir() or not force):
        raise NeurocxrError(
            f"{json_path} already exists; pass force=True (--force) to overwrite it, or choose "
            "another json path (--json)"
            if not json_path.is_dir()
            else f"json (--json) {json_path} is a folder; give a file name"
        )
    result = EvaluationResult(
        **_split_metrics(checkpoint, data=data, split=split), json_path=json_path
    )
    if on_metrics is not None:
        on_metrics(result)
    if json_path is not None:
        write_json(json_path, result.to_dict())
    if robustness or uncertainty:
        try:
            extra = clinical_evaluation(
                checkpoint,
                data=data,
                split=split,
                robustness=robustness,
                uncertainty=uncertainty,
                mc_passes=mc_passes,
                chip=True if chip is None else chip,
                max_samples=max_samples,
                out=out,
                force=force,
                progress=show_progress(progress),
            )
        except KeyboardInterrupt:
            if json_path is not None:  # written, complete, before this step
                raise Interrupted(
                    f"wrote {json_path} (the metrics) only; no robustness / uncertainty output"
                ) from None
            raise
        result.robustness, result.uncertainty, result.files = (
            extra.robustness,
            extra.uncertainty,
            extra.files,
        )
    return result


def _split_metrics(
    checkpoint: str | Path | LoadedModel, *, data: str | Path | None, split: str
) -> dict[str, Any]:
    """The metrics record of ``checkpoint`` on ``split`` (EvaluationResult's first six fields)."""

    check_split(split)
    loaded = load(checkpoint)
    threshold = loaded.threshold  # a damaged stored threshold is refused before any work
    # Without ``data``: the data the checkpoint was trained on, never phantoms for a real-data model.
    splits = load_dataset(
        data_for_checkpoint(data, loaded.metadata), image_size=loaded.config.image_size
    )
    ds = getattr(splits, split)
    logits = float_logits(loaded, ds.images)
    scores = torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy()
    metrics = clinical_metrics(ds.labels.numpy(), scores, threshold=threshold)
    warnings = []
    missing = [
        name for k, name in enumerate(("normal", "pneumonia")) if not bool((ds.labels == k).any())
    ]
    if missing:
        warnings.append(
            f"the {split} split has no {' or '.join(missing)} images: ROC AUC, MCC and kappa are "
            "undefined (NaN) and only one of sensitivity/specificity means anything"
        )
    return {
        "model": loaded.name,
        "split": split,
        "data": ds.source,
        "synthetic": bool(ds.synthetic),
        "metrics": metrics.to_dict(),
        "warnings": warnings,
    }


@dataclass
class OnnxExport:
    """What an ONNX export returns: the file and its check against PyTorch (`check_onnx_equivalence`)."""

    path: Path
    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float
    num_samples: int
    atol: float
    rtol: float
    within_tolerance: bool


def export_onnx_checkpoint(
    checkpoint: str | Path | LoadedModel, out: str | Path, *, force: bool = False
) -> OnnxExport:
    """CNN baseline -> ``<out>/model.onnx``, checked with onnx.checker and against PyTorch."""

    loaded = load(checkpoint)

    if model_info(loaded.config.name).kind == "snn":
        what = checkpoint if isinstance(checkpoint, (str, Path)) else f"model {loaded.name!r}"
        raise ModelKindError(
            f"{what} is an SNN ({loaded.config.name}); ONNX export is for CNN baselines: export it "
            "with --target loihi (NIR + netx for Loihi 2) or --target nir"
        )
    shape = (1, loaded.config.in_channels, loaded.config.image_size, loaded.config.image_size)
    # Exported and checked in a staging folder: a model that fails the check leaves no model.onnx.
    with staged_output(out, ["model.onnx"], force) as stage:
        staged = export_onnx(loaded.model, stage / "model.onnx", input_shape=shape)
        probe = torch.rand((4,) + shape[1:], generator=torch.Generator().manual_seed(0)).numpy()
        check = check_onnx_equivalence(loaded.model, staged, probe)
    return OnnxExport(path=Path(out) / "model.onnx", **check.to_dict())


def export(
    checkpoint: str | Path | LoadedModel,
    *,
    out: str | Path,
    target: str = "loihi",
    data: str | Path | None = None,
    split: str | None = None,
    max_samples: int | None = None,
    lava_samples: int | None = None,
    allow_clipping: bool = False,
    force: bool = False,
    dt: float | None = None,
    num_steps: int | None = None,
    encoding: str | None = None,
    spikes: str | Path | None = None,
    progress: bool | None = None,
) -> Any:
    """`neurocxr export`: a checkpoint to Loihi 2 (NIR + netx + parity report; `LoihiExport`), to NIR
    only (``target="nir"``) or, for CNN baselines, to ONNX (`OnnxExport`); a ``.nir`` file (from
    neurocxr, Sinabs, snnTorch, Norse, ...) to Loihi, its parity checked on spike trains (``spikes``:
    a ``.npy`` of [T, B, *shape], default random trains; ``max_samples`` of them). ``dt``,
    ``num_steps`` and ``encoding`` apply to a ``.nir`` file only (a checkpoint records its own).
    ``data``, ``split`` (default "test"), ``max_samples`` and ``lava_samples`` (default 3) feed the
    Loihi parity check: given to a target without one (nir, onnx) they are refused, not ignored."""

    if isinstance(checkpoint, (str, Path)) and Path(checkpoint).suffix.lower() == ".nir":
        if target != "loihi":
            raise NeurocxrError(
                f"a .nir file exports only to --target loihi (it is already NIR), not {target!r}"
            )
        refuse_unused_options(
            {"data / --data": data, "split / --split": split},
            "to a checkpoint's parity check only (a .nir file's parity runs on spike trains: "
            "--spikes, or random trains)",
        )
        return export_nir_graph(
            checkpoint,
            out,
            dt=dt,
            num_steps=num_steps,
            encoding=encoding,
            input_path=spikes,
            samples=max_samples or DEFAULT_PARITY_SAMPLES,
            lava_samples=DEFAULT_LAVA_SAMPLES if lava_samples is None else lava_samples,
            allow_clipping=allow_clipping,
            force=force,
        )
    refuse_unused_options(
        {
            "dt / --dt": dt,
            "num_steps / --num-steps": num_steps,
            "encoding / --encoding": encoding,
            "spikes / --spikes": spikes,
        },
        "to a .nir input only (a checkpoint records its own time steps and encoding)",
    )
    if target in ("onnx", "nir"):  # no parity check: nothing would read these
        refuse_unused_options(
            {
                "data / --data": data,
                "split / --split": split,
                "max_samples / --max-samples": max_samples,
                "lava_samples / --lava-samples": lava_samples,
            },
            f"to the parity check of --target loihi only (--target {target} runs none)",
        )
    if target == "onnx":
        return export_onnx_checkpoint(checkpoint, out, force=force)
    return export_loihi(
        checkpoint,
        out,
        target=target,
        data=data,
        split="test" if split is None else split,
        max_samples=max_samples,
        lava_samples=DEFAULT_LAVA_SAMPLES if lava_samples is None else lava_samples,
        allow_clipping=allow_clipping,
        force=force,
        progress=progress,
    )


def explain(
    checkpoint: str | Path | LoadedModel,
    images: Sequence[str | Path],
    *,
    out: str | Path,
    mc_passes: int = 20,
    chip: bool = True,
    layer: str | None = None,
    force: bool = False,
) -> ExplainResult:
    """`neurocxr explain`: Grad-CAM (+ BayesGrad-CAM with dropout, ``mc_passes``; 0 = off) for CNNs,
    spike-activity maps (``chip``: from the Loihi emulator) and Integrated Gradients for SNNs; one
    PNG per image, index.html and explanations.json in ``out`` (atomically). ``layer``: the Conv2d
    for Grad-CAM by module name (default: the last feature conv)."""

    return write_explanations(
        checkpoint, images, out, mc_passes=mc_passes, chip=chip, force=force, layer=layer
    )


# ----------------------------------------------------------------------------------------------
# netx files, data sets, models


@dataclass
class NetxInspection:
    """What `inspect_netx` returns: the program read, its Loihi 2 resources, the inputs emulated
    (``inputs_description`` says what they are), the run with its per-layer counts, and the energy
    estimate on ``energy.device``."""

    path: Path
    program: Any  # LoihiProgram
    resources: Any  # exporters.resources.Resources
    read_notes: list[str]
    inputs: np.ndarray
    inputs_description: str
    run: Any  # RunResult
    energy: Any  # EnergyEstimate

    @property
    def counts(self) -> list[Any]:
        return list(self.run.counts)


def inspect_netx(
    path: str | Path,
    *,
    samples: int = 16,
    rate: float = 0.1,
    data: str | Path | None = None,
    num_steps: int | None = None,
    input_scale: float | None = None,
    profile: str = "loihi",
    seed: int = 0,
    progress: bool | None = None,
) -> NetxInspection:
    """`neurocxr netx`: read any netx file (ours, or one trained with slayer), its Loihi 2 resources,
    and an emulated run on ``samples`` inputs: random spike trains firing with probability ``rate``
    (spike-input networks, seeded by ``seed``) or the test images of ``data`` (bias-input networks
    whose input matches their size); counts and the energy estimate on ``profile``. ``num_steps`` /
    ``input_scale``: when the file does not state them (defaults 16 and 1)."""

    check_int("samples / --samples", samples, 1, 1_000_000)
    check_float("rate / --rate", rate, 0.0, 1.0)
    check_int("num_steps / --num-steps", num_steps, 1, 10_000, allow_none=True)
    if input_scale is not None:
        check_float("input_scale / --input-scale", input_scale, 1e-6, 1e6)
    get_profile(profile)  # an unknown profile is refused before the run, not after it
    path = Path(path)
    if file_kind(path) not in (
        "netx",
        "hdf5",
        "missing",
        "unknown",
    ):  # a .pt, .npz, folder...: say what it is
        raise NeurocxrError(
            f"{path} {describe_file(path)}; `neurocxr netx` reads Loihi netx (HDF5) files"
        )
    deployment = Deployment.from_netx(path, num_steps=num_steps, input_scale=input_scale)
    program = deployment.program
    rng = np.random.default_rng(seed)
    if program.input_kind == "spikes":
        inputs = (rng.random((program.num_steps, samples, *program.input_shape)) < rate).astype(
            np.int8
        )
        what = f"{samples} samples of random input spikes (p={rate})"
    else:
        ds = load_dataset(data, image_size=program.input_shape[-1]).test
        if tuple(ds.images.shape[1:]) != tuple(program.input_shape):
            raise NeurocxrError(
                f"the network's input is {program.input_shape} but the data gives {tuple(ds.images.shape[1:])}"
            )
        inputs = ds.images[:samples].numpy()
        what = f"{len(inputs)} images of {ds.source}"
    run = deployment.run(inputs, progress=show_progress(progress))
    energy = deployment.energy(run, [profile])[0]
    return NetxInspection(
        path=path,
        program=program,
        resources=deployment.resources,
        read_notes=list(program.metadata.get("read_notes", [])),
        inputs=inputs,
        inputs_description=what,
        run=run,
        energy=energy,
    )


def data_info(path: str | Path | None, *, image_size: int | None = None) -> DataInfo:
    """`neurocxr data info`: an .npz archive or Kermany-style folder (``"synthetic"``: the phantoms)
    at its native size unless ``image_size`` is given."""

    return info(path, image_size)


@dataclass
class FetchedData:
    """What `fetch_data` returns: the PneumoniaMNIST archive on disk and its image size."""

    path: Path
    size: int


def fetch_data(*, size: int = 28, root: str | Path = Path.home() / ".medmnist") -> FetchedData:
    """`neurocxr data fetch`: download PneumoniaMNIST (``size`` 28, 64, 128 or 224) through
    `medmnist` into ``root`` (needs internet access; MD5-checked; only verifies a file already there)."""

    return FetchedData(path=fetch_pneumoniamnist(size=size, root=Path(root)), size=size)


@dataclass
class ModelSummary:
    """One entry of `list_models`: a model that can be built by name."""

    name: str
    kind: str  # "snn" or "cnn"
    loihi_deployable: bool
    description: str


def list_models() -> list[ModelSummary]:
    """`neurocxr models`: every registered model, by name."""

    return [
        ModelSummary(name, info.kind, info.loihi_deployable, info.description)
        for name, info in sorted(MODEL_REGISTRY.items())
    ]


# ----------------------------------------------------------------------------------------------
# Sweep


@dataclass
class SweepRun:
    """What `sweep` returns: the checked configuration and the sweep's result (rows, Pareto front,
    counts, files; `neurocxr.sweep.SweepResult`)."""

    config: Any  # neurocxr.sweep.SweepConfig
    result: Any  # neurocxr.sweep.SweepResult


def sweep(
    config: str | Path,
    *,
    out: str | Path,
    address: str | None = None,
    num_cpus: int | None = None,
    max_concurrent: int | None = None,
    cpus_per_trial: float | None = None,
    progress: bool | None = None,
    max_trials: int | None = None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
) -> SweepRun:
    """`neurocxr sweep`: train, export, emulate and estimate energy for every grid point of the TOML
    ``config`` on Ray Tune into ``out`` (rerunning skips finished trials). ``address``: join a Ray
    cluster (default: start Ray locally with ``num_cpus``); ``max_trials`` confirms a grid of more
    than 1000 combinations; ``on_trial(row)`` hears each finished trial."""

    cfg = load_sweep_config(config, max_trials=max_trials)
    result = run_sweep(
        cfg,
        out,
        address=address,
        num_cpus=num_cpus,
        max_concurrent=max_concurrent,
        cpus_per_trial=cpus_per_trial,
        progress=progress,
        on_trial=on_trial,
    )
    return SweepRun(config=cfg, result=result)


# ----------------------------------------------------------------------------------------------
# Energy report


def energy_report(
    checkpoint: str | Path | LoadedModel,
    *,
    baselines: Iterable[str | Path | LoadedModel] = (),
    data: str | Path | None = None,
    out: str | Path | None = "runs/energy",
    profiles: Sequence[str] | None = None,
    profiles_file: str | Path | None = None,
    max_samples: int | None = None,
    measure: bool = True,
    measure_seconds: float = 3.0,
    force: bool = False,
    export_report: dict[str, Any] | None = None,
    sweep: str | Path | None = None,
    on_status: Any = None,
) -> Any:
    """Count on the emulator, estimate per profile, measure what this machine allows; returns the
    `Report` (the `neurocxr.report.stage.energy_report_stage` value) and, unless ``out`` is None, writes
    report.{html,json} there (``report.paths``). ``sweep``: a `neurocxr sweep` output folder or
    results table to plot beside the models. ``on_status(message)`` hears about slow steps."""

    # Every option is checked before any work or any file (one-line errors, exit code 2 in the CLI).
    max_samples = check_int("max_samples / --max-samples", max_samples, 1, allow_none=True)
    measure_seconds = float(
        check_float(
            "measure_seconds / --measure-seconds", measure_seconds, 0.0, 3600.0, low_open=True
        )
        or 0.0
    )  # never None: allow_none is off
    sweep_table = read_sweep(sweep) if sweep is not None else None
    extra_profiles = load_profiles(profiles_file) if profiles_file is not None else []
    # The file's profiles are passed down to this call only (never registered process-wide);
    # they shadow built-in profiles of the same name, as registration would.
    extra_by_name = {p.name: p for p in extra_profiles}
    names = (
        list(profiles)
        if profiles
        else list(DEFAULT_SNN_PROFILES) + [p.name for p in extra_profiles]
    )
    chosen = [extra_by_name[n] if n in extra_by_name else get_profile(n) for n in names]

    snn = load(checkpoint)
    baselines = list(baselines)
    base_models = [load(b) for b in baselines]
    # SNN + CNN baselines, each under its own label (two cnn_small files get two rows, two records).
    base_models = check_report_models(snn, checkpoint, base_models, baselines)
    data = data_for_checkpoint(data, snn.metadata)
    splits = load_dataset(data, image_size=snn.config.image_size)

    check_both_classes(
        splits.val.labels, "the validation split", "choosing the chip's operating threshold"
    )
    paths: dict[str, str | os.PathLike[str] | None] = {
        snn.name: checkpoint if isinstance(checkpoint, (str, Path)) else None
    }
    for b_in, b in zip(baselines, base_models):
        paths[b.name] = b_in if isinstance(b_in, (str, Path)) else None
    data_file = (
        data if data is not None and data != "synthetic" and Path(str(data)).is_file() else None
    )
    prov = provenance(checkpoints=paths, data=data_file, data_source=splits.source)

    def build() -> Any:
        return energy_report_stage(
            snn,
            splits,
            baselines=base_models,
            profiles=chosen,
            max_samples=max_samples,
            measure=measure,
            measure_seconds=measure_seconds,
            export_report=export_report,
            sweep=sweep_table,
            provenance=prov,
            on_status=on_status,
        )

    if out is None:
        return build()
    # The no-overwrite check happens before the work; nothing is half-written on error or Ctrl-C.
    with staged_output(out, ["report.html", "report.json"], force) as stage:
        report = build()
        write_report(report, stage)
    report.paths = (Path(out) / "report.html", Path(out) / "report.json")  # type: ignore[attr-defined]
    return report


# ----------------------------------------------------------------------------------------------
# Demo


@dataclass
class DemoResult:
    """What `demo` returns: every stage's result and the whole run's seconds."""

    snn: TrainSummary
    cnn: TrainSummary
    test: EvaluationResult
    test_cnn: EvaluationResult
    export: dict[str, Any] | None  # export_report.json's content
    report: Any  # neurocxr.report.Report
    seconds: float


def demo(
    *,
    out: str | Path = "runs/demo",
    data: str | Path | None = None,
    epochs: int = 4,
    max_train_samples: int | None = None,
    lava_samples: int = 2,
    on_event: Callable[[str, Any], None] | None = None,
    force: bool = False,
) -> DemoResult:
    """Train the default SNN and a CNN baseline briefly, export to Loihi, verify, count, estimate,
    measure, report. Returns every stage's result; prints nothing. ``on_event(name, value)`` hears
    "stage" (a title, before each stage), "trained", "exported", "status" and "report" (the CLI
    prints them as they come). Existing outputs are refused up front unless ``force``."""

    tell = on_event or (lambda name, value: None)
    out = Path(out)
    # Everything the four stages will check is checked now, so a refusal never follows a training run.
    check_int("epochs / --epochs", epochs, 1)
    check_int("max_train_samples / --max-train-samples", max_train_samples, 2, allow_none=True)
    check_int("lava_samples / --lava-samples", lava_samples, 0)
    outputs = [out / "snn_conv.pt", out / "cnn_small.pt", out / "report.html", out / "report.json"]
    outputs += [out / "loihi" / name for name in EXPORT_FILES["loihi"]]
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not force:
        raise NeurocxrError(
            f"{', '.join(existing)} already exist; pass force=True (--force) to overwrite, or "
            "choose another out folder (-o)"
        )
    t0 = time.perf_counter()
    tell("stage", "1/4 train the default SNN (snn_conv) and the small CNN baseline")
    snn = train(
        "snn_conv",
        data=data,
        out=out,
        epochs=epochs,
        max_train_samples=max_train_samples,
        force=force,
    )
    cnn = train(
        "cnn_small",
        data=data,
        out=out,
        epochs=max(2, epochs // 2),
        max_train_samples=max_train_samples,
        force=force,
    )
    ev = evaluate(snn.checkpoint, data=data, split="test")
    ev_cnn = evaluate(cnn.checkpoint, data=data, split="test")
    tell(
        "trained",
        {"snn": snn, "cnn": cnn, "test": {"snn_conv": ev.metrics, "cnn_small": ev_cnn.metrics}},
    )

    tell("stage", "2/4 export snn_conv to Loihi 2 (NIR -> netx) and verify on emulator + Lava")
    exp = export_loihi(
        snn.checkpoint, out / "loihi", data=data, lava_samples=lava_samples, force=force
    )
    tell("exported", exp)
    export = exp.report.to_dict() if exp.report is not None else None

    tell("stage", "3/4 count, estimate, measure")
    rep = energy_report(
        snn.checkpoint,
        baselines=[cnn.checkpoint],
        data=data,
        out=out,
        force=force,
        export_report=export,
        on_status=lambda message: tell("status", message),
    )
    tell("stage", "4/4 report")
    tell("report", rep)
    return DemoResult(
        snn=snn,
        cnn=cnn,
        test=ev,
        test_cnn=ev_cnn,
        export=export,
        report=rep,
        seconds=time.perf_counter() - t0,
    )
