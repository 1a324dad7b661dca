"""The `neurocxr` command line. Each command parses its options, makes one call into `neurocxr.api`
(same options, same defaults) and prints what it returns; the work and its checks live in the API."""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from neurocxr import interrupts
from neurocxr.errors import NeurocxrError
from neurocxr.fileio import dumps_json

# rich_markup_mode=None: help texts are plain text ("[sweep], [grid]" stay as written).
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="neurocxr: train spiking chest X-ray classifiers, deploy them to Loihi 2, compare energy honestly.",
)
data_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Inspect or fetch data sets."
)
app.add_typer(data_app, name="data")
# markup/emoji off: paths, messages and table cells are printed exactly as they are (a "[/]" in a
# path is text, not a closing tag); styles are given explicitly (`say`). soft_wrap: a long line is
# never broken inside a path; tables go through `show_table`.
console = Console(markup=False, emoji=False, soft_wrap=True)


def say(label: str, text: object = "", style: str = "bold") -> None:
    """One line: ``label`` in ``style``, then ``text`` verbatim."""
    line = Text(label, style=style)
    if text != "":
        line.append(" " + str(text))
    console.print(line, highlight=False)


def show_table(table: Table) -> None:
    """On a terminal, the drawn table with every column folding long values onto the next line
    instead of cutting them (``0.85…``); elsewhere (a pipe, a log) plain aligned text, never cut."""
    if console.is_terminal:
        for column in table.columns:
            column.overflow = "fold"
        console.print(table, soft_wrap=False)
        return
    header = [str(column.header) for column in table.columns]
    rows = [
        list(row)
        for row in zip(*[[str(cell) for cell in column.cells] for column in table.columns])
    ]
    widths = [max(len(cell) for cell in cells) for cells in zip(header, *rows)]
    lines = [str(table.title)] if table.title else []
    for row in [header, *rows]:
        cells = [
            cell.rjust(width) if column.justify == "right" else cell.ljust(width)
            for cell, width, column in zip(row, widths, table.columns)
        ]
        lines.append("  ".join(cells).rstrip())
    console.print("\n".join(lines), highlight=False)


@app.callback()
def _global_options(
    progress: bool = typer.Option(
        True,
        "--progress/--no-progress",
        help="tqdm progress bars on long steps (drawn only on a terminal)",
    ),
) -> None:
    from neurocxr.interrupts import install
    from neurocxr.validation import set_progress

    install()  # Ctrl-C during a fork (Lava's workers, Ray's services) is delivered, not dropped
    set_progress(progress)


DATA_HELP = (
    "PneumoniaMNIST .npz, Kermany folder, or 'synthetic'. Default: $NEUROCXR_DATA, "
    "~/.medmnist/pneumoniamnist.npz, else synthetic phantoms."
)
CHECKPOINT_DATA_HELP = (
    "PneumoniaMNIST .npz, Kermany folder, or 'synthetic'. Default: the data the checkpoint was trained on "
    "(recorded in it); a real-data model is scored on phantoms only with --data synthetic."
)


def _say_data(splits) -> None:
    if splits.synthetic:
        say(f"data: {splits.source} — SYNTHETIC phantoms, not real X-rays", style="bold yellow")
    else:
        say("data:", splits.source)


