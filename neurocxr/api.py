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
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from neurocxr.errors import NeurocxrError
from neurocxr.deployment import chip_scores
from neurocxr.pipeline import (
    LoadedModel,
    encoded_inputs,
    export_loihi,
    float_logits,
    load,
    to_program,
)


def emulate(program: Any, inputs: Any, *, raw_bias: bool = False, **kwargs: Any) -> Any:
    """Run a LoihiProgram on the batched fixed-point emulator (see neurocxr.hardware_sims.emulator).

    For programs whose input is a bias (``direct`` encoding), ``inputs`` are images by the one
    pixel rule (README "Image values"): float in [0, 1], uint8 divided by 255, uint16 by 65535.
    Integer input-bias mantissas go in as they are only with ``raw_bias=True``; any other integer
    array is refused rather than guessed at, as are floats outside [0, 1], NaN/inf, an empty batch,
    a meta-device tensor, and anything but a LoihiProgram as ``program``.
    """
    from neurocxr.hardware_sims.emulator import emulate as _emulate

    _check_program(program, "emulate")
    return _emulate(program, _emulator_inputs(program, inputs, raw_bias), **kwargs)


def _check_program(program: Any, where: str) -> None:
    """Refuse anything but a LoihiProgram with a message saying how to get one from what was given."""
    from neurocxr.errors import SimulationError
    from neurocxr.exporters.program import LoihiProgram

    if isinstance(program, LoihiProgram):
        return
    if isinstance(program, (str, Path)):
        got = f"the path {program}"
        how = "read a netx file with neurocxr.exporters.netx.read_netx(path), or export a checkpoint with " \
              "neurocxr.export_loihi(checkpoint, out).program"
    elif hasattr(program, "program") and hasattr(program, "report"):
        got, how = "an export result", "pass its .program"
    elif isinstance(program, (torch.nn.Module, LoadedModel)):
        got, how = "a model", "export it first: neurocxr.export_loihi(model).program"
    else:
        got, how = f"a {type(program).__name__}", "export a checkpoint with neurocxr.export_loihi(checkpoint).program"
    raise SimulationError(f"{where} takes a Loihi program, got {got}; {how}")


def _emulator_inputs(program: Any, inputs: Any, raw_bias: bool) -> np.ndarray:
    """The uint8-image / raw-bias distinction, made here so the emulator never guesses."""
    from neurocxr.errors import SimulationError
    from neurocxr.validation import check_finite_inputs, images_to_unit_range

    if isinstance(inputs, torch.Tensor) and inputs.is_meta:
        raise SimulationError("inputs are a tensor on the meta device, which holds no values; pass real images "
                              "(a CPU or GPU tensor, or a numpy array)")
    if isinstance(inputs, (str, Path)):
        raise SimulationError(f"inputs must be an array of images or spikes, got the path {inputs}; load it first")
    try:
        arr = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    except (TypeError, ValueError) as exc:
        raise SimulationError(f"inputs must be an array of images or spikes, got {type(inputs).__name__} ({exc})") from None
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise SimulationError(f"inputs must be numbers (images or 0/1 spikes), got an array of {arr.dtype}")
    batch_axis = 0 if getattr(program, "input_kind", None) == "bias" else 1
    if arr.ndim <= batch_axis or arr.shape[batch_axis] == 0 or arr.size == 0:
        raise SimulationError(f"no inputs: the batch has shape {arr.shape} (0 samples); pass at least one sample")
    check_finite_inputs(arr, "emulator inputs")
    integer = np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_
    if getattr(program, "input_kind", None) != "bias":
        if raw_bias:
            raise SimulationError("raw_bias=True applies to bias-input programs; this one takes spike trains")
        return arr
    if raw_bias:
        if not integer:
            raise SimulationError(f"raw_bias=True needs an integer array of bias mantissas, got {arr.dtype}")
        return arr.astype(np.int64)
    if integer and arr.dtype not in (np.uint8, np.uint16):
        raise SimulationError(
            f"{arr.dtype} inputs are ambiguous: pass images as float in [0, 1], uint8 in 0-255 or uint16 in "
            "0-65535, or raw input-bias mantissas with raw_bias=True"
        )
    # The one pixel rule of every entry point: uint8 / 255, uint16 / 65535, floats in [0, 1].
    return images_to_unit_range(arr, "emulator inputs")


