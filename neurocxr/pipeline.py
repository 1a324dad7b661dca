"""The pipeline stages as plain functions: checkpoint -> NIR -> LoihiProgram -> netx -> runs -> energy.

The CLI and the Python API (`neurocxr.load`, `neurocxr.export_loihi`, ...) both call these.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neurocxr.errors import NeurocxrError
from neurocxr.fileio import prepare_out_dir, write_json, write_text

# ----------------------------------------------------------------------------------------------
# Loading


@dataclass
class LoadedModel:
    """A model with its config and training metadata, from a checkpoint or built in memory."""

    model: nn.Module
    config: Any  # ModelConfig
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.metadata.get("label") or self.config.name)

    @property
    def threshold(self) -> float:
        from neurocxr.validation import check_threshold

        return check_threshold(self.metadata.get("threshold", 0.5), f"model {self.name!r}")


def load(path_or_model: str | Path | nn.Module | LoadedModel) -> LoadedModel:
    """Load a neurocxr checkpoint (or wrap a model built with `build_model`)."""
    if isinstance(path_or_model, LoadedModel):
        return path_or_model
    if isinstance(path_or_model, nn.Module):
        config = getattr(path_or_model, "config", None)
        if config is None:
            raise NeurocxrError("model has no .config: build it with neurocxr.models.build_model(ModelConfig(...))")
        from neurocxr.validation import check_finite_state

        check_finite_state(path_or_model.state_dict(), f"model {config.name!r}")  # as checkpoints are checked
        return LoadedModel(path_or_model.eval(), config, {})
    from neurocxr.checkpoint import load_checkpoint

    if not isinstance(path_or_model, (str, Path)):
        import os

        if not isinstance(path_or_model, os.PathLike):
            raise NeurocxrError(f"load takes a checkpoint path, a model built with neurocxr.models.build_model or a "
                                f"LoadedModel, got an object of type {type(path_or_model).__name__}")
    ckpt = load_checkpoint(path_or_model)
    return LoadedModel(ckpt.model.eval(), ckpt.config, dict(ckpt.metadata))


def input_shape(config: Any) -> tuple[int, int, int]:
    return (config.in_channels, config.image_size, config.image_size)


def encoded_inputs(config: Any, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The exact [T, B, C, H, W] tensor an SNN sees for these images (seeded for rate coding)."""
    from neurocxr.encoding import encode

    return encode(images, config.encoding, config.num_steps, seed=seed)


@torch.no_grad()
def float_logits(loaded: LoadedModel, images: torch.Tensor, *, batch_size: int = 128, seed: int = 0) -> np.ndarray:
    """Logits of the float PyTorch model; SNN inputs encoded per batch with a seed derived from ``seed``."""
    from neurocxr.training import forward_model
    from neurocxr.validation import check_finite_inputs

    if len(images) == 0:
        raise NeurocxrError("no images to run the model on; raise --max-samples or use a non-empty split")
    check_finite_inputs(images, "images")
    model = loaded.model.eval()
    out = []
    for i, start in enumerate(range(0, len(images), batch_size)):
        out.append(forward_model(model, images[start : start + batch_size], loaded.config, seed=seed + i))
    return torch.cat(out).float().numpy()


# ----------------------------------------------------------------------------------------------
# Export


@dataclass
class LoihiExport:
    """Everything `export_loihi` produced; ``report`` is what export_report.json holds."""

    program: Any  # LoihiProgram
    graph: Any  # nir.NIRGraph
    files: dict[str, Path]
    report: dict[str, Any]


EXPORT_FILES = {
    "nir": ("model.nir",),
    "loihi": ("model.nir", "model.net", "export_report.json", "export_report.md"),
}


def to_program(loaded: LoadedModel, *, allow_clipping: bool = False) -> tuple[Any, Any]:
    """Model -> (NIR graph, LoihiProgram), in memory."""
    from neurocxr.exporters.loihi import QuantisationOptions, nir_to_program
    from neurocxr.exporters.nir import to_nir

    graph = to_nir(loaded.model, input_shape=input_shape(loaded.config))
    program = nir_to_program(graph, options=QuantisationOptions(allow_clipping=allow_clipping))
    return graph, program


