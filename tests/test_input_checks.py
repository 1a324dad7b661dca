"""Issue 19 items 3-7: inputs are checked before any work, numbers that decide an answer are checked
where they enter, refusals name a file's real kind, provenance records what was used, and the API
raises neurocxr's own errors. Tiny models (16x16) and data: each test takes a second or two."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_medmnist_npz
from PIL import Image
from typer.testing import CliRunner

import neurocxr
from neurocxr.cli import app
from neurocxr.data.datasets import (
    DataSplits,
    ImageDataset,
    data_for_checkpoint,
    load_dataset,
    load_folder,
    recorded_data,
)
from neurocxr.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ModelKindError,
    NeurocxrError,
)
from neurocxr.models import ModelConfig, build_model
from neurocxr.models.checkpoint import load_checkpoint, save_checkpoint
from neurocxr.validation import file_kind, images_to_unit_range

runner = CliRunner()
SNN_CFG = ModelConfig(name="snn_conv", image_size=16, num_steps=4, channels=(4, 8), hidden=(16,))
CNN_CFG = ModelConfig(name="cnn_small", image_size=16, channels=(4, 8), hidden=(16,))


def _snn(scale: float = 3.0) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(SNN_CFG).eval()
    with torch.no_grad():  # scaled up so every layer spikes
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(scale)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("input_checks")
    npz = write_medmnist_npz(
        root / "tiny.npz", 16, {"train": (6, 10), "val": (3, 3), "test": (3, 4)}
    )
    snn = _snn()
    out = {
        "root": root,
        "npz": npz,
        "snn": save_checkpoint(root / "snn.pt", snn, SNN_CFG, {"threshold": 0.5}),
        "cnn": save_checkpoint(
            root / "cnn.pt", build_model(CNN_CFG).eval(), CNN_CFG, {"threshold": 0.5}
        ),
        # trained on the tiny npz, as `neurocxr train` records it (real data: never scored on phantoms)
        "snn_real": save_checkpoint(
            root / "snn_real.pt",
            snn,
            SNN_CFG,
            {
                "threshold": 0.5,
                "data_source": f"PneumoniaMNIST npz {npz} (16x16)",
                "data_origin": str(npz),
            },
        ),
    }
    exp = neurocxr.export_loihi(
        out["snn"], root / "exported", data=str(npz), lava_samples=0, max_samples=2
    )
    out["nir"], out["net"] = exp.files["nir"], exp.files["netx"]
    return out


# ----------------------------------------------------------------------------------------------
# Item 4: numbers that decide an answer


@pytest.mark.parametrize("threshold", [float("nan"), 1.5, -0.1, float("inf"), "0.5", None])
def test_a_bad_stored_threshold_is_refused_where_it_enters(files, threshold) -> None:
    path = save_checkpoint(
        files["root"] / "bad_threshold.pt", _snn(), SNN_CFG, {"threshold": threshold}
    )
    with pytest.raises(CheckpointError, match="stored operating threshold"):
        load_checkpoint(path)
    res = runner.invoke(app, ["--no-progress", "evaluate", str(path), "--data", str(files["npz"])])
    assert (
        res.exit_code == 2 and "operating threshold" in res.output and "Traceback" not in res.output
    )


def test_same_xray_as_8_bit_and_16_bit_png_gives_the_same_pixels_and_score(files, tmp_path) -> None:
    """The one pixel rule: 16-bit PNGs are divided by 65535 (not min-max stretched), so an 8-bit
    X-ray and its 16-bit copy (v * 257) are the same input and get the same score."""
    rng = np.random.default_rng(1)
    # a narrow range of grey (60..140): stretching it per image would change every pixel
    eight = rng.integers(60, 141, size=(40, 36)).astype(np.uint8)
    sixteen = eight.astype(np.uint16) * 257
    trees = {}
    for name, pixels in (("eight", eight), ("sixteen", sixteen)):
        for split in ("train", "val", "test"):
            for cls in ("NORMAL", "PNEUMONIA"):
                folder = tmp_path / name / split / cls
                folder.mkdir(parents=True)
                Image.fromarray(pixels).save(folder / "x.png")
        trees[name] = load_folder(tmp_path / name, image_size=16)
    assert Image.open(tmp_path / "sixteen" / "test" / "NORMAL" / "x.png").mode.startswith("I;16")
    a, b = trees["eight"].test.images, trees["sixteen"].test.images
    assert torch.equal(a, b)
    loaded = neurocxr.load(files["snn"])
    from neurocxr.models.loaded import float_logits

    assert np.array_equal(float_logits(loaded, a), float_logits(loaded, b))
    # explain's image reader follows the same rule
    from neurocxr.evaluation.explain import load_xray_image

    x8 = load_xray_image(tmp_path / "eight" / "test" / "NORMAL" / "x.png", 16)
    x16 = load_xray_image(tmp_path / "sixteen" / "test" / "NORMAL" / "x.png", 16)
    assert torch.allclose(x8, x16, atol=1e-6)
    assert float(x8.max()) <= 141 / 255 + 1e-3  # not stretched to 1.0


def test_float_images_outside_unit_range_are_refused(tmp_path) -> None:
    path = tmp_path / "f.tiff"
    Image.fromarray(np.full((20, 20), 3.0, np.float32), mode="F").save(path)
    from neurocxr.evaluation.explain import load_xray_image

    with pytest.raises(DataError, match="outside|values"):
        load_xray_image(path, 16)
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        images_to_unit_range(np.array([[-0.5, 0.2]], np.float32))
    with pytest.raises(DataError, match="NaN"):
        images_to_unit_range(np.array([np.nan], np.float32))
    assert images_to_unit_range(np.array([65535], np.uint16))[0] == 1.0
    assert images_to_unit_range(np.array([255], np.uint8))[0] == 1.0


# ----------------------------------------------------------------------------------------------
# Item 7: the API raises neurocxr's errors


@pytest.mark.slow
def test_emulate_refuses_what_is_not_a_program_or_images(files) -> None:
    exp = neurocxr.export_loihi(files["snn"])
    good = np.random.default_rng(0).random((2, 1, 16, 16)).astype(np.float32)
    cases = [
        (str(files["snn"]), good, "got the path"),
        (files["snn"], good, "got the path"),
        (exp, good, "pass its .program"),
        (_snn(), good, "export it first"),
        (neurocxr.load(files["snn"]), good, "export it first"),
        (exp.program, np.zeros((0, 1, 16, 16), np.float32), "0 samples"),
        (exp.program, torch.zeros((2, 1, 16, 16), device="meta"), "meta device"),
        (exp.program, -good, r"outside \[0, 1\]"),
        (exp.program, good * 300, r"outside \[0, 1\]"),
        (exp.program, np.array([["a"]]), "numbers"),
        (exp.program, str(files["npz"]), "got the path"),
    ]
    for program, inputs, needle in cases:
        with pytest.raises(NeurocxrError, match=needle):
            neurocxr.emulate(program, inputs)
    # uint8 and uint16 copies of one image are the same input
    x8 = (good * 255).astype(np.uint8)
    r8, r16 = (
        neurocxr.emulate(exp.program, x8),
        neurocxr.emulate(exp.program, x8.astype(np.uint16) * 257),
    )
    assert np.array_equal(r8.scores(), r16.scores())
    with pytest.raises(NeurocxrError, match="pass run.counts"):
        neurocxr.estimate_energy(r8, "loihi")
    with pytest.raises(NeurocxrError, match="LayerCounts"):
        neurocxr.estimate_energy([1, 2], "loihi")
    assert neurocxr.estimate_energy(r8.counts, "loihi").dynamic_j > 0


@pytest.mark.parametrize("thing", [42, None, 3.5, object()])
def test_load_refuses_what_is_not_a_checkpoint_or_model(thing) -> None:
    with pytest.raises(NeurocxrError, match="load takes a checkpoint path"):
        neurocxr.load(thing)


# ----------------------------------------------------------------------------------------------
# Item 6: refusals name the file's real kind and the command that fits it


def test_files_of_another_kind_are_named_with_the_command_that_reads_them(files, tmp_path) -> None:
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07\x12\x07pytorch")
    cases = {
        files["nir"]: ("NIR graph", "neurocxr export"),
        files["net"]: ("netx", "neurocxr netx"),
        onnx: ("ONNX model", "checkpoints"),
        files["npz"]: ("npz data archive", "--data"),
        tmp_path: ("is a directory", ".pt"),
    }
    for path, needles in cases.items():
        with pytest.raises(CheckpointError) as err:
            neurocxr.load(path)
        assert all(n in str(err.value) for n in needles), str(err.value)
        assert "weights_only" not in str(err.value)
        res = runner.invoke(
            app, ["--no-progress", "evaluate", str(path), "--data", str(files["npz"])]
        )
        assert res.exit_code == 2 and needles[0] in res.output, res.output
    with pytest.raises(
        DataError, match="torch checkpoint.*a data set is a PneumoniaMNIST .npz or a Kermany folder"
    ):
        load_dataset(files["snn"])
    res = runner.invoke(
        app, ["--no-progress", "evaluate", str(files["snn"]), "--data", str(files["snn"])]
    )
    assert res.exit_code == 2 and "a data set is" in res.output and "data.pkl" not in res.output
    assert file_kind(files["snn"]) == "checkpoint" and file_kind(files["npz"]) == "npz"


def test_a_cnn_where_an_snn_is_needed_is_told_what_fits(files, tmp_path) -> None:
    res = runner.invoke(
        app,
        [
            "--no-progress",
            "export",
            str(files["cnn"]),
            "-o",
            str(tmp_path / "x"),
            "--target",
            "loihi",
            "--data",
            str(files["npz"]),
        ],
    )
    assert res.exit_code == 2 and "is a CNN" in res.output and "--target onnx" in res.output, (
        res.output
    )
    assert "retrain" not in res.output and not (tmp_path / "x").exists()
    with pytest.raises(ModelKindError, match="give it as --baseline"):
        neurocxr.energy_report(files["cnn"], out=None, measure=False, data=str(files["npz"]))


# ----------------------------------------------------------------------------------------------
# Item 5: provenance records exactly what was used


def test_an_snn_baseline_is_refused(files) -> None:
    with pytest.raises(
        ModelKindError,
        match="is an SNN .snn_conv. that runs on Loihi; baselines run on conventional hardware",
    ):
        neurocxr.energy_report(
            files["snn"], baselines=[files["snn"]], out=None, measure=False, data=str(files["npz"])
        )


def test_two_baselines_with_one_model_name_get_two_labels_and_two_provenance_entries(
    files, tmp_path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    second = shutil.copy(files["cnn"], other / "cnn_b.pt")
    rep = neurocxr.energy_report(
        files["snn"],
        baselines=[files["cnn"], second],
        out=None,
        measure=False,
        data=str(files["npz"]),
        max_samples=2,
    )
    checkpoints = rep.provenance["checkpoints"]
    assert set(checkpoints) == {"snn_conv", "cnn_small (cnn.pt)", "cnn_small (cnn_b.pt)"}
    assert checkpoints["snn_conv"]["path"].endswith(
        "snn.pt"
    )  # the report's own checkpoint, not a baseline's
    assert checkpoints["cnn_small (cnn_b.pt)"]["path"].endswith("cnn_b.pt")
    assert {"cnn_small (cnn.pt)", "cnn_small (cnn_b.pt)"} <= {r.model for r in rep.summary}


# ----------------------------------------------------------------------------------------------
# Item 3: checked before any work; scored on the data the checkpoint records


def test_train_refuses_an_image_size_export_would_refuse_and_an_ignored_encoding(tmp_path) -> None:
    with pytest.raises(
        ConfigError, match=r"--image-size 27: 'snn_conv' could not be exported.*--image-size \d+"
    ):
        neurocxr.train("snn_conv", image_size=27, data="synthetic", out=tmp_path / "a")
    with pytest.raises(ConfigError, match="--encoding latency has no effect on 'cnn_small'"):
        neurocxr.train("cnn_small", encoding="latency", data="synthetic", out=tmp_path / "b")
    res = runner.invoke(
        app,
        [
            "--no-progress",
            "train",
            "--model",
            "snn_conv",
            "--image-size",
            "27",
            "--data",
            "synthetic",
            "-o",
            str(tmp_path / "c"),
        ],
    )
    assert res.exit_code == 2 and "--image-size 27" in res.output
    assert not any(tmp_path.iterdir())  # refused before any folder or file


def test_a_one_class_validation_split_is_refused_before_training() -> None:
    from neurocxr.training.train import TrainConfig, train

    def split(labels: list[int], name: str) -> ImageDataset:
        return ImageDataset(torch.rand(len(labels), 1, 16, 16), torch.tensor(labels), name, "toy")

    splits = DataSplits(split([0, 1] * 4, "train"), split([1, 1, 1], "val"), split([0, 1], "test"))
    with pytest.raises(DataError, match="validation split.*no normal"):
        train(CNN_CFG, splits, TrainConfig(epochs=1), progress=False)


@pytest.mark.slow
def test_evaluate_without_data_scores_the_data_the_checkpoint_records(files, monkeypatch) -> None:
    monkeypatch.delenv("NEUROCXR_DATA", raising=False)
    monkeypatch.setattr(
        "neurocxr.data.datasets.DEFAULT_MEDMNIST_ROOT", files["root"] / "no_medmnist_here"
    )
    result = neurocxr.evaluate(files["snn_real"])
    assert not result["synthetic"] and str(files["npz"]) in result["data"]
    # explicit data wins; phantoms only when asked
    assert neurocxr.evaluate(files["snn_real"], data="synthetic")["synthetic"]
    # the recorded file is gone and nothing else is configured: refused, not phantoms
    meta = {"data_source": "PneumoniaMNIST npz /gone/pneumoniamnist.npz (28x28)"}
    assert recorded_data(meta) == "/gone/pneumoniamnist.npz"
    with pytest.raises(DataError, match="trained on /gone/pneumoniamnist.npz.*--data synthetic"):
        data_for_checkpoint(None, meta)
    assert data_for_checkpoint(None, {"data_source": "synthetic phantoms (seed 0)"}) == "synthetic"
    assert (
        recorded_data({"data_source": "Kermany folders /a (b)/k (resized to 28x28)"}) == "/a (b)/k"
    )
    assert data_for_checkpoint(None, {}) is None  # nothing recorded: the usual default chain


def test_evaluate_warns_on_a_one_class_split(files, tmp_path) -> None:
    npz = write_medmnist_npz(
        tmp_path / "one.npz", 16, {"train": (6, 10), "val": (3, 3), "test": (0, 4)}
    )
    result = neurocxr.evaluate(files["snn"], data=str(npz))
    assert result["warnings"] and "no normal images" in result["warnings"][0]
    res = runner.invoke(app, ["--no-progress", "evaluate", str(files["snn"]), "--data", str(npz)])
    assert res.exit_code == 0 and "WARNING" in res.output and "no normal images" in res.output


def test_sweep_refuses_a_huge_grid_and_a_missing_data_path_before_ray(
    tmp_path, monkeypatch
) -> None:
    import time

    from neurocxr import sweep

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray must not start for a refused sweep")

    from neurocxr.sweep import ray_runner

    for name in ("run_on_ray", "_start_ray"):
        monkeypatch.setattr(ray_runner, name, no_ray)
    huge = {
        "grid": {
            "num_steps": list(range(1, 17)),
            "seed": list(range(100)),
            "width": [0.5 + i / 100 for i in range(75)],
        }
    }
    sweep.sweep_config_from_dict({"grid": {"seed": [0]}})  # imports and profile registry warmed up
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="120,000 combinations.*--max-trials 120000"):
        sweep.sweep_config_from_dict(huge)
    assert (
        time.perf_counter() - t0 < 30.0
    )  # counted, never expanded (expanding took minutes); loose for busy CPUs
    small = {"grid": {"seed": [0, 1, 2, 3]}, "sweep": {"max_trials": 3}}
    with pytest.raises(ConfigError, match="4 combinations"):
        sweep.sweep_config_from_dict(small)
    assert len(sweep.expand_grid(sweep.sweep_config_from_dict(small, max_trials=4))) == 4
    cfg = sweep.sweep_config_from_dict({"sweep": {"data": str(tmp_path / "nope.npz")}})
    with pytest.raises(DataError, match="nope.npz does not exist"):
        sweep.run_sweep(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    config = tmp_path / "s.toml"
    config.write_text(f'[sweep]\ndata = "{tmp_path / "nope.npz"}"\n')
    res = runner.invoke(app, ["--no-progress", "sweep", str(config), "-o", str(tmp_path / "out2")])
    assert (
        res.exit_code == 2 and "does not exist" in res.output and not (tmp_path / "out2").exists()
    )


def test_options_that_would_be_ignored_are_refused(files, tmp_path) -> None:
    res = runner.invoke(
        app,
        [
            "--no-progress",
            "export",
            str(files["snn"]),
            "-o",
            str(tmp_path / "x"),
            "--dt",
            "0.001",
            "--data",
            str(files["npz"]),
            "--lava-samples",
            "0",
        ],
    )
    assert (
        res.exit_code == 2
        and "--dt has no effect here" in res.output
        and ".nir input only" in res.output
    )
    assert not (tmp_path / "x").exists()
    res = runner.invoke(
        app,
        [
            "--no-progress",
            "evaluate",
            str(files["snn"]),
            "--data",
            str(files["npz"]),
            "--max-samples",
            "4",
        ],
    )
    assert res.exit_code == 2 and "--max-samples has no effect here" in res.output


@pytest.mark.parametrize(
    "option, value",
    [("--data", "npz"), ("--split", "test"), ("--max-samples", "4"), ("--lava-samples", "3")],
)
def test_export_options_of_the_parity_check_are_refused_where_no_parity_runs(
    files, tmp_path, option, value
) -> None:
    """--target onnx and --target nir run no parity check: its options, given even at their
    default values, are refused (one line, exit 2, nothing written) instead of ignored."""
    value = str(files["npz"]) if value == "npz" else value
    for target, ckpt in (("onnx", files["cnn"]), ("nir", files["snn"])):
        out = tmp_path / f"{target}{option}"
        argv = ["--no-progress", "export", str(ckpt), "-o", str(out), "--target", target]
        res = runner.invoke(app, argv + [option, value])
        assert res.exit_code == 2, res.output
        assert f"{option} has no effect here" in res.output and f"--target {target} runs none" in (
            res.output
        )
        assert len(res.output.strip().splitlines()) == 1 and not out.exists()
    kwargs = {
        "--data": {"data": files["npz"]},
        "--split": {"split": "test"},
        "--max-samples": {"max_samples": 4},
        "--lava-samples": {"lava_samples": 3},
    }[option]
    with pytest.raises(ConfigError, match=f"{option} has no effect here"):
        neurocxr.export(files["cnn"], out=tmp_path / "api", target="onnx", **kwargs)
    assert not (tmp_path / "api").exists()


def test_export_defaults_still_work_for_onnx_nir_and_loihi(files, tmp_path) -> None:
    res = runner.invoke(
        app,
        [
            "--no-progress",
            "export",
            str(files["cnn"]),
            "-o",
            str(tmp_path / "o"),
            "--target",
            "onnx",
        ],
    )
    assert res.exit_code == 0 and (tmp_path / "o" / "model.onnx").is_file(), res.output
    res = runner.invoke(
        app,
        [
            "--no-progress",
            "export",
            str(files["snn"]),
            "-o",
            str(tmp_path / "n"),
            "--target",
            "nir",
        ],
    )
    assert res.exit_code == 0 and (tmp_path / "n" / "model.nir").is_file(), res.output
    # --target loihi: the parity options still apply (split and lava samples default to test / 3)
    exp = neurocxr.export(
        files["snn"], out=tmp_path / "l", data=files["npz"], max_samples=2, lava_samples=0
    )
    assert exp.report.to_dict()["parity"]["data"].endswith("[test]")


def test_a_nir_file_export_refuses_data_and_split(files, tmp_path) -> None:
    """A .nir file's parity runs on spike trains: --data and --split would be ignored."""
    for option, value in (("--data", str(files["npz"])), ("--split", "val")):
        res = runner.invoke(
            app,
            [
                "--no-progress",
                "export",
                str(files["nir"]),
                "-o",
                str(tmp_path / "x"),
                option,
                value,
            ],
        )
        assert res.exit_code == 2 and f"{option} has no effect here" in res.output, res.output
        assert not (tmp_path / "x").exists()


