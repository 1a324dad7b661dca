"""The HTML/JSON report: every summary value shown, plots embedded, units and sources in JSON, escaping."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from neurocxr.energy.types import EnergyEstimate, EnergyMeasurement
from neurocxr.hardware_sims.results import LayerCounts
from neurocxr.report import (
    DEFAULT_ASSUMPTIONS,
    Report,
    SummaryRow,
    format_accuracy,
    format_energy,
    format_seconds,
    summary_from,
    write_report,
)

EVIL = "<script>alert('x')</script>"


def _counts(name: str, neurons: int, spikes: list[int]) -> LayerCounts:
    s = np.asarray(spikes, dtype=np.int64)
    return LayerCounts(
        name=name,
        kind="conv",
        num_neurons=neurons,
        fan_in=9,
        num_synapses=neurons * 9,
        time_steps=16,
        input_spikes=s * 2,
        output_spikes=s,
        synaptic_ops=s * 9,
        dense_synaptic_ops=np.full_like(s, neurons * 9 * 16),
        neuron_updates=np.full_like(s, neurons * 16),
    )


def _estimates() -> list[EnergyEstimate]:
    return [
        EnergyEstimate(
            model="snn_conv",
            device="loihi",
            dynamic_j=2.7e-6,
            total_j=1.1e-3,
            latency_s=2.5e-3,
            per_layer_j={"conv1": np.float64(1.2e-6), "conv2": 1.0e-6, "fc1": 0.5e-6},
            constants={"synop": 23.6e-12, "neuron_update": 81e-12},
            source="Davies et al., IEEE Micro 38(1), 2018, Table 2",
            method="synaptic ops x E_synop + neuron updates x E_update",
            accuracy=0.851,
            notes=EVIL,
        ),
        EnergyEstimate(
            model="snn_conv",
            device="gpu (KerasSpiking)",
            dynamic_j=3.4e-4,
            total_j=None,
            latency_s=None,
            per_layer_j={"conv1": 2.0e-4, "conv2": 1.0e-4, "fc1": 0.4e-4},
            constants={"synop": 0.3e-9, "neuron_update": 0.3e-9},
            source="Degnan et al., IEEE TVLSI 24(1), 2015 (via keras-spiking 0.3.0)",
            method="KerasSpiking ModelEnergy",
            accuracy=0.851,
        ),
    ]


def _measurements() -> list[EnergyMeasurement]:
    return [
        EnergyMeasurement(
            model="cnn_small (ONNX)",
            device="NVIDIA H100 80GB HBM3",
            runtime="onnxruntime",
            batch_size=64,
            latency_s=np.float64(0.0123),
            throughput_sps=5203.0,
            dynamic_j=5.2e-4,
            total_j=2.05e-3,
            kind="measured",
            method="NVML nvmlDeviceGetTotalEnergyConsumption, 5 s windows, median of 3",
            accuracy=0.873,
        ),
        EnergyMeasurement(
            model="snn_conv",
            device="CPU",
            runtime="pytorch",
            batch_size=1,
            latency_s=0.004,
            throughput_sps=250.0,
            dynamic_j=None,
            total_j=None,
            kind="not measurable",
            method="Intel RAPL",
            notes="RAPL counter /sys/class/powercap/intel-rapl:0/energy_uj not readable (container)",
        ),
    ]


def _report(data_source: str = "PneumoniaMNIST test split (624 images)") -> Report:
    estimates, measurements = _estimates(), _measurements()
    return Report(
        title=f"Energy report {EVIL}",
        created="2026-01-01T00:00:00+00:00",
        data_source=data_source,
        summary=summary_from(estimates, measurements),
        estimates=estimates,
        measurements=measurements,
        layer_counts={
            "snn_conv": [c.to_dict() for c in (_counts("conv1", 12544, [300, 500]), _counts("conv2", 6272, [120, 80]))]
        },
        accuracy={
            "snn_conv": {
                "accuracy": np.float64(0.851),
                "sensitivity": 0.92,
                "auc": float("nan"),
                "confusion_matrix": np.array([[180, 54], [31, 359]], dtype=np.int64),
            }
        },
        parity={"float_accuracy": 0.853, "emulator_accuracy": 0.851, "prediction_changed_fraction": 0.0032,
                "emulator_equals_lava": np.bool_(True)},
        export={
            "layers": [
                {"name": "conv1", "scale": 64.0, "max_quant_error": np.float32(0.0078)},
                {"name": "fc1", "scale": 128.0, "max_quant_error": 0.0039},
            ],
            "resources": {"cores": np.int64(3), "chips": 1},
        },
        assumptions=list(DEFAULT_ASSUMPTIONS),
        environment={"python": "3.10.14", "gpu": "none"},
    )


@pytest.fixture()
def written(tmp_path):
    report = _report()
    html_path, json_path = write_report(report, tmp_path / "out")
    return report, html_path, json_path


def test_summary_from_keeps_values_kind_and_source():
    rows = summary_from(_estimates(), _measurements())
    assert [r.kind for r in rows] == ["measured", "not measurable", "estimated", "estimated"]
    gpu, cpu, loihi, keras = rows
    assert gpu.device == "NVIDIA H100 80GB HBM3 (onnxruntime, batch 64)"
    assert (gpu.dynamic_j, gpu.total_j, gpu.accuracy) == (5.2e-4, 2.05e-3, 0.873)
    assert gpu.source.startswith("NVML")
    assert cpu.dynamic_j is None and "RAPL" in cpu.notes
    assert (loihi.dynamic_j, loihi.total_j, loihi.latency_s) == (2.7e-6, 1.1e-3, 2.5e-3)
    assert loihi.source == "Davies et al., IEEE Micro 38(1), 2018, Table 2"
    assert keras.total_j is None


@pytest.mark.parametrize(
    ("value", "energy", "seconds"),
    [(2.7e-6, "2.7 µJ", "2.7 µs"), (1.1e-3, "1.1 mJ", "1.1 ms"), (0.0298, "29.8 mJ", "29.8 ms"),
     (999.96e-6, "1 mJ", "1 ms"), (3.5e-12, "3.5 pJ", "3.5 ps"), (2.0, "2 J", "2 s"), (None, "—", "—")],
)
def test_formatting_uses_si_prefixes(value, energy, seconds):
    assert format_energy(value) == energy
    assert format_seconds(value) == seconds


def test_accuracy_formatting():
    assert format_accuracy(0.8537) == "85.4%"
    assert format_accuracy(None) == "—"


def test_html_shows_every_summary_cell(written):
    report, html_path, _ = written
    page = html_path.read_text(encoding="utf-8")
    summary = page.split("<h2>Summary</h2>", 1)[1].split("<h2>", 1)[0]
    import html as html_lib

    for row in report.summary:
        for text in (row.model, row.device, row.source, row.kind):
            assert html_lib.escape(text) in summary, text
        for formatted in (format_accuracy(row.accuracy), format_seconds(row.latency_s)):
            assert formatted in summary
        for energy in (row.dynamic_j, row.total_j):
            if energy is not None:
                assert format_energy(energy) in summary
    # Spot checks against hand-formatted values, and the not-measurable reason in the energy cells.
    for literal in ("2.7 µJ", "1.1 mJ", "340 µJ", "520 µJ", "2.05 mJ", "85.1%", "87.3%", "12.3 ms", "2.5 ms"):
        assert literal in summary
    assert summary.count("not measurable here: RAPL counter") == 2
    assert 'class="tag tag-measured"' in summary and 'class="tag tag-estimated"' in summary
    assert 'class="tag tag-not-measurable"' in summary


def test_html_is_self_contained_with_four_png_plots(written):
    _, html_path, _ = written
    page = html_path.read_text(encoding="utf-8")
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 4
    for uri in uris:
        assert base64.b64decode(uri)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<link" not in page and "http://" not in page and "https://" not in page
    for heading in ("Clinical metrics", "Loihi export", "Parity", "Assumptions", "Environment", "Measurements"):
        assert heading in page
    assert "Loihi 2 has no public per-operation energy table" in page
    assert "[[180, 54], [31, 359]]" in page  # numpy confusion matrix shown as a plain list


def test_text_is_escaped(written):
    _, html_path, _ = written
    page = html_path.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page


def test_json_round_trips_with_units_kind_and_source(written):
    report, _, json_path = written
    with open(json_path, encoding="utf-8") as f:
        data = json.load(f)
    assert data["title"] == report.title and data["synthetic_data"] is False

    quantities = []

    def walk(node, key=""):
        if isinstance(node, dict):
            if "value" in node and "unit" in node:
                quantities.append(node)
            for k, v in node.items():
                assert not (k.endswith("_j") and isinstance(v, (int, float))), f"bare energy number under {k!r}"
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)

    walk(data)
    energies = [q for q in quantities if q["unit"].startswith("J")]
    # summary 4 rows x 2 + estimates 2 x (2 + 3 layers + 2 constants) + measurements 2 x 2
    assert len(energies) == 8 + 14 + 4
    for q in energies:
        assert q["kind"] in ("measured", "estimated", "not measurable", "constant")
        assert q["source"]
    loihi = data["estimates"][0]
    assert loihi["dynamic_energy"] == {"value": 2.7e-6, "unit": "J per inference", "kind": "estimated",
                                       "source": "Davies et al., IEEE Micro 38(1), 2018, Table 2"}
    assert loihi["per_layer_energy"]["conv1"]["value"] == pytest.approx(1.2e-6)
    gpu = data["measurements"][0]
    assert gpu["latency"] == {"value": 0.0123, "unit": "s per batch"}
    assert gpu["dynamic_energy"]["kind"] == "measured"
    # numpy and NaN values became plain JSON
    assert data["accuracy"]["snn_conv"]["confusion_matrix"] == [[180, 54], [31, 359]]
    assert data["accuracy"]["snn_conv"]["auc"] is None
    assert data["parity"]["emulator_equals_lava"] is True
    assert data["export"]["resources"]["cores"] == 3
    assert data["layer_counts"]["models"]["snn_conv"][0]["per_sample_mean"]["output_spikes"] == 400.0


def test_synthetic_data_is_announced_loudly(tmp_path):
    html_path, json_path = write_report(_report("synthetic phantoms (seed 0, 256 images)"), tmp_path)
    page = html_path.read_text(encoding="utf-8")
    assert '<p class="synthetic">DATA: SYNTHETIC PHANTOMS' in page
    assert json.loads(json_path.read_text(encoding="utf-8"))["synthetic_data"] is True
    real = write_report(_report(), tmp_path / "real")[0].read_text(encoding="utf-8")
    assert "SYNTHETIC" not in real


def test_minimal_report_renders_and_says_what_is_missing(tmp_path):
    report = Report(title="empty", created="2026-01-01", data_source="PneumoniaMNIST")
    html_path, json_path = write_report(report, tmp_path)
    page = html_path.read_text(encoding="utf-8")
    assert "Measured energy: not measurable here" in page
    assert "No energy figures to plot." in page and "data:image/png" not in page
    assert "No Loihi export in this run." in page
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["summary"] == [] and data["measurements"] == []
    assert data["assumptions"] == DEFAULT_ASSUMPTIONS


def test_summary_is_built_when_missing_and_writes_are_atomic(tmp_path):
    report = _report()
    report.summary = []
    write_report(report, tmp_path)
    assert len(report.summary) == 4
    first = (tmp_path / "report.json").read_text(encoding="utf-8")
    report.title = "second version"
    write_report(report, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json"]
    second = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert second["title"] == "second version" and json.loads(first)["title"] != second["title"]


def test_summary_row_without_energy_shows_dash_not_zero(tmp_path):
    row = SummaryRow(model="m", device="d", accuracy=None, latency_s=None, dynamic_j=None, total_j=None,
                     kind="estimated", source="s")
    report = Report(title="t", created="c", data_source="PneumoniaMNIST", summary=[row])
    page = write_report(report, tmp_path)[0].read_text(encoding="utf-8")
    summary = page.split("<h2>Summary</h2>", 1)[1].split("<h2>", 1)[0]
    assert "0 J" not in summary and summary.count("—") == 4
