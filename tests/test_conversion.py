"""Issue 18 levers: ANN->SNN conversion (balancing, export within 8 bits, emulator = float model),
VGG chains, acquisition-shift augmentation, patient-wise validation, and the lever names shared by
`neurocxr train`, the API and the sweep grid."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neurocxr.data.datasets import (
    Augment,
    DataSplits,
    ImageDataset,
    _patient_split,
    load_folder,
    patient_id,
)
from neurocxr.errors import ConfigError
from neurocxr.models import ModelConfig, build_model
from neurocxr.models.vgg import vgg_channels, vgg_strides
from neurocxr.training.conversion import (
    DEFAULT_INPUT_THRESHOLD,
    activation_scales,
    convert,
    snn_config_for,
)
from neurocxr.training.train import LEVERS, TrainConfig, lever_configs, train


def _patches(n: int, seed: int, split: str) -> ImageDataset:
    """Separable toy task: a bright patch in the left half (label 1) or the right half (0)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = 0.2 * torch.rand(n, 1, 28, 28, generator=g)
    for i in range(n):
        col = 4 + (0 if labels[i] == 1 else 14)
        images[i, 0, 8:18, col : col + 8] += 0.7
    return ImageDataset(images.clamp(0, 1), labels.long(), split, f"toy patches (seed {seed})")


@pytest.fixture(scope="module")
def toy_splits() -> DataSplits:
    return DataSplits(_patches(96, 0, "train"), _patches(48, 1, "val"), _patches(48, 2, "test"))


CNN = ModelConfig(name="cnn_vgg", channels=(4, 8), hidden=(16,))


@pytest.fixture(scope="module")
def cnn_checkpoint(toy_splits: DataSplits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cnn") / "cnn_vgg.pt"
    train(
        CNN,
        toy_splits,
        TrainConfig(epochs=3, batch_size=16, lr=1e-2),
        progress=False,
        checkpoint_path=path,
    )
    return path


def test_vgg_plan_and_strides() -> None:
    assert vgg_channels(6) == (16, 16, 32, 32, 64, 64)
    assert vgg_channels(4, 0.5) == (8, 8, 16, 16)
    # stride 2 at every second conv while the map is > 4 px: 28 -> 14 -> 7 -> 4, then no more
    assert vgg_strides(ModelConfig(name="snn_vgg", channels=vgg_channels(8))) == (
        1,
        2,
        1,
        2,
        1,
        2,
        1,
        1,
    )
    with pytest.raises(ValueError, match="depth"):
        vgg_channels(0)


def test_conversion_matches_the_cnn_and_balances_thresholds(
    cnn_checkpoint: Path, toy_splits: DataSplits
) -> None:
    from neurocxr.models.loaded import load

    cnn = load(cnn_checkpoint)
    images = toy_splits.train.images
    lambdas = activation_scales(cnn.model, images)
    snn, cfg, report = convert(cnn.model, cnn.config, images, num_steps=32, encoding="direct")
    assert cfg.name == "snn_vgg" and cfg.beta == 1.0 and report.lambdas == pytest.approx(lambdas)
    assert len(lambdas) == 3 and all(lam > 0 for lam in lambdas)
    # Input neurons fire at about pixel / theta_in (lambda_0 = theta_in), with theta_in the rule's 2.0.
    assert report.input_threshold == cfg.extra["input_threshold"] == DEFAULT_INPUT_THRESHOLD == 2.0
    assert float(snn.layers[0].threshold) == 2.0
    # Balanced: at most 0.1% of the (BN-folded) first-layer activations exceed the threshold scale.
    with torch.no_grad():
        first = torch.relu(
            snn.layers[1](images / report.input_threshold)
        )  # layers[0]: input neurons
    assert float((first > 1.0).float().mean()) < 0.01
    # The converted SNN decides as the CNN does on most test images at T = 32.
    with torch.no_grad():
        cnn_pred = cnn.model.eval()(toy_splits.test.images).argmax(1)
        from neurocxr.models.loaded import forward_model

        snn_pred = forward_model(snn, toy_splits.test.images, cfg).argmax(1)
    assert float((cnn_pred == snn_pred).float().mean()) >= 0.8


def test_converted_snn_exports_in_8_bits_and_the_emulator_equals_the_float_model(
    cnn_checkpoint: Path, toy_splits: DataSplits
) -> None:
    from neurocxr.deploy.deployment import Deployment
    from neurocxr.models.loaded import LoadedModel, load

    cnn = load(cnn_checkpoint)
    snn, cfg, _ = convert(cnn.model, cnn.config, toy_splits.train.images, num_steps=8)
    dep = Deployment.from_checkpoint(LoadedModel(snn.eval(), cfg, {}))
    for layer in dep.program.layers:
        if getattr(layer, "weight", None) is not None:
            w = np.asarray(layer.weight)
            assert w.min() >= -256 and w.max() <= 255
    report, _ = dep.parity(toy_splits.test.images[:24], toy_splits.test.labels[:24])
    assert report.prediction_changed_fraction <= 0.1
    assert dep.resources.cores >= 1 and dep.resources.chips == 1


@pytest.mark.slow
def test_train_with_convert_from_keeps_or_improves_val_auc(
    cnn_checkpoint: Path, toy_splits: DataSplits
) -> None:
    cfg = snn_config_for(CNN, 4)
    pure = train(
        cfg, toy_splits, TrainConfig(epochs=0, convert_from=str(cnn_checkpoint)), progress=False
    )
    assert pure.conversion is not None and pure.history[0]["converted"] == 1.0
    tuned = train(
        cfg,
        toy_splits,
        TrainConfig(epochs=1, lr=5e-4, batch_size=16, convert_from=str(cnn_checkpoint)),
        progress=False,
    )
    # epoch 0 (the converted net) is a candidate, so fine-tuning never ends below it on validation
    assert tuned.history[0]["val_auc"] == pytest.approx(pure.history[0]["val_auc"])
    assert max(h["val_auc"] for h in tuned.history) >= pure.history[0]["val_auc"]


def test_convert_from_refuses_a_mismatched_model(
    cnn_checkpoint: Path, toy_splits: DataSplits
) -> None:
    wrong = ModelConfig(
        name="snn_vgg", channels=(4, 16), hidden=(16,), num_steps=4, beta=1.0, threshold=1.0
    )
    with pytest.raises(ConfigError, match="channels"):
        train(
            wrong,
            toy_splits,
            TrainConfig(epochs=0, convert_from=str(cnn_checkpoint)),
            progress=False,
        )
    with pytest.raises(ConfigError, match="cnn_vgg"):
        snn_config_for(ModelConfig(name="cnn_small"), 4)
    with pytest.raises(ConfigError):
        convert(
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2)),
            CNN,
            toy_splits.train.images,
            num_steps=4,
        )