def _metrics_table(title: str, rows: dict[str, dict]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    for name in rows:
        table.add_column(name, justify="right")
    keys = [
        "accuracy",
        "sensitivity",
        "specificity",
        "precision",
        "f1",
        "roc_auc",
        "cohen_kappa",
        "mcc",
        "threshold",
    ]
    # one decision rule for every row: pneumonia when P(pneumonia) >= the threshold chosen on val
    names = {"accuracy": "accuracy (at threshold)", "threshold": "threshold (on P(pneumonia))"}
    for k in keys:
        table.add_row(names.get(k, k), *[f"{r.get(k, float('nan')):.4f}" for r in rows.values()])
    table.add_row("confusion [[tn,fp],[fn,tp]]", *[str(r.get("confusion")) for r in rows.values()])
    return table


@data_app.command("info")
def data_info(
    path: Path = typer.Argument(..., help="an .npz archive or a Kermany-style folder"),
) -> None:
    """Counts per split and class, and image size."""
    from neurocxr.api import data_info as _data_info

    console.print_json(dumps_json(_data_info(path).to_dict()))


@data_app.command("fetch")
def data_fetch(
    size: int = typer.Option(28, help="MedMNIST image size: 28, 64, 128 or 224"),
    root: Path = typer.Option(Path.home() / ".medmnist", help="where medmnist keeps its files"),
) -> None:
    """Download PneumoniaMNIST through `medmnist` (needs internet access)."""
    from neurocxr.api import fetch_data

    console.print(f"saved {fetch_data(size=size, root=root).path}")


@app.command("models")
def list_models() -> None:
    """Models that can be built by name."""
    from neurocxr.api import list_models as _list_models

    table = Table(title="models")
    for col in ("name", "kind", "Loihi", "description"):
        table.add_column(col)
    for info in _list_models():
        table.add_row(
            info.name, info.kind, "yes" if info.loihi_deployable else "no", info.description
        )
    show_table(table)


@app.command("train")
def train_cmd(
    model: str = typer.Option("snn_conv", help="model name (see `neurocxr models`)"),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    out: Path = typer.Option(Path("runs/train"), "-o", "--out", help="output folder"),
    epochs: int = typer.Option(10),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(2e-3),
    num_steps: int = typer.Option(16, help="SNN time steps"),
    encoding: Optional[str] = typer.Option(
        None,
        help="SNN input: direct (on-chip input neurons) | rate (Bernoulli spikes) | latency | "
        "regular (evenly spaced spikes at the pixel's rate); default direct, regular with --convert-from",
    ),
    image_size: int = typer.Option(28),
    seed: int = typer.Option(0),
    augment: str = typer.Option(
        "none",
        help="training augmentation: none | light (flip, small rotation, "
        "brightness/contrast) | shift (light + gamma, blur, noise, scale/crop jitter)",
    ),
    max_train_samples: Optional[int] = typer.Option(
        None, help="subsample the training split (quick runs)"
    ),
    force: bool = typer.Option(False, help="overwrite an existing checkpoint"),
    balance: str = typer.Option(
        "weights",
        help="class balance: weights (weighted loss) | sampler | none | sgan "
        "(Double-SGAN normal images balance the training split; sample grid PNG beside the checkpoint)",
    ),
    depth: Optional[int] = typer.Option(
        None, help="conv layers of snn_vgg / cnn_vgg (VGG plan 16,16,32,32,...)"
    ),
    width: float = typer.Option(1.0, help="multiplies channels and hidden sizes"),
    convert_from: Optional[Path] = typer.Option(
        None,
        help="ANN->SNN: checkpoint of a trained cnn_vgg to convert "
        "(--model snn_vgg; --epochs 0 keeps the converted net, more fine-tune it)",
    ),
    teacher: Optional[Path] = typer.Option(None, help="distil from this CNN checkpoint (logits)"),
    distill_weight: Optional[float] = typer.Option(
        None, help="weight of the distillation term (default 0.5 with --teacher)"
    ),
    feature_distill: float = typer.Option(
        0.0,
        help="weight of feature distillation: hidden spike rates vs the CNN's activations, layer by layer "
        "(teacher: --teacher, else the --convert-from CNN; snn_vgg from its cnn_vgg twin)",
    ),
    strides: Optional[str] = typer.Option(
        None,
        help="stride of each conv of the VGG plan, comma-separated, with --depth (e.g. 2,1,2,1,2,1; "
        "default 2 at every second conv)",
    ),
    regulariser: float = typer.Option(
        0.0, help="chip-cost regulariser lambda per uJ (SNNs; 0 = off)"
    ),
    qat_epochs: int = typer.Option(
        0, help="quantisation-aware fine-tuning epochs with the chip's integers (SNNs)"
    ),
    prune: float = typer.Option(
        0.0,
        help="fraction of each layer's weights zeroed by magnitude while training, on a ramp over "
        "the first third of the epochs (SNNs; the chip stores no zero weight; 0 = off)",
    ),
) -> None:
    """Train a model; threshold chosen on validation; checkpoint of the best epoch (val AUC).
    The levers (--convert-from, --teacher, --feature-distill, --depth, --width, --strides, --augment,
    --regulariser, --num-steps, --qat-epochs, --prune) carry the names of the sweep grid's axes."""
    from neurocxr.api import train
    from neurocxr.validation import parse_int_list

    result = train(
        model,
        data=data,
        out=out,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        num_steps=num_steps,
        encoding=encoding,
        image_size=image_size,
        seed=seed,
        augment=augment,
        max_train_samples=max_train_samples,
        force=force,
        balance=balance,
        depth=depth,
        width=width,
        convert_from=convert_from,
        teacher=teacher,
        distill_weight=distill_weight,
        feature_distill=feature_distill,
        strides=None if strides is None else parse_int_list("--strides", strides),
        regulariser=regulariser,
        qat_epochs=qat_epochs,
        prune=prune,
    )
    if result.sgan:
        console.print(
            f"Double SGAN: {result.sgan['generated']} normal images added; samples: {result.sgan['samples_png']}"
        )
    _say_data_line(result)
    show_table(
        _metrics_table(f"{model} validation (best epoch {result.best_epoch})", {"val": result.val})
    )
    if result.result.weight_sparsity is not None:
        console.print(
            f"pruned: {100 * result.result.weight_sparsity:.1f} % of the conv/linear weights are zero"
        )
    console.print(f"checkpoint: {result.checkpoint}")


@app.command("evaluate")
def evaluate_cmd(
    checkpoint: Path = typer.Argument(..., help="a neurocxr checkpoint (.pt)"),
    data: Optional[str] = typer.Option(None, help=CHECKPOINT_DATA_HELP),
    split: str = typer.Option("test", help="train | val | test"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the metrics here"),
    robustness: bool = typer.Option(
        False,
        "--robustness",
        help="blur / salt-and-pepper / speckle / Gaussian noise: accuracy and AUC per level "
        "(float model; deployable SNNs also on the Loihi emulator)",
    ),
    uncertainty: bool = typer.Option(
        False,
        "--uncertainty",
        help="calibration (ECE, reliability diagram) and referral curves; MC dropout when the "
        "model has dropout; chip spike-count margin for deployable SNNs",
    ),
    mc_passes: Optional[int] = typer.Option(
        None,
        "--mc-passes",
        help="MC-dropout passes (implies --uncertainty; default 20 when the model has dropout; "
        "an error on a model without dropout)",
    ),
    chip: Optional[bool] = typer.Option(
        None,
        "--chip/--no-chip",
        help="with --robustness / --uncertainty: run deployable SNNs on the Loihi emulator too "
        "(default: --chip)",
    ),
    max_samples: Optional[int] = typer.Option(
        None,
        "--max-samples",
        help="robustness / uncertainty on the first N images of the split (the metrics table always uses all)",
    ),
    out: Path = typer.Option(
        Path("runs/evaluate"),
        "-o",
        "--out",
        help="folder for robustness.{json,png} / uncertainty.{json,png}",
    ),
    force: bool = typer.Option(False, help="overwrite existing outputs in the -o folder"),
) -> None:
    """Clinical metrics of a checkpoint on a split, at the threshold chosen on validation;
    optionally robustness to image degradation and uncertainty (neurocxr.evaluation)."""
    from neurocxr.api import EvaluationResult, evaluate

    def show_metrics(
        result: EvaluationResult,
    ) -> None:  # printed before the slower robustness / uncertainty
        _say_data_line(result)
        show_table(_metrics_table(f"{result.model} on {split}", {split: result.metrics}))
        for warning in result.warnings:
            say("WARNING:", warning, "bold red")

    result = evaluate(
        checkpoint,
        data=data,
        split=split,
        json=json_out,
        robustness=robustness,
        uncertainty=uncertainty,
        mc_passes=mc_passes,
        chip=chip,
        max_samples=max_samples,
        out=out,
        force=force,
        on_metrics=show_metrics,
    )
    if result.robustness is not None or result.uncertainty is not None:
        from neurocxr.evaluation.run import summary_lines

        for line in summary_lines(result.clinical.to_dict()):
            console.print(line, highlight=False)


def _say_data_line(result) -> None:
    """The data line of a TrainSummary or EvaluationResult."""
    if result.synthetic:
        say(f"data: {result.data} — SYNTHETIC phantoms, not real X-rays", style="bold yellow")
    else:
        say("data:", result.data)


@app.command("explain")
def explain_cmd(
    checkpoint: Path = typer.Argument(..., help="a neurocxr checkpoint (.pt)"),
    images: List[Path] = typer.Argument(
        ..., help="chest X-ray image files (PNG/JPEG, grayscale or gray RGB)"
    ),
    out: Path = typer.Option(
        ..., "-o", "--out", help="output folder: one PNG per image, index.html, explanations.json"
    ),
    mc_passes: int = typer.Option(
        20, "--mc-passes", help="MC-dropout passes for BayesGrad-CAM (models with dropout; 0 = off)"
    ),
    chip: bool = typer.Option(
        True, "--chip/--no-chip", help="spike maps of deployable SNNs from the Loihi emulator"
    ),
    layer: Optional[str] = typer.Option(
        None, "--layer", help="Conv2d for Grad-CAM, by module name (default: the last feature conv)"
    ),
    force: bool = typer.Option(False, help="overwrite existing files in the output folder"),
) -> None:
    """Explain predictions: Grad-CAM (+ BayesGrad-CAM with dropout) for CNNs; spike-activity maps
    and Integrated Gradients for SNNs."""
    from neurocxr.api import explain

    res = explain(
        checkpoint, images, out=out, mc_passes=mc_passes, chip=chip, layer=layer, force=force
    )
    for e in res.explanations:
        console.print(
            f"{e.label}: called {('normal', 'pneumonia')[e.called]} (P(pneumonia) {e.p_pneumonia:.3f}); "
            f"maps: {', '.join(m.name for m in e.maps)}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"wrote {out / 'index.html'} and {len(res.files) - 1} other file(s)")


@app.command("export")
def export_cmd(
    checkpoint: Path = typer.Argument(..., help="a neurocxr checkpoint (.pt)"),
    out: Path = typer.Option(..., "-o", "--out", help="output folder"),
    target: str = typer.Option(
        "loihi", help="loihi (NIR + netx + parity report) | nir | onnx (CNN baselines)"
    ),
    data: Optional[str] = typer.Option(
        None, help=CHECKPOINT_DATA_HELP + " Used for the parity check."
    ),
    split: Optional[str] = typer.Option(
        None, help="train | val | test: the parity check's split (default: test)"
    ),
    max_samples: Optional[int] = typer.Option(
        None, help="parity on the first N samples (default: whole split)"
    ),
    lava_samples: Optional[int] = typer.Option(
        None, help="samples run on Lava's bit-accurate CPU simulator (default: 3)"
    ),
    allow_clipping: bool = typer.Option(
        False, help="accept weight/bias clipping (reported per layer)"
    ),
    force: bool = typer.Option(False, help="overwrite existing files in the output folder"),
    dt: Optional[float] = typer.Option(
        None, help="NIR input: seconds per time step, when the graph does not state it"
    ),
    num_steps: Optional[int] = typer.Option(
        None, help="NIR input: time steps per sample, when the graph does not state it"
    ),
    encoding: Optional[str] = typer.Option(
        None,
        help="NIR input: how the model was fed (direct | rate | latency | regular); a graph starting "
        "with a synaptic layer takes spike trains as given",
    ),
    spikes: Optional[Path] = typer.Option(
        None,
        help="NIR input: parity input .npy, spikes [T, B, *shape] (default: random spike trains)",
    ),
) -> None:
    """Export a checkpoint: SNN -> NIR -> Loihi 2 netx (verified on the emulator and Lava), or CNN -> ONNX.

    A .nir file (written by neurocxr, Sinabs, snnTorch, Norse, Rockpool, Spyx, ...) is exported to
    Loihi with --target loihi; its parity check runs on spike trains instead of images.
    """
    import contextlib

    from neurocxr.api import OnnxExport, export
    from neurocxr.validation import show_progress

    nir_file = checkpoint.suffix.lower() == ".nir"
    if nir_file:
        status = console.status("exporting NIR graph and verifying...")
    elif target in ("loihi", "nir") and not show_progress():
        status = console.status("exporting and verifying...")
    else:  # ONNX has no spinner; tqdm bars (stderr, terminal only) would fight with one
        status = contextlib.nullcontext()
    with status:
        exp = export(
            checkpoint,
            out=out,
            target=target,
            data=data,
            split=split,
            max_samples=max_samples,
            lava_samples=lava_samples,
            allow_clipping=allow_clipping,
            force=force,
            dt=dt,
            num_steps=num_steps,
            encoding=encoding,
            spikes=spikes,
        )
    if isinstance(exp, OnnxExport):
        console.print(
            f"ONNX: {exp.path} (checked with onnx.checker; max |ONNX - PyTorch| = {exp.max_abs_diff:.2e} in logits)"
        )
        return
    if nir_file:
        _print_nir_file_export(exp)
        return
    for name, path in exp.files.items():
        console.print(f"wrote {name}: {path}")
    if target == "loihi":
        print_parity(exp.report.to_dict())


def _print_nir_file_export(exp) -> None:
    """What exporting a .nir file wrote and its parity: per-layer spikes, output agreement, Lava."""
    for name, written in exp.files.items():
        console.print(f"wrote {name}: {written}")
    rep = exp.report.to_dict()
    par = rep["parity"]
    console.print(
        f"dt = {rep['source']['dt']:g} s ({rep['source']['dt_source']}); parity input: {par['input']}"
    )
    table = Table(title="spikes per sample: float model vs Loihi emulator")
    for col in ("layer", "neurons", "float", "emulator"):
        table.add_column(col)
    for r in par["layers"]:
        f = r["float_spikes_per_sample"]
        table.add_row(
            r["name"],
            str(r["neurons"]),
            "-" if f is None else f"{f:.1f}",
            f"{r['emulator_spikes_per_sample']:.1f}",
        )
    show_table(table)
    agree = par.get("output_agreement")
    console.print(
        "output agreement: "
        + ("-" if agree is None else f"{100 * agree:.1f}%")
        + f" ({par['decision_rule']})"
    )
    if par.get("lava"):
        console.print(Text("emulator vs Lava: ").append(*_identical(par["lava"]["identical"])))
    for warning in rep["warnings"]:
        say("WARNING:", warning, "bold red")


def _identical(identical: bool) -> tuple[str, str]:
    return ("identical", "green") if identical else ("DIFFERENT", "red")


def print_parity(report: dict) -> None:
    p = report["parity"]
    if p.get("synthetic"):
        say("parity data: SYNTHETIC phantoms", style="bold yellow")
    op = p.get("operating_point") or {}
    if op.get("float_test") and op.get("chip_test"):
        console.print(
            f"accuracy at the thresholds chosen on val (the rule of `evaluate` and `energy`): float "
            f"{op['float_test']['accuracy']:.4f}, Loihi emulator {op['chip_test']['accuracy']:.4f}"
        )
    elif p.get("float_threshold_accuracy") is not None:
        console.print(
            f"float model accuracy at its threshold chosen on val ({p['float_threshold']:.4f} on P(pneumonia), "
            f"the rule of `evaluate`): {p['float_threshold_accuracy']:.4f}; the chip's own threshold is "
            "chosen by `energy`"
        )
    # parity compares the chip with the float model by their own outputs: argmax, not the clinical threshold
    console.print(
        f"parity on {p['samples']} samples of {p['data']}, decided by {p.get('decision_rule', 'argmax')} "
        f"(not the validation threshold `evaluate` applies): float accuracy {p['float_accuracy']:.4f}, "
        f"Loihi emulator accuracy {p['emulator_accuracy']:.4f}, predictions changed "
        f"{100 * p['prediction_changed_fraction']:.2f}%"
    )
    lava = p.get("lava")
    if lava:
        console.print(
            Text(f"emulator vs Lava fixed_pt on {lava['samples']} samples: ")
            .append(*_identical(lava["identical"]))
            .append(" (every layer's spikes and the readout)")
        )
    res = report["resources"]
    console.print(
        f"resources: {res.get('total_neurons')} neurons, {res.get('total_synapses')} synapses, "
        f"{res.get('cores')} cores, {res.get('chips')} chip(s) of {res.get('limits', {}).get('name', 'Loihi 2')}"
    )


@app.command("netx")
def netx_cmd(
    path: Path = typer.Argument(
        ..., help="a lava-dl netx HDF5 file (ours, or one trained with slayer)"
    ),
    samples: int = typer.Option(16, help="samples to emulate for the counts"),
    rate: float = typer.Option(
        0.1, help="firing probability of random input spikes (spike-input networks)"
    ),
    data: Optional[str] = typer.Option(
        None, help="images for bias-input networks whose input matches their size"
    ),
    num_steps: Optional[int] = typer.Option(
        None, help="time steps per sample (default: the file's, else 16)"
    ),
    input_scale: Optional[float] = typer.Option(
        None,
        help="bias-input networks: bias_mant = round(w * image * scale + b) (default: the file's, else 1)",
    ),
    profile: str = typer.Option("loihi", help="device profile for the energy estimate"),
    seed: int = typer.Option(0),
) -> None:
    """Read any netx file: layers, Loihi 2 resources, and an emulated run's counts and energy estimate."""
    from neurocxr.api import inspect_netx

    seen = inspect_netx(
        path,
        samples=samples,
        rate=rate,
        data=data,
        num_steps=num_steps,
        input_scale=input_scale,
        profile=profile,
        seed=seed,
    )
    program, res, steps = seen.program, seen.resources, seen.program.num_steps
    for note in seen.read_notes:
        say("note:", note, "yellow")
    table = Table(
        title=f"{path.name}: {len(program.layers)} layers, input {program.input_kind} {program.input_shape}"
    )
    for col in ("layer", "kind", "shape", "neurons", "synapses", "cores"):
        table.add_column(col)
    for layer, r in zip(program.layers, res.layers):
        table.add_row(
            layer.name, layer.kind, str(layer.shape), str(r.neurons), str(r.synapses), str(r.cores)
        )
    show_table(table)
    console.print(
        f"total: {res.total_neurons} neurons, {res.total_synapses} synapses, {res.cores} cores, "
        f"{res.chips} chip(s) of {res.limits.name}; fits: {res.fits}"
    )
    ct = Table(title=f"emulated {seen.inputs_description}, {steps} steps: per-sample means")
    for col in ("layer", "in spikes", "out spikes", "synaptic ops", "neuron updates", "sparsity"):
        ct.add_column(col, justify="right")
    for c in seen.counts:
        m = c.mean()
        ct.add_row(
            c.name,
            f"{m['input_spikes']:.0f}",
            f"{m['output_spikes']:.0f}",
            f"{m['synaptic_ops']:.0f}",
            f"{m['neuron_updates']:.0f}",
            f"{m['activation_sparsity']:.3f}",
        )
    show_table(ct)
    e = seen.energy
    total = "-" if e.total_j is None else f"{e.total_j:.3e} J"
    slow_total = getattr(e, "total_j_slow_bound", None)
    if slow_total is not None:  # the profile's bracket (Loihi 2): fast to slow synaptic op time
        total += f" to {slow_total:.3e} J"
    console.print(
        f"estimated on {e.device}: dynamic {e.dynamic_j:.3e} J, total {total} per inference ({e.source})"
    )
    slow_latency = (e.timing or {}).get("latency_s_slow_bound")
    slow_fps = (e.timing or {}).get("throughput_fps_slow_bound")
    if e.latency_s is not None and slow_latency is not None and slow_fps is not None:
        console.print(
            f"modelled latency {e.latency_s * 1e3:.3g} to {slow_latency * 1e3:.3g} ms, "
            f"{slow_fps:,.0f} to {e.throughput_fps or 0:,.0f} frames/s (pipelined): fast and slow "
            "synaptic op times of the profile"
        )


@app.command("energy")
def energy_cmd(
    checkpoint: Path = typer.Argument(..., help="an SNN checkpoint"),
    baseline: List[Path] = typer.Option(
        [], "--baseline", help="CNN checkpoint(s) to compare (repeatable)"
    ),
    data: Optional[str] = typer.Option(None, help=CHECKPOINT_DATA_HELP),
    out: Path = typer.Option(Path("runs/energy"), "-o", "--out"),
    profile: List[str] = typer.Option(
        [], "--profile", help="device profiles (default: all built-in)"
    ),
    profiles_file: Optional[Path] = typer.Option(
        None, help="TOML/JSON file with extra device profiles"
    ),
    max_samples: Optional[int] = typer.Option(None, help="count on the first N test samples"),
    measure: bool = typer.Option(True, help="measure latency/energy on this machine's CPU/GPU"),
    measure_seconds: float = typer.Option(3.0, help="length of each CPU measurement window"),
    force: bool = typer.Option(False),
    sweep: Optional[Path] = typer.Option(
        None,
        help="a `neurocxr sweep` output folder or results table: plot its trials beside the models",
    ),
) -> None:
    """Count spikes/ops on the emulator, estimate energy per device profile, measure what can be
    measured, write the report."""
    from neurocxr.api import energy_report

    rep = energy_report(
        checkpoint,
        baselines=baseline,
        data=data,
        out=out,
        profiles=profile or None,
        profiles_file=profiles_file,
        max_samples=max_samples,
        measure=measure,
        measure_seconds=measure_seconds,
        force=force,
        sweep=sweep,
        on_status=lambda message: console.print(message, style="dim"),
    )
    print_energy_facts(rep)
    print_summary(rep)


report_cmd = app.command(
    "report", help="Same as `energy`: write report.html + report.json for a checkpoint."
)(energy_cmd)


def print_energy_facts(rep) -> None:
    """What the energy stage found out, before the table: data, emulator run, operating point, verdict."""
    from neurocxr.report import verdict

    if rep.is_synthetic:
        say(f"data: {rep.data_source}", style="bold yellow")
    else:
        say("data:", rep.data_source)
    op = rep.operating_point
    if op:  # the headline rule, as in the table below and in `evaluate`
        chip, flt = op.get("chip_test", {}), op.get("float_test", {})
        nan = float("nan")
        console.print(
            "at the thresholds chosen on val (P(pneumonia) scale, 0-1): float "
            f"{op['float_threshold']:.4f} -> test accuracy "
            f"{flt.get('accuracy', nan):.3f}, sens/spec "
            f"{flt.get('sensitivity', nan):.3f}/{flt.get('specificity', nan):.3f}; "
            f"chip {op['threshold']:.4f} -> test accuracy {chip.get('accuracy', nan):.3f}, "
            f"sens/spec {chip.get('sensitivity', nan):.3f}/{chip.get('specificity', nan):.3f}"
        )
    p = rep.parity
    if p:
        console.print(
            f"emulator: {p['samples']} samples in {p['emulator_seconds']:.2f} s; by argmax of "
            "the readout (no threshold): "
            f"accuracy {p['emulator_accuracy']:.4f} (float {p['float_accuracy']:.4f}); predictions changed "
            f"{100 * p['prediction_changed_fraction']:.2f}%"
        )
    for what, why in rep.not_measurable.items():
        console.print(f"{what}: not measurable here ({why})")
    say("verdict:", verdict(rep))


def print_summary(rep) -> None:
    """The report's summary table, compact enough for an 80-column terminal (sources are in the report)."""
    from neurocxr.report import format_energy, format_seconds, is_headline

    table = Table(
        title="energy per inference (one sample); accuracy at each model's validation-chosen threshold; "
        "other counting conventions, sources: report.html"
    )
    for col in ("model", "device", "kind", "accuracy", "latency", "dynamic", "total"):
        table.add_column(col, overflow="fold")
    rows = [r for r in rep.summary if is_headline(r)]
    for r in rows:
        latency = "-" if r.latency_s is None else format_seconds(r.latency_s)
        total = "-" if r.total_j is None else format_energy(r.total_j)
        # a profile's bracket (Loihi 2): the point estimate "to" the slow bound, one line (plain-text tables)
        slow_latency = getattr(r, "latency_s_slow_bound", None)
        slow_total = getattr(r, "total_j_slow_bound", None)
        if slow_latency is not None:
            latency += f" to {format_seconds(slow_latency)}"
        if slow_total is not None:
            total += f" to {format_energy(slow_total)}"
        table.add_row(
            r.model,
            r.device,
            r.kind,
            "-" if r.accuracy is None else f"{r.accuracy:.3f}",
            latency,
            "-" if r.dynamic_j is None else format_energy(r.dynamic_j),
            total,
        )
    show_table(table)
    if any(getattr(r, "latency_s_slow_bound", None) is not None for r in rows):
        console.print(
            "'A to B': a bracket from the profile's fast and slow synaptic op times (Loihi 2: Hala Point "
            "peak rate to Loihi 1's 3.5 ns); report.html says why"
        )
    paths = getattr(rep, "paths", None)
    if paths:
        console.print(f"report: {paths[0]}  data: {paths[1]}")


@app.command("sweep")
def sweep_cmd(
    config: Path = typer.Argument(
        ..., help="sweep config (TOML): [sweep], [grid] or [[grid]], [train], [model], [ray]"
    ),
    out: Path = typer.Option(
        ..., "-o", "--out", help="sweep directory (rerunning skips finished trials)"
    ),
    address: Optional[str] = typer.Option(
        None,
        "--address",
        help="join this Ray cluster (host:port or 'auto'); default: start Ray locally",
    ),
    num_cpus: Optional[int] = typer.Option(
        None, "--num-cpus", help="CPUs of the local Ray (default: all)"
    ),
    max_concurrent: Optional[int] = typer.Option(
        None, "--max-concurrent", help="trials at once (default: as resources allow)"
    ),
    cpus_per_trial: Optional[float] = typer.Option(
        None, "--cpus-per-trial", help="CPUs per trial (default 1; also torch threads)"
    ),
    progress: Optional[bool] = typer.Option(
        None,
        "--progress/--no-progress",
        help="a bar of trials, only on a terminal (default: the global option)",
    ),
    max_trials: Optional[int] = typer.Option(
        None,
        "--max-trials",
        help="confirm a grid larger than 1000 combinations (up to this many trials)",
    ),
) -> None:
    """Accuracy vs chip energy: train, export, emulate and estimate energy for every grid point on Ray Tune."""
    from neurocxr.api import sweep

    def on_trial(row: dict) -> None:
        if row.get("status") != "ok":
            say("trial failed", f"{row.get('params')}: {row.get('error')}", "red")

    done = sweep(
        config,
        out=out,
        address=address,
        num_cpus=num_cpus,
        max_concurrent=max_concurrent,
        cpus_per_trial=cpus_per_trial,
        progress=progress,
        max_trials=max_trials,
        on_trial=on_trial,
    )
    cfg, result = done.config, done.result
    console.print(
        f"{result.ran} trials run, {result.skipped} already finished, {result.failed} failed"
    )
    table = Table(
        title=f"Pareto front (chosen on validation; test acc at the chip threshold chosen on val; "
        f"energy: {cfg.pareto_profile} chip counts)"
    )
    # the grid's other axes (depth, teacher, augment, prune, ...), so that rows that differ only
    # there do not look identical
    shown = ("model", "num_steps", "readout_steps", "encoding", "regulariser", "width", "seed")

    def other_axes(row: dict) -> str:
        extra = {k: v for k, v in sorted((row.get("params") or {}).items()) if k not in shown}
        return ", ".join(f"{k}={v}" for k, v in extra.items())

    others = [other_axes(r) for r in result.front]
    with_others = any(others)
    columns = ["model", "steps", "enc", "lambda (/uJ)", "width", "seed"]
    columns += ["other axes"] if with_others else []
    for col in columns + ["val AUC", "test AUC", "test acc", "uJ"]:
        table.add_column(col)
    for r, other in zip(result.front, others):
        table.add_row(
            str(r["model"]),
            f"{r['readout_steps']}/{r['num_steps']}",
            str(r["encoding"]),
            f"{r['regulariser']:g}",
            f"{r['width']:g}",
            str(r["seed"]),
            *([other or "-"] if with_others else []),
            f"{r['val_auc']:.4f}",
            f"{r['test_auc']:.4f}",
            f"{r['test_accuracy']:.4f}",
            f"{r['energy'][cfg.pareto_profile]['dynamic_j'] * 1e6:.2f}",
        )
    show_table(table)
    for name, path in result.files.items():
        console.print(f"{name}: {path}")


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), "-o", "--out"),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    epochs: int = typer.Option(4, help="SNN training epochs (short on purpose)"),
    max_train_samples: Optional[int] = typer.Option(None),
    lava_samples: int = typer.Option(2),
    force: bool = typer.Option(
        False, help="overwrite the outputs of an earlier demo in the -o folder"
    ),
) -> None:
    """The whole chain: train, export to Loihi, verify on emulator + Lava, count, estimate, measure, report."""
    from neurocxr.api import demo

    def on_event(name: str, value) -> None:
        if name == "stage":
            console.rule(value)
        elif name == "status":
            console.print(value, style="dim")
        elif name == "trained":
            for res in (value["snn"], value["cnn"]):
                _say_data_line(res)
                console.print(
                    f"{res.model}: best epoch {res.best_epoch}, val AUC {res.val['roc_auc']:.4f}, "
                    f"{res.seconds_per_epoch:.1f} s/epoch"
                )
            show_table(_metrics_table("test metrics (threshold chosen on val)", value["test"]))
        elif name == "exported":
            for key, path in value.files.items():
                console.print(f"wrote {key}: {path}")
            print_parity(value.report.to_dict())
        elif name == "report":
            print_energy_facts(value)
            print_summary(value)

    result = demo(
        out=out,
        data=data,
        epochs=epochs,
        max_train_samples=max_train_samples,
        lava_samples=lava_samples,
        on_event=on_event,
        force=force,
    )
    console.print(f"demo finished in {result.seconds:.0f} s")


