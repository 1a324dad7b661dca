"""neurocxr.evaluation: robustness, uncertainty and explanations, on tiny models and synthetic data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_medmnist_npz
from torch import nn
from typer.testing import CliRunner

from neurocxr.cli import app
from neurocxr.data.datasets import load_dataset
from neurocxr.errors import DataError, NeurocxrError
from neurocxr.evaluation import explain as ex
from neurocxr.evaluation import robustness as rob
from neurocxr.evaluation import uncertainty as unc
from neurocxr.metrics import choose_threshold
from neurocxr.models import ModelConfig, build_model
from neurocxr.models.checkpoint import save_checkpoint
from neurocxr.models.loaded import LoadedModel

runner = CliRunner()


# ----------------------------------------------------------------------------------------------
# helpers


def brightness_cnn(image_size: int = 16, dropout: float = 0.0) -> LoadedModel:
    """A hand-made CNN that calls an image pneumonia when its mean brightness exceeds 0.5 (the
    conftest npz: normal ~60/255, pneumonia ~190/255). Registered name cnn_small so forward_model
    treats it as a CNN. ``dropout`` > 0 puts a Dropout between the conv and the pooling."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0 / 9.0)
    head = nn.Linear(1, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-20.0], [20.0]]))
        head.bias.copy_(torch.tensor([10.0, -10.0]))
    middle = [nn.Dropout(dropout)] if dropout > 0 else []
    model = nn.Sequential(
        conv, nn.ReLU(), *middle, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head
    ).eval()
    return LoadedModel(
        model, ModelConfig(name="cnn_small", image_size=image_size), {"threshold": 0.5}
    )