def estimate_energy(counts: Any, profile: Any = "loihi", **kwargs: Any) -> Any:
    """Energy per inference from per-layer counts on a device profile (see neurocxr.energy.estimate)."""
    from neurocxr.energy.estimate import estimate_energy as _estimate
    from neurocxr.hardware_sims.results import LayerCounts, RunResult

    if isinstance(counts, RunResult):
        raise NeurocxrError("estimate_energy takes per-layer counts, got a run result; pass run.counts")
    if isinstance(counts, (str, Path, dict)) or not isinstance(counts, Iterable):
        raise NeurocxrError(f"estimate_energy takes per-layer counts (run.counts), got {type(counts).__name__}")
    counts = list(counts)
    wrong = [type(c).__name__ for c in counts if not isinstance(c, LayerCounts)]
    if wrong:
        raise NeurocxrError(f"estimate_energy takes a list of LayerCounts (run.counts), got {wrong[0]} in it")
    if any(c.num_samples == 0 for c in counts):
        raise NeurocxrError("the counts cover 0 samples (an empty batch was run); run at least one sample")
    return _estimate(counts, profile, **kwargs)


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
    regulariser: float = 0.0,
    qat_epochs: int = 0,
) -> dict[str, Any]:
    """Train ``model`` and write ``<out>/<model>.pt`` (best epoch by validation AUC).

    The accuracy/energy levers carry the same names as in a sweep grid (`neurocxr.training.LEVERS`,
    mapped by `neurocxr.training.lever_configs`): ``convert_from`` (a trained cnn_vgg checkpoint;
    model snn_vgg; ``epochs=0`` keeps the converted network, more fine-tunes it), ``teacher`` (CNN
    checkpoint to distil from, ``distill_weight``), ``depth``/``width`` (snn_vgg's VGG plan; width
    also scales other models), ``augment`` (none | light | shift), ``regulariser`` (chip-cost
    lambda), ``num_steps``, ``qat_epochs``.

    ``balance``: weights (class-weighted loss) | sampler | none | sgan (normal images from a Double
    SGAN trained on the training normals balance the split; `neurocxr.gan`; a PNG grid of samples
    and the generator are written next to the checkpoint)."""
    from neurocxr.data import load_dataset
    from neurocxr.fileio import staged_output
    from neurocxr.training import lever_configs
    from neurocxr.training import train as _train
    from neurocxr.gan import SganConfig, balance_with_sgan, record_in_checkpoint, sgan_files
    from neurocxr.validation import check_choice, check_model_options, show_progress

    # Both configs are checked (ConfigError, one line in the CLI) before any folder or file exists.
    check_choice("balance", balance, ("weights", "sampler", "none", "sgan"))
    config, tc = lever_configs(
        model, image_size=image_size, num_steps=num_steps, encoding=encoding, depth=depth, width=width,
        convert_from=None if convert_from is None else str(convert_from),
        teacher=None if teacher is None else str(teacher), distill_weight=distill_weight, augment=augment,
        regulariser=regulariser, qat_epochs=qat_epochs,
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, max_train_samples=max_train_samples,
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
            splits, sgan_record = balance_with_sgan(splits, SganConfig(seed=seed), stage, prefix=label or model,
                                                    progress=show_progress())
        result = _train(config, splits, tc, progress=show_progress(), checkpoint_path=stage / ckpt_name)
        if sgan_record is not None:
            record_in_checkpoint(stage / ckpt_name, sgan_record)
    result.checkpoint_path = out_dir / ckpt_name
    if sgan_record is not None:
        sgan_record = {**sgan_record, "samples_png": str(out_dir / sgan_record["samples_png"]),
                       "generator_weights": str(out_dir / sgan_record["generator_weights"])}
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
        "sgan": sgan_record,
        "conversion": result.conversion,
    }


