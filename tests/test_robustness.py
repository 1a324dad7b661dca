"""Issue 11: one-line refusals of bad options, non-finite weights and inputs, uint8 images in the
emulator, no partial output on error or Ctrl-C, no overwrite, scoped profile registration."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_medmnist_npz
from typer.testing import CliRunner

from neurocxr.cli import app
from neurocxr.errors import CheckpointError, ConfigError, DataError, NeurocxrError, SimulationError
from neurocxr.fileio import staged_output
from neurocxr.models import ModelConfig, build_model
from neurocxr.models.checkpoint import load_checkpoint, save_checkpoint
from neurocxr.training.train import TrainConfig

runner = CliRunner()


def tiny_snn_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(name="snn_conv", image_size=16, num_steps=4, channels=(4, 8), hidden=(16,))
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(3.0)
    return save_checkpoint(path, model, cfg, {"threshold": 0.5})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("robust")
    cnn_cfg = ModelConfig(name="cnn_small", image_size=16, channels=(4, 8), hidden=(16,))
    return {
        "root": root,
        "snn": tiny_snn_checkpoint(root / "snn.pt"),
        "cnn": save_checkpoint(
            root / "cnn.pt", build_model(cnn_cfg).eval(), cnn_cfg, {"threshold": 0.5}
        ),
        "npz": write_medmnist_npz(
            root / "tiny.npz", 16, {"train": (6, 10), "val": (3, 3), "test": (3, 4)}
        ),
    }


# ---------------------------------------------------------------------------------------------
# 2. configuration objects


@pytest.mark.parametrize(
    "kwargs, accepted",
    [
        ({"encoding": "foo"}, "direct, rate, latency"),
        ({"name": "no_such_model"}, "snn_conv"),
        ({"image_size": 7}, ">= 8"),
        ({"num_steps": 0}, ">= 1"),
        ({"beta": float("nan")}, "[0, 1]"),
        ({"threshold": 0.0}, "(0, inf)"),
        ({"dropout": 1.0}, "[0, 1)"),
        ({"channels": ("a",)}, "integer"),
    ],
)
def test_model_config_raises_config_error_with_accepted_values(kwargs: dict, accepted: str) -> None:
    with pytest.raises(ConfigError) as info:
        ModelConfig(**kwargs)
    assert accepted in str(info.value)
    # old callers that caught ValueError still work, and the CLI prints it as one line
    assert isinstance(info.value, ValueError) and isinstance(info.value, NeurocxrError)


@pytest.mark.parametrize(
    "kwargs, accepted",
    [
        ({"epochs": 0}, ">= 1"),
        ({"lr": float("inf")}, "finite"),
        ({"balance": "x"}, "weights, sampler, none"),
        ({"batch_size": 2.5}, "integer"),
        ({"max_train_samples": 1}, ">= 2"),
        ({"label_smoothing": 1.0}, "[0, 1)"),
    ],
)
def test_train_config_raises_config_error(kwargs: dict, accepted: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        TrainConfig(**kwargs)
    assert accepted in str(info.value)


def test_builder_value_error_becomes_config_error_naming_the_model() -> None:
    cfg = ModelConfig(
        name="snn_norse", image_size=16, beta=1.0
    )  # Norse's LIFBoxCell needs beta < 1
    with pytest.raises(ConfigError, match="snn_norse"):
        build_model(cfg)


# ---------------------------------------------------------------------------------------------
# 1. the issue's cases through the CLI: one line, exit 2, nothing written


@pytest.mark.parametrize(
    "argv, says",
    [
        (["train", "--encoding", "foo"], "direct, rate, latency"),
        (["train", "--epochs", "0"], "epochs"),
        (["train", "--model", "no_such_model"], "snn_conv"),
        (["train", "--image-size", "7"], "image_size"),
        (["export", "{snn}", "--split", "foo", "--data", "{npz}"], "train, val, test"),
        (
            ["energy", "{snn}", "--max-samples", "0", "--data", "{npz}", "--no-measure"],
            "--max-samples",
        ),
        (["evaluate", "{snn}", "--split", "foo", "--data", "{npz}"], "train, val, test"),
    ],
)
def test_issue_cases_are_one_line_errors_with_nothing_written(
    files, tmp_path: Path, argv: list[str], says: str
) -> None:
    out = tmp_path / "out"
    args = [a.format(snn=files["snn"], npz=files["npz"]) for a in argv]
    if args[0] in ("train", "export", "energy"):
        args += ["-o", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error:") and says in res.output
    assert "Traceback" not in res.output
    assert not out.exists() and os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# 3. non-finite weights, biases, thresholds and inputs


@pytest.mark.parametrize(
    "which, value",
    [
        ("readout.weight", float("nan")),
        ("layers.1.bias", float("inf")),
        ("layers.0.threshold", float("-inf")),
    ],
)
def test_non_finite_tensor_is_refused_at_load_naming_it(
    tmp_path: Path, which: str, value: float
) -> None:
    path = tiny_snn_checkpoint(tmp_path / "ok.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"][which].view(-1)[0] = value
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=rf"'{which}'.*(NaN|inf)"):
        load_checkpoint(tmp_path / "bad.pt")
    res = runner.invoke(
        app, ["export", str(tmp_path / "bad.pt"), "-o", str(tmp_path / "x"), "--target", "nir"]
    )
    assert res.exit_code == 2 and which in res.output and not (tmp_path / "x").exists()


def test_empty_and_foreign_checkpoint_files_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("hello\n")
    for name, says in (("empty.pt", "empty"), ("text.pt", "not a readable torch checkpoint")):
        with pytest.raises(CheckpointError, match=says):
            load_checkpoint(tmp_path / name)


def test_nan_images_are_refused_by_the_dataset_and_the_model_runner(files) -> None:
    from neurocxr.data.datasets import ImageDataset
    from neurocxr.models.loaded import float_logits, load

    images = torch.rand(4, 1, 16, 16)
    images[2, 0, 3, 3] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        ImageDataset(images, torch.zeros(4, dtype=torch.int64), "test", "made up")
    with pytest.raises(DataError, match="NaN"):
        float_logits(load(files["snn"]), images)
    with pytest.raises(NeurocxrError, match="no images"):
        float_logits(load(files["snn"]), images[:0])


# ---------------------------------------------------------------------------------------------
# 4. emulate(): uint8 are images in 0-255; raw bias only when asked for


def test_emulate_reads_uint8_as_images_and_raw_bias_only_when_asked() -> None:
    from _netx_programs import default_shaped_program

    import neurocxr

    program = default_shaped_program(num_steps=4)
    rng = np.random.default_rng(0)
    img8 = rng.integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    as_float = neurocxr.emulate(program, img8.astype(np.float32) / 255.0)
    as_uint8 = neurocxr.emulate(program, img8)
    np.testing.assert_array_equal(as_uint8.readout, as_float.readout)
    bias = program.quantise_input(img8.astype(np.float32) / 255.0)
    raw = neurocxr.emulate(program, bias, raw_bias=True)
    np.testing.assert_array_equal(raw.readout, as_float.readout)
    # What the issue saw: uint8 taken as mantissas is a different (1/16 strength) input.
    misread = neurocxr.emulate(program, img8.astype(np.int64), raw_bias=True)
    assert not np.array_equal(misread.readout, as_float.readout)
    with pytest.raises(SimulationError, match="raw_bias=True"):
        neurocxr.emulate(program, img8.astype(np.int32))
    with pytest.raises(SimulationError, match="integer array"):
        neurocxr.emulate(program, img8.astype(np.float32), raw_bias=True)
    with pytest.raises(DataError, match="inf"):
        neurocxr.emulate(program, np.full((1, 1, 28, 28), np.inf, np.float32))


# ---------------------------------------------------------------------------------------------
# 5 and 8. staged output, no overwrite, Ctrl-C


def test_staged_output_leaves_nothing_on_ctrl_c_and_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "out"
    with pytest.raises(KeyboardInterrupt):
        with staged_output(out, ["a.txt"], force=False) as stage:
            (stage / "a.txt").write_text("half")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []  # not even the parent folders, nor a staging folder

    with staged_output(out, ["a.txt"], force=False) as stage:
        (stage / "a.txt").write_text("first")
        (stage / "sub").mkdir()
        (stage / "sub" / "b.txt").write_text("nested")
    assert (out / "a.txt").read_text() == "first" and (
        out / "sub" / "b.txt"
    ).read_text() == "nested"

    with pytest.raises(NeurocxrError, match="--force"):
        with staged_output(out, ["a.txt"], force=False):
            pytest.fail("the block must not run when an announced file exists")
    # a file the command did not announce is protected as well
    with pytest.raises(NeurocxrError, match="sub/b.txt"):
        with staged_output(out, ["c.txt"], force=False) as stage:
            (stage / "sub").mkdir()
            (stage / "sub" / "b.txt").write_text("overwrite?")
    assert (out / "sub" / "b.txt").read_text() == "nested" and not (out / "c.txt").exists()
    with staged_output(out, ["a.txt"], force=True) as stage:
        (stage / "a.txt").write_text("second")
    assert (out / "a.txt").read_text() == "second"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(NeurocxrError, match="not a folder"):
        with staged_output(tmp_path / "file", ["a"], force=True):
            pass


def test_ctrl_c_during_export_and_energy_writes_nothing(
    files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neurocxr.deploy.deployment import Deployment

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(
        Deployment, "parity", interrupted
    )  # export and energy report both verify parity
    for argv in (
        ["export", str(files["snn"]), "--data", str(files["npz"]), "--lava-samples", "0"],
        ["energy", str(files["snn"]), "--data", str(files["npz"]), "--no-measure"],
    ):
        out = tmp_path / argv[0]
        res = runner.invoke(app, argv + ["-o", str(out)])
        assert res.exit_code == 130, res.output
        assert "interrupted" in res.output and "Traceback" not in res.output
        assert not out.exists()
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_energy_keeps_profiles_to_itself_and_never_writes_the_baseline_onnx_into_out(
    files, tmp_path: Path
) -> None:
    from neurocxr.api import energy_report
    from neurocxr.energy.profiles import (
        BUILTIN_PROFILES,
        ProfileError,
        available_profiles,
        get_profile,
    )

    mine = dataclasses.asdict(BUILTIN_PROFILES["loihi"]) | {
        "name": "my-chip",
        "energy_per_synop_j": 1e-12,
    }
    profiles_file = tmp_path / "chips.json"
    profiles_file.write_text(json.dumps([mine]))
    out = tmp_path / "report"
    out.mkdir()
    sentinel = out / "cnn_small.onnx"  # what the old code wrote (and overwrote) there
    sentinel.write_bytes(b"earlier")
    before = available_profiles()
    rep = energy_report(
        files["snn"],
        baselines=[files["cnn"]],
        data=files["npz"],
        out=out,
        profiles=["my-chip", "loihi"],
        profiles_file=profiles_file,
        max_samples=4,
        measure=True,
        measure_seconds=0.02,
    )
    assert {e.device for e in rep.estimates} >= {"my-chip", "loihi"}
    mine_est = next(e for e in rep.estimates if e.device == "my-chip")
    assert mine_est.constants["energy_per_synop_j"] == 1e-12
    # the file's profile served this call only
    assert available_profiles() == before
    with pytest.raises(ProfileError):
        get_profile("my-chip")
    assert sentinel.read_bytes() == b"earlier"
    assert sorted(p.name for p in out.iterdir()) == ["cnn_small.onnx", "report.html", "report.json"]


def test_registered_profiles_is_scoped_to_its_block() -> None:
    from neurocxr.energy.profiles import (
        BUILTIN_PROFILES,
        ProfileError,
        get_profile,
        registered_profiles,
    )

    custom = dataclasses.replace(BUILTIN_PROFILES["loihi"], name="scoped-chip")
    shadow = dataclasses.replace(BUILTIN_PROFILES["loihi"], energy_per_synop_j=1.0)
    with pytest.raises(RuntimeError):
        with registered_profiles([custom, shadow]):
            assert get_profile("scoped-chip") is custom and get_profile("loihi") is shadow
            raise RuntimeError("boom")
    assert get_profile("loihi") is BUILTIN_PROFILES["loihi"]
    with pytest.raises(ProfileError):
        get_profile("scoped-chip")


# ---------------------------------------------------------------------------------------------
# 7. progress bars only on a terminal, and off on request


def test_progress_bars_only_on_a_terminal_and_off_on_request() -> None:
    from neurocxr import validation

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert validation.show_progress(True, Tty()) is True
    assert validation.show_progress(True, io.StringIO()) is False  # pipe / log file
    assert validation.show_progress(False, Tty()) is False
    try:
        validation.set_progress(False)
        assert validation.show_progress(None, Tty()) is False
        validation.set_progress(True)
        assert validation.show_progress(None, Tty()) is True
    finally:
        validation.set_progress(True)
    res = runner.invoke(app, ["--no-progress", "models"])
    assert res.exit_code == 0 and validation._progress_default is False
    validation.set_progress(True)


# ---------------------------------------------------------------------------------------------
# 8. Ctrl-C inside a Lava run stops Lava's worker processes


@pytest.mark.lava
def test_ctrl_c_inside_a_lava_run_stops_its_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing as mp

    from _netx_programs import default_shaped_program, random_images

    from neurocxr.exporters.netx import write_netx
    from neurocxr.hardware_sims.lava import _import_lava, run_lava

    # through neurocxr's importer: a plain import fails once tqdm has fixed the multiprocessing context
    netx = _import_lava()[0]
    program = default_shaped_program(num_steps=4)
    path = write_netx(program, tmp_path / "p.net")
    calls = {"run": 0, "stop": 0}
    original_run, original_stop = netx.hdf5.Network.run, netx.hdf5.Network.stop

    def run_then_interrupt(self, *args, **kwargs):
        calls["run"] += 1
        if calls["run"] == 2:  # the runtime is started by the first run
            raise KeyboardInterrupt
        return original_run(self, *args, **kwargs)

    def counting_stop(self, *args, **kwargs):
        calls["stop"] += 1
        return original_stop(self, *args, **kwargs)

    monkeypatch.setattr(netx.hdf5.Network, "run", run_then_interrupt)
    monkeypatch.setattr(netx.hdf5.Network, "stop", counting_stop)
    before = set(mp.active_children())
    with pytest.raises(KeyboardInterrupt):
        run_lava(path, random_images(3, seed=2), num_steps=4, program=program)
    # no stop handshake after Ctrl-C (it can wait forever on a channel cut mid-message): the
    # workers are killed and joined instead
    assert calls == {"run": 2, "stop": 0}
    assert set(mp.active_children()) <= before  # every worker Lava started has been joined


def test_demo_refuses_existing_outputs_before_training(files, tmp_path: Path) -> None:
    (tmp_path / "loihi").mkdir()
    (tmp_path / "loihi" / "model.net").write_bytes(b"earlier")
    res = runner.invoke(
        app, ["demo", "-o", str(tmp_path), "--data", str(files["npz"]), "--epochs", "1"]
    )
    assert res.exit_code == 2 and "--force" in res.output and "model.net" in res.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["loihi", "model.net"]
    res = runner.invoke(app, ["demo", "-o", str(tmp_path / "new"), "--lava-samples", "-1"])
    assert res.exit_code == 2 and "--lava-samples" in res.output and not (tmp_path / "new").exists()


def test_an_in_memory_model_with_a_nan_weight_is_refused_like_a_checkpoint() -> None:
    from neurocxr.models.loaded import load

    model = build_model(ModelConfig(name="cnn_small", image_size=16, channels=(4, 8), hidden=(16,)))
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN"):
        load(model)


def test_nir_graphs_with_nan_and_bad_quantisation_options_are_named_errors(files) -> None:
    from neurocxr.errors import ExportError, QuantisationError
    from neurocxr.exporters.loihi import QuantisationOptions, nir_to_program
    from neurocxr.exporters.nir import to_nir
    from neurocxr.models.loaded import load

    graph = to_nir(load(files["snn"]).model, input_shape=(1, 16, 16))
    name = next(n for n, node in graph.nodes.items() if getattr(node, "weight", None) is not None)
    graph.nodes[name].weight = np.array(graph.nodes[name].weight, dtype=np.float64)
    graph.nodes[name].weight.flat[0] = np.nan
    with pytest.raises(ExportError, match=rf"node '{name}': weight holds 1 NaN"):
        nir_to_program(graph)
    for kwargs in (
        {"max_weight": "abc"},
        {"scale": float("nan")},
        {"allow_clipping": "yes"},
        {"min_weight_levels": 0},
    ):
        with pytest.raises(QuantisationError):
            QuantisationOptions(**kwargs)
