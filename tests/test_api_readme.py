"""The README's Python API example runs as written, and the API is complete: every CLI command is
one call in `neurocxr.api` taking the command's options under their Python names."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import typer

import neurocxr
from neurocxr import api
from neurocxr.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- api-example"

# CLI command -> API function, where the names differ (the CLI's names are shorter)
API_NAME = {
    "models": "list_models",
    "netx": "inspect_netx",
    "energy": "energy_report",
    "report": "energy_report",
    "data info": "data_info",
    "data fetch": "fetch_data",
}
# CLI parameter -> API keyword, where the names differ (a repeatable option is plural in Python;
# --json is json= but the typer callback cannot name a parameter after the module json)
API_PARAM = {"json_out": "json", "baseline": "baselines", "profile": "profiles"}


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    assert MARKER in text, "the README lost its marked Python API example"
    block = re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert block is not None
    return block.group(1)


def with_paths(code: str, source: Path, data: str) -> str:
    """The example with its two path variables pointed at the test's files (and nothing else changed)."""
    replaced, n_source = re.subn(
        r'^SOURCE = "[^"]*"', f"SOURCE = {str(source)!r}", code, flags=re.M
    )
    replaced, n_data = re.subn(r'^DATA = "[^"]*"', f"DATA = {data!r}", replaced, flags=re.M)
    assert n_source == 1 and n_data == 1, "the example must set SOURCE and DATA on one line each"
    return replaced


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("api_readme")
    summary = api.train(
        "snn_conv",
        data="synthetic",
        out=out,
        epochs=1,
        batch_size=32,
        num_steps=4,
        image_size=16,
        max_train_samples=64,
    )
    assert isinstance(summary, api.TrainSummary)
    return Path(summary.checkpoint)


@pytest.mark.slow
def test_readme_api_example_runs_on_a_checkpoint_and_on_its_nir_graph(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = readme_example()
    ran = {}
    neurocxr.export(tiny_checkpoint, out=tmp_path / "nir", target="nir")
    for name, source in (("checkpoint", tiny_checkpoint), ("nir", tmp_path / "nir" / "model.nir")):
        namespace: dict = {}
        exec(
            compile(with_paths(code, source, "synthetic"), f"README.md ({name})", "exec"), namespace
        )
        ran[name] = namespace
        assert Path(namespace["SOURCE"]) == source
        dep, run, energy = namespace["dep"], namespace["run"], namespace["energy"]
        assert isinstance(dep, neurocxr.Deployment)
        assert run.readout.shape[0] == 32 and len(run.counts) == len(dep.program.layers)
        assert all(c.num_samples == 32 for c in run.counts)
        assert energy.dynamic_j > 0 and energy.device
        # the example's claim: dep.run takes the same batch and gives the same run
        again = dep.run(namespace["batch"])
        np.testing.assert_array_equal(again.readout, run.readout)
    printed = capsys.readouterr().out
    assert "synaptic ops" in printed and "J per inference" in printed
    # the checkpoint's program and the program read back from its NIR graph run alike
    np.testing.assert_array_equal(ran["checkpoint"]["run"].readout, ran["nir"]["run"].readout)


@pytest.mark.slow
def test_pixel_rule_is_one_for_emulate_deployment_and_engine(tiny_checkpoint: Path) -> None:
    from neurocxr.errors import NeurocxrError, SimulationError
    from neurocxr.hardware_sims.emulator import emulate as engine

    dep = neurocxr.Deployment.from_checkpoint(tiny_checkpoint)
    rng = np.random.default_rng(0)
    x8 = rng.integers(0, 256, (3, *dep.program.input_shape)).astype(np.uint8)
    as_float = x8.astype(np.float32) / np.float32(255.0)
    reference = neurocxr.emulate(dep.program, as_float).readout
    for run in (
        neurocxr.emulate(dep.program, x8),
        dep.run(x8),
        engine(dep.program, x8),
        engine(dep.program, x8.astype(np.uint16) * 257),
    ):
        np.testing.assert_array_equal(run.readout, reference)
    raw = dep.program.quantise_input(as_float)  # the input-bias mantissas those images become
    for run in (
        neurocxr.emulate(dep.program, raw, raw_bias=True),
        dep.run(raw, raw_bias=True),
        engine(dep.program, raw, raw_bias=True),
    ):
        np.testing.assert_array_equal(run.readout, reference)
    for call in (
        lambda: neurocxr.emulate(dep.program, raw),
        lambda: dep.run(raw),
        lambda: engine(dep.program, raw),
    ):
        with pytest.raises(NeurocxrError, match="raw_bias=True"):
            call()
    with pytest.raises(SimulationError, match="integer array of bias mantissas"):
        dep.run(as_float, raw_bias=True)
    with pytest.raises(SimulationError, match=r"outside \[0, 1\]"):
        dep.run(as_float * 1.5)


def _cli_commands() -> dict[str, typer.models.CommandInfo]:
    commands = {}
    for command in app.registered_commands:
        commands[command.name or command.callback.__name__] = command
    for group in app.registered_groups:
        for command in group.typer_instance.registered_commands:
            commands[f"{group.name} {command.name}"] = command
    return commands


def test_every_cli_command_is_one_api_call_with_the_same_options() -> None:
    commands = _cli_commands()
    assert {
        "train",
        "evaluate",
        "explain",
        "export",
        "netx",
        "energy",
        "sweep",
        "data info",
        "models",
    } <= set(commands)
    for name, command in commands.items():
        fn_name = API_NAME.get(name, name)
        assert fn_name in api.__all__, (
            f"`neurocxr {name}` has no API function {fn_name} in neurocxr.api.__all__"
        )
        # neurocxr.sweep is the sweep package (its call is neurocxr.api.sweep); every other call is at the top too
        assert fn_name in neurocxr.__all__ or fn_name == "sweep", (
            f"neurocxr.{fn_name} is not exported from neurocxr"
        )
        fn = getattr(api, fn_name)
        api_params = inspect.signature(fn).parameters
        callback = inspect.unwrap(command.callback)
        for param in inspect.signature(callback).parameters.values():
            keyword = (
                param.name if param.name in api_params else API_PARAM.get(param.name, param.name)
            )
            assert keyword in api_params, (
                f"`neurocxr {name}` option {param.name} is not {fn_name}'s keyword {keyword}"
            )
            cli_default = (
                param.default.default if hasattr(param.default, "default") else param.default
            )
            api_default = api_params[keyword].default
            if cli_default is not ... and api_default is not inspect.Parameter.empty:
                # same defaults (a repeatable option's [] is the API's empty tuple / None)
                same = (
                    cli_default == api_default
                    or (cli_default == [] and api_default in ((), None))
                    or str(cli_default) == str(api_default)
                )
                assert same, (
                    f"`neurocxr {name}` {param.name} defaults to {cli_default!r}, {fn_name} to {api_default!r}"
                )


def test_api_results_are_dataclasses() -> None:
    import dataclasses

    for name in (
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
    ):
        assert dataclasses.is_dataclass(getattr(api, name)), name
    models = neurocxr.list_models()
    assert models and all(isinstance(m, api.ModelSummary) for m in models)
    assert {"snn_conv", "cnn_small"} <= {m.name for m in models}
    info = neurocxr.data_info("synthetic")
    assert info.synthetic and set(info.splits) == {"train", "val", "test"}
    assert info.to_dict()["splits"]["test"]["total"] == info.splits["test"]["total"] > 0
