"""What the CLI prints (issue 19 items 2 and 8): user text is never read as Rich markup; every
printed accuracy names its decision rule and every threshold its scale; tables never cut a value
(plain text when stdout is not a terminal); progress bars only on a terminal and never with
--no-progress."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import torch
from conftest import write_medmnist_npz
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from neurocxr import cli
from neurocxr.cli import app
from neurocxr.models import ModelConfig, build_model
from neurocxr.models.checkpoint import save_checkpoint

runner = CliRunner()

# brackets (Rich markup and its closing tag), spaces and non-ASCII in one folder name
ODD = "[red]x[/] [/]a b ü"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("odd") / ODD
    root.mkdir(parents=True)  # "[/]" holds a slash: nested folders
    cnn_cfg = ModelConfig(name="cnn_small", image_size=16, channels=(4, 8), hidden=(16,))
    torch.manual_seed(0)
    return {
        "root": root,
        "cnn": save_checkpoint(
            root / "cnn [v1].pt", build_model(cnn_cfg).eval(), cnn_cfg, {"threshold": 0.5}
        ),
        "npz": write_medmnist_npz(
            root / "tiny [x].npz", 16, {"train": (6, 10), "val": (3, 3), "test": (3, 4)}
        ),
    }


def _terminal_console(width: int) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(
        file=buf,
        force_terminal=True,
        width=width,
        markup=False,
        emoji=False,
        soft_wrap=True,
        color_system=None,
    ), buf


# ---------------------------------------------------------------------------------------------
# item 2: user text is text


def test_sweep_help_shows_its_section_names() -> None:
    res = runner.invoke(app, ["sweep", "--help"])
    assert res.exit_code == 0, res.output
    assert "[sweep], [grid] or [[grid]], [train], [model], [ray]" in " ".join(res.output.split())


def test_metrics_table_shows_the_confusion_matrix_label(capsys: pytest.CaptureFixture[str]) -> None:
    table = cli._metrics_table(
        "m on test", {"test": {"accuracy": 0.5, "threshold": 0.3, "confusion": [[1, 2], [3, 4]]}}
    )
    cli.show_table(table)
    out = capsys.readouterr().out
    assert "confusion [[tn,fp],[fn,tp]]" in out and "[[1, 2], [3, 4]]" in out


def test_an_error_naming_a_path_with_brackets_prints_it_verbatim(tmp_path: Path) -> None:
    missing = tmp_path / ODD / "none.pt"
    res = runner.invoke(app, ["evaluate", str(missing)])
    assert res.exit_code == 2, res.output
    assert (
        str(missing) in res.output
        and "Traceback" not in res.output
        and "MarkupError" not in res.output
    )


def test_sweep_errors_keep_their_section_words(tmp_path: Path) -> None:
    bad = tmp_path / ODD / "sweep.toml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        '[sweep]\ndata = "synthetic"\n[gird]\nmodel = ["snn_strided"]\n', encoding="utf-8"
    )
    res = runner.invoke(app, ["sweep", str(bad), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert f"{bad}: unknown section [gird];" in res.output
    assert not (tmp_path / "out").exists()


def test_files_written_under_a_bracketed_path_are_reported_where_they_are(
    files: dict[str, Path],
) -> None:
    out = files["root"] / "onnx [/] out"
    res = runner.invoke(app, ["export", str(files["cnn"]), "--target", "onnx", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "model.onnx").is_file()
    assert str(out / "model.onnx") in res.output  # the path as it is, brackets and all, on one line


def test_labelled_lines_keep_user_text(capsys: pytest.CaptureFixture[str]) -> None:
    cli.say("error:", "bad [bold]x[/] in [/]", "bold red")
    cli.console.print("wrote [red]a[/]:smile:")
    out = capsys.readouterr().out
    assert "error: bad [bold]x[/] in [/]" in out and "wrote [red]a[/]:smile:" in out


# ---------------------------------------------------------------------------------------------
# item 8: readable output


def _wide_table() -> Table:
    table = Table(title="numbers")
    for col in ("device name that is long", "accuracy", "energy"):
        table.add_column(col, justify="right")
    table.add_row("NVIDIA H100 80GB HBM3 (onnxruntime)", "0.851234", "1.234e-06 J")
    return table


def test_tables_are_plain_text_when_stdout_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli.show_table(_wide_table())
    out = capsys.readouterr().out
    assert "…" not in out and "│" not in out and "┃" not in out  # no ellipsis, no box drawing
    lines = out.splitlines()
    assert lines[0] == "numbers"
    assert lines[2].split("  ")[-1].strip() == "1.234e-06 J"
    assert "NVIDIA H100 80GB HBM3 (onnxruntime)" in lines[2] and "0.851234" in lines[2]


@pytest.mark.parametrize("width", [30, 60, 200])
def test_tables_on_a_narrow_terminal_fold_instead_of_cutting(
    monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    console, buf = _terminal_console(width)
    monkeypatch.setattr(cli, "console", console)
    cli.show_table(_wide_table())
    out = buf.getvalue()
    assert "…" not in out
    # folded cells interleave across columns: every character of each value is still there, in order
    rest = iter("".join(ch for ch in out if ch not in " │┃┏┓┗┛━─┡┩└┘┌┐╇╈┳┻┼╋┴┬├┤\n"))
    for value in ("numbers", "NVIDIAH10080GBHBM3(onnxruntime)", "0.851234", "1.234e-06J"):
        rest = iter("".join(ch for ch in out if ch not in " │┃┏┓┗┛━─┡┩└┘┌┐╇╈┳┻┼╋┴┬├┤\n"))
        assert all(ch in rest for ch in value), value


def test_every_printed_accuracy_names_its_rule(capsys: pytest.CaptureFixture[str]) -> None:
    parity = {
        "samples": 32,
        "data": "x.npz",
        "float_accuracy": 0.41,
        "emulator_accuracy": 0.41,
        "prediction_changed_fraction": 0.0,
        "decision_rule": "argmax of readout",
        "operating_point": {"float_test": {"accuracy": 0.84}, "chip_test": {"accuracy": 0.83}},
    }
    cli.print_parity({"parity": parity, "resources": {"limits": {}}})
    out = " ".join(capsys.readouterr().out.split())
    assert "accuracy at the thresholds chosen on val" in out and "0.8400" in out and "0.8300" in out
    assert "decided by argmax of readout" in out and "0.4100" in out


def test_robustness_summary_gives_threshold_scales() -> None:
    from neurocxr.evaluation.run import summary_lines

    rob = {
        "model": "m",
        "samples": 32,
        "split": "test",
        "thresholds": {"float": 0.61, "chip": -689536.0},
        "protocol": {"gaussian_blur": {"parameter": "sigma (pixels)"}},
        "results": [
            {
                "perturbation": "gaussian_blur",
                "level": 0.4,
                "float": {"accuracy": 0.8, "roc_auc": 0.9},
            }
        ],
        "chip": {"evaluated": True},
    }
    text = " ".join(summary_lines({"robustness": rob}))
    assert "gaussian_blur    sigma (pixels) 0.4" in text  # each level with its unit
    assert (
        "chip threshold -689536 on the readout difference" in text and "Loihi integer units" in text
    )
    assert (
        "float threshold 0.6100 on P(pneumonia)" in text
        and "accuracy at the thresholds chosen on val" in text
    )


def test_verdict_states_its_sample_count() -> None:
    from neurocxr.report import Report
    from neurocxr.report.verdict import _sample_sentence, verdict

    report = Report(
        title="t", created="now", data_source="x.npz [test, 32 samples]", parity={"samples": 32}
    )
    assert _sample_sentence(report) == " Counted on 32 test images only."
    report.parity = {}
    assert _sample_sentence(report) == " Counted on 32 test images only."  # from the data line
    report.data_source = "x.npz"
    assert _sample_sentence(report) == ""
    report.parity = {"samples": 624}
    assert _sample_sentence(report) == " Counted on 624 test images."
    from neurocxr.report import SummaryRow

    report.summary = [
        SummaryRow(
            model="snn",
            device="loihi",
            accuracy=0.8,
            latency_s=None,
            dynamic_j=2e-6,
            total_j=None,
            kind="estimated",
            source="s",
            basis="chip counts",
        )
    ]
    assert verdict(report).endswith(" Counted on 624 test images.")  # also with one side only


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    "argv, stderr_is_tty, drawn",
    [
        ([], True, True),
        (["--no-progress"], True, False),
        ([], False, False),
        (["--progress"], False, False),
    ],
)
def test_evaluate_robustness_bars_follow_no_progress_and_the_terminal(
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
    stderr_is_tty: bool,
    drawn: bool,
) -> None:
    import neurocxr.api as api
    from neurocxr import validation
    from neurocxr.evaluation.run import ClinicalEvaluation

    seen: dict[str, bool] = {}

    def fake_clinical_evaluation(*args, progress: bool, **kwargs):
        seen["progress"] = progress
        return ClinicalEvaluation()

    # patched where the API calls them (it imports both at module top)
    monkeypatch.setattr(api, "clinical_evaluation", fake_clinical_evaluation)
    # CliRunner swaps sys.stderr for its own buffer: the terminal check gets its stream here
    check = validation.show_progress
    stream = _Tty() if stderr_is_tty else io.StringIO()
    monkeypatch.setattr(
        api, "show_progress", lambda requested=None, _=None: check(requested, stream)
    )
    try:
        res = runner.invoke(
            app,
            [
                *argv,
                "evaluate",
                str(files["cnn"]),
                "--data",
                str(files["npz"]),
                "--robustness",
                "--no-chip",
                "-o",
                str(tmp_path / "ev"),
            ],
        )
    finally:
        validation.set_progress(True)
    assert res.exit_code == 0, res.output
    assert seen["progress"] is drawn


@pytest.mark.parametrize(
    "progress, stderr_is_tty, drawn",
    [
        (True, True, True),
        (False, True, False),
        (True, False, False),
        (None, True, True),
    ],
)
def test_sweep_bar_follows_no_progress_and_the_terminal(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    progress: bool | None,
    stderr_is_tty: bool,
    drawn: bool,
) -> None:
    import sys

    import tqdm.auto

    from neurocxr.sweep import RayOptions, TrialSettings, ray_runner

    ray_runner.import_ray()
    from ray import tune

    disabled: list[bool] = []

    class Bar:
        def __init__(self, *args, disable: bool = False, **kwargs) -> None:
            disabled.append(disable)

        def close(self) -> None:
            pass

    class Tuner:  # no Ray: the bar's switch is all this test looks at
        def __init__(self, *args, **kwargs) -> None:
            pass

        def fit(self) -> None:
            return None

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    monkeypatch.setattr(ray_runner, "_start_ray", lambda ray, options, worker_env: False)
    monkeypatch.setattr(tune, "Tuner", Tuner)
    monkeypatch.setattr(sys, "stderr", _Tty() if stderr_is_tty else io.StringIO())
    ray_runner.run_on_ray(
        [("t1", {"model": "snn_strided"})],
        TrialSettings(),
        RayOptions(),
        tmp_path,
        lambda row: None,
        progress,
    )
    assert disabled == [not drawn]


def test_data_info_json_keeps_brackets(files: dict[str, Path]) -> None:
    res = runner.invoke(app, ["data", "info", str(files["npz"])])
    assert res.exit_code == 0, res.output
    assert "tiny [x].npz" in res.output


def test_export_prints_the_float_accuracy_evaluate_prints(tmp_path: Path) -> None:
    """The export's accuracy at the validation threshold is the number `evaluate` gives for the
    same checkpoint and split; the argmax parity figures are labelled as argmax."""
    from neurocxr.models import ModelConfig as Cfg

    torch.manual_seed(0)
    cfg = Cfg(name="snn_conv", image_size=16, num_steps=4, channels=(4, 8), hidden=(16,))
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(3.0)
    ckpt = save_checkpoint(tmp_path / "snn.pt", model, cfg, {"threshold": 0.45})
    npz = write_medmnist_npz(
        tmp_path / "tiny.npz", 16, {"train": (6, 10), "val": (3, 3), "test": (9, 11)}
    )
    ev = runner.invoke(
        app, ["evaluate", str(ckpt), "--data", str(npz), "--json", str(tmp_path / "m.json")]
    )
    assert ev.exit_code == 0, ev.output
    accuracy = json.loads((tmp_path / "m.json").read_text())["metrics"]["accuracy"]
    ex = runner.invoke(
        app,
        [
            "export",
            str(ckpt),
            "--data",
            str(npz),
            "-o",
            str(tmp_path / "ex"),
            "--lava-samples",
            "0",
        ],
    )
    assert ex.exit_code == 0, ex.output
    out = " ".join(ex.output.split())
    assert (
        "float model accuracy at its threshold chosen on val (0.4500 on P(pneumonia), the "
        f"rule of `evaluate`): {accuracy:.4f}" in out
    )
    assert "decided by argmax" in out


def test_energy_summary_prints_the_loihi2_bracket_on_its_rows_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from types import SimpleNamespace

    import numpy as np

    from neurocxr.energy.estimate import estimate_energy
    from neurocxr.hardware_sims.results import LayerCounts
    from neurocxr.report import format_energy, format_seconds
    from neurocxr.report.model import summary_from

    s = np.asarray([40, 60], dtype=np.int64)
    counts = [
        LayerCounts("conv1", "conv", 500, 9, 4500, 16, s * 2, s, s * 9, s * 0 + 72000, s * 0 + 8000)
    ]
    estimates = [
        estimate_energy(counts, device, model="snn_conv", basis="chip")
        for device in ("loihi", "loihi2")
    ]
    l2 = estimates[1]
    cli.print_summary(SimpleNamespace(summary=summary_from(estimates, []), paths=None))
    out = capsys.readouterr().out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("snn_conv")}
    lat = f"{format_seconds(l2.latency_s)} to {format_seconds(l2.timing['latency_s_slow_bound'])}"
    total = f"{format_energy(l2.total_j)} to {format_energy(l2.total_j_slow_bound)}"
    assert lat in rows["loihi2"] and total in rows["loihi2"]
    assert " to " not in rows["loihi"]
    assert "a bracket from the profile's fast and slow synaptic op times" in out
    # without a bracketed profile: no bracket sentence
    cli.print_summary(SimpleNamespace(summary=summary_from(estimates[:1], []), paths=None))
    assert "bracket" not in capsys.readouterr().out


@pytest.mark.lava  # the fixture file is written by lava-dl's slayer exporter
def test_netx_command_prints_the_loihi2_bracket(tmp_path: Path) -> None:
    from _slayer_files import conv_spike_input_file

    path = conv_spike_input_file(tmp_path / "c.net")
    args = ["netx", str(path), "--num-steps", "5", "--samples", "2"]
    l2 = runner.invoke(app, [*args, "--profile", "loihi2"], catch_exceptions=False)
    assert l2.exit_code == 0, l2.output
    text = " ".join(l2.output.split())
    assert re.search(r"total \S+ J to \S+ J per inference", text), text
    assert re.search(r"modelled latency \S+ to \S+ ms, [\d,]+ to [\d,]+ frames/s", text), text
    l1 = runner.invoke(app, args, catch_exceptions=False)  # default profile 'loihi': no bracket
    assert l1.exit_code == 0 and "modelled latency" not in l1.output
    assert not re.search(r"J to \S+ J", " ".join(l1.output.split()))


def test_sweep_front_table_names_the_grid_axes_it_has_no_column_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two front rows that differ only in a lever without its own column (prune, depth, ...)
    must not print as identical rows."""
    from types import SimpleNamespace

    import neurocxr.api

    def row(params: dict, auc: float) -> dict:
        base = dict(model="snn_vgg", num_steps=8, readout_steps=8, encoding="regular")
        base.update(regulariser=0.0, width=1.0, seed=0)
        return {
            **base,
            "params": {**base, **params},
            "val_auc": auc,
            "test_auc": auc,
            "test_accuracy": 0.9,
            "energy": {"loihi2": {"dynamic_j": 3e-5}},
        }

    front = [row({"prune": 0.5, "depth": 6}, 0.95), row({"prune": 0.0, "depth": 6}, 0.96)]
    done = SimpleNamespace(
        config=SimpleNamespace(pareto_profile="loihi2"),
        result=SimpleNamespace(ran=2, skipped=0, failed=0, front=front, files={}),
    )
    monkeypatch.setattr(neurocxr.api, "sweep", lambda *a, **k: done)
    config = tmp_path / "sweep.toml"
    config.write_text("[grid]\n")
    res = runner.invoke(app, ["--no-progress", "sweep", str(config), "-o", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "other axes" in res.output
    assert "depth=6, prune=0.5" in res.output and "depth=6, prune=0.0" in res.output
