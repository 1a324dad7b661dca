"""A NIR graph from any tool (Sinabs, snnTorch, Norse, Rockpool, Spyx, neurocxr) -> Loihi 2 netx.

`export_nir_graph` is what ``neurocxr export MODEL.nir --target loihi -o OUT`` runs:

1. read the graph (a truncated or foreign file is refused naming it);
2. dt from the graph's metadata, else the caller's ``dt``; neither -> `ExportError` (NIR is
   continuous time, every decay depends on dt; a wrong dt usually gives a network that never
   spikes, so it is never guessed);
3. `nir_to_program` (quantisation, pooling fused, refusals by node name) and the resource check;
4. parity on spike trains (random, seeded, or the caller's array): our float model of the graph
   (`exporters.nir.from_nir`) against the bit-exact emulator, per layer spike counts and output
   agreement, and a warning for every layer that never spikes;
5. files written all-or-nothing (`fileio.staged_output`): ``model.nir`` (the graph with dt in its
   metadata), ``model.net``, ``export_report.json`` / ``.md``. Optionally the first samples on Lava.

A graph whose first layer is synaptic takes spike trains ``[T, B, *input_shape]`` as given. A graph
that starts with neurons takes analog input (the image as bias current): parity then uses random
values in [0, 1] (or the caller's ``[B, *input_shape]`` array).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurocxr.deploy.deployment import DECISION_RULE_READOUT, Deployment, GraphParityReport
from neurocxr.deploy.export import LoihiExport
from neurocxr.errors import ExportError, NeurocxrError
from neurocxr.exporters.nir import _plain, from_nir, read_nir, stated_dt
from neurocxr.exporters.resources import check_fits
from neurocxr.fileio import staged_output, write_json, write_text

NIR_EXPORT_FILES = ("model.nir", "model.net", "export_report.json", "export_report.md")
DEFAULT_PARITY_SAMPLES = 16
DEFAULT_SPIKE_RATE = 0.2


def _graph_meta(graph: Any) -> dict[str, Any]:

    meta = getattr(graph, "metadata", None)
    return _plain(dict(meta)) if isinstance(meta, dict) else {}


def resolve_dt(graph: Any, dt: float | None, source: str) -> tuple[float, str]:
    """(dt, where it came from): the graph's metadata, else ``dt``; neither -> ExportError."""
    meta_dt = stated_dt(graph, source)
    if meta_dt is not None:
        value = meta_dt
        if dt is not None and not math.isclose(value, float(dt), rel_tol=1e-9):
            raise ExportError(
                f"{source} states dt = {value:g} s in its metadata but --dt {dt:g} was given; drop --dt (the "
                "graph's time constants were written with its own dt) or fix the file"
            )
        how = "graph metadata"
    elif dt is not None:
        value, how = float(dt), "--dt"
    else:
        raise ExportError(
            f"{source} does not state its time step (no 'dt' in the graph's metadata): pass --dt SECONDS ({DT_HINT})"
        )
    if not (math.isfinite(value) and value > 0):
        raise ExportError(f"dt must be a positive number of seconds, got {value}")
    return value, how


def _load_input(path: str | Path, program: Any) -> np.ndarray:
    """The caller's parity input: spikes [T, B, *shape] (or [T, *shape]) / analog [B, *shape]."""
    p = Path(path)
    try:
        x = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ExportError(
            f"cannot read the input array {p}: {exc} (expected a .npy file)"
        ) from None
    shape = tuple(program.input_shape)
    if program.input_kind == "spikes":
        if x.shape[1:] == shape:
            x = x[:, None]
        if x.ndim != len(shape) + 2 or tuple(x.shape[2:]) != shape:
            raise ExportError(
                f"{p}: spike trains must have shape [T, B, {', '.join(map(str, shape))}], got {list(x.shape)}"
            )
        if not np.all((x == 0) | (x == 1)):
            raise ExportError(f"{p}: spike trains must hold only 0 and 1")
        return x.astype(np.float32)
    if x.shape == shape:
        x = x[None]
    if tuple(x.shape[1:]) != shape:
        raise ExportError(
            f"{p}: inputs must have shape [B, {', '.join(map(str, shape))}], got {list(x.shape)}"
        )
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
        raise ExportError(f"{p}: analog inputs (the first layer is neurons) must lie in [0, 1]")
    return x.astype(np.float32)


