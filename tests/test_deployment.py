"""The deployment object end to end through its public API: checkpoint / NIR graph / netx file ->
Deployment -> a batch on the emulator -> counts -> energy; one operating point; typed results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurocxr.deploy.deployment import (
    Deployment,
    ExportReport,
    OperatingPoint,
    ParityReport,
    chip_scores,
    readout_difference,
)
from neurocxr.errors import SimulationError
from neurocxr.exporters.layer_quant import LayerKind, LayerQuant
from neurocxr.exporters.loihi import quantisation_table
from neurocxr.metrics import choose_threshold
from neurocxr.models import ModelConfig, build_model
from neurocxr.models.checkpoint import save_checkpoint

PROFILES = ("loihi", "loihi2")


def _checkpoint(tmp_path: Path, encoding: str = "direct") -> Path:
    """Untrained tiny snn_conv with weights scaled so every layer spikes (as tests/test_report.py)."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        name="snn_conv",
        image_size=16,
        num_steps=6,
        channels=(4, 8),
        hidden=(16,),
        encoding=encoding,
    )
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(3.0)
    return save_checkpoint(
        tmp_path / f"snn_{encoding}.pt",
        model,
        cfg,
        {"threshold": 0.5, "threshold_method": "youden (validation)"},
    )


def _images(n: int, seed: int = 3) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def _labels(n: int) -> torch.Tensor:
    return torch.arange(n) % 2


@pytest.mark.parametrize("encoding", ["direct", "rate"])
def test_checkpoint_to_counts_and_energy(tmp_path: Path, encoding: str) -> None:
    dep = Deployment.from_checkpoint(_checkpoint(tmp_path, encoding))
    import neurocxr

    assert neurocxr.Deployment is Deployment
    assert (
        dep.name == "snn_conv"
        and dep.graph is not None
        and dep.resources is not None
        and dep.resources.fits
    )
    assert dep.program.input_kind == ("bias" if encoding == "direct" else "spikes")
    x = dep.encode(_images(6))
    run = dep.run(x)
    assert len(run.counts) == len(dep.program.layers)
    assert run.readout is not None and run.readout.shape == (6, 2)
    assert all(np.sum(c.output_spikes) > 0 for c in run.counts[1:-1])  # hidden layers spike
    # The same batch run twice (or given raw) gives the same integers: encoding is seeded, once per set.
    raw = x.images.numpy() if encoding == "direct" else x.float_input.numpy()
    assert np.array_equal(dep.run(raw).readout, run.readout)
    energy = dep.energy(run, PROFILES)
    assert [e.device for e in energy] == list(PROFILES)
    assert all(e.dynamic_j > 0 and e.model == "snn_conv" for e in energy)
    scores = dep.scores(run)
    assert np.all((scores > 0) & (scores < 1))
    assert np.array_equal(scores > 0.5, readout_difference(run) > 0)


def test_layer_quant_records_are_the_export_table(tmp_path: Path) -> None:
    dep = Deployment.from_checkpoint(_checkpoint(tmp_path))
    records = dep.layer_quant
    assert all(isinstance(r, LayerQuant) for r in records)
    assert [r.kind for r in records] == [
        LayerKind.INPUT,
        LayerKind.CONV,
        LayerKind.CONV,
        LayerKind.DENSE,
        LayerKind.READOUT,
    ]
    assert [r.to_row() for r in records] == quantisation_table(dep.program)
    readout = records[-1]
    assert readout.scale == dep.program.layers[-1].quant["scale"] and readout.num_weight_bits <= 8
    assert records[1].v_th_mant == dep.program.layers[1].neuron.v_th_mant
    assert "grids_tried" in readout.details  # the exporter's remaining record is kept
    # one spelling of each kind; LayerCounts' "dense_readout" reads as the same kind
    assert LayerKind("dense_readout") is LayerKind.READOUT and str(LayerKind.CONV) == "conv"
    assert json.loads(json.dumps([r.to_row() for r in records]))[-1]["kind"] == "readout"