def test_shift_augmentation_changes_images_reproducibly_and_light_draws_are_unchanged() -> None:
    image = torch.linspace(0, 1, 28 * 28).view(1, 28, 28)
    light, shift = Augment.for_mode("light", seed=3), Augment.for_mode("shift", seed=3)
    a = shift(image, shift.generator_for(5))
    assert torch.equal(a, shift(image, shift.generator_for(5)))
    assert not torch.allclose(a, light(image, light.generator_for(5)), atol=1e-3)
    assert a.min() >= 0 and a.max() <= 1
    # the new fields default to off: the old augmentation draws exactly what it drew before
    assert torch.equal(
        Augment(seed=3)(image, Augment(seed=3).generator_for(5)),
        light(image, light.generator_for(5)),
    )
    with pytest.raises(ValueError):
        Augment(gamma=-1)


def test_patient_ids_and_patient_wise_validation(kermany_tree) -> None:
    assert patient_id("person1000_bacteria_2931.jpeg") == "PERSON1000"
    assert patient_id("IM-0115-0001.jpeg") == "IM-0115"
    assert patient_id("NORMAL2-IM-1427-0001.jpeg") == "NORMAL2-IM-1427"
    assert patient_id("img0.png") is None
    names = [
        "person1_virus_1.jpeg",
        "person1_bacteria_2.jpeg",
        "person2_virus_3.jpeg",
        "person3_virus_4.jpeg",
        "IM-0001-0001.jpeg",
        "IM-0001-0002.jpeg",
        "IM-0002-0001.jpeg",
        "NORMAL2-IM-0003-0001.jpeg",
    ]
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    keep, held = _patient_split(labels, names, 0.34, seed=0)
    held_patients = {patient_id(names[i]) for i in held}
    kept_patients = {patient_id(names[i]) for i in keep}
    assert held.size and not held_patients & kept_patients and set(labels[held]) == {0, 1}
    # file names without patient ids: split by image, and the source says which
    root = kermany_tree(splits=("train", "test"), per_class=6)
    assert "of train images" in load_folder(root, 28).source