def random_input(program: Any, samples: int, rate: float, seed: int) -> np.ndarray:
    """Seeded parity input: Bernoulli(rate) spike trains, or uniform [0, 1) analog values."""
    rng = np.random.default_rng(seed)
    shape = tuple(program.input_shape)
    if program.input_kind == "spikes":
        return (rng.random((program.num_steps, samples) + shape) < rate).astype(np.float32)
    return rng.random((samples,) + shape).astype(np.float32)


def nir_parity(deployment: Deployment, x: np.ndarray, dt: float) -> GraphParityReport:
    """Float model of the deployment's graph vs the emulator on ``x``: per-layer spikes, output
    agreement, warnings."""
    import warnings

    graph, program = deployment.graph, deployment.program
    t0 = time.perf_counter()
    emu = deployment.run(x)
    emu_seconds = time.perf_counter() - t0
    steps = program.num_steps
    if program.input_kind == "spikes":
        samples = x.shape[1]
        x_float = torch.from_numpy(x)
    else:
        samples = x.shape[0]
        x_float = torch.from_numpy(x)[None].expand((steps,) + x.shape)
    neuron_layers = [layer for layer in program.layers if layer.neuron is not None]
    neuron_index = [i for i, layer in enumerate(program.layers) if layer.neuron is not None]
    float_counts: list[float | None] = [None] * len(neuron_layers)
    float_pred = None
    float_note = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = from_nir(graph, dt=dt)
        with torch.no_grad():
            out = model(x_float, record=True)
        spikes = out.spikes or []
        if len(spikes) == len(neuron_layers):
            float_counts = [float(s.sum().item()) / samples for s in spikes]
        else:
            float_note = (
                f"the float model has {len(spikes)} neuron layers, the program {len(neuron_layers)}"
            )
        if program.has_readout:
            float_pred = out.logits.argmax(1).numpy()
        elif spikes:
            float_pred = spikes[-1].sum(0).reshape(samples, -1).argmax(1).numpy()
    except (NeurocxrError, RuntimeError, ValueError) as exc:
        float_note = f"no float reference: {exc}"
    rows = []
    warn: list[str] = []
    for k, (index, layer) in enumerate(zip(neuron_index, neuron_layers)):
        emu_count = float(np.mean(emu.counts[index].output_spikes))
        f_count = float_counts[k]
        rows.append(
            {
                "index": index,
                "name": layer.name,
                "neurons": int(layer.num_neurons),
                "float_spikes_per_sample": f_count,
                "emulator_spikes_per_sample": emu_count,
                "emulator_rate": emu_count / max(1, layer.num_neurons * steps),
                "emulator_to_float": (emu_count / f_count) if f_count else None,
            }
        )
        if emu_count == 0 or f_count == 0:
            who = (
                "neither model"
                if emu_count == 0 and (f_count or 0) == 0
                else ("the emulator" if emu_count == 0 else "the float model")
            )
            warn.append(
                f"layer {layer.name!r} never spikes in {who} on the parity input ({samples} samples x {steps} steps): "
                f"usually a wrong dt (used dt = {dt:g} s) or an input too weak for its thresholds; later layers then "
                "get nothing"
            )
    emu_pred = emu.predictions()
    return GraphParityReport(
        samples=int(samples),
        num_steps=int(steps),
        layers=rows,
        output_agreement=float(np.mean(emu_pred == float_pred)) if float_pred is not None else None,
        decision_rule=DECISION_RULE_READOUT
        if program.has_readout
        else "argmax of output spike counts",
        emulator_seconds=emu_seconds,
        warnings=warn,
        float_note=float_note,
    )