def test_evaluate_chip_without_robustness_or_uncertainty_is_refused(files, tmp_path) -> None:
    """--chip/--no-chip choose whether robustness / uncertainty run deployable SNNs on the emulator;
    the metrics table never does, so either flag alone is refused, not ignored."""
    for flag in ("--no-chip", "--chip"):
        res = runner.invoke(
            app,
            ["--no-progress", "evaluate", str(files["snn"]), "--data", str(files["npz"]), flag],
        )
        assert res.exit_code == 2 and f"{flag} has no effect here" in res.output, res.output
        assert "--robustness / --uncertainty" in res.output
    with pytest.raises(ConfigError, match="--no-chip has no effect here"):
        neurocxr.evaluate(files["snn"], data=files["npz"], chip=False)
    # where it applies it is still accepted, and the default still evaluates
    res = runner.invoke(
        app,
        [
            "--no-progress",
            "evaluate",
            str(files["snn"]),
            "--data",
            str(files["npz"]),
            "--robustness",
            "--no-chip",
            "--max-samples",
            "4",
            "-o",
            str(tmp_path / "rob"),
        ],
    )
    assert res.exit_code == 0 and (tmp_path / "rob" / "robustness.json").is_file(), res.output
    assert neurocxr.evaluate(files["snn"], data=files["npz"]).metrics


