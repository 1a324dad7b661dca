"""The pipeline stages as plain functions: checkpoint -> NIR -> LoihiProgram -> netx -> runs -> energy.

The CLI and the Python API (`neurocxr.load`, `neurocxr.export_loihi`, ...) both call these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from neurocxr.errors import NeurocxrError
from neurocxr.fileio import write_json, write_text

if TYPE_CHECKING:  # pragma: no cover - deployment imports this module
    from neurocxr.deploy.deployment import Deployment, ExportReport
from neurocxr.data.datasets import check_data_path, data_for_checkpoint, load_dataset
from neurocxr.deploy.deployment import Deployment
from neurocxr.exporters.model_checks import check_snn_for_chip
from neurocxr.exporters.nir import to_nir, write_nir
from neurocxr.fileio import staged_output
from neurocxr.models.loaded import LoadedModel, input_shape, load
from neurocxr.provenance import provenance
from neurocxr.validation import check_int, check_split


@dataclass
class LoihiExport:
    """Everything `export_loihi` / `export_nir_graph` produced; ``report`` is what export_report.json
    holds (``report.to_dict()``)."""

    program: Any  # LoihiProgram (None for target="nir")
    graph: Any  # nir.NIRGraph
    files: dict[str, Path]
    report: ExportReport | None  # None for target="nir" (no program, no parity)
    deployment: Deployment | None = None


DEFAULT_LAVA_SAMPLES = 3  # parity samples also run on Lava's CPU simulator (slow: seconds each)

EXPORT_FILES = {
    "nir": ("model.nir",),
    "loihi": ("model.nir", "model.net", "export_report.json", "export_report.md"),
}


def export_loihi(
    model: str | Path | nn.Module | LoadedModel,
    out_dir: str | Path | None = None,
    *,
    target: str = "loihi",
    data: str | Path | None = None,
    split: str = "test",
    max_samples: int | None = None,
    lava_samples: int = DEFAULT_LAVA_SAMPLES,
    allow_clipping: bool = False,
    force: bool = False,
    progress: bool | None = None,
) -> LoihiExport:
    """Export an SNN to NIR (``target="nir"``) or to Loihi 2 (NIR + netx + parity report).

    With ``out_dir=None`` nothing is written and no Lava run happens (netx needs a file).
    """

    # Options first, then the checkpoint: a bad value never leaves files behind.
    if target not in EXPORT_FILES:
        raise NeurocxrError(
            f"unknown export target {target!r}; choose 'loihi' or 'nir' (CNN baselines: 'onnx')"
        )
    check_split(split)
    max_samples = check_int("max_samples / --max-samples", max_samples, 1, allow_none=True)
    lava_samples = check_int("lava_samples / --lava-samples", lava_samples, 0)
    loaded = load(model)

    check_snn_for_chip(
        loaded, model, "export"
    )  # a CNN is told to use --target onnx, not to retrain
    if target == "loihi":  # the parity data is checked before the export work, not after it
        check_data_path(data_for_checkpoint(data, loaded.metadata))
    options = dict(
        model=model,
        target=target,
        data=data,
        split=split,
        max_samples=max_samples,
        lava_samples=lava_samples,
        allow_clipping=allow_clipping,
        progress=progress,
    )
    if out_dir is None:
        return _export_loihi(loaded, None, None, **options)
    # Written into a staging folder, moved into place at the end: nothing half-written on error or Ctrl-C.
    with staged_output(out_dir, EXPORT_FILES[target], force) as stage:
        return _export_loihi(loaded, stage, Path(out_dir), **options)


def _export_loihi(
    loaded: LoadedModel,
    out: Path | None,
    final: Path | None,
    *,
    model: Any,
    target: str,
    data: Any,
    split: str,
    max_samples: int | None,
    lava_samples: int,
    allow_clipping: bool,
    progress: bool | None,
) -> LoihiExport:
    """`export_loihi`'s work: files are written into ``out`` (a staging folder) and reported at
    their final place in ``final``; ``model`` is what the caller passed (a path is recorded)."""

    files: dict[str, Path] = {}
    if target == "nir":
        graph = to_nir(loaded.model, input_shape=input_shape(loaded.config))
        if out is not None:
            write_nir(graph, out / "model.nir")
            files["nir"] = final / "model.nir"
        return LoihiExport(None, graph, files, None)

    deployment = Deployment.from_checkpoint(loaded, allow_clipping=allow_clipping)
    if out is not None:
        deployment.write(out)  # Lava (parity) runs the staged model.net
        files["nir"], files["netx"] = final / "model.nir", final / "model.net"

    splits = load_dataset(
        data_for_checkpoint(data, loaded.metadata), image_size=loaded.config.image_size
    )
    ds = getattr(splits, split)
    n = len(ds) if max_samples is None else min(max_samples, len(ds))
    parity, _ = deployment.parity(
        ds.images[:n],
        ds.labels[:n],
        lava_samples=lava_samples if out is not None else 0,
        progress=progress,
    )
    parity.data, parity.synthetic = f"{ds.source} [{split}]", bool(ds.synthetic)
    if out is not None:
        files["report_json"], files["report_md"] = (
            final / "export_report.json",
            final / "export_report.md",
        )
    report = deployment.export_report(
        parity,
        encoding=loaded.config.encoding,
        files=files,
        config=loaded.config.to_dict(),
        provenance=_provenance_of(loaded.name, model, data, ds.source),
    )
    if out is not None:
        write_json(out / "export_report.json", report)
        write_text(out / "export_report.md", export_markdown(report.to_dict()))
    return LoihiExport(deployment.program, deployment.graph, files, report, deployment)


def _provenance_of(name: str, model: Any, data: Any, data_source: str) -> dict[str, Any]:
    """Where an export's numbers came from: git commit, checkpoint and data hashes, threads."""

    checkpoint = model if isinstance(model, (str, Path)) else None
    data_file = data if data is not None and Path(str(data)).is_file() else None
    return provenance(checkpoints={name: checkpoint}, data=data_file, data_source=data_source)


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
        f"- float PyTorch accuracy: {p['float_accuracy']:.4f}; emulator (integer) accuracy: "
        f"{p['emulator_accuracy']:.4f}",
        f"- predictions changed by quantisation: {100 * p['prediction_changed_fraction']:.2f}%",
    ]
    lava = p.get("lava")
    if lava:
        lines.append(
            f"- emulator vs Lava ({lava['simulator']}), {lava['samples']} samples: "
            + (
                "IDENTICAL spikes in every layer and identical readout"
                if lava["identical"]
                else f"DIFFERENT: {lava}"
            )
        )
    else:
        lines.append("- Lava run: not performed")
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