# What dt and the number of time steps mean for graphs from the tools that write NIR (one place, so the
# message naming both missing options and the single-option messages cannot drift apart).
DT_HINT = (
    "dt is the seconds per time step the graph's time constants were written with: Sinabs IF graphs "
    "(r = 1) mean one step per time unit, --dt 1; snnTorch export_to_nir writes with dt = 1e-4; Norse "
    "to_nir's default is dt = 1e-3; Rockpool writes its module's own dt (see its .dt)"
)
STEPS_HINT = (
    "num-steps is how many time steps one sample runs, which no NIR graph stores: use the T the "
    "network was trained or is evaluated with (the length of the spike trains given to Sinabs, "
    "snnTorch, Norse or Rockpool)"
)


def _known_steps(meta: dict[str, Any]) -> Any:
    """num_steps recorded by neurocxr in the graph's metadata, else None."""
    ours = meta.get("neurocxr")
    return ours.get("num_steps") if isinstance(ours, dict) else None


def _refuse_missing_options(
    graph: Any,
    meta: dict[str, Any],
    dt: float | None,
    num_steps: int | None,
    input_path: str | Path | None,
    source: str,
) -> None:
    """Both dt and the time steps missing: one message naming both (each alone is reported where it is resolved)."""
    dt_missing = dt is None and meta.get("dt") is None
    steps_missing = num_steps is None and _known_steps(meta) is None and input_path is None
    if dt_missing and steps_missing:
        raise ExportError(
            f"{source} states neither its time step nor its number of time steps: pass --dt SECONDS and "
            f"--num-steps T. {DT_HINT}. {STEPS_HINT}"
        )