def test_operating_point_is_one_rule_on_the_readout_difference(tmp_path: Path) -> None:
    dep = Deployment.from_checkpoint(_checkpoint(tmp_path))
    val_images, val_labels = _images(12, seed=5), _labels(12)
    op = dep.operating_point(val_images, val_labels)
    assert isinstance(op, OperatingPoint) and op.rule == "youden" and op.samples == 12
    run = dep.run(dep.encode(val_images))
    d = readout_difference(run)
    # The readout threshold is Youden on d; the score threshold is the same point on the score scale.
    assert op.readout_threshold == choose_threshold(val_labels.numpy(), d, "youden")
    assert op.threshold == pytest.approx(
        choose_threshold(val_labels.numpy(), chip_scores(run, dep.program), "youden")
    )
    assert np.array_equal(
        op.decide(run).astype(bool), chip_scores(run, dep.program) >= op.threshold
    )
    assert set(op.to_dict()) == {"threshold", "method", "float_threshold", "samples", "val_metrics"}
    # The clinical evaluation uses the same operating point (readout units).
    from neurocxr.evaluation.common import prepare_chip
    from neurocxr.models.loaded import load

    chip, reason = prepare_chip(load(dep.loaded), val_images, val_labels)
    assert reason is None and chip.threshold == op.readout_threshold


def test_parity_and_export_report_are_typed(tmp_path: Path) -> None:
    dep = Deployment.from_checkpoint(_checkpoint(tmp_path, "rate"))
    x = dep.encode(_images(5))
    parity, run = dep.parity(x, _labels(5))
    assert isinstance(parity, ParityReport) and parity.samples == 5 and parity.lava is None
    # both models saw the one encoding: the float model's predictions are from x.float_input
    with torch.no_grad():
        float_pred = dep.loaded.model(x.float_input).logits.argmax(1).numpy()
    assert parity.prediction_changed_fraction == pytest.approx(
        float(np.mean(float_pred != run.predictions()))
    )
    report = dep.export_report(parity, encoding="rate", config=dep.loaded.config.to_dict())
    assert isinstance(report, ExportReport)
    d = report.to_dict()
    assert list(d) == [
        "model",
        "config",
        "target",
        "export_seconds",
        "input",
        "layers",
        "resources",
        "parity",
        "files",
        "environment",
    ]
    assert d["layers"] == quantisation_table(dep.program) and d["resources"]["fits"] is True
    assert d["parity"]["samples"] == 5 and d["input"]["kind"] == "spikes"


def test_from_nir_and_from_netx_run_the_same_program(tmp_path: Path) -> None:
    dep = Deployment.from_checkpoint(_checkpoint(tmp_path))
    (tmp_path / "out").mkdir()
    files = dep.write(tmp_path / "out")
    assert files["nir"].is_file() and files["netx"].is_file() and dep.netx_path == files["netx"]
    images = _images(4)
    reference = dep.run(dep.encode(images), record=True)
    from_nir = Deployment.from_nir(files["nir"])
    from_netx = Deployment.from_netx(files["netx"])
    assert from_nir.name == "model.nir" and from_netx.name == "model.net"
    assert from_nir.loaded is None and from_netx.loaded is None
    for other in (from_nir, from_netx):
        assert other.program.num_steps == dep.program.num_steps
        run = other.run(images.numpy(), record=True)
        assert np.array_equal(run.readout, reference.readout)
        assert all(np.array_equal(a, b) for a, b in zip(run.layer_spikes, reference.layer_spikes))
        assert [c.to_dict() for c in run.counts] == [c.to_dict() for c in reference.counts]
        expected = [e.dynamic_j for e in dep.energy(reference, PROFILES)]
        assert [e.dynamic_j for e in other.energy(run, PROFILES)] == expected
    assert [r.to_row() for r in from_nir.layer_quant] == quantisation_table(dep.program)


