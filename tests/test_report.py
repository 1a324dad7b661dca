"""The HTML/JSON report: verdict, compact table with badges and footnotes, plots embedded, units and
sources in JSON, escaping, sweep tables; the energy-report stage (chip operating point chosen on
validation) and the API/CLI layering."""

from __future__ import annotations

import base64
import html as html_lib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from neurocxr.energy.types import EnergyEstimate, EnergyMeasurement
from neurocxr.errors import NeurocxrError
from neurocxr.hardware_sims.results import LayerCounts
from neurocxr.report import (
    DEFAULT_ASSUMPTIONS,
    Report,
    SummaryRow,
    read_sweep,
    summary_from,
    verdict,
    write_report,
)
from neurocxr.report.formatting import format_energy, format_rate, format_seconds

EVIL = "<script>alert('x')</script>"
RAPL_NOTE = "CPU energy not measurable here: /sys/class/powercap does not exist. Latency and throughput are measured."


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
            notes=EVIL + ". Spike counts are not energy.",
        ),
        EnergyEstimate(
            model="snn_conv",
            device="gpu (KerasSpiking)",
            dynamic_j=3.4e-4,
            total_j=None,
            latency_s=None,
            per_layer_j={"conv1": 2.0e-4, "conv2": 1.0e-4, "fc1": 0.4e-4},
            constants={"synop": 0.3e-9, "neuron_update": 0.3e-9},
            source="Degnan et al., IEEE TVLSI 24(1), 2016 (via keras-spiking 0.3.0)",
            method="KerasSpiking ModelEnergy",
            accuracy=0.851,
            notes="Spike counts are not energy.",
        ),
        EnergyEstimate(
            model="cnn_small",
            device="horowitz45-fp32",
            dynamic_j=5.2e-6,
            total_j=None,
            latency_s=None,
            per_layer_j={"conv1": 3.0e-6, "fc1": 2.2e-6},
            constants={"energy_per_mac_j": 4.6e-12},
            source="Horowitz, ISSCC 2014, 45 nm process",
            method="MACs x E_MAC (arithmetic only)",
            accuracy=0.872,
            notes="Spike counts are not energy.",
        ),
    ]


def _measurements() -> list[EnergyMeasurement]:
    common = dict(
        model="snn_conv",
        device="CPU (pytorch)",
        runtime="pytorch",
        dynamic_j=None,
        total_j=None,
        kind="not measurable",
        method="wall-clock timing, 3 s windows, median of 3; no energy counter",
        notes=RAPL_NOTE,
        accuracy=0.853,
    )
    return [
        EnergyMeasurement(batch_size=1, latency_s=0.004, throughput_sps=250.0, **common),
        EnergyMeasurement(batch_size=64, latency_s=0.064, throughput_sps=1000.0, **common),
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
    ]