def export_nir_graph(
    path: str | Path,
    out_dir: str | Path | None = None,
    *,
    dt: float | None = None,
    num_steps: int | None = None,
    encoding: str | None = None,
    input_path: str | Path | None = None,
    samples: int = DEFAULT_PARITY_SAMPLES,
    rate: float = DEFAULT_SPIKE_RATE,
    seed: int = 0,
    lava_samples: int = 0,
    allow_clipping: bool = False,
    force: bool = False,
) -> Any:
    """Export a NIR file written by any tool to Loihi 2 (module docstring); returns a `LoihiExport`.

    With ``out_dir=None`` nothing is written and Lava is not run.
    """

    source = Path(path)
    if samples < 1:
        raise ExportError(f"the number of parity samples must be >= 1, got {samples}")
    if not 0.0 < rate <= 1.0:
        raise ExportError(f"the input spike rate must be in (0, 1], got {rate}")
    t0 = time.perf_counter()
    graph = read_nir(source)
    meta = _graph_meta(graph)
    _refuse_missing_options(graph, meta, dt, num_steps, input_path, str(source))
    dt_used, dt_source = resolve_dt(graph, dt, str(source))
    known_steps = _known_steps(meta)
    given = None
    if num_steps is None and known_steps is None and input_path is not None:
        try:
            given = np.load(Path(input_path), allow_pickle=False, mmap_mode="r").shape[0]
        except (OSError, ValueError, IndexError) as exc:
            raise ExportError(
                f"cannot read the input array {input_path}: {exc} (expected a .npy file)"
            ) from None
    steps = (
        num_steps if num_steps is not None else (known_steps if known_steps is not None else given)
    )
    if steps is None:
        raise ExportError(
            f"{source} does not say how many time steps a sample runs: pass --num-steps T ({STEPS_HINT})"
        )
    try:
        deployment = Deployment.from_nir(
            graph,
            dt=dt_used,
            num_steps=int(steps),
            encoding=encoding,
            allow_clipping=allow_clipping,
            check_fit=False,
        )
    except NeurocxrError as exc:
        raise type(exc)(f"{source}: {exc}") from exc
    program = deployment.program
    program.metadata["dt_source"] = dt_source
    deployment.name = source.name
    deployment.export_seconds = time.perf_counter() - t0  # reading and resolving the graph included
    assert deployment.resources is not None
    check_fits(deployment.resources)
    if input_path is not None:
        x = _load_input(input_path, program)
        x_source = f"{Path(input_path).name} (given)"
    else:
        x = random_input(program, samples, rate, seed)
        x_source = (
            f"random spike trains, p = {rate:g} per input per step, seed {seed}"
            if program.input_kind == "spikes"
            else f"random analog input uniform in [0, 1), seed {seed}"
        )
    if program.input_kind == "spikes" and x.shape[0] != program.num_steps:
        raise ExportError(
            f"the input has {x.shape[0]} time steps but the program runs {program.num_steps}; "
            f"pass --num-steps {x.shape[0]}"
        )
    parity = nir_parity(deployment, x, dt_used)
    parity.input = x_source
    encoding_text = encoding or (
        "spike trains as given" if program.input_kind == "spikes" else "direct (bias)"
    )
    source_info = {
        "file": str(source),
        "producer": meta.get("producer"),
        "dt": dt_used,
        "dt_source": dt_source,
    }
    files: dict[str, Path] = {}
    if out_dir is None:
        report = deployment.export_report(
            parity, encoding=encoding_text, source=source_info, warnings=list(parity.warnings)
        )
    else:
        import nir

        out = Path(out_dir)
        with staged_output(out, NIR_EXPORT_FILES, force) as stage:
            # the graph is written with the dt it was exported with
            deployment.graph = nir.NIRGraph(
                nodes=graph.nodes,
                edges=graph.edges,
                metadata={**meta, "dt": dt_used},
                type_check=False,
            )
            deployment.write(stage)
            if lava_samples > 0:
                parity.lava = deployment.lava_parity(x, min(lava_samples, parity.samples))
            files = {name.replace(".", "_"): out / name for name in NIR_EXPORT_FILES}
            report = deployment.export_report(
                parity,
                encoding=encoding_text,
                files=files,
                source=source_info,
                warnings=list(parity.warnings),
            )
            write_json(stage / "export_report.json", report)
            write_text(stage / "export_report.md", nir_export_markdown(report.to_dict()))
    return LoihiExport(program, graph, files, report, deployment)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def nir_export_markdown(report: dict[str, Any]) -> str:
    """export_report.md for a NIR graph from another tool."""
    src, inp, par = report["source"], report["input"], report["parity"]
    lines = [
        f"# Loihi 2 export of {report['model']}",
        "",
        f"- source: {src['file']} (producer: {src.get('producer') or 'not stated'}); dt = "
        f"{src['dt']:g} s from {src['dt_source']}",
        f"- input: {inp['kind']} ({inp['encoding']}), {inp['num_steps']} time steps",
        "",
    ]
    if report["warnings"]:
        lines += ["## WARNINGS", ""] + [f"- **{w}**" for w in report["warnings"]] + [""]
    lines += ["## Layers (quantisation)", ""]
    rows = report["layers"]
    keys = [
        "index",
        "name",
        "kind",
        "scale",
        "weight_grid",
        "num_weight_bits",
        "weight_exponent",
        "weight_max_abs_error",
        "weight_relative_error",
        "input_error_vs_threshold",
        "v_th_mant",
        "i_decay",
        "v_decay",
    ]
    lines.append("| " + " | ".join(keys) + " |")
    lines.append("|" + "---|" * len(keys))
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |")
    lines += [
        "",
        f"## Parity: float model vs emulator ({par['samples']} samples; input: {par.get('input')})",
        "",
    ]
    lines.append(
        "| layer | neurons | float spikes / sample | emulator spikes / sample | emulator / float |"
    )
    lines.append("|---|---|---|---|---|")
    for r in par["layers"]:
        lines.append(
            f"| {r['name']} | {r['neurons']} | {_fmt(r['float_spikes_per_sample'])} | "
            f"{_fmt(r['emulator_spikes_per_sample'])} | {_fmt(r['emulator_to_float'])} |"
        )
    agree = par.get("output_agreement")
    lines += [
        "",
        f"- output agreement ({par['decision_rule']}): "
        + ("-" if agree is None else f"{100 * agree:.1f}%"),
    ]
    if par.get("float_note"):
        lines.append(f"- {par['float_note']}")
    lava = par.get("lava")
    if lava:
        lines.append(
            f"- emulator vs Lava ({lava['simulator']}), {lava['samples']} samples: "
            + ("identical spikes in every layer" if lava["identical"] else f"DIFFERENT: {lava}")
        )
    return "\n".join(lines) + "\n"
