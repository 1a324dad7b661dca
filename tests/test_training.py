"""Training learns, early stopping keeps the best validation epoch, checkpoints round-trip exactly,
and bad checkpoints fail with CheckpointError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurocxr.data.datasets import DataSplits, ImageDataset, synthetic_splits
from neurocxr.errors import CheckpointError
from neurocxr.metrics import choose_threshold, clinical_metrics
from neurocxr.models import ModelConfig, build_model
from neurocxr.models.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from neurocxr.models.loaded import forward_model
from neurocxr.training.train import TrainConfig, evaluate, predict_scores, train

SMALL = dict(num_steps=4, channels=(8, 16), hidden=(32,), threshold=0.5)


def _patches(n: int, seed: int, split: str) -> ImageDataset:
    """An easily separable toy task: a bright patch in the left half (label 1) or right half (0)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = 0.2 * torch.rand(n, 1, 28, 28, generator=g)
    for i in range(n):
        row = int(torch.randint(4, 12, (1,), generator=g))
        col = int(torch.randint(2, 8, (1,), generator=g)) + (0 if labels[i] == 1 else 14)
        images[i, 0, row : row + 10, col : col + 8] += 0.7
    return ImageDataset(images.clamp(0, 1), labels.long(), split, f"toy patches (seed {seed})")


@pytest.fixture(scope="module")
def toy_splits() -> DataSplits:
    return DataSplits(_patches(128, 0, "train"), _patches(64, 1, "val"), _patches(64, 2, "test"))