def _report(data_source: str = "PneumoniaMNIST test split (624 images)", **kwargs) -> Report:
    estimates, measurements = _estimates(), _measurements()
    auc = {"snn_conv": 0.921, "cnn_small": 0.928}
    return Report(
        title=f"Energy report {EVIL}",
        created="2026-01-01T00:00:00+00:00",
        data_source=data_source,
        summary=summary_from(estimates, measurements, baselines=["cnn_small"], auc=auc),
        estimates=estimates,
        measurements=measurements,
        layer_counts={
            "snn_conv": [
                c.to_dict()
                for c in (_counts("conv1", 12544, [300, 500]), _counts("conv2", 6272, [120, 80]))
            ]
        },
        accuracy={
            "snn_conv": {
                "accuracy": np.float64(0.851),
                "sensitivity": 0.92,
                "auc": float("nan"),
                "confusion_matrix": np.array([[180, 54], [31, 359]], dtype=np.int64),
            }
        },
        parity={
            "float_accuracy": 0.853,
            "emulator_accuracy": 0.851,
            "prediction_changed_fraction": 0.0032,
            "emulator_equals_lava": np.bool_(True),
        },
        export={
            "layers": [
                {"name": "conv1", "scale": 64.0, "max_quant_error": np.float32(0.0078)},
                {"name": "fc1", "scale": 128.0, "max_quant_error": 0.0039},
            ],
            "resources": {"cores": np.int64(3), "chips": 1},
        },
        assumptions=list(DEFAULT_ASSUMPTIONS),
        environment={"python": "3.10.14", "gpu": "none"},
        provenance={"git": {"commit": "0123456789abcdef", "dirty": True}},
        operating_point={
            "threshold": 0.41,
            "float_threshold": 0.37,
            "method": "youden on the validation split",
            "test_prediction_changed_fraction": 0.01,
            "float_test": {
                "accuracy": 0.853,
                "sensitivity": 0.96,
                "specificity": 0.67,
                "roc_auc": 0.921,
            },
            "chip_test": {
                "accuracy": 0.851,
                "sensitivity": 0.95,
                "specificity": 0.68,
                "roc_auc": 0.920,
            },
        },
        counting_bases=[
            {
                "layer": "conv1",
                "chip_effective_ops": 1000.0,
                "neurobench_effective_ops": 1000.0,
                "ratio_chip_to_neurobench": 1.0,
                "why": "same counts",
            },
            {
                "layer": "conv2",
                "chip_effective_ops": 9000.0,
                "neurobench_effective_ops": 2500.0,
                "ratio_chip_to_neurobench": 3.6,
                "why": "pooling fused into this layer on the chip",
            },
        ],
        not_measurable={"CPU energy": "/sys/class/powercap does not exist"},
        auc=auc,
        neuromorphic_devices=["loihi"],
        **kwargs,
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One rendered report shared by the read-only tests (plots take a while on a loaded machine)."""
    report = _report()
    html_path, json_path = write_report(report, tmp_path_factory.mktemp("report") / "out")
    return report, html_path, json_path


def _first_screen(page: str) -> str:
    return page.split('<section class="first-screen">', 1)[1].split("</section>", 1)[0]


def test_summary_has_one_row_per_model_and_device():
    rows = summary_from(
        _estimates(), _measurements(), baselines=["cnn_small"], auc={"snn_conv": 0.9}
    )
    assert [(r.model, r.device) for r in rows] == [
        ("snn_conv", "CPU (pytorch)"),
        ("cnn_small (ONNX)", "NVIDIA H100 80GB HBM3 (onnxruntime)"),
        ("snn_conv", "loihi"),
        ("snn_conv", "gpu (KerasSpiking)"),
        ("cnn_small", "horowitz45-fp32"),
    ]
    cpu, gpu, loihi, keras, cnn = rows
    # Two batch sizes merged: latency of the smallest batch, frames/s of the best.
    assert (cpu.latency_s, cpu.throughput_fps, cpu.kind) == (0.004, 1000.0, "not measurable")
    assert any("batch 1, 64" in f for f in cpu.footnotes)
    assert (gpu.dynamic_j, gpu.total_j, gpu.kind, gpu.is_baseline) == (
        5.2e-4,
        2.05e-3,
        "measured",
        True,
    )
    assert (loihi.dynamic_j, loihi.total_j, loihi.latency_s, loihi.auc) == (
        2.7e-6,
        1.1e-3,
        2.5e-3,
        0.9,
    )
    assert loihi.source == "Davies et al., IEEE Micro 38(1), 2018, Table 2"
    assert (loihi.basis, keras.basis, cnn.basis) == (
        "chip counts",
        "KerasSpiking formula",
        "CNN MACs",
    )
    assert cnn.scope == "arithmetic only" and cnn.is_baseline and not loihi.is_baseline


def test_verdict_names_the_cheaper_side_with_numbers_and_basis(written):
    report, html_path, json_path = written
    text = verdict(report)
    # The GPU-measured CNN row outranks the estimates: 520 µJ (measured) vs 2.7 µJ on Loihi.
    assert text.startswith("snn_conv is cheaper: 2.7 µJ")
    assert "520 µJ" in text and "measured" in text and "estimated; chip counts" in text
    assert "193× less" in text
    page = html_path.read_text(encoding="utf-8")
    assert html_lib.escape(text) in _first_screen(page)
    assert json.loads(json_path.read_text(encoding="utf-8"))["verdict"] == text

    # Without the measurement the cheaper side flips, and the arithmetic-only basis is called out.
    estimated_only = _report()
    estimated_only.measurements = []
    estimated_only.summary = summary_from(_estimates(), [], baselines=["cnn_small"])
    text = verdict(estimated_only)
    assert (
        text.startswith("snn_conv is cheaper: 2.7 µJ")
        and "5.2 µJ for cnn_small on horowitz45-fp32" in text
    )
    assert "1.9× less" in text and "85.1% vs 87.2%" in text
    from neurocxr.report import verdict_caveats

    caveats = " ".join(verdict_caveats(estimated_only))
    assert "arithmetic only" in caveats and "Every energy figure here is an estimate" in caveats


def test_first_screen_is_verdict_plot_and_compact_table(written):
    report, html_path, _ = written
    page = html_path.read_text(encoding="utf-8")
    first = _first_screen(page)
    # Order: verdict, plot, table.
    assert first.index('id="verdict"') < first.index("data:image/png") < first.index('id="summary"')
    table = first.split('id="summary"', 1)[1].split("</table>", 1)[0]
    body_rows = re.findall(r"<tr class=\"(?:snn|baseline)\">(.*?)</tr>", table, flags=re.S)
    # One row per model x device: measurements, the SNN on neuromorphic devices (chip counts), the CNN.
    headline = [r for r in report.summary if r.basis != "KerasSpiking formula"]
    assert len(body_rows) == len(headline) == 4
    for row in headline:
        assert html_lib.escape(row.model) in table and html_lib.escape(row.device) in table
    for literal in (
        "2.7 µJ",
        "1.1 mJ",
        "520 µJ",
        "2.05 mJ",
        "5.2 µJ",
        "85.1%",
        "87.3%",
        "2.5 ms",
        "4 ms",
        "1,000",
        "0.921",
        "0.928",
    ):
        assert literal in table, literal
    assert table.count('class="badge badge-measured"') == 1
    assert table.count('class="badge badge-estimated"') == 2
    assert table.count('class="badge badge-not-measurable"') == 1
    # The SNN under other conventions (here KerasSpiking) is in the second table, below.
    other = page.split('id="other-conventions-table"', 1)[1].split("</table>", 1)[0]
    assert "340 µJ" in other and "gpu (KerasSpiking)" in other and "340 µJ" not in table
    # "not measurable here" is said once on the whole page, not in every cell.
    assert page.count("not measurable here") + page.count("Not measurable here") == 1
    assert "/sys/class/powercap does not exist" in first
    assert page.count("/sys/class/powercap does not exist") == 1
    # Notes become numbered footnotes, each text once; rows refer to them by number.
    footnotes = re.findall(r'<li id="fn(\d+)">(.*?)</li>', page, flags=re.S)
    texts = [t for _, t in footnotes]
    assert len(texts) == len(set(texts)) > 3
    assert [int(n) for n, _ in footnotes] == list(range(1, len(footnotes) + 1))
    assert sum("Davies et al., IEEE Micro 38(1), 2018, Table 2" in t for t in texts) == 1
    for n, _ in footnotes:
        assert f'href="#fn{n}"' in page
    # A sentence every estimate carries is said once as a general note, not as a footnote per row.
    assert "Every estimate: Spike counts are not energy." in first
    assert not any("Spike counts are not energy" in t for t in texts)


def test_detail_sections_below_the_first_screen(written):
    _, html_path, _ = written
    page = html_path.read_text(encoding="utf-8")
    rest = page.split("</section>", 1)[1]
    for heading in (
        "Operating point: float model vs chip",
        "Modelled latency and throughput",
        "Counting bases per layer",
        "Per-layer detail",
        "Measurements",
        "Sources of the constants",
        "Clinical metrics",
        "Loihi export",
        "Parity",
        "Assumptions",
        "Provenance",
        "Environment",
    ):
        assert heading in rest, heading
    assert "3.60×" in rest and "pooling fused into this layer" in rest
    assert (
        "Over all layers the chip performs 2.86× the NeuroBench effective synaptic operations"
        in rest
    )
    assert "0.4100" in rest and "0.3700" in rest  # both thresholds, each chosen on validation
    assert "Loihi 2 has no public per-operation energy table" in rest
    assert "[[180, 54], [31, 359]]" in rest  # numpy confusion matrix shown as a plain list
    assert "0123456789abcdef" in rest


def test_html_is_self_contained_with_png_plots(written):
    _, html_path, _ = written
    page = html_path.read_text(encoding="utf-8")
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 4  # accuracy vs energy, counting bases, per-layer energy, spikes per layer
    for uri in uris:
        assert base64.b64decode(uri)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<link" not in page and "http://" not in page and "https://" not in page


def test_text_is_escaped(written):
    _, html_path, _ = written
    page = html_path.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert (
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
        or "&lt;script&gt;alert(&#x27;x&#x27;)" in page
    )


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
                assert not (k.endswith("_j") and isinstance(v, (int, float))), (
                    f"bare energy number under {k!r}"
                )
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)

    walk(data["summary"])
    walk(data["estimates"])
    walk(data["measurements"])
    energies = [q for q in quantities if q["unit"].startswith("J")]
    # summary 5 rows x 2 + estimates (2 + 3 + 2) + (2 + 3 + 2) + (2 + 2 + 1) + measurements 3 x 2
    assert len(energies) == 10 + 19 + 6
    for q in energies:
        assert q["kind"] in ("measured", "estimated", "not measurable", "constant")
        assert q["source"]
    loihi = data["estimates"][0]
    assert loihi["dynamic_energy"] == {
        "value": 2.7e-6,
        "unit": "J per inference",
        "kind": "estimated",
        "source": "Davies et al., IEEE Micro 38(1), 2018, Table 2",
    }
    assert loihi["basis"] == "chip counts"
    assert loihi["per_layer_energy"]["conv1"]["value"] == pytest.approx(1.2e-6)
    gpu = data["measurements"][2]
    assert gpu["latency"] == {"value": 0.0123, "unit": "s per batch"}
    assert gpu["dynamic_energy"]["kind"] == "measured"
    assert data["not_measurable_here"] == {"CPU energy": "/sys/class/powercap does not exist"}
    assert data["operating_point"]["threshold"] == 0.41
    assert data["counting_bases"]["layers"][1]["ratio_chip_to_neurobench"] == 3.6
    # numpy and NaN values became plain JSON
    assert data["accuracy"]["snn_conv"]["confusion_matrix"] == [[180, 54], [31, 359]]
    assert data["accuracy"]["snn_conv"]["auc"] is None
    assert data["parity"]["emulator_equals_lava"] is True
    assert data["export"]["resources"]["cores"] == 3
    assert (
        data["layer_counts"]["models"]["snn_conv"][0]["per_sample_mean"]["output_spikes"] == 400.0
    )


@pytest.mark.slow
def test_new_energy_fields_are_shown_when_present(tmp_path):
    report = _report()
    e = report.estimates[0]
    e.basis, e.scope, e.static_j, e.throughput_fps = "chip", "device", 8.0e-7, 1234.0
    e.timing = {"step_s": 1.5e-6, "busiest_layer": "conv2", "cores": 7}
    e.footnotes = ["Static power of Loihi per chip from a published measurement."]
    report.summary = summary_from(report.estimates, report.measurements, baselines=["cnn_small"])
    page = write_report(report, tmp_path)[0].read_text(encoding="utf-8")
    assert "1,234" in page and "800 nJ" in page  # modelled frames/s and static energy
    assert "step_s = 1.5 µs" in page and "busiest_layer = conv2" in page
    assert "Static power of Loihi per chip from a published measurement." in _first_screen(page)
    data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert data["estimates"][0]["static_energy"]["value"] == 8.0e-7
    assert data["estimates"][0]["throughput"]["value"] == 1234.0


def test_loihi2_latency_and_frames_per_second_show_their_bracket():
    from neurocxr.energy.estimate import estimate_energy
    from neurocxr.report import render_html, report_to_json

    counts = [_counts("conv1", 500, [40, 60]), _counts("conv2", 300, [20, 30])]
    report = _report()
    for device in ("loihi", "loihi2"):
        report.estimates.append(estimate_energy(counts, device, model="snn_conv", basis="chip"))
    report.summary = summary_from(report.estimates, report.measurements, baselines=["cnn_small"])
    l2 = report.estimates[-1].timing
    lat_slow = html_lib.escape(format_seconds(l2["latency_s_slow_bound"]))
    fps_slow = format_rate(l2["throughput_fps_slow_bound"])
    page = render_html(report)
    # first table and timing table: the slow bound sits under Loihi 2's point estimate, on no other row
    for section in (_first_screen(page), page.split('id="timing"', 1)[1].split("</table>", 1)[0]):
        # table rows only (the intro text and the footnotes name the slow bound too)
        rows = [r.split("</tr>", 1)[0] for r in section.split("<tr")[1:]]
        l2_rows = [r for r in rows if "<td>loihi2</td>" in r]
        assert l2_rows and all(
            f"slow bound {lat_slow}" in r and f"slow bound {fps_slow}" in r for r in l2_rows
        )
        assert not any("slow bound" in r for r in rows if "<td>loihi2</td>" not in r)
    data = report_to_json(report)
    by_device = {r["device"]: r for r in data["summary"] if r["model"] == "snn_conv"}
    assert by_device["loihi2"]["latency_slow_bound"]["value"] == l2["latency_s_slow_bound"]
    assert by_device["loihi2"]["throughput_slow_bound"]["value"] == l2["throughput_fps_slow_bound"]
    assert "latency_slow_bound" not in by_device["loihi"]


def test_loihi2_total_energy_shows_its_slow_bound_beside_the_total():
    from neurocxr.energy.estimate import estimate_energy
    from neurocxr.report import render_html, report_to_json

    counts = [_counts("conv1", 500, [40, 60]), _counts("conv2", 300, [20, 30])]
    report = _report()
    for device in ("loihi", "loihi-sanafe", "loihi2"):
        report.estimates.append(estimate_energy(counts, device, model="snn_conv", basis="chip"))
    report.summary = summary_from(report.estimates, report.measurements, baselines=["cnn_small"])
    l2 = report.estimates[-1]
    assert l2.total_j_slow_bound > l2.total_j
    total_slow = html_lib.escape(format_energy(l2.total_j_slow_bound))
    static_slow = html_lib.escape(format_energy(l2.timing["static_j_slow_bound"]))
    page = render_html(report)
    first = _first_screen(page)
    timing = page.split('id="timing"', 1)[1].split("</table>", 1)[0]
    for section, wanted in ((first, [total_slow]), (timing, [total_slow, static_slow])):
        rows = [r.split("</tr>", 1)[0] for r in section.split("<tr")[1:]]
        l2_rows = [r for r in rows if "<td>loihi2</td>" in r]
        assert l2_rows and all(f"slow bound {w}" in r for r in l2_rows for w in wanted)
        assert not any("slow bound" in r for r in rows if "<td>loihi2</td>" not in r)
    data = report_to_json(report)
    by_device = {r["device"]: r for r in data["summary"] if r["model"] == "snn_conv"}
    assert by_device["loihi2"]["total_energy_slow_bound"]["value"] == l2.total_j_slow_bound
    assert by_device["loihi2"]["total_energy_slow_bound"]["unit"] == "J per inference"
    est_json = {e["device"]: e for e in data["estimates"] if e["model"] == "snn_conv"}
    assert est_json["loihi2"]["total_energy_slow_bound"]["value"] == l2.total_j_slow_bound
    for name in ("loihi", "loihi-sanafe"):
        assert "total_energy_slow_bound" not in by_device[name]
        assert "total_energy_slow_bound" not in est_json[name]


@pytest.mark.slow
def test_synthetic_data_is_announced_loudly(tmp_path):
    html_path, json_path = write_report(
        _report("synthetic phantoms (seed 0, 256 images)"), tmp_path
    )
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
    assert "No energy figures in this report" in page
    assert "No rows with both accuracy and energy to plot." in page and "data:image/png" not in page
    assert "No Loihi export in this run." in page
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["summary"] == [] and data["measurements"] == []
    assert data["assumptions"] == DEFAULT_ASSUMPTIONS


@pytest.mark.slow
def test_summary_is_built_when_missing_and_writes_are_atomic(tmp_path):
    report = _report()
    report.summary = []
    write_report(report, tmp_path)
    assert len(report.summary) == 5
    first = (tmp_path / "report.json").read_text(encoding="utf-8")
    report.title = "second version"
    write_report(report, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json"]
    second = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert second["title"] == "second version" and json.loads(first)["title"] != second["title"]


def test_summary_row_without_energy_shows_dash_not_zero(tmp_path):
    row = SummaryRow(
        model="m",
        device="d",
        accuracy=None,
        latency_s=None,
        dynamic_j=None,
        total_j=None,
        kind="estimated",
        source="s",
    )
    report = Report(title="t", created="c", data_source="PneumoniaMNIST", summary=[row])
    page = write_report(report, tmp_path)[0].read_text(encoding="utf-8")
    table = _first_screen(page).split('id="summary"', 1)[1].split("</table>", 1)[0]
    assert "0 J" not in table and table.count('<td class="num"') == 6
    assert table.count(">—<") == 6


# ----------------------------------------------------------------------------------------------
# Sweep tables


def _trial(
    model: str, steps: int, acc: float, auc: float, loihi2: float, status: str = "ok"
) -> dict:
    return {
        "trial_id": f"{model}-{steps}",
        "status": status,
        "model": model,
        "deployable": True,
        "num_steps": steps,
        "encoding": "direct",
        "val_auc": auc - 0.01,
        "test_auc": auc,
        "test_accuracy": acc,
        "energy": {
            "loihi2": {"dynamic_j": loihi2, "total_j": None},
            "loihi": {"dynamic_j": loihi2, "total_j": 2 * loihi2},
        },
    }


def test_read_sweep_accepts_a_folder_jsonl_csv_and_pareto_json(tmp_path):
    trials = [
        _trial("snn_conv", 16, 0.85, 0.92, 3.3e-4),
        _trial("snn_strided", 4, 0.86, 0.95, 3.0e-5),
        {**_trial("snn_conv", 2, 0.5, 0.5, 1e-6, "failed"), "energy": {}, "error": "boom"},
    ]
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "results.jsonl").write_text("\n".join(json.dumps(t) for t in trials) + "\n")
    table = read_sweep(folder)
    assert table.source.endswith("results.jsonl") and len(table.trials) == 3
    assert table.devices == ["loihi2", "loihi"]
    assert table.trials[1]["energy"]["loihi2"] == {"dynamic_j": 3.0e-5, "total_j": None}

    pareto = tmp_path / "pareto.json"
    pareto.write_text(json.dumps({"trials": trials, "pareto": [trials[1]], "provenance": {}}))
    table = read_sweep(pareto)
    assert len(table.trials) == 3 and table.pareto[0]["model"] == "snn_strided"

    flat = tmp_path / "results.csv"
    flat.write_text(
        "model,num_steps,encoding,val_auc,test_auc,test_accuracy,energy_loihi2_dynamic_j,energy_loihi2_total_j\n"
        "snn_conv,8,direct,0.93,0.92,0.85,1.5e-4,\n"
    )
    table = read_sweep(flat)
    assert table.trials[0]["num_steps"] == 8 and table.trials[0]["test_auc"] == 0.92
    assert table.trials[0]["energy"] == {"loihi2": {"dynamic_j": 1.5e-4, "total_j": None}}

    with pytest.raises(NeurocxrError, match="not found"):
        read_sweep(tmp_path / "missing")
    # A sweep still running has no results table yet, only one JSON per finished trial.
    running = tmp_path / "running"
    (running / "trials").mkdir(parents=True)
    (running / "trials" / "a.json").write_text(json.dumps(trials[0]))
    (running / "trials" / "b.json").write_text("{half written")
    table = read_sweep(running)
    assert [t["model"] for t in table.trials] == ["snn_conv"] and table.source.endswith("trials")

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NeurocxrError, match="no sweep results table"):
        read_sweep(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(NeurocxrError, match="not a readable sweep table"):
        read_sweep(bad)


@pytest.mark.slow
def test_report_with_a_sweep_plots_trials_and_baselines_on_the_same_axes(tmp_path):
    trials = [
        _trial("snn_conv", 16, 0.85, 0.92, 3.3e-4),
        _trial("snn_strided", 4, 0.86, 0.95, 3.0e-5),
        {**_trial("snn_conv", 2, 0.5, 0.5, 1e-6, "failed"), "energy": {}},
    ]
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(t) for t in trials))
    report = _report(sweep=read_sweep(tmp_path / "results.jsonl"))
    page = write_report(report, tmp_path / "out")[0].read_text(encoding="utf-8")
    first = _first_screen(page)
    assert 'alt="Sweep: accuracy and ROC-AUC against energy per device"' in first
    # The validation-selected trial is named on the first screen with its test figures and cost.
    assert (
        "the trial chosen on validation AUC, snn_strided, 4 steps, reaches test AUC 0.950 and accuracy 86.0% "
        "at 30 µJ per inference on loihi2"
    ) in first
    sweep = page.split('<h2 id="sweep">', 1)[1].split("<h2", 1)[0]
    assert "3 trials" in sweep and "failed" in sweep and "30 µJ" in sweep and "0.950" in sweep
    # The trial with the best validation AUC comes first.
    assert sweep.index("snn_strided") < sweep.index("snn_conv")
    data = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert len(data["sweep"]["trials"]) == 3


# ----------------------------------------------------------------------------------------------
# The stage on a real (tiny) model: chip operating point chosen on validation; layering


def _tiny_snn(tmp_path: Path, name: str = "snn_conv") -> Path:
    from neurocxr.models import ModelConfig, build_model
    from neurocxr.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(name=name, image_size=16, num_steps=6, channels=(4, 8), hidden=(16,))
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(3.0)
    return save_checkpoint(
        tmp_path / f"{name}.pt",
        model,
        cfg,
        {"threshold": 0.5, "threshold_method": "youden (validation)"},
    )


def test_chip_scores_do_not_depend_on_the_batch(tmp_path):
    from neurocxr.deploy.deployment import chip_logit_scale, chip_scores
    from neurocxr.exporters.loihi import to_program
    from neurocxr.hardware_sims.emulator import emulate
    from neurocxr.models.loaded import load

    snn = load(_tiny_snn(tmp_path))
    _, program = to_program(snn)
    images = torch.rand(12, 1, 16, 16, generator=torch.Generator().manual_seed(3)).numpy()
    whole = chip_scores(emulate(program, images), program)
    halves = np.concatenate(
        [
            chip_scores(emulate(program, images[:6]), program),
            chip_scores(emulate(program, images[6:]), program),
        ]
    )
    np.testing.assert_allclose(whole, halves)
    run = emulate(program, images)
    d = run.scores()[:, 1] - run.scores()[:, 0]
    assert np.array_equal(whole > 0.5, d > 0)  # 0.5 is crossed where argmax changes
    assert chip_logit_scale(program) == pytest.approx(
        64 * program.layers[-1].quant["scale"] * program.num_steps
    )


@pytest.mark.slow
def test_stage_chooses_the_chip_threshold_on_validation(tmp_path, capsys):
    import neurocxr
    from neurocxr.data.datasets import load_dataset
    from neurocxr.deploy.deployment import chip_scores
    from neurocxr.exporters.loihi import to_program
    from neurocxr.hardware_sims.emulator import emulate
    from neurocxr.metrics import choose_threshold
    from neurocxr.models.loaded import load

    ckpt = _tiny_snn(tmp_path)
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "results.jsonl").write_text(
        json.dumps(_trial("snn_strided", 4, 0.86, 0.95, 3.0e-5)) + "\n"
    )
    report = neurocxr.energy_report(
        ckpt, data="synthetic", out=None, max_samples=24, measure=False, sweep=sweep_dir
    )
    assert capsys.readouterr().out == ""  # the API prints nothing
    assert report.sweep is not None and report.sweep.trials[0]["model"] == "snn_strided"
    op = report.operating_point
    # Recompute by hand: the same rule on the emulator's validation scores.
    snn = load(ckpt)
    _, program = to_program(snn)
    val = load_dataset("synthetic", image_size=16).val
    expected = choose_threshold(
        val.labels.numpy(), chip_scores(emulate(program, val.images.numpy()), program), "youden"
    )
    assert op["threshold"] == pytest.approx(expected)
    assert op["samples"] == len(val) and "validation" in op["method"]
    chip = report.accuracy[f"{snn.name} (Loihi emulator)"]
    assert chip["threshold"] == pytest.approx(expected)
    assert report.parity["operating_point"]["threshold"] == pytest.approx(expected)
    assert report.provenance["checkpoints"][snn.name]["sha256"]
    assert {r.device for r in report.summary} >= {"loihi", "loihi2"}
    assert not hasattr(report, "paths")  # out=None writes nothing


def test_api_never_imports_the_cli_or_prints():
    import ast

    source = (Path(__file__).resolve().parents[1] / "neurocxr" / "api.py").read_text(
        encoding="utf-8"
    )
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module not in ("neurocxr.cli", "rich.console", "rich"), node.module
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "print"
        if isinstance(node, ast.Attribute):
            assert (
                node.attr not in ("print", "rule", "status")
                or not isinstance(node.value, ast.Name)
                or node.value.id != "console"
            )


# ----------------------------------------------------------------------------------------------
# Reproducible numbers: the energy benchmark never trains; README figures come from the JSON files


def _benchmark(name: str):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_energy_benchmark_refuses_to_train(tmp_path, capsys):
    energy = _benchmark("energy")
    data = tmp_path / "data.npz"
    data.write_bytes(b"x")
    code = energy.main(
        [
            "--data",
            str(data),
            "--checkpoint",
            str(tmp_path / "missing.pt"),
            "--baseline",
            str(tmp_path / "cnn.pt"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "never trains" in err and "missing.pt" in err
    assert not (tmp_path / "out").exists()


def test_readme_figures_come_from_the_result_files(tmp_path):
    figures = _benchmark("readme_figures")
    prov = {
        "git": {"commit": "abcdef0123456789", "dirty": False},
        "time_utc": "2026-12-01T12:00:00Z",
        "threads": {"torch_threads": 1},
        "checkpoints": {"snn_conv": {"sha256": "1" * 64}},
    }
    (tmp_path / "accuracy.json").write_text(
        json.dumps(
            {
                "models": {
                    "snn_conv": {
                        "test_accuracy": 0.8525,
                        "test_auc": 0.9213,
                        "test_sensitivity": 0.967,
                        "test_specificity": 0.662,
                        "threshold": 0.37,
                        "epochs_run": 8,
                        "best_epoch": 7,
                        "model_config": {"num_steps": 16},
                    }
                },
                "provenance": prov,
            }
        )
    )
    summary = [
        {
            "model": "snn_conv",
            "device": "loihi",
            "kind": "estimated",
            "basis": "chip counts",
            "scope": "device per-op constants",
            "dynamic_energy": {"value": 3.23e-4},
            "total_energy": {"value": None},
            "latency": {"value": 2.0e-3},
            "throughput": {"value": 500.0},
        },
        {
            "model": "snn_conv",
            "device": "loihi2",
            "kind": "estimated",
            "basis": "chip counts",
            "scope": "",
            "dynamic_energy": {"value": 3.21e-4},
            "total_energy": {"value": 9.72e-4},
            "latency": {"value": 3.54e-3},
            "throughput": {"value": 353.0},
            "latency_slow_bound": {"value": 3.06e-2},
            "throughput_slow_bound": {"value": 41.0},
            "total_energy_slow_bound": {"value": 5.94e-3},
        },
        {
            "model": "snn_conv",
            "device": "CPU (pytorch)",
            "kind": "not measurable",
            "basis": "measured",
            "scope": "",
            "dynamic_energy": {"value": None},
            "total_energy": {"value": None},
            "latency": {"value": 0.023},
            "throughput": {"value": 43.0},
        },
    ]
    other = dict(prov, checkpoints={"snn_conv": {"sha256": "2" * 64}})
    (tmp_path / "energy.json").write_text(
        json.dumps(
            {
                "summary": summary,
                "verdict": "cnn_small is cheaper.",
                "not_measurable_here": {"CPU energy": "no RAPL"},
                "operating_point": {
                    "float_test": {
                        "accuracy": 0.853,
                        "sensitivity": 0.96,
                        "specificity": 0.66,
                        "roc_auc": 0.921,
                    },
                    "chip_test": {
                        "accuracy": 0.857,
                        "sensitivity": 0.95,
                        "specificity": 0.68,
                        "roc_auc": 0.920,
                    },
                    "test_prediction_changed_fraction": 0.0048,
                },
                "provenance": other,
            }
        )
    )
    lines, warnings = figures.table(tmp_path)
    text = "\n".join(lines)
    assert "test accuracy 85.2%, ROC-AUC 0.921" in text and "16 steps, 8 epochs" in text
    assert "loihi [chip counts, device per-op constants]: 323 µJ, latency 2 ms, 500 fps" in text
    assert "slow synaptic op time: 30.6 ms, 41 fps, total 5.94 mJ)" in text  # Loihi 2's bracket
    assert "decisions changed 0.5%" in text and "not measurable here: CPU energy (no RAPL)" in text
    assert "| verdict | cnn_small is cheaper. |" in text
    assert "commit abcdef0123" in text
    assert any("emulator_vs_lava.json missing" in w for w in warnings)
    # Two result files from two different checkpoints are flagged.
    assert any("differs between result files" in w for w in warnings)