def test_backends_are_chosen_by_name(tmp_path: Path) -> None:
    dep = Deployment.from_checkpoint(_checkpoint(tmp_path))
    with pytest.raises(
        SimulationError, match="unknown backend 'loihi'; choose one of emulator, lava"
    ):
        dep.run(_images(2).numpy(), backend="loihi")


@pytest.mark.lava
def test_lava_backend_equals_the_emulator(tmp_path: Path) -> None:
    dep = Deployment.from_checkpoint(_checkpoint(tmp_path, "rate"))
    x = dep.encode(_images(2))
    emu = dep.run(x, record=True)
    lava = dep.run(
        x, backend="lava", record=True
    )  # no file written: the backend writes a temporary netx
    assert np.array_equal(emu.readout, lava.readout)
    assert all(np.array_equal(a, b) for a, b in zip(emu.layer_spikes, lava.layer_spikes))
    (tmp_path / "out").mkdir()
    dep.write(tmp_path / "out")
    assert dep.lava_parity(x, 2).identical


def test_integer_images_follow_the_one_pixel_rule(tmp_path: Path) -> None:
    dep = Deployment.from_checkpoint(_checkpoint(tmp_path))
    images = (_images(3) * 255).round().to(torch.uint8)
    as_float = images.float() / 255.0
    assert np.array_equal(
        dep.run(dep.encode(images.numpy())).readout, dep.run(dep.encode(as_float)).readout
    )


def test_every_layer_class_has_one_kind_and_a_quant_record() -> None:
    from neurocxr.exporters.program import (
        InputLayer,
        LoihiNeuron,
        LoihiProgram,
        RecurrentDenseLayer,
    )

    neuron = LoihiNeuron(v_th_mant=100, i_decay=4096, v_decay=4096)
    rec = RecurrentDenseLayer(
        "rec",
        (2,),
        neuron,
        np.full((2, 3), 120, dtype=np.int64),
        weight_rec=np.array([[120, 0], [0, 120]], dtype=np.int64),
    )
    program = LoihiProgram((3,), "spikes", [InputLayer("input", (3,)), rec], 4)
    dep = Deployment(program=program)
    assert [q.kind for q in dep.layer_quant] == [LayerKind.INPUT, LayerKind.DENSE_REC]
    assert quantisation_table(program)[1] == {
        "index": 1,
        "name": "rec",
        "kind": "dense_rec",
        "v_th_mant": 100,
        "i_decay": 4096,
        "v_decay": 4096,
    }
    x = np.ones((4, 2, 3), dtype=np.float32)
    assert dep.run(x).counts[1].kind == "dense_rec"


@pytest.mark.parametrize("encoding", ["direct", "rate"])
def test_energy_report_encodes_each_image_set_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str
) -> None:
    from conftest import write_medmnist_npz

    import neurocxr
    import neurocxr.data.encoding
    import neurocxr.models.loaded

    npz = write_medmnist_npz(
        tmp_path / "t.npz", 16, {"train": (4, 4), "val": (5, 5), "test": (6, 6)}
    )
    ckpt = _checkpoint(tmp_path, encoding)
    encoded: list[int] = []
    original = neurocxr.data.encoding.encode

    def counting(images, *args, **kwargs):
        encoded.append(len(images))
        return original(images, *args, **kwargs)

    # every encoding goes through models.loaded (encoded_inputs / forward_model), which imports it
    monkeypatch.setattr(neurocxr.models.loaded, "encode", counting)
    neurocxr.energy_report(ckpt, data=str(npz), out=None, measure=False)
    # test images once (float model, NeuroBench and the chip share it); validation only where the
    # chip needs spike trains (a bias-input chip takes the images themselves)
    assert sorted(encoded) == ([10, 12] if encoding == "rate" else [12])