def parity_check(
    loaded: LoadedModel,
    program: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    netx_path: Path | None = None,
    lava_samples: int = 3,
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[dict[str, Any], Any]:
    """Float model vs emulator on ``images``; emulator vs Lava on the first ``lava_samples``.

    Returns (parity summary, the emulator's RunResult over all ``images``).

    The float model and the emulator see the same input (rate coding is seeded identically).
    ``progress``: tqdm bars for the emulator and Lava runs (None: the process default, on a TTY only).
    """
    from neurocxr.hardware_sims.emulator import emulate
    from neurocxr.validation import check_finite_inputs, show_progress

    progress = show_progress(progress)
    if len(images) == 0:
        raise NeurocxrError("parity needs at least one sample; raise --max-samples or use a non-empty split")
    check_finite_inputs(images, "images")

    y = labels.numpy()
    # One encoding of all samples, shared by the float model and the emulator.
    x_float = encoded_inputs(loaded.config, images, seed=seed)
    x_chip = images.numpy() if program.input_kind == "bias" else x_float.numpy()
    with torch.no_grad():
        logits = []
        for start in range(0, len(images), 128):
            logits.append(loaded.model(x_float[:, start : start + 128]).logits)
        float_pred = torch.cat(logits).argmax(1).numpy()
    t0 = time.perf_counter()
    emu = emulate(program, x_chip, progress=progress)
    emu_seconds = time.perf_counter() - t0
    emu_pred = emu.predictions()
    result: dict[str, Any] = {
        "samples": int(len(y)),
        "float_accuracy": float(np.mean(float_pred == y)),
        "emulator_accuracy": float(np.mean(emu_pred == y)),
        "prediction_changed_fraction": float(np.mean(float_pred != emu_pred)),
        "decision_rule": "argmax of readout (float: mean over T; chip: integer accumulator)",
        "emulator_seconds": emu_seconds,
        "lava": None,
    }
    if netx_path is not None and lava_samples > 0:
        result["lava"] = lava_parity(program, netx_path, x_chip, lava_samples, progress=progress)
    return result, emu


def chip_logit_scale(program: Any) -> float | None:
    """Integer readout units per unit of float logit: 64 (Loihi's weight exponent) x readout
    scale x time steps, because the readout membrane sums round(W * s) x spikes over T steps while
    the float model averages its logits over T. None when the program has no readout."""
    if program is None or not program.has_readout:
        return None
    s = program.layers[-1].quant.get("scale")
    return 64.0 * float(s) * program.num_steps if s else None


def chip_scores(run: Any, program: Any = None) -> np.ndarray:
    """P(pneumonia)-like scores in (0, 1) from a RunResult's integer readout (or spike counts).

    Monotone in (score_pneumonia - score_normal), so ROC-AUC is exact; 0.5 is crossed exactly where
    argmax changes (a tie counts as "normal", as argmax does). The mapping is fixed per program
    (``chip_logit_scale``: sigmoid of the chip's logit difference, on the float model's softmax
    scale), never fitted to the batch, so a threshold chosen on validation scores means the same
    on test scores.
    """
    s = run.scores()
    d = s[:, 1] - s[:, 0] - 0.5  # integers: d > 0 <=> class 1 wins strictly
    # Spike-count outputs (no readout): difference of counts over T steps, as a rate difference.
    scale = chip_logit_scale(program) or float(max(1, getattr(run, "time_steps", 1) or 1)) / 4.0
    return 1.0 / (1.0 + np.exp(-np.clip(d / scale, -50, 50)))


def chip_operating_point(
    loaded: LoadedModel,
    program: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """The chip's decision threshold, chosen on validation ``images`` exactly as the float model's
    was (same rule, on the emulator's scores instead of the float model's), so that float-vs-chip
    differences in sensitivity/specificity come from quantisation only, not from two operating
    points. Returns {"threshold", "method", "samples", "val_metrics"}."""
    from neurocxr.hardware_sims.emulator import emulate
    from neurocxr.metrics import choose_threshold, clinical_metrics

    method = str(loaded.metadata.get("threshold_method") or "youden").split()[0].lower()
    if method not in ("youden", "f1", "fixed"):
        method = "youden"
    x = encoded_inputs(loaded.config, images, seed=seed)
    x_chip = images.numpy() if program.input_kind == "bias" else x.numpy()
    from neurocxr.validation import show_progress

    run = emulate(program, x_chip, progress=show_progress(progress))
    scores = chip_scores(run, program)
    y = labels.numpy()
    threshold = choose_threshold(y, scores, method)
    return {
        "threshold": float(threshold),
        "method": f"{method} on the validation split, on the chip's (emulator's) scores",
        "float_threshold": loaded.threshold,
        "samples": int(len(y)),
        "val_metrics": clinical_metrics(y, scores, threshold).to_dict(),
    }


def lava_parity(program: Any, netx_path: Path, x_chip: np.ndarray, n: int, *, progress: bool = False) -> dict[str, Any]:
    """Run the first ``n`` samples on Lava and on the emulator; compare every layer's spikes."""
    from neurocxr.hardware_sims.emulator import emulate
    from neurocxr.hardware_sims.lava import run_lava

    sub = x_chip[:n] if program.input_kind == "bias" else x_chip[:, :n]
    emu = emulate(program, sub, record=True)
    t0 = time.perf_counter()
    lava = run_lava(netx_path, sub, num_steps=program.num_steps, program=program, record=True, progress=progress)
    seconds = time.perf_counter() - t0
    layers_equal = [bool(np.array_equal(a, b)) for a, b in zip(emu.layer_spikes or [], lava.layer_spikes or [])]
    readout_equal = (
        emu.readout is None and lava.readout is None
    ) or bool(emu.readout is not None and lava.readout is not None and np.array_equal(emu.readout, lava.readout))
    return {
        "samples": int(n),
        "identical": bool(all(layers_equal) and readout_equal and len(layers_equal) > 0),
        "layers_identical": layers_equal,
        "readout_identical": readout_equal,
        "lava_seconds": seconds,
        "simulator": "Lava Loihi2SimCfg(select_tag='fixed_pt')",
    }


def export_loihi(
    model: str | Path | nn.Module | LoadedModel,
    out_dir: str | Path | None = None,
    *,
    target: str = "loihi",
    data: str | Path | None = None,
    split: str = "test",
    max_samples: int | None = None,
    lava_samples: int = 3,
    allow_clipping: bool = False,
    force: bool = False,
    progress: bool | None = None,
) -> LoihiExport:
    """Export an SNN to NIR (``target="nir"``) or to Loihi 2 (NIR + netx + parity report).

    With ``out_dir=None`` nothing is written and no Lava run happens (netx needs a file).
    """
    from neurocxr.fileio import staged_output
    from neurocxr.validation import check_int, check_split

    # Options first, then the checkpoint: a bad value never leaves files behind.
    if target not in EXPORT_FILES:
        raise NeurocxrError(f"unknown export target {target!r}; choose 'loihi' or 'nir' (CNN baselines: 'onnx')")
    check_split(split)
    max_samples = check_int("--max-samples", max_samples, 1, allow_none=True)
    lava_samples = check_int("--lava-samples", lava_samples, 0)
    loaded = load(model)
    from neurocxr.validation import check_snn_for_chip

    check_snn_for_chip(loaded, model, "export")  # a CNN is told to use --target onnx, not to retrain
    options = dict(model=model, target=target, data=data, split=split, max_samples=max_samples,
                   lava_samples=lava_samples, allow_clipping=allow_clipping, progress=progress)
    if out_dir is None:
        return _export_loihi(loaded, None, None, **options)
    # Written into a staging folder, moved into place at the end: nothing half-written on error or Ctrl-C.
    with staged_output(out_dir, EXPORT_FILES[target], force) as stage:
        return _export_loihi(loaded, stage, Path(out_dir), **options)


def _export_loihi(loaded: LoadedModel, out: Path | None, final: Path | None, *, model: Any, target: str, data: Any,
                  split: str, max_samples: int | None, lava_samples: int, allow_clipping: bool,
                  progress: bool | None) -> LoihiExport:
    """`export_loihi`'s work: files are written into ``out`` (a staging folder) and reported at
    their final place in ``final``; ``model`` is what the caller passed (a path is recorded)."""
    from neurocxr.exporters.nir import write_nir
    from neurocxr.exporters.resources import check_fits, estimate_resources

    t0 = time.perf_counter()
    files: dict[str, Path] = {}
    if target == "nir":
        from neurocxr.exporters.nir import to_nir

        graph = to_nir(loaded.model, input_shape=input_shape(loaded.config))
        if out is not None:
            write_nir(graph, out / "model.nir")
            files["nir"] = final / "model.nir"
        return LoihiExport(None, graph, files, {"target": "nir", "files": files})

    graph, program = to_program(loaded, allow_clipping=allow_clipping)
    export_seconds = time.perf_counter() - t0
    resources = estimate_resources(program)
    check_fits(resources)
    if out is not None:
        from neurocxr.exporters.netx import write_netx

        write_nir(graph, out / "model.nir")
        write_netx(program, out / "model.net")
        files["nir"], files["netx"] = final / "model.nir", final / "model.net"

    from neurocxr.data import data_for_checkpoint, load_dataset
    from neurocxr.exporters.loihi import quantisation_table

    splits = load_dataset(data_for_checkpoint(data, loaded.metadata), image_size=loaded.config.image_size)
    ds = getattr(splits, split)
    n = len(ds) if max_samples is None else min(max_samples, len(ds))
    parity, _ = parity_check(
        loaded,
        program,
        ds.images[:n],
        ds.labels[:n],
        netx_path=out / "model.net" if out is not None else None,
        lava_samples=lava_samples if out is not None else 0,
        progress=progress,
    )
    report = {
        "model": loaded.name,
        "config": loaded.config.to_dict(),
        "target": "loihi 2 (lava-dl netx HDF5)",
        "export_seconds": export_seconds,
        "input": {
            "kind": program.input_kind,
            "encoding": loaded.config.encoding,
            "input_scale": program.input_scale,
            "num_steps": program.num_steps,
        },
        "layers": quantisation_table(program),
        "resources": resources_dict(resources),
        "parity": {**parity, "data": f"{ds.source} [{split}]", "synthetic": bool(ds.synthetic)},
        "files": {k: str(v) for k, v in files.items()},
        "environment": environment(),
        "provenance": _provenance_of(loaded.name, model, data, ds.source),
    }
    if out is not None:
        files["report_json"], files["report_md"] = final / "export_report.json", final / "export_report.md"
        report["files"] = {k: str(v) for k, v in files.items()}
        write_json(out / "export_report.json", report)
        write_text(out / "export_report.md", export_markdown(report))
    return LoihiExport(program, graph, files, report)


def _provenance_of(name: str, model: Any, data: Any, data_source: str) -> dict[str, Any]:
    """Where an export's numbers came from: git commit, checkpoint and data hashes, threads."""
    from neurocxr.provenance import provenance

    checkpoint = model if isinstance(model, (str, Path)) else None
    data_file = data if data is not None and Path(str(data)).is_file() else None
    return provenance(checkpoints={name: checkpoint}, data=data_file, data_source=data_source)


def resources_dict(resources: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    return asdict(resources) if is_dataclass(resources) else dict(resources)


def export_markdown(report: dict[str, Any]) -> str:
    """export_report.md: the same facts as the JSON, for people."""
    lines = [f"# Loihi 2 export: {report['model']}", ""]
    inp = report["input"]
    lines += [
        f"- input: {inp['kind']} ({inp['encoding']} encoding), {inp['num_steps']} time steps"
        + (f", bias = round(pixel x {inp['input_scale']:g})" if inp["kind"] == "bias" else ""),
        f"- export time: {report['export_seconds']:.2f} s",
        "",
        "## Layers",
        "",
    ]
    rows = report["layers"]
    if rows:
        # every key any layer has (the input row lacks the weight columns: bits, exponent, errors)
        keys = list(dict.fromkeys(k for r in rows for k in r))
        lines.append("| " + " | ".join(keys) + " |")
        lines.append("|" + "---|" * len(keys))
        for r in rows:
            lines.append("| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |")
    res = report["resources"]
    lines += [
        "",
        "## Resources",
        "",
        f"- neurons: {res.get('total_neurons')}, synapses: {res.get('total_synapses')}, "
        f"cores: {res.get('cores')}, chips: {res.get('chips')}, fits: {res.get('fits')}",
    ]
    limits = res.get("limits") or {}
    if limits:
        lines.append(f"- limits used: {limits}")
    p = report["parity"]
    lines += [
        "",
        "## Parity",
        "",
        f"- data: {p['data']}, {p['samples']} samples",
        f"- float PyTorch accuracy: {p['float_accuracy']:.4f}; emulator (integer) accuracy: {p['emulator_accuracy']:.4f}",
        f"- predictions changed by quantisation: {100 * p['prediction_changed_fraction']:.2f}%",
    ]
    lava = p.get("lava")
    if lava:
        lines.append(
            f"- emulator vs Lava ({lava['simulator']}), {lava['samples']} samples: "
            + ("IDENTICAL spikes in every layer and identical readout" if lava["identical"] else f"DIFFERENT: {lava}")
        )
    else:
        lines.append("- Lava run: not performed")
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for pkg in ("torch", "snntorch", "norse", "nir", "lava-nc", "lava-dl", "onnxruntime", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": __import__("os").cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "packages": versions,
    }