def tiny_snn_model(**overrides) -> LoadedModel:
    """Untrained tiny snn_conv with weights scaled so every layer spikes (as tests/test_cli.py)."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        name="snn_conv", image_size=16, num_steps=4, channels=(4, 8), hidden=(16,), **overrides
    )
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(3.0)
    return LoadedModel(model, cfg, {"threshold": 0.5})


def dropout_cnn(image_size: int = 16, dropout: float = 0.5) -> LoadedModel:
    torch.manual_seed(0)
    cfg = ModelConfig(
        name="cnn_small", image_size=image_size, channels=(4, 8), hidden=(16,), dropout=dropout
    )
    return LoadedModel(build_model(cfg).eval(), cfg, {"threshold": 0.5})


@pytest.fixture(scope="module")
def tiny_splits(tmp_path_factory):
    path = write_medmnist_npz(
        tmp_path_factory.mktemp("npz") / "tiny.npz",
        16,
        {"train": (4, 4), "val": (6, 6), "test": (8, 8)},
    )
    return path, load_dataset(path, image_size=16)


def save_png(path: Path, array: np.ndarray, mode: str = "L") -> Path:
    from PIL import Image

    Image.fromarray(array, mode=mode).save(path)
    return path


def phantom_pngs(folder: Path, n: int = 2, size: int = 40) -> list[Path]:
    from neurocxr.data.phantoms import generate_phantoms

    imgs, _ = generate_phantoms(n, size, seed=3)
    return [save_png(folder / f"xray_{i}.png", (imgs[i] * 255).astype(np.uint8)) for i in range(n)]


# ----------------------------------------------------------------------------------------------
# perturbations


def test_perturbations_do_what_they_say() -> None:
    gray = torch.full((4, 1, 32, 32), 0.5)
    # blur: sigma 0 is the identity, blur keeps a flat image flat, and smooths an edge
    assert torch.equal(rob.gaussian_blur(gray, 0.0), gray)
    assert torch.allclose(rob.gaussian_blur(gray, 0.6), gray, atol=1e-6)
    edge = torch.zeros(1, 1, 8, 8)
    edge[..., 4:] = 1.0
    blurred = rob.gaussian_blur(edge, 0.6)
    assert 0.0 < float(blurred[0, 0, 0, 3]) < 0.5 < float(blurred[0, 0, 0, 4]) < 1.0
    # sigma 0.2 px is almost no blur (kernel side weight ~4e-6): the protocol's mildest level
    assert float((rob.gaussian_blur(edge, 0.2) - edge).abs().max()) < 1e-4
    # salt and pepper: fraction p of pixels set to 0 or 1, half each
    sp = rob.perturb(gray, "salt_and_pepper", 0.10, seed=1)
    zeros, ones = float((sp == 0).float().mean()), float((sp == 1).float().mean())
    assert abs(zeros - 0.05) < 0.015 and abs(ones - 0.05) < 0.015
    # speckle is multiplicative (black stays black), additive noise is not
    black = torch.zeros(2, 1, 16, 16)
    assert torch.equal(rob.perturb(black, "speckle", 0.3), black)
    assert float(rob.perturb(black, "gaussian_noise", 0.2).max()) > 0
    noisy = rob.perturb(gray, "speckle", 0.2, seed=2)
    assert abs(float((noisy - gray).std()) - 0.5 * 0.2) < 0.01
    noisy = rob.perturb(gray, "gaussian_noise", 0.1, seed=2)
    assert abs(float((noisy - gray).std()) - 0.1) < 0.01
    # seeded, input untouched, levels differ
    before = gray.clone()
    assert torch.equal(
        rob.perturb(gray, "speckle", 0.1, seed=5), rob.perturb(gray, "speckle", 0.1, seed=5)
    )
    assert not torch.equal(rob.perturb(gray, "speckle", 0.1), rob.perturb(gray, "speckle", 0.2))
    assert torch.equal(gray, before)
    with pytest.raises(NeurocxrError, match="unknown perturbation"):
        rob.perturb(gray, "jpeg", 0.1)


def test_robustness_float_model_threshold_fixed_and_degrades(tiny_splits) -> None:
    _, splits = tiny_splits
    model = brightness_cnn()
    res = rob.evaluate_robustness(
        model, splits, perturbations={"gaussian_blur": (0.6,), "salt_and_pepper": (0.95,)}
    )
    rows = {(r["perturbation"], r["level"]): r for r in res.results}
    assert set(rows) == {("clean", 0.0), ("gaussian_blur", 0.6), ("salt_and_pepper", 0.95)}
    assert res.thresholds.float_model == 0.5 and res.chip.evaluated is False
    # the brightness classifier is perfect on clean images and blur keeps brightness
    assert rows[("clean", 0.0)]["float"]["accuracy"] == 1.0
    assert rows[("gaussian_blur", 0.6)]["float"]["accuracy"] == 1.0
    # 95% of pixels replaced by 0/1 leaves little signal: clearly worse
    assert rows[("salt_and_pepper", 0.95)]["float"]["accuracy"] < 0.9
    assert res.summary.float_path is not None
    drop = res.summary.float_path.per_perturbation["salt_and_pepper"].accuracy_mean_drop
    assert drop == pytest.approx(1.0 - rows[("salt_and_pepper", 0.95)]["float"]["accuracy"])
    assert res.protocol["gaussian_blur"]["parameter"].startswith("sigma")
    # the default protocol is the paper's plus Gaussian noise
    assert rob.PROTOCOL["gaussian_blur"]["levels"] == (0.2, 0.4, 0.6)
    assert rob.PROTOCOL["salt_and_pepper"]["levels"] == (0.05, 0.10, 0.15)
    assert rob.PROTOCOL["speckle"]["levels"] == (0.1, 0.2, 0.3)


def test_robustness_snn_on_chip_uses_validation_threshold(tiny_splits, tmp_path: Path) -> None:
    from neurocxr.evaluation.common import chip_program, readout_difference, run_chip

    _, splits = tiny_splits
    snn = tiny_snn_model()
    res = rob.evaluate_robustness(snn, splits, perturbations={"speckle": (0.3,)})
    assert res.chip.evaluated is True, res.chip.reason
    program, _ = chip_program(snn)
    d_val = readout_difference(run_chip(snn, program, splits.val.images))
    t = choose_threshold(splits.val.labels.numpy(), d_val, "youden")
    assert res.thresholds.chip == pytest.approx(t)
    d_test = readout_difference(run_chip(snn, program, splits.test.images))
    clean = res.results[0]
    acc = float(np.mean((d_test >= t) == splits.test.labels.numpy()))
    assert clean["chip"]["accuracy"] == pytest.approx(acc)
    png = rob.plot_robustness([res.to_dict()], tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not rob.evaluate_robustness(
        snn, splits, chip=False, perturbations={"speckle": (0.1,)}
    ).chip.evaluated


# ----------------------------------------------------------------------------------------------
# uncertainty


def test_mc_measures_entropy_and_mutual_information() -> None:
    agree = np.array([[[0.2, 0.8]], [[0.2, 0.8]]])
    m = unc.mc_measures(agree)
    assert m["mutual_information"][0] == pytest.approx(0.0, abs=1e-12)
    assert m["predictive_entropy"][0] == pytest.approx(-(0.2 * math.log(0.2) + 0.8 * math.log(0.8)))
    disagree = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    m = unc.mc_measures(disagree)
    assert m["predictive_entropy"][0] == pytest.approx(math.log(2))
    assert m["expected_entropy"][0] == pytest.approx(0.0)
    assert m["mutual_information"][0] == pytest.approx(math.log(2))


def test_calibration_and_referral_curve() -> None:
    y = np.array([1] * 2 + [0] * 8 + [1] * 8 + [0] * 2)
    p = np.array([0.2] * 10 + [0.8] * 10)  # 20% / 80% positives: perfectly calibrated
    cal = unc.calibration(y, p)
    assert cal.ece_positive_class == pytest.approx(0.0, abs=1e-12)
    over = unc.calibration(np.array([0, 1] * 10), np.full(20, 0.9))  # says 0.9, 50% positive
    assert over.ece_positive_class == pytest.approx(0.4)
    assert over.ece_top_label == pytest.approx(0.4)
    # an uncertainty that flags exactly the errors: referring them leaves perfect accuracy
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    pred = y.copy()
    pred[[2, 7]] = 1 - pred[[2, 7]]
    u = np.zeros(10)
    u[[2, 7]] = 1.0
    curve = unc.referral_curve(y, pred, u, fractions=(0.0, 0.1, 0.2, 0.5))
    assert curve.accuracy_kept[0] == pytest.approx(0.8)
    assert curve.accuracy_kept[1] == pytest.approx(8 / 9)
    assert curve.accuracy_kept[2] == 1.0 and curve.kept == [10, 9, 8, 5]


def test_mc_dropout_samples_only_dropout_and_restores_state(tiny_splits) -> None:
    _, splits = tiny_splits
    model = dropout_cnn()
    rng_before = torch.random.get_rng_state()
    probs = unc.mc_dropout_probabilities(model, splits.test.images, passes=6, seed=1)
    assert probs.shape == (6, len(splits.test), 2)
    assert np.allclose(probs.sum(-1), 1.0)
    assert probs.var(0).max() > 0  # passes differ
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert not any(m.training for m in model.model.modules())
    again = unc.mc_dropout_probabilities(model, splits.test.images, passes=6, seed=1)
    assert np.array_equal(probs, again)
    with pytest.raises(NeurocxrError, match="no dropout layer"):
        unc.mc_dropout_probabilities(brightness_cnn(), splits.test.images, passes=4)


def test_evaluate_uncertainty_curves(tiny_splits, tmp_path: Path) -> None:
    _, splits = tiny_splits
    res = unc.evaluate_uncertainty(dropout_cnn(), splits, passes=4)
    assert {
        "softmax_entropy",
        "float_margin",
        "mc_predictive_entropy",
        "mc_mutual_information",
    } <= set(res.referral)
    assert res.mc_dropout is not None and res.mc_dropout.passes == 4 and res.chip is None
    for measure in res.referral.values():
        curve = measure.curve
        assert curve.kept[0] == len(splits.test) and len(curve.accuracy_kept) == len(
            curve.fraction_referred
        )
    snn = unc.evaluate_uncertainty(tiny_snn_model(), splits)
    assert snn.mc_dropout is None and "chip_spike_margin" in snn.referral
    assert snn.chip is not None
    assert snn.referral["chip_spike_margin"].curve.accuracy_kept[0] == pytest.approx(
        snn.chip.accuracy
    )
    with pytest.raises(NeurocxrError, match="no dropout layer"):
        unc.evaluate_uncertainty(tiny_snn_model(), splits, passes=20)
    assert unc.plot_uncertainty(res.to_dict(), tmp_path / "u.png").stat().st_size > 1000


# ----------------------------------------------------------------------------------------------
# explanations


def test_load_xray_image_accepts_gray_and_refuses_non_xrays(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1))
    x = ex.load_xray_image(save_png(tmp_path / "g.png", ramp), 16)
    assert x.shape == (1, 16, 16) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    gray_rgb = np.repeat(ramp[..., None], 3, axis=-1)
    x3 = ex.load_xray_image(save_png(tmp_path / "rgb.jpg", gray_rgb, "RGB"), 16, in_channels=3)
    assert x3.shape == (3, 16, 16)
    colour = np.zeros((30, 40, 3), np.uint8)
    colour[..., 0] = 255
    colour[:, :20, 2] = 200
    cases = {
        "colour image": save_png(tmp_path / "c.png", colour, "RGB"),
        "not an image file": tmp_path / "notes.png",
        "blank": save_png(tmp_path / "b.png", np.full((30, 30), 128, np.uint8)),
        "at least 8x8": save_png(tmp_path / "t.png", ramp[:4, :4]),
        "does not exist": tmp_path / "missing.png",
    }
    (tmp_path / "notes.png").write_text("hello")
    for message, path in cases.items():
        with pytest.raises(DataError, match=message):
            ex.load_xray_image(path, 16)


def test_grad_cam_matches_a_hand_computed_grad_cam(tiny_splits) -> None:
    _, splits = tiny_splits
    model = dropout_cnn(dropout=0.0)
    images = splits.test.images[:3]
    name, conv = ex.require_conv(model)
    acts = {}
    handle = conv.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    try:
        images_g = images.clone().requires_grad_(True)
        logits = model.model(images_g)
        target = torch.tensor([1, 0, 1])
        grads = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), acts["a"])[0]
    finally:
        handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    manual = torch.relu((weights * acts["a"]).sum(1)).detach()
    captum_map = ex._grad_cam(model, images, target)
    assert torch.allclose(captum_map, manual, atol=1e-6)
    maps = ex.cnn_maps(model, images, np.array([1, 0, 1]))
    assert [m.name for m in maps[0]] == ["Grad-CAM"] and maps[0][0].values.shape == (16, 16)


def test_grad_cam_layer_is_the_last_feature_conv() -> None:
    from neurocxr.evaluation.common import last_conv2d

    class Gate(nn.Module):  # a CBAM-like spatial attention: its 2->1 conv is not a feature map
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 1, 7, padding=3)

    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 16, 3), Gate())
    assert last_conv2d(model)[0] == "1"
    assert last_conv2d(model, "2.conv")[0] == "2.conv"
    assert last_conv2d(nn.Sequential(nn.Conv2d(1, 1, 3)))[0] == "0"
    assert last_conv2d(nn.Sequential(nn.Linear(2, 2))) is None
    with pytest.raises(NeurocxrError, match="no Conv2d named"):
        last_conv2d(model, "head")


def test_bayes_grad_cam_mean_and_variance(tiny_splits) -> None:
    _, splits = tiny_splits
    model = brightness_cnn(dropout=0.5)
    maps = ex.cnn_maps(model, splits.test.images[:2], np.array([1, 1]), mc_passes=5, seed=0)
    names = [m.name for m in maps[0]]
    assert names == ["Grad-CAM", "BayesGrad-CAM mean", "BayesGrad-CAM variance"]
    cam, mean, var = (m.values for m in maps[0])
    assert cam.max() > 0 and var.min() >= 0 and var.max() > 0  # dropout makes the passes disagree
    assert not np.allclose(mean, cam)
    assert not any(m.training for m in model.model.modules())


def test_snn_spike_maps_come_from_the_chip_and_follow_brightness() -> None:
    from neurocxr.data.phantoms import generate_phantoms

    snn = tiny_snn_model()
    imgs, _ = generate_phantoms(2, 16, seed=1)
    images = torch.from_numpy(imgs).unsqueeze(1)
    expl = ex.explain_images(snn, images)
    names = [m.name for m in expl[0].maps]
    assert names[0].startswith("chip spikes") and names[-1] == "Integrated Gradients"
    # direct coding: the input neurons' firing rate grows with pixel brightness
    rate = expl[0].maps[0].values.ravel()
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    assert np.corrcoef(rank(rate), rank(imgs[0].ravel()))[0, 1] > 0.8
    assert all(m.values.shape == (16, 16) and m.values.min() >= 0 for m in expl[0].maps)
    float_only = ex.explain_images(snn, images, chip=False)
    assert float_only[0].maps[0].name.startswith("float spikes") and float_only[0].notes


def test_explanation_figures_for_the_report(tiny_splits) -> None:
    _, splits = tiny_splits
    figs = ex.explanation_figures(dropout_cnn(), splits.test.images, max_images=2, mc_passes=3)
    assert len(figs) == 2 and figs[0].png[:4] == b"\x89PNG"
    assert figs[0].data_uri().startswith("data:image/png;base64,") and "Grad-CAM" in figs[0].caption


# ----------------------------------------------------------------------------------------------
# command line


def _checkpoint(tmp_path: Path, loaded: LoadedModel, name: str) -> Path:
    return save_checkpoint(tmp_path / f"{name}.pt", loaded.model, loaded.config, {"threshold": 0.5})


def test_cli_explain_writes_page_and_refuses_bad_input(tmp_path: Path, monkeypatch) -> None:
    ckpt = _checkpoint(tmp_path, dropout_cnn(), "cnn_dropout")
    pngs = phantom_pngs(tmp_path)
    out = tmp_path / "explain"
    res = runner.invoke(
        app, ["explain", str(ckpt), *map(str, pngs), "-o", str(out), "--mc-passes", "3"]
    )
    assert res.exit_code == 0, res.output
    page = (out / "index.html").read_text()
    assert "xray_0.png" in page and "BayesGrad-CAM variance" in page
    data = json.loads((out / "explanations.json").read_text())
    assert [i["png"] for i in data["images"]] == ["00_xray_0.png", "01_xray_1.png"]
    assert (out / "00_xray_0.png").read_bytes()[:4] == b"\x89PNG"

    colour = np.zeros((30, 30, 3), np.uint8)
    colour[..., 1] = 250
    bad = save_png(tmp_path / "photo.png", colour, "RGB")
    out2 = tmp_path / "explain2"
    res = runner.invoke(app, ["explain", str(ckpt), str(pngs[0]), str(bad), "-o", str(out2)])
    assert (
        res.exit_code == 2
        and "colour image" in res.output
        and len(res.output.strip().splitlines()) <= 2
    )
    assert not out2.exists()

    # a model without any Conv2d: Grad-CAM is impossible, said in one line, nothing written
    from neurocxr.models.base import MODEL_REGISTRY, ModelInfo

    def build_mlp(cfg: ModelConfig) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(cfg.image_size**2, 2))

    monkeypatch.setitem(
        MODEL_REGISTRY, "h8_test_mlp", ModelInfo(build_mlp, "cnn", False, "test MLP")
    )
    cfg = ModelConfig(name="h8_test_mlp", image_size=16)
    mlp = save_checkpoint(tmp_path / "mlp.pt", build_model(cfg), cfg, {"threshold": 0.5})
    res = runner.invoke(app, ["explain", str(mlp), str(pngs[0]), "-o", str(out2)])
    assert res.exit_code == 2 and "no convolutional layer" in res.output
    assert not out2.exists()


@pytest.mark.slow
def test_cli_evaluate_robustness_and_uncertainty(tmp_path: Path, tiny_splits) -> None:
    npz, _ = tiny_splits
    ckpt = _checkpoint(tmp_path, dropout_cnn(), "cnn_dropout")
    out = tmp_path / "eval"
    args = [
        "evaluate",
        str(ckpt),
        "--data",
        str(npz),
        "--robustness",
        "--mc-passes",
        "3",
        "-o",
        str(out),
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {
        "robustness.json",
        "robustness.png",
        "uncertainty.json",
        "uncertainty.png",
    }
    r = json.loads((out / "robustness.json").read_text())
    assert len(r["results"]) == 1 + 4 * 3 and r["provenance"]["checkpoints"]["cnn_small"]["sha256"]
    u = json.loads((out / "uncertainty.json").read_text())
    assert u["mc_dropout"]["passes"] == 3 and "mc_mutual_information" in u["referral"]
    assert "referral by" in res.output
    # no overwrite without --force: refused before any work
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--force" in again.output
    # MC passes on a model without dropout: one line, exit 2, nothing written
    plain = save_checkpoint(
        tmp_path / "plain.pt",
        *(lambda m: (m.model, m.config))(dropout_cnn(dropout=0.0)),
        {"threshold": 0.5},
    )
    out3 = tmp_path / "eval3"
    res = runner.invoke(
        app, ["evaluate", str(plain), "--data", str(npz), "--mc-passes", "5", "-o", str(out3)]
    )
    assert res.exit_code == 2 and "no dropout layer" in res.output
    assert "accuracy" not in res.output and not out3.exists()