def evaluate(
    checkpoint: str | Path | LoadedModel, *, data: str | Path | None = None, split: str = "test"
) -> dict[str, Any]:
    """Clinical metrics at the checkpoint's validation-chosen threshold."""
    from neurocxr.data import data_for_checkpoint, load_dataset
    from neurocxr.metrics import clinical_metrics

    from neurocxr.validation import check_split

    check_split(split)
    loaded = load(checkpoint)
    threshold = loaded.threshold  # a damaged stored threshold is refused before any work
    # Without ``data``: the data the checkpoint was trained on, never phantoms for a real-data model.
    splits = load_dataset(data_for_checkpoint(data, loaded.metadata), image_size=loaded.config.image_size)
    ds = getattr(splits, split)
    logits = float_logits(loaded, ds.images)
    scores = torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy()
    metrics = clinical_metrics(ds.labels.numpy(), scores, threshold=threshold)
    warnings = []
    missing = [name for k, name in enumerate(("normal", "pneumonia")) if not bool((ds.labels == k).any())]
    if missing:
        warnings.append(f"the {split} split has no {' or '.join(missing)} images: ROC AUC, MCC and kappa are "
                        "undefined (NaN) and only one of sensitivity/specificity means anything")
    return {
        "model": loaded.name,
        "split": split,
        "data": ds.source,
        "synthetic": bool(ds.synthetic),
        "metrics": metrics.to_dict(),
        "warnings": warnings,
    }