def test_lever_names_are_the_same_on_the_cli_the_api_and_the_sweep_grid() -> None:
    import inspect

    from neurocxr import api
    from neurocxr.sweep.config import CORE_AXES, _train_keys

    api_params = set(inspect.signature(api.train).parameters)
    grid_axes = set(CORE_AXES) | set(_train_keys())
    for lever in LEVERS:
        assert lever in api_params, lever
        assert lever in grid_axes, lever
    from typer.testing import CliRunner

    from neurocxr.cli import app

    help_text = CliRunner().invoke(app, ["train", "--help"], terminal_width=200).output
    for lever in LEVERS:
        assert "--" + lever.replace("_", "-") in help_text, lever


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(model="snn_strided", depth=3), "depth applies"),
        (dict(model="snn_vgg", convert_from="/no/such.pt"), "not a file"),
        (dict(model="snn_conv", augment="heavy"), "augment"),
        (dict(model="snn_conv", teacher="/no/such.pt"), "teacher"),
        (dict(model="cnn_small", regulariser=0.1), "act on SNNs"),
        (dict(model="snn_conv", width=0), "width"),
        (dict(model="snn_conv", distill_weight=0.5), "distill_teacher"),
    ],
)
def test_bad_lever_combinations_are_refused_in_one_line(kwargs: dict, match: str) -> None:
    model = kwargs.pop("model")
    with pytest.raises(ConfigError, match=match) as info:
        lever_configs(model, **kwargs)
    assert "\n" not in str(info.value)


