"""Measurement: GPU/RAPL availability, RAPL arithmetic on a fake powercap tree, honest fallbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurocxr.energy import measure
from neurocxr.energy.measure import (
    cpu_energy_estimate,
    gpu_available,
    measure_cpu,
    measure_gpu,
    measure_latency,
    rapl_available,
    rapl_delta_uj,
    rapl_energy_j,
    read_rapl_uj,
)
from neurocxr.errors import MeasurementUnavailable, NeurocxrError

MAX_RANGE = 262_143_328_850  # a real max_energy_range_uj value


def fake_powercap(root: Path, energy_uj: int, *, sub_energy_uj: int = 5) -> Path:
    """intel-rapl:0 (package-0) with one sub-zone intel-rapl:0:0 (core), as Linux lays them out."""
    for zone, name, value in (("intel-rapl:0", "package-0", energy_uj), ("intel-rapl:0:0", "core", sub_energy_uj)):
        d = root / zone
        d.mkdir(parents=True, exist_ok=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{value}\n")
        (d / "max_energy_range_uj").write_text(f"{MAX_RANGE}\n")
    return root


def bump(root: Path, zone: str, delta: int) -> None:
    f = root / zone / "energy_uj"
    f.write_text(str((int(f.read_text()) + delta) % MAX_RANGE))


def test_gpu_available_reports_a_reason() -> None:
    ok, reason = gpu_available()
    assert isinstance(ok, bool) and reason
    if not ok:
        assert "CUDA" in reason or "NVML" in reason


def test_measure_gpu_raises_without_gpu() -> None:
    ok, reason = gpu_available()
    if ok:
        pytest.skip(f"a GPU is present here ({reason}); see test_measure_gpu_on_gpu")
    with pytest.raises(MeasurementUnavailable, match="cannot measure GPU energy"):
        measure_gpu(lambda: None, batch_size=1, window_s=0.01, idle_s=0.01, warmup_s=0.0)


def test_measure_gpu_on_gpu() -> None:
    ok, reason = gpu_available()
    if not ok:
        pytest.skip(f"no GPU energy counter here: {reason}")
    import torch

    a = torch.randn(2048, 2048, device="cuda")

    def work() -> None:
        a @ a

    m = measure_gpu(work, batch_size=4, window_s=1.0, repeats=3, warmup_s=0.5, idle_s=1.0, model="matmul")
    assert m.kind == "measured" and m.batch_size == 4
    assert m.total_j is not None and m.total_j > 0
    assert m.dynamic_j is not None and m.dynamic_j < m.total_j
    assert m.extra["idle_power_w"] > 0 and m.extra["gpu_name"] in m.device
    assert m.throughput_sps == pytest.approx(4 / m.latency_s)


def test_rapl_missing_dir(tmp_path: Path) -> None:
    ok, reason = rapl_available(tmp_path / "nope")
    assert not ok and "does not exist" in reason
    with pytest.raises(MeasurementUnavailable, match="does not exist"):
        read_rapl_uj(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    ok, reason = rapl_available(tmp_path / "empty")
    assert not ok and "no intel-rapl" in reason


def test_read_rapl_fake_tree(tmp_path: Path) -> None:
    root = fake_powercap(tmp_path, 1234)
    ok, zones = rapl_available(root)
    assert ok and "intel-rapl:0" in zones
    reading = read_rapl_uj(root)
    assert reading["intel-rapl:0"] == {"name": "package-0", "energy_uj": 1234, "max_energy_range_uj": MAX_RANGE}
    assert reading["intel-rapl:0:0"]["name"] == "core"


def test_rapl_wraparound_arithmetic(tmp_path: Path) -> None:
    assert rapl_delta_uj(100, 350, MAX_RANGE) == 250
    assert rapl_delta_uj(MAX_RANGE - 100, 50, MAX_RANGE) == 150
    with pytest.raises(MeasurementUnavailable, match="max_energy_range_uj"):
        rapl_delta_uj(100, 50, 0)
    root = fake_powercap(tmp_path, MAX_RANGE - 400_000)
    before = read_rapl_uj(root)
    bump(root, "intel-rapl:0", 1_000_000)  # wraps past max_energy_range_uj
    bump(root, "intel-rapl:0:0", 999)  # sub-zone: already inside the package counter, not added
    after = read_rapl_uj(root)
    assert int(after["intel-rapl:0"]["energy_uj"]) < int(before["intel-rapl:0"]["energy_uj"])
    assert rapl_energy_j(before, after) == pytest.approx(1.0)


def test_measure_cpu_without_rapl_is_not_a_measurement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "RAPL_ROOT", tmp_path / "no-powercap")
    calls = []
    m = measure_cpu(lambda: calls.append(1), batch_size=8, window_s=0.02, repeats=2, model="m", runtime="onnxruntime")
    assert m.kind == "not measurable"
    assert m.dynamic_j is None and m.total_j is None
    assert "not measurable" in m.notes and "does not exist" in m.notes
    assert m.latency_s is not None and m.latency_s > 0
    assert m.throughput_sps == pytest.approx(8 / m.latency_s)
    assert len(calls) >= 3 and m.runtime == "onnxruntime"


def test_measure_cpu_with_fake_rapl_counts_energy_per_sample(tmp_path: Path) -> None:
    # Each call "uses" 2000 uJ on the fake package counter; idle windows use nothing.
    root = fake_powercap(tmp_path, MAX_RANGE - 3000)  # the first calls wrap the counter
    m = measure_cpu(lambda: bump(root, "intel-rapl:0", 2000), batch_size=4, window_s=0.02, repeats=3, rapl_root=root)
    assert m.kind == "measured"
    assert m.total_j == pytest.approx(2000e-6 / 4)
    assert m.extra["idle_power_w"] == 0.0
    assert m.dynamic_j == pytest.approx(m.total_j)
    assert "RAPL" in m.method


def test_cpu_energy_estimate_is_labelled() -> None:
    est = cpu_energy_estimate(0.02, 65.0, batch_size=4, model="cnn")
    assert est.kind == "estimated" and est.source == "user-supplied TDP"
    assert est.dynamic_j == pytest.approx(65.0 * 0.02 / 4)
    assert "not measured" in est.notes
    with pytest.raises(NeurocxrError):
        cpu_energy_estimate(0.01, 0.0)


def test_measure_latency_keys_and_consistency() -> None:
    n = []
    stats = measure_latency(lambda: n.append(1), batch_size=16, min_time_s=0.01, warmup_calls=2)
    assert stats["calls"] >= 1 and len(n) == stats["calls"] + 2
    assert stats["latency_min_s"] <= stats["latency_s"] <= stats["latency_max_s"]
    assert stats["throughput_sps"] == pytest.approx(16 / stats["latency_s"])
    with pytest.raises(NeurocxrError, match="batch_size"):
        measure_latency(lambda: None, batch_size=0)