@pytest.fixture(scope="module")
def trained_snn(toy_splits: DataSplits, tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    ckpt = tmp_path_factory.mktemp("ckpt") / "snn.pt"
    config = ModelConfig(name="snn_conv", **SMALL)
    result = train(
        config,
        toy_splits,
        TrainConfig(epochs=4, batch_size=32, lr=5e-3, patience=2),
        progress=False,
        checkpoint_path=ckpt,
    )
    return result, ckpt


@pytest.mark.parametrize("name", ["snn_conv", "snn_norse", "slimi2025", "cnn_small"])
@pytest.mark.slow
def test_training_learns_a_separable_task(name: str, toy_splits: DataSplits) -> None:
    if name == "slimi2025":
        config = ModelConfig(name=name, num_steps=4, channels=(8, 16, 32), extra={"gru_hidden": 32})
    else:
        config = ModelConfig(name=name, **SMALL)
    untrained = build_model(config)
    torch.manual_seed(0)
    before = evaluate(untrained, config, toy_splits.test, 0.5)
    result = train(
        config, toy_splits, TrainConfig(epochs=4, batch_size=32, lr=5e-3), progress=False
    )
    test = evaluate(result.model, config, toy_splits.test, result.threshold)
    assert test.accuracy >= 0.9 and test.roc_auc >= 0.95
    assert test.accuracy > before.accuracy
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_best_epoch_threshold_and_checkpoint(trained_snn, toy_splits: DataSplits) -> None:
    result, ckpt = trained_snn
    aucs = [h["val_auc"] for h in result.history]
    assert result.best_epoch == 1 + int(np.argmax(aucs))  # first epoch with the best val AUC
    assert {"epoch", "train_loss", "val_auc", "val_acc", "seconds"} <= set(result.history[0])
    val_scores = predict_scores(result.model, result.config, toy_splits.val)
    labels = toy_splits.val.labels.numpy()
    assert result.threshold == pytest.approx(choose_threshold(labels, val_scores))
    assert result.val_metrics == clinical_metrics(labels, val_scores, result.threshold)
    assert result.data_source == "toy patches (seed 0)"

    loaded = load_checkpoint(ckpt)
    assert loaded.config == result.config
    assert loaded.metadata["threshold"] == pytest.approx(result.threshold)
    assert loaded.metadata["best_epoch"] == result.best_epoch
    assert loaded.metadata["data_source"] == result.data_source
    assert len(loaded.metadata["history"]) == len(result.history)
    assert "torch" in loaded.metadata["library_versions"] and loaded.metadata["created"]
    images = toy_splits.test.images[:16]
    with torch.no_grad():
        assert torch.equal(
            forward_model(loaded.model, images, loaded.config, seed=3),
            forward_model(result.model.eval(), images, result.config, seed=3),
        )


@pytest.mark.parametrize(
    "name,encoding",
    [
        ("snn_norse", "rate"),
        ("gatti2025", "latency"),
        ("cnn_small", "direct"),
        ("slimi2025", "direct"),
    ],
)
def test_checkpoint_round_trip_gives_identical_outputs(
    name: str, encoding: str, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    extra = {"gru_hidden": 8} if name == "slimi2025" else {}
    config = ModelConfig(
        name=name,
        encoding=encoding,
        num_steps=3,
        extra=extra,
        **({"channels": (4, 8, 8)} if name in ("gatti2025", "slimi2025") else {}),
    )
    model = build_model(config).eval()
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, config, {"threshold": 0.3})
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    loaded = load_checkpoint(path)
    assert not loaded.model.training
    images = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(
            forward_model(model, images, config, seed=1),
            forward_model(loaded.model, images, config, seed=1),
        )


def test_rate_coded_scores_are_deterministic_per_seed(toy_splits: DataSplits) -> None:
    config = ModelConfig(
        name="snn_conv", encoding="rate", num_steps=8, channels=(8, 16), hidden=(32,), threshold=0.1
    )
    torch.manual_seed(0)
    model = build_model(config)
    a = predict_scores(model, config, toy_splits.val, batch_size=16, seed=5)
    b = predict_scores(model, config, toy_splits.val, batch_size=16, seed=5)
    c = predict_scores(model, config, toy_splits.val, batch_size=16, seed=6)
    assert a.shape == (64,) and ((a >= 0) & (a <= 1)).all()
    assert np.ptp(a) > 0  # the network is not silent: scores depend on the input
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert model.training  # predict_scores restores the caller's mode


def test_sampler_balance_subsampling_and_augmentation_run(tmp_path: Path) -> None:
    splits = synthetic_splits(28, n_train=80, n_val=40, n_test=40, seed=1)
    config = ModelConfig(name="cnn_small", channels=(4, 8), hidden=(16,))
    result = train(
        config,
        splits,
        TrainConfig(
            epochs=2,
            batch_size=16,
            balance="sampler",
            augment=True,
            max_train_samples=50,
            schedule="cosine",
        ),
        progress=False,
    )
    assert len(result.history) == 2 and result.data_source.startswith("synthetic")
    assert splits.train.augment is None  # the caller's dataset is not modified
    with pytest.raises(ValueError, match="balance"):
        TrainConfig(balance="oversample")


def test_bad_checkpoints_raise_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(text)
    model = build_model(ModelConfig(name="cnn_small"))
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    with pytest.raises(CheckpointError, match="not a neurocxr checkpoint"):
        load_checkpoint(bare)
    config = ModelConfig(name="cnn_small")
    good = save_checkpoint(tmp_path / "good.pt", model, config, {})
    payload = torch.load(good, weights_only=True)
    unknown = tmp_path / "unknown.pt"
    torch.save({**payload, "config": {**payload["config"], "name": "vit_huge"}}, unknown)
    with pytest.raises(CheckpointError, match="vit_huge"):
        load_checkpoint(unknown)
    mismatched = tmp_path / "mismatched.pt"
    torch.save({**payload, "config": {**payload["config"], "hidden": [64]}}, mismatched)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(mismatched)
    future = tmp_path / "future.pt"
    torch.save({**payload, "version": 99}, future)
    with pytest.raises(CheckpointError, match="upgrade"):
        load_checkpoint(future)
    assert payload["format"] == CHECKPOINT_FORMAT


def test_single_class_training_split_is_a_data_error(toy_splits: DataSplits) -> None:
    from neurocxr.errors import DataError

    normal_only = ImageDataset(
        toy_splits.train.images[::2].clone(), toy_splits.train.labels[::2].clone(), "train", "toy"
    )
    assert set(normal_only.labels.tolist()) == {0}
    with pytest.raises(DataError, match="both"):
        train(
            ModelConfig(name="cnn_small"),
            DataSplits(normal_only, toy_splits.val, toy_splits.test),
            TrainConfig(epochs=1),
            progress=False,
        )


@pytest.mark.slow
def test_snn_learns_the_synthetic_phantoms_well_above_chance() -> None:
    """The embedded default data (50/50 phantoms) is learnable by the default SNN in a short run."""
    torch.set_num_threads(1)
    splits = synthetic_splits(image_size=28, n_train=320, n_val=96, n_test=96, seed=3)
    config = ModelConfig(name="snn_conv", **SMALL)
    result = train(
        config, splits, TrainConfig(epochs=3, batch_size=32, lr=5e-3, seed=0), progress=False
    )
    test = evaluate(result.model, config, splits.test, result.threshold)
    # Chance is 0.5 accuracy / 0.5 AUC on these balanced phantoms.
    assert test.roc_auc >= 0.75, test
    assert test.accuracy >= 0.65, test


# ----------------------------------------------------------------------------------------------
# Energy levers (issue 9): chip-cost regulariser, early readout, distillation, QAT


def _chip_run(model, config: ModelConfig, ds: ImageDataset):
    from neurocxr.deploy.deployment import Deployment
    from neurocxr.models.loaded import LoadedModel

    deployment = Deployment.from_checkpoint(LoadedModel(model.eval(), config, {}))
    parity, run = deployment.parity(ds.images, ds.labels)
    return deployment.program, parity.to_dict(), run


@pytest.mark.parametrize("name,encoding", [("snn_strided", "direct"), ("snn_conv", "rate")])
def test_chip_cost_equals_the_energy_report_on_chip_counts(name: str, encoding: str) -> None:
    """The regulariser's value is the energy report's Loihi 2 estimate from the emulator's counts
    (it counts every synapse, the chip skips weights quantised to 0: equal within a few percent)."""
    from neurocxr.energy.estimate import estimate_energy
    from neurocxr.models.loaded import encoded_inputs
    from neurocxr.training.chip_cost import chip_cost_of

    torch.manual_seed(0)
    config = ModelConfig(name=name, encoding=encoding, **SMALL)
    model = build_model(config).eval()
    ds = _patches(16, 3, "test")
    with torch.no_grad():
        _, cost = chip_cost_of(model, encoded_inputs(config, ds.images, seed=0), "loihi2")
    _, _, run = _chip_run(model, config, ds)
    chip = estimate_energy(run.counts, "loihi2")
    assert float(cost.neuron_updates) == pytest.approx(
        sum(float(np.mean(c.neuron_updates)) for c in run.counts)
    )
    assert float(cost.energy_j.mean()) == pytest.approx(chip.dynamic_j, rel=0.03)
    assert (
        float(cost.energy_j.mean()) >= chip.dynamic_j * 0.999
    )  # an upper bound (zero weights are skipped on chip)


@pytest.mark.slow
def test_chip_cost_regulariser_lowers_chip_counts(toy_splits: DataSplits) -> None:
    """Same seed and data; lambda > 0 gives fewer synaptic ops on the emulated chip. The first
    synaptic layer is fed by the input neurons, whose spikes depend on the image only, so the
    layers after it are where training can save."""
    config = ModelConfig(name="snn_strided", **SMALL)
    synops, total = {}, {}
    for lam in (0.0, 10.0):
        result = train(
            config,
            toy_splits,
            TrainConfig(
                epochs=3, batch_size=16, seed=0, lr=5e-3, schedule="cosine", chip_cost_weight=lam
            ),
            progress=False,
        )
        _, _, run = _chip_run(result.model, config, toy_splits.test)
        synops[lam] = sum(float(np.mean(c.synaptic_ops)) for c in run.counts[2:])
        total[lam] = sum(float(np.mean(c.synaptic_ops)) for c in run.counts)
        if lam > 0:
            assert all("train_chip_uj" in h for h in result.history)
    assert synops[10.0] < 0.7 * synops[0.0], synops
    assert total[10.0] < total[0.0], total


@pytest.mark.slow
def test_qat_makes_float_and_chip_agree(toy_splits: DataSplits) -> None:
    """After quantisation-aware fine-tuning the float weights sit exactly on the exporter's integer
    grid and the float model and the chip emulator predict the same class for every test image."""
    from neurocxr.training.qat import weights_on_chip_grid

    config = ModelConfig(name="snn_strided", **SMALL)
    result = train(
        config,
        toy_splits,
        TrainConfig(epochs=2, batch_size=16, seed=0, qat_epochs=1),
        progress=False,
    )
    program, parity, _ = _chip_run(result.model, config, toy_splits.test)
    assert weights_on_chip_grid(result.model, program) < 1e-3
    assert parity["prediction_changed_fraction"] == 0.0
    assert result.history[-1].get("qat") == 1.0
    assert (
        clinical_metrics(
            toy_splits.val.labels.numpy(), predict_scores(result.model, config, toy_splits.val)
        ).roc_auc
        > 0.9
    )


def test_early_readout_and_distillation_run_and_validate(
    toy_splits: DataSplits, tmp_path: Path
) -> None:
    from neurocxr.errors import ConfigError

    teacher = train(
        ModelConfig(name="cnn_small", channels=(4, 8), hidden=(16,)),
        toy_splits,
        TrainConfig(epochs=1, batch_size=32),
        progress=False,
        checkpoint_path=tmp_path / "teacher.pt",
    )
    assert teacher.checkpoint_path is not None
    cfg = TrainConfig(
        epochs=1,
        batch_size=32,
        early_readout_weight=0.5,
        distill_teacher=str(tmp_path / "teacher.pt"),
        distill_weight=0.5,
    )
    result = train(ModelConfig(name="snn_strided", **SMALL), toy_splits, cfg, progress=False)
    assert np.isfinite(result.history[0]["train_loss"])
    with pytest.raises(ConfigError, match="distill_teacher"):
        TrainConfig(distill_weight=0.5)
    with pytest.raises(ConfigError, match="chip_cost_weight"):
        TrainConfig(chip_cost_weight=-1.0)