def test_sweep_refuses_a_one_class_validation_split_before_ray(tmp_path, monkeypatch) -> None:
    from neurocxr import sweep
    from neurocxr.sweep import ray_runner

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray must not start for a refused sweep")

    for name in ("run_on_ray", "_start_ray"):
        monkeypatch.setattr(ray_runner, name, no_ray)
    one_class = write_medmnist_npz(
        tmp_path / "one_class_val.npz", 16, {"train": (6, 6), "val": (0, 4), "test": (3, 3)}
    )
    cfg = sweep.sweep_config_from_dict({"sweep": {"data": str(one_class)}})
    with pytest.raises(DataError) as refused:
        sweep.run_sweep(cfg, tmp_path / "out")
    # the same line `train` gives for that data
    with pytest.raises(DataError) as trained:
        neurocxr.train(
            model="cnn_small", data=one_class, epochs=1, image_size=16, out=tmp_path / "t"
        )
    assert str(refused.value) == str(trained.value)
    assert "the validation split holds 4 image(s) and no normal (0) ones" in str(refused.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "t").exists()
    config = tmp_path / "s.toml"
    config.write_text(f'[sweep]\ndata = "{one_class}"\n')
    res = runner.invoke(app, ["--no-progress", "sweep", str(config), "-o", str(tmp_path / "out2")])
    assert res.exit_code == 2 and "no normal (0) ones" in res.output, res.output
    assert not (tmp_path / "out2").exists()


