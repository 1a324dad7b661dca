"""End to end through the command line and the Python API, on a tiny model and synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from neurocxr.cli import app
from neurocxr.models import ModelConfig, build_model
from neurocxr.models.checkpoint import save_checkpoint

runner = CliRunner()


def tiny_snn(tmp_path: Path, name: str = "snn_conv", **overrides) -> Path:
    """An untrained but active tiny SNN checkpoint (weights scaled up so every layer spikes)."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        name=name, image_size=16, num_steps=6, channels=(4, 8), hidden=(16,), **overrides
    )
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(3.0)
    return save_checkpoint(tmp_path / f"{name}.pt", model, cfg, {"threshold": 0.5})


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result


@pytest.mark.lava
def test_export_loihi_end_to_end(tmp_path: Path) -> None:
    ckpt = tiny_snn(tmp_path)
    out = tmp_path / "loihi"
    res = invoke(
        "export",
        str(ckpt),
        "--target",
        "loihi",
        "-o",
        str(out),
        "--data",
        "synthetic",
        "--max-samples",
        "24",
        "--lava-samples",
        "1",
    )
    assert res.exit_code == 0, res.output
    for f in ("model.nir", "model.net", "export_report.json", "export_report.md"):
        assert (out / f).is_file(), f
    report = json.loads((out / "export_report.json").read_text())
    parity = report["parity"]
    assert parity["samples"] == 24 and parity["synthetic"] is True
    assert parity["lava"]["identical"] is True
    assert 0.0 <= parity["prediction_changed_fraction"] <= 1.0
    assert [layer["kind"] for layer in report["layers"]][0] == "input"
    assert "IDENTICAL" in (out / "export_report.md").read_text()
    # The netx file we wrote is what the emulator reads back.
    from neurocxr.exporters.netx import read_netx

    program = read_netx(out / "model.net")
    assert program.input_kind == "bias" and program.has_readout

    # Never overwrite without --force; with --force it goes through.
    again = runner.invoke(
        app, ["export", str(ckpt), "-o", str(out), "--data", "synthetic", "--lava-samples", "0"]
    )
    assert again.exit_code != 0
    assert "--force" in again.output