def export_onnx_checkpoint(checkpoint: str | Path | LoadedModel, out: str | Path, *, force: bool = False) -> dict[str, Any]:
    """CNN baseline -> ``<out>/model.onnx``, checked with onnx.checker and against PyTorch."""
    from neurocxr.exporters.onnx import check_onnx_equivalence, export_onnx
    from neurocxr.fileio import staged_output

    loaded = load(checkpoint)
    from neurocxr.models import model_info

    if model_info(loaded.config.name).kind == "snn":
        from neurocxr.errors import ModelKindError

        what = checkpoint if isinstance(checkpoint, (str, Path)) else f"model {loaded.name!r}"
        raise ModelKindError(f"{what} is an SNN ({loaded.config.name}); ONNX export is for CNN baselines: export it "
                             "with --target loihi (NIR + netx for Loihi 2) or --target nir")
    shape = (1, loaded.config.in_channels, loaded.config.image_size, loaded.config.image_size)
    # Exported and checked in a staging folder: a model that fails the check leaves no model.onnx.
    with staged_output(out, ["model.onnx"], force) as stage:
        staged = export_onnx(loaded.model, stage / "model.onnx", input_shape=shape)
        probe = torch.rand((4,) + shape[1:], generator=torch.Generator().manual_seed(0)).numpy()
        check = check_onnx_equivalence(loaded.model, staged, probe)
    return {"path": Path(out) / "model.onnx", **check}


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
    `Report` (the `neurocxr.stages.energy_report_stage` value) and, unless ``out`` is None, writes
    report.{html,json} there (``report.paths``). ``sweep``: a `neurocxr sweep` output folder or
    results table to plot beside the models. ``on_status(message)`` hears about slow steps."""
    from neurocxr.data import load_dataset
    from neurocxr.energy.profiles import get_profile, load_profiles
    from neurocxr.fileio import staged_output
    from neurocxr.provenance import provenance
    from neurocxr.validation import check_float, check_int
    from neurocxr.report import read_sweep, write_report
    from neurocxr.stages import DEFAULT_SNN_PROFILES, energy_report_stage

    # Every option is checked before any work or any file (one-line errors, exit code 2 in the CLI).
    max_samples = check_int("--max-samples", max_samples, 1, allow_none=True)
    measure_seconds = check_float("--measure-seconds", measure_seconds, 0.0, 3600.0, low_open=True)
    sweep_table = read_sweep(sweep) if sweep is not None else None
    extra_profiles = load_profiles(profiles_file) if profiles_file is not None else []
    # The file's profiles are passed down to this call only (never registered process-wide);
    # they shadow built-in profiles of the same name, as registration would.
    extra_by_name = {p.name: p for p in extra_profiles}
    names = list(profiles) if profiles else list(DEFAULT_SNN_PROFILES) + [p.name for p in extra_profiles]
    chosen = [extra_by_name[n] if n in extra_by_name else get_profile(n) for n in names]
    from neurocxr.data import data_for_checkpoint
    from neurocxr.validation import check_report_models

    snn = load(checkpoint)
    baselines = list(baselines)
    base_models = [load(b) for b in baselines]
    # SNN + CNN baselines, each under its own label (two cnn_small files get two rows, two records).
    base_models = check_report_models(snn, checkpoint, base_models, baselines)
    data = data_for_checkpoint(data, snn.metadata)
    splits = load_dataset(data, image_size=snn.config.image_size)
    from neurocxr.validation import check_both_classes

    check_both_classes(splits.val.labels, "the validation split", "choosing the chip's operating threshold")
    paths = {snn.name: checkpoint if isinstance(checkpoint, (str, Path)) else None}
    for b_in, b in zip(baselines, base_models):
        paths[b.name] = b_in if isinstance(b_in, (str, Path)) else None
    data_file = data if data is not None and data != "synthetic" and Path(str(data)).is_file() else None
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


def demo(
    *,
    out: str | Path = "runs/demo",
    data: str | Path | None = None,
    epochs: int = 4,
    max_train_samples: int | None = None,
    lava_samples: int = 2,
    on_event: Callable[[str, Any], None] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train the default SNN and a CNN baseline briefly, export to Loihi, verify, count, estimate,
    measure, report. Returns every stage's result; prints nothing. ``on_event(name, value)`` hears
    "stage" (a title, before each stage), "trained", "exported", "status" and "report" (the CLI
    prints them as they come). Existing outputs are refused up front unless ``force``."""
    from neurocxr.pipeline import EXPORT_FILES
    from neurocxr.validation import check_int

    tell = on_event or (lambda name, value: None)
    out = Path(out)
    # Everything the four stages will check is checked now, so a refusal never follows a training run.
    check_int("--epochs", epochs, 1)
    check_int("--max-train-samples", max_train_samples, 2, allow_none=True)
    check_int("--lava-samples", lava_samples, 0)
    outputs = [out / "snn_conv.pt", out / "cnn_small.pt", out / "report.html", out / "report.json"]
    outputs += [out / "loihi" / name for name in EXPORT_FILES["loihi"]]
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not force:
        raise NeurocxrError(f"{', '.join(existing)} already exist; pass --force to overwrite, or choose another -o folder")
    t0 = time.perf_counter()
    tell("stage", "1/4 train the default SNN (snn_conv) and the small CNN baseline")
    snn = train("snn_conv", data=data, out=out, epochs=epochs, max_train_samples=max_train_samples, force=force)
    cnn = train("cnn_small", data=data, out=out, epochs=max(2, epochs // 2), max_train_samples=max_train_samples, force=force)
    ev = evaluate(snn["checkpoint"], data=data, split="test")
    ev_cnn = evaluate(cnn["checkpoint"], data=data, split="test")
    tell("trained", {"snn": snn, "cnn": cnn, "test": {"snn_conv": ev["metrics"], "cnn_small": ev_cnn["metrics"]}})

    tell("stage", "2/4 export snn_conv to Loihi 2 (NIR -> netx) and verify on emulator + Lava")
    exp = export_loihi(snn["checkpoint"], out / "loihi", data=data, lava_samples=lava_samples, force=force)
    tell("exported", exp)
    export = exp.report.to_dict() if exp.report is not None else None

    tell("stage", "3/4 count, estimate, measure")
    rep = energy_report(
        snn["checkpoint"], baselines=[cnn["checkpoint"]], data=data, out=out, force=force, export_report=export,
        on_status=lambda message: tell("status", message),
    )
    tell("stage", "4/4 report")
    tell("report", rep)
    return {"snn": snn, "cnn": cnn, "test": ev, "test_cnn": ev_cnn, "export": export, "report": rep,
            "seconds": time.perf_counter() - t0}