def test_an_snn_to_onnx_and_a_checkpoint_to_netx_are_told_what_fits(files, tmp_path) -> None:
    res = runner.invoke(
        app,
        [
            "--no-progress",
            "export",
            str(files["snn"]),
            "--target",
            "onnx",
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and "is an SNN" in res.output and "--target loihi" in res.output
    res = runner.invoke(app, ["--no-progress", "netx", str(files["snn"])])
    assert res.exit_code == 2 and "torch checkpoint" in res.output and "netx" in res.output


def test_one_class_metrics_are_nan_not_zero() -> None:
    from neurocxr.metrics import clinical_metrics

    m = clinical_metrics(np.ones(5, np.int64), np.linspace(0.1, 0.9, 5), threshold=0.5)
    assert (
        np.isnan(m.roc_auc) and np.isnan(m.mcc) and np.isnan(m.cohen_kappa) and m.sensitivity == 0.6
    )


def test_a_sweep_grid_with_an_unexportable_image_size_is_refused_before_ray() -> None:
    from neurocxr import sweep

    with pytest.raises(ConfigError, match=r"model.image_size 27: 'snn_conv' could not be exported"):
        sweep.sweep_config_from_dict({"grid": {"model": ["snn_conv"]}, "model": {"image_size": 27}})
    assert sweep.sweep_config_from_dict(
        {"grid": {"model": ["snn_strided"]}, "model": {"image_size": 27}}
    )


def test_a_folder_given_as_a_file_is_called_a_folder(files, tmp_path) -> None:
    from neurocxr import sweep
    from neurocxr.energy.profiles import load_profiles
    from neurocxr.evaluation.explain import load_xray_image
    from neurocxr.exporters.netx import read_netx

    for call in (
        lambda: load_xray_image(tmp_path, 16),
        lambda: load_profiles(tmp_path),
        lambda: sweep.load_sweep_config(tmp_path),
        lambda: read_netx(tmp_path),
    ):
        with pytest.raises(NeurocxrError, match="is a directory, not a file"):
            call()


def test_export_checks_its_parity_data_before_exporting(files, tmp_path) -> None:
    with pytest.raises(DataError, match="nothing.npz does not exist"):
        neurocxr.export_loihi(files["snn"], tmp_path / "out", data=str(tmp_path / "nothing.npz"))
    with pytest.raises(DataError, match="torch checkpoint"):
        neurocxr.export_loihi(files["snn"], tmp_path / "out", data=str(files["cnn"]))
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_named_dot_nir_is_called_a_checkpoint(files, tmp_path) -> None:
    renamed = tmp_path / "model.nir"
    renamed.write_bytes(files["snn"].read_bytes())
    res = runner.invoke(app, ["--no-progress", "export", str(renamed), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "is not a NIR graph: it is a torch checkpoint" in res.output, (
        res.output
    )