def test_export_nir_only_and_refusals(tmp_path: Path) -> None:
    ckpt = tiny_snn(tmp_path)
    out = tmp_path / "nir"
    res = invoke("export", str(ckpt), "--target", "nir", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["model.nir"]

    # A model with GRU/MaxPool is refused with a message naming the layer, not a traceback.
    from neurocxr.models import MODEL_REGISTRY

    if "slimi2025" in MODEL_REGISTRY:
        cfg = ModelConfig(
            name="slimi2025", image_size=16, num_steps=2, channels=(4, 8, 8), hidden=(16,)
        )
        model = build_model(cfg)
        bad = save_checkpoint(tmp_path / "slimi.pt", model, cfg, {})
        res = runner.invoke(app, ["export", str(bad), "-o", str(tmp_path / "x"), "--target", "nir"])
        assert res.exit_code == 2
        assert "error:" in res.output and "Traceback" not in res.output


def test_bad_checkpoint_and_data_errors_are_plain(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    res = runner.invoke(app, ["evaluate", str(junk)])
    assert res.exit_code == 2 and "error:" in res.output

    res = runner.invoke(app, ["data", "info", str(tmp_path / "missing.npz")])
    assert res.exit_code == 2 and "missing.npz" in res.output


@pytest.mark.slow
def test_energy_report_and_api(tmp_path: Path) -> None:
    import neurocxr

    snn = tiny_snn(tmp_path)
    cfg = ModelConfig(name="cnn_small", image_size=16, channels=(4, 8), hidden=(16,))
    cnn = save_checkpoint(tmp_path / "cnn.pt", build_model(cfg).eval(), cfg, {"threshold": 0.5})
    out = tmp_path / "report"
    res = invoke(
        "energy",
        str(snn),
        "--baseline",
        str(cnn),
        "--data",
        "synthetic",
        "-o",
        str(out),
        "--max-samples",
        "16",
        "--measure-seconds",
        "0.2",
    )
    assert res.exit_code == 0, res.output
    html = (out / "report.html").read_text()
    data = json.loads((out / "report.json").read_text())
    assert "SYNTHETIC" in html
    devices = {row["device"] for row in data["summary"]}
    assert {"loihi", "loihi2"} <= devices
    kinds = {row["kind"] for row in data["summary"]}
    assert "estimated" in kinds
    # Without a GPU or RAPL, measured rows must not pretend to be energy measurements.
    for row in data["summary"]:
        if row["kind"] == "not measurable":
            assert row["dynamic_energy"]["value"] is None and row["total_energy"]["value"] is None
            assert row["latency"]["value"] > 0

    # The small Python API does the same in a few calls.
    m = neurocxr.load(snn)
    exp = neurocxr.export_loihi(m, data="synthetic", max_samples=8)
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    run = neurocxr.emulate(exp.program, images.numpy())
    assert run.predictions().shape == (3,)
    e = neurocxr.estimate_energy(run.counts, "loihi")
    syn = sum(float(np.mean(c.synaptic_ops)) for c in run.counts)
    upd = sum(float(np.mean(c.neuron_updates)) for c in run.counts)
    # 1.7 pJ per spike sent by a core (Davies 2018); host-fed input spikes come from no core
    spikes = sum(
        float(np.mean(c.output_spikes)) for c in run.counts if np.mean(c.neuron_updates) > 0
    )
    # chip counts carry no active/inactive split: every update charged as active (81 pJ)
    assert e.dynamic_j == pytest.approx(syn * 23.6e-12 + upd * 81e-12 + spikes * 1.7e-12, rel=1e-9)


def test_netx_command_reads_a_foreign_slayer_file(tmp_path: Path) -> None:
    """A netx file we did not make (older slayer layout) gets layers, resources, counts and energy."""
    from _netx_programs import write_slayer_file

    path = tmp_path / "slayer.net"
    write_slayer_file(path)
    res = invoke("netx", str(path), "--samples", "4", "--rate", "0.3", "--num-steps", "5")
    assert res.exit_code == 0, res.output
    assert "fits: True" in res.output
    assert "estimated on loihi" in res.output
    assert "random input spikes (p=0.3)" in res.output


@pytest.mark.lava
def test_lava_imports_after_a_progress_bar_fixed_the_multiprocessing_context() -> None:
    """Regression: training (tqdm's lock) before export made Lava's import raise 'context has already been set'."""
    import subprocess
    import sys

    code = (
        "import tqdm\n"
        "for _ in tqdm.tqdm(range(2), disable=False): pass\n"
        "from neurocxr.hardware_sims.lava import _import_lava\n"
        "print(len(_import_lava()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("5")


def test_a_spiking_model_the_chip_cannot_hold_is_a_baseline_too(tmp_path: Path) -> None:
    """The hybrid CNN-GRU-SNN (not deployable) is costed on conventional hardware as dense MACs over
    its time steps; it has no ONNX form, so nothing tries to export it."""
    from neurocxr.energy.estimate import inference_macs

    snn = tiny_snn(tmp_path)
    cfg = ModelConfig(name="slimi2025", image_size=16, num_steps=2)
    model = build_model(cfg).eval()
    hybrid = save_checkpoint(tmp_path / "hybrid.pt", model, cfg, {"threshold": 0.5})
    out = tmp_path / "report"
    res = invoke(
        "energy",
        str(snn),
        "--baseline",
        str(hybrid),
        "--data",
        "synthetic",
        "-o",
        str(out),
        "--max-samples",
        "8",
        "--no-measure",
    )
    assert res.exit_code == 0, res.output
    rows = [
        r
        for r in json.loads((out / "report.json").read_text())["estimates"]
        if r["model"] == "slimi2025"
    ]
    macs = inference_macs(model, cfg).macs
    assert {r["device"] for r in rows} == {"horowitz45-fp32", "horowitz45-int8"}
    fp32 = next(r for r in rows if r["device"] == "horowitz45-fp32")
    assert fp32["dynamic_energy"]["value"] == pytest.approx(macs * 4.6e-12, rel=1e-9)