def _guarded(fn):
    """Print user-facing errors as one line (exit code 2) instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NeurocxrError as err:
            say("error:", err, "bold red")
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt as interrupt:
            # Staged outputs were discarded and Lava / Ray stopped on the way out (finally blocks);
            # a command that keeps something (a sweep's finished trials) says what (errors.Interrupted).
            say("interrupted:", str(interrupt) or "no output was written", "bold red")
            raise typer.Exit(code=130) from None

    return wrapper


for _typer in (app, data_app):
    for _cmd in _typer.registered_commands:
        _cmd.callback = _guarded(_cmd.callback)


def main() -> None:
    """Entry point: user-facing errors are printed plainly, with no traceback."""
    try:
        app()
    except NeurocxrError as err:
        say("error:", err, "bold red")
        sys.exit(2)
    except KeyboardInterrupt:  # before a command started (imports)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        say("interrupted:", "no output was written", "bold red")
        _exit_interrupted()
    except SystemExit as done:
        if done.code == 130:
            _exit_interrupted()
        # the command has finished (outputs written, results printed): a Ctrl-C during the
        # interpreter's shutdown would only turn its exit code into -2
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise


def _exit_interrupted() -> None:
    """Exit 130 after Ctrl-C. With Ray in the process, without the interpreter's shutdown: Ray's
    driver threads, cut off by the interrupt, crash it (exit -11) after the sweep had stopped Ray
    and cleaned up. Everything this process started is stopped by then (finally blocks). A further
    Ctrl-C is ignored from here: it would end the exit as an unhandled KeyboardInterrupt (-2)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    interrupts.forget_caught_interrupt()
    interrupts.disarm_half_built_finalizers()
    if "ray" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(130)


if __name__ == "__main__":
    main()