def test_cli_train_refuses_a_bad_lever_with_exit_code_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from neurocxr.cli import app

    result = CliRunner().invoke(
        app,
        [
            "train",
            "--model",
            "snn_strided",
            "--depth",
            "4",
            "--data",
            "synthetic",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "depth applies" in result.output
    assert not (tmp_path / "out").exists()


def test_lever_configs_depth_width_and_sweep_grid_point(cnn_checkpoint: Path) -> None:
    cfg, tc = lever_configs(
        "snn_vgg", depth=4, width=0.5, augment="shift", regulariser=0.01, qat_epochs=1, epochs=2
    )
    assert cfg.channels == (8, 8, 16, 16) and cfg.hidden == (64,)
    assert (
        tc.augment == "shift"
        and tc.chip_cost_weight == 0.01
        and tc.qat_epochs == 1
        and tc.epochs == 2
    )
    cfg, tc = lever_configs("snn_vgg", convert_from=str(cnn_checkpoint), num_steps=4, epochs=0)
    assert cfg == snn_config_for(CNN, 4) and tc.convert_from == str(cnn_checkpoint)
    from neurocxr.sweep import TrialSettings, trial_configs

    params = {
        "model": "snn_vgg",
        "num_steps": 4,
        "encoding": "direct",
        "regulariser": 0.0,
        "width": 1.0,
        "seed": 1,
        "depth": 2,
        "augment": "light",
    }
    model_cfg, train_cfg, _ = trial_configs(params, TrialSettings(train={"epochs": 1}))
    assert model_cfg.channels == (16, 16) and train_cfg.augment == "light" and train_cfg.seed == 1
    params = {
        "model": "snn_vgg",
        "num_steps": 4,
        "encoding": "direct",
        "regulariser": 0.0,
        "width": 1.0,
        "seed": 0,
        "convert_from": str(cnn_checkpoint),
    }
    model_cfg, train_cfg, _ = trial_configs(params, TrialSettings(train={"epochs": 0}))
    # the grid's encoding is honoured (it used to be dropped for a converted network)
    assert model_cfg == snn_config_for(CNN, 4, encoding="direct")
    assert train_cfg.convert_from == str(cnn_checkpoint)
    # left to the default (the grid's None), a converted network gets regular spike trains, as on
    # `neurocxr train`, and the results row says so even when convert_from is a fixed [train] key
    from neurocxr.sweep.trial import row_base

    params = {**params, "encoding": None}
    model_cfg, _, _ = trial_configs(params, TrialSettings(train={"epochs": 0}))
    assert model_cfg == snn_config_for(CNN, 4) and model_cfg.encoding == "regular"
    assert row_base(params).encoding == "regular"
    fixed = {k: v for k, v in params.items() if k != "convert_from"}
    assert row_base(fixed).encoding == "direct"
    assert row_base(fixed, {"convert_from": str(cnn_checkpoint)}).encoding == "regular"


def test_strides_lever_sets_the_vgg_plan_and_bad_plans_are_refused(tmp_path: Path) -> None:
    cfg, _ = lever_configs("cnn_vgg", depth=6, strides=(2, 1, 2, 1, 2, 1))
    assert vgg_strides(cfg) == (2, 1, 2, 1, 2, 1) and cfg.channels == vgg_channels(6)
    # the same plan through the sweep grid
    from neurocxr.sweep import TrialSettings, trial_configs

    params = {
        "model": "snn_vgg",
        "num_steps": 4,
        "encoding": "regular",
        "regulariser": 0.0,
        "width": 1.0,
        "seed": 0,
        "depth": 6,
        "strides": [2, 1, 2, 1, 2, 1],
    }
    model_cfg, _, _ = trial_configs(params, TrialSettings(train={"epochs": 1}))
    assert vgg_strides(model_cfg) == (2, 1, 2, 1, 2, 1)
    for kwargs, match in [
        (dict(model="cnn_vgg", depth=6, strides=(2, 1)), "6 values"),
        (dict(model="cnn_vgg", depth=2, strides=(3, 1)), "<= 2"),
        (dict(model="cnn_vgg", depth=2, strides=(2.5, 1)), "an integer"),  # not cut to 2
        (dict(model="cnn_vgg", strides=(2, 1)), "with depth"),
        (dict(model="snn_strided", depth=2, strides=(2, 1)), "VGG-style"),
    ]:
        model = kwargs.pop("model")
        with pytest.raises(ConfigError, match=match) as info:
            lever_configs(model, **kwargs)
        assert "\n" not in str(info.value)
    from typer.testing import CliRunner

    from neurocxr.cli import app

    for bad, said in [("2,x,2", "comma-separated integers"), ("2,1", "6 values")]:
        out = tmp_path / f"out{len(said)}"
        result = CliRunner().invoke(
            app,
            ["train", "--model", "cnn_vgg", "--depth", "6", "--strides", bad]
            + ["--data", "synthetic", "-o", str(out)],
        )
        assert result.exit_code == 2 and said in result.output, result.output
        assert not out.exists()


def test_feature_distill_lever_takes_the_conversion_source_as_teacher(
    cnn_checkpoint: Path, tmp_path: Path
) -> None:
    cfg, tc = lever_configs(
        "snn_vgg", convert_from=str(cnn_checkpoint), num_steps=4, feature_distill=1.0
    )
    assert tc.distill_teacher == str(cnn_checkpoint) and tc.distill_feature_weight == 1.0
    assert tc.distill_weight == 0.5  # with the teacher's logits, as for --teacher
    assert cfg == snn_config_for(CNN, 4)
    with pytest.raises(ConfigError, match="needs a teacher"):
        lever_configs("snn_vgg", depth=2, feature_distill=1.0)
    # a teacher that is not the student's cnn_vgg twin is refused before any data is read
    other = tmp_path / "cnn_small.pt"
    from neurocxr.models.checkpoint import save_checkpoint

    small = ModelConfig(name="cnn_small")
    save_checkpoint(other, build_model(small), small, {"threshold": 0.5})
    with pytest.raises(ConfigError, match="feature distillation needs a cnn_vgg teacher") as info:
        lever_configs(
            "snn_vgg",
            convert_from=str(cnn_checkpoint),
            teacher=str(other),
            num_steps=4,
            feature_distill=1.0,
        )
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="feature_distill"):
        lever_configs("snn_vgg", convert_from=str(cnn_checkpoint), feature_distill=-1.0)


@pytest.mark.slow
def test_feature_distillation_from_the_conversion_source(
    cnn_checkpoint: Path, toy_splits: DataSplits
) -> None:
    from neurocxr.training.train import LossTerms

    cfg = snn_config_for(CNN, 4)
    tc = TrainConfig(
        epochs=1,
        lr=5e-4,
        batch_size=16,
        convert_from=str(cnn_checkpoint),
        distill_teacher=str(cnn_checkpoint),
        distill_feature_weight=1.0,
    )
    snn = build_model(cfg)
    terms = LossTerms(snn, cfg, tc, None)
    _, parts = terms(snn, toy_splits.train.images[:8], toy_splits.train.labels[:8])
    assert parts["distill_feature_mse"] > 0 and "distill_kl" not in parts
    result = train(cfg, toy_splits, tc, progress=False)
    assert result.history[-1]["val_auc"] == result.history[-1]["val_auc"]  # trained without NaN
    # a teacher of another shape cannot give features: refused in one line
    other = ModelConfig(
        name="snn_vgg", channels=(8, 8), hidden=(16,), num_steps=4, beta=1.0, threshold=1.0
    )
    with pytest.raises(ConfigError, match="feature distillation"):
        LossTerms(build_model(other), other, tc, None)


def test_gap_head_converts_and_exports_with_the_pool_fused() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(name="cnn_vgg", channels=(4, 8, 8, 8), hidden=(16,), extra={"head": "gap"})
    cnn = build_model(cfg).eval()
    assert any(isinstance(m, nn.AvgPool2d) for m in cnn)
    images = torch.rand(16, 1, 28, 28)
    snn, scfg, report = convert(cnn, cfg, images, num_steps=8)
    assert len(report.lambdas) == 5  # four convs and one fc; the pool adds no scale
    from neurocxr.deploy.deployment import Deployment
    from neurocxr.models.loaded import LoadedModel

    dep = Deployment.from_checkpoint(LoadedModel(snn.eval(), scfg, {}))
    assert [layer.kind for layer in dep.program.layers].count(
        "dense"
    ) == 1  # pool fused into the fc
    with pytest.raises(ConfigError):
        build_model(ModelConfig(name="snn_vgg", extra={"head": "max"}))


@pytest.mark.slow
def test_api_train_with_every_snn_lever_gives_an_exportable_checkpoint(tmp_path: Path) -> None:
    from neurocxr import api
    from neurocxr.deploy.deployment import Deployment

    out = api.train(
        "snn_vgg",
        data="synthetic",
        out=tmp_path / "run",
        epochs=1,
        batch_size=32,
        num_steps=2,
        depth=2,
        width=0.5,
        augment="shift",
        regulariser=0.01,
        qat_epochs=1,
        max_train_samples=64,
    )
    dep = Deployment.from_checkpoint(out["checkpoint"])
    assert out["result"].config.channels == (8, 8) and out["result"].train_config.augment == "shift"
    assert (
        any(h.get("qat") for h in out["result"].history)
        and "train_chip_uj" in out["result"].history[0]
    )
    assert dep.resources.cores >= 1


@pytest.mark.slow
def test_cli_train_converts_a_cnn_checkpoint(cnn_checkpoint: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from neurocxr.cli import app
    from neurocxr.models.loaded import load

    result = CliRunner().invoke(
        app,
        [
            "train",
            "--model",
            "snn_vgg",
            "--convert-from",
            str(cnn_checkpoint),
            "--epochs",
            "0",
            "--num-steps",
            "4",
            "--data",
            "synthetic",
            "-o",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    loaded = load(tmp_path / "snn_vgg.pt")
    assert loaded.config.beta == 1.0 and loaded.metadata["conversion"]["source"] == str(
        cnn_checkpoint
    )
    # no --encoding: a converted network takes regular spike trains (fresh models stay direct)
    assert loaded.config.encoding == "regular" == loaded.metadata["conversion"]["encoding"]


def test_input_threshold_keeps_bright_pixels_apart() -> None:
    """theta_in = 0.5 (the scratch default) fires every pixel above 0.5 every step, so 0.6 and 1.0
    look alike; the conversion's 2.0 gives them different rates. Old configs without the key keep 0.5."""
    old = build_model(ModelConfig(name="snn_vgg", channels=(4,), hidden=(8,)))
    new = build_model(
        ModelConfig(name="snn_vgg", channels=(4,), hidden=(8,), extra={"input_threshold": 2.0})
    )
    assert float(old.layers[0].threshold) == 0.5 and float(new.layers[0].threshold) == 2.0
    pixels = torch.tensor([0.6, 1.0]).repeat(32, 1)  # [T, 2] constant currents
    from neurocxr.models.neurons import step

    def rates(neuron: nn.Module) -> list[float]:
        state, total = None, torch.zeros(2)
        for t in range(32):
            s, state = step(neuron, pixels[t], state)
            total += s
        return (total / 32).tolist()

    assert rates(old.layers[0]) == [1.0, 1.0]
    r06, r10 = rates(new.layers[0])
    # every floor(2 / p) + 1 steps: 0.6 every 4th step (8 of 32), 1.0 every 3rd (10 of 32)
    assert (r06, r10) == (8 / 32, 10 / 32)
    with pytest.raises(ValueError, match="input_threshold"):
        build_model(ModelConfig(name="snn_vgg", extra={"input_threshold": 0}))


def test_conversion_onto_regular_spike_input(cnn_checkpoint: Path, toy_splits: DataSplits) -> None:
    """encoding='regular': no input neurons, lambda_0 = 1 (the first conv gets the CNN's own
    weights, scaled only by its lambda), exported as a spike-input program; lever_configs and train
    honour the encoding (they used to keep 'direct')."""
    from neurocxr.deploy.deployment import Deployment
    from neurocxr.models.loaded import LoadedModel, load

    cnn = load(cnn_checkpoint)
    images = toy_splits.train.images
    snn, cfg, report = convert(cnn.model, cnn.config, images, num_steps=16)  # regular by default
    assert cfg.encoding == "regular" and "input_threshold" not in cfg.extra
    assert report.encoding == "regular" and report.input_threshold is None
    assert isinstance(snn.layers[0], nn.Conv2d)  # spike trains go straight into the first conv
    direct, _, _ = convert(cnn.model, cnn.config, images, num_steps=16, encoding="direct")
    # same first-conv weights up to lambda_0: theta_in = 2 for input neurons, 1 for regular trains
    assert torch.allclose(direct.layers[1].weight, 2.0 * snn.layers[0].weight)
    dep = Deployment.from_checkpoint(LoadedModel(snn.eval(), cfg, {}))
    assert dep.program.input_kind == "spikes"
    report_parity, _ = dep.parity(toy_splits.test.images[:24], toy_splits.test.labels[:24])
    assert report_parity.prediction_changed_fraction <= 0.1
    with pytest.raises(ConfigError, match="latency"):
        snn_config_for(CNN, 8, encoding="latency")

    config, train_cfg = lever_configs(
        "snn_vgg", convert_from=str(cnn_checkpoint), num_steps=8, encoding="regular"
    )
    assert config.encoding == "regular"
    result = train(config, toy_splits, replace(train_cfg, epochs=0), progress=False)
    assert result.conversion is not None and result.conversion["encoding"] == "regular"


@pytest.mark.lava
def test_regular_input_runs_on_lava_as_on_the_emulator(
    cnn_checkpoint: Path, toy_splits: DataSplits, tmp_path: Path
) -> None:
    from neurocxr.deploy.deployment import Deployment
    from neurocxr.models.loaded import LoadedModel, load

    cnn = load(cnn_checkpoint)
    snn, cfg, _ = convert(
        cnn.model, cnn.config, toy_splits.train.images, num_steps=8, encoding="regular"
    )
    dep = Deployment.from_checkpoint(LoadedModel(snn.eval(), cfg, {}))
    dep.write(tmp_path)
    x = dep.encode(toy_splits.test.images[:2])
    assert float(x.float_input.sum()) > 0  # the spike trains are not empty
    assert dep.lava_parity(x, 2).identical


# ----------------------------------------------------------------------------------------------
# Pruning (neurocxr.training.pruning): zero weights are synapses the chip never stores or charges


def test_cubic_sparsity_schedule() -> None:
    from neurocxr.training.pruning import cubic_sparsity

    assert cubic_sparsity(0, 10, 0.8) == 0.0
    assert cubic_sparsity(5, 10, 0.8) == pytest.approx(0.8 * (1 - 0.5**3))
    assert cubic_sparsity(10, 10, 0.8) == cubic_sparsity(99, 10, 0.8) == 0.8
    values = [cubic_sparsity(s, 10, 0.8) for s in range(11)]
    assert values == sorted(values)


def test_pruner_zeroes_the_smallest_weights_per_layer_and_keeps_them_zero() -> None:
    from neurocxr.training.pruning import WeightPruner, prunable_layers

    torch.manual_seed(0)
    model = build_model(snn_config_for(CNN, 4))
    readout_before = model.readout.weight.detach().clone()
    original = [m.weight.detach().clone() for m in prunable_layers(model)]
    pruner = WeightPruner(model, 0.6, ramp_steps=4)
    seen = []
    for _ in range(4):
        pruner.step()
        seen.append([m.clone() for m in pruner.masks])
    assert pruner.reached
    for earlier, later in zip(seen, seen[1:]):  # a pruned weight never comes back
        assert all(bool((b <= a).all()) for a, b in zip(earlier, later))
    for layer, before in zip(prunable_layers(model), original):
        w = layer.weight.detach()
        zeros = int((w == 0).sum())
        assert zeros == round(0.6 * w.numel()), (layer, zeros, w.numel())
        # the survivors are the largest magnitudes of the layer, untouched
        assert torch.equal(w[w != 0], before[w != 0])
        assert before[w != 0].abs().min() >= before[w == 0].abs().max()
    assert torch.equal(model.readout.weight.detach(), readout_before)  # the readout is not pruned
    assert pruner.measured_sparsity() == pytest.approx(0.6, abs=0.01)
    with torch.no_grad():  # an optimiser step moves every weight; apply() puts the pruned back to 0
        for layer in prunable_layers(model):
            layer.weight.add_(0.1)
    pruner.apply()
    assert pruner.measured_sparsity() == pytest.approx(0.6, abs=0.01)
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(ConfigError, match="prune"):
            WeightPruner(model, bad, 1)
    # a fraction that would empty a small layer leaves it one weight (the chain stays connected)
    WeightPruner(model, 0.9999, 1).finish()
    for m in prunable_layers(model):
        expected = max(1, m.weight.numel() - round(0.9999 * m.weight.numel()))
        assert int((m.weight != 0).sum()) == expected, (m, m.weight.numel())
    with pytest.raises(ConfigError, match="SpikingSequential"):
        WeightPruner(build_model(CNN), 0.5, 1)


def test_pruning_cuts_the_chips_synaptic_ops_and_stored_synapses() -> None:
    """The emulator charges a spike only for the non-zero synapses it reaches: the same network
    with its weights pruned makes fewer synaptic ops (energy) and stores fewer synapses."""
    from neurocxr.deploy.deployment import Deployment
    from neurocxr.energy.estimate import estimate_energy
    from neurocxr.models.loaded import LoadedModel
    from neurocxr.training.pruning import WeightPruner

    torch.manual_seed(0)
    config = replace(snn_config_for(CNN, 4), threshold=0.3)
    dense = build_model(config).eval()
    with torch.no_grad():  # positive drive, so every layer spikes
        for m in dense.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.abs_()
    pruned = build_model(config).eval()
    pruned.load_state_dict(dense.state_dict())
    WeightPruner(pruned, 0.75, 1).finish()
    images = _patches(8, 5, "test").images
    runs, energy, synapses = {}, {}, {}
    for name, model in (("dense", dense), ("pruned", pruned)):
        dep = Deployment.from_checkpoint(LoadedModel(model, config, {}))
        runs[name] = dep.run(dep.encode(images, seed=0))
        energy[name] = estimate_energy(list(runs[name].counts), "loihi2").dynamic_j
        synapses[name] = sum(c.num_synapses for c in runs[name].counts)
    hidden = slice(1, -1)  # the conv/linear layers (the readout is not pruned)
    for d, p in zip(runs["dense"].counts[hidden], runs["pruned"].counts[hidden]):
        if float(np.mean(d.synaptic_ops)) > 0:
            assert float(np.mean(p.synaptic_ops)) < float(np.mean(d.synaptic_ops)), d.name
    assert synapses["pruned"] < 0.5 * synapses["dense"], synapses
    assert energy["pruned"] < energy["dense"], energy
    # the chip-cost regulariser counts the same non-zero synapses: it follows the pruned estimate
    from neurocxr.models.loaded import encoded_inputs
    from neurocxr.training.chip_cost import chip_cost_of

    with torch.no_grad():
        _, cost = chip_cost_of(pruned, encoded_inputs(config, images, seed=0), "loihi2")
    # (within the float-vs-chip spike differences; counting the pruned synapses would overshoot)
    assert float(cost.energy_j.mean()) == pytest.approx(energy["pruned"], rel=0.03)
    assert float(cost.energy_j.mean()) < 0.9 * energy["dense"]


def test_prune_lever_is_refused_where_it_cannot_act(cnn_checkpoint: Path, tmp_path: Path) -> None:
    for kwargs, match in [
        (dict(model="cnn_small", prune=0.5), "act on SNNs"),
        (dict(model="snn_conv", prune=1.0), "prune"),
        (dict(model="snn_conv", prune=-0.1), "prune"),
        (
            dict(model="snn_vgg", convert_from=str(cnn_checkpoint), prune=0.5, epochs=0),
            "prune needs epochs >= 1",
        ),
    ]:
        model = kwargs.pop("model")
        with pytest.raises(ConfigError, match=match) as info:
            lever_configs(model, **kwargs)
        assert "\n" not in str(info.value)
    from typer.testing import CliRunner

    from neurocxr.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["train", "--model", "snn_conv", "--prune", "1.5", "--data", "synthetic", "-o", str(out)],
    )
    assert result.exit_code == 2 and "prune" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()
    # the same name on the sweep grid
    from neurocxr.sweep import TrialSettings, trial_configs

    params = {
        "model": "snn_vgg",
        "num_steps": 4,
        "encoding": None,
        "regulariser": 0.0,
        "width": 1.0,
        "seed": 0,
        "convert_from": str(cnn_checkpoint),
        "prune": 0.5,
    }
    _, train_cfg, _ = trial_configs(params, TrialSettings(train={"epochs": 2}))
    assert train_cfg.prune == 0.5


@pytest.mark.slow
def test_pruned_fine_tuning_ends_pruned_and_on_the_chip_grid(
    cnn_checkpoint: Path, toy_splits: DataSplits
) -> None:
    """A converted network fine-tuned with prune (and the chip-cost regulariser, which recounts
    its fan-outs as the masks grow): the dense converted start (epoch 0) is never the one kept,
    the kept weights hold the fraction, and after QAT the zeros are still zeros."""
    from neurocxr.training.pruning import prunable_layers

    cfg = snn_config_for(CNN, 4)
    tc = TrainConfig(
        epochs=3,
        lr=5e-4,
        batch_size=16,
        convert_from=str(cnn_checkpoint),
        prune=0.5,
        qat_epochs=1,
        chip_cost_weight=1e-4,
    )
    result = train(cfg, toy_splits, tc, progress=False)
    assert result.history[0].get("converted") == 1.0
    assert result.best_epoch >= 1  # ramp: the first of the 3 epochs; epoch 0 is not a candidate
    assert [h.get("weight_sparsity") for h in result.history[1:4]] == pytest.approx(
        [0.5] * 3, abs=0.02
    )
    assert result.weight_sparsity == pytest.approx(0.5, abs=0.02)
    assert all("train_chip_uj" in h for h in result.history[1:4])
    for layer in prunable_layers(result.model):
        w = layer.weight.detach()
        assert int((w == 0).sum()) >= round(0.5 * w.numel()) - 1


@pytest.mark.slow
def test_pruning_ramp_epochs_are_printed_but_never_kept(
    cnn_checkpoint: Path, toy_splits: DataSplits, capsys: pytest.CaptureFixture[str]
) -> None:
    """Six epochs ramp over the first two: epoch 1 is below the fraction, so it cannot be the
    best epoch, and its progress line is printed like every other epoch's."""
    cfg = snn_config_for(CNN, 4)
    tc = TrainConfig(
        epochs=6, lr=5e-4, batch_size=16, convert_from=str(cnn_checkpoint), prune=0.5, patience=6
    )
    result = train(cfg, toy_splits, tc, progress=True)
    printed = capsys.readouterr().out
    assert all(f"snn_vgg epoch {e}: loss" in printed for e in range(1, 7)), printed
    assert result.history[1]["weight_sparsity"] < 0.45  # mid-ramp
    assert result.best_epoch >= 2 and result.weight_sparsity == pytest.approx(0.5, abs=0.02)
