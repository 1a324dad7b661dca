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
    for zone, name, value in (
        ("intel-rapl:0", "package-0", energy_uj),
        ("intel-rapl:0:0", "core", sub_energy_uj),
    ):
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

    m = measure_gpu(
        work, batch_size=4, window_s=1.0, repeats=3, warmup_s=0.5, idle_s=1.0, model="matmul"
    )
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
    assert reading["intel-rapl:0"] == {
        "name": "package-0",
        "energy_uj": 1234,
        "max_energy_range_uj": MAX_RANGE,
    }
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


def test_measure_cpu_without_rapl_is_not_a_measurement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(measure, "RAPL_ROOT", tmp_path / "no-powercap")
    calls = []
    m = measure_cpu(
        lambda: calls.append(1),
        batch_size=8,
        window_s=0.02,
        repeats=2,
        model="m",
        runtime="onnxruntime",
    )
    assert m.kind == "not measurable"
    assert m.dynamic_j is None and m.total_j is None
    assert "not measurable" in m.notes and "does not exist" in m.notes
    assert m.latency_s is not None and m.latency_s > 0
    assert m.throughput_sps == pytest.approx(8 / m.latency_s)
    assert len(calls) >= 3 and m.runtime == "onnxruntime"


def test_measure_cpu_with_fake_rapl_counts_energy_per_sample(tmp_path: Path) -> None:
    # Each call "uses" 2000 uJ on the fake package counter; idle windows use nothing.
    root = fake_powercap(tmp_path, MAX_RANGE - 3000)  # the first calls wrap the counter
    m = measure_cpu(
        lambda: bump(root, "intel-rapl:0", 2000),
        batch_size=4,
        window_s=0.02,
        repeats=3,
        rapl_root=root,
    )
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


class _FakeNvml:
    """NVML with a board drawing ``idle_w`` plus ``joules_per_call`` per call of the measured function."""

    def __init__(self, idle_w: float, joules_per_call: float) -> None:
        import time

        self._time = time
        self.idle_w, self.per_call = idle_w, joules_per_call
        self.t0 = time.perf_counter()
        self.work_mj = 0.0

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return "Fake GPU"

    def nvmlSystemGetDriverVersion(self) -> str:
        return "0.0"

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        return int(self.idle_w * (self._time.perf_counter() - self.t0) * 1000 + self.work_mj)

    def work(self) -> None:
        self.work_mj += self.per_call * 1000


@pytest.mark.parametrize("zeus_works", [True, False])
def test_measure_gpu_windows_zeus_or_nvml(
    monkeypatch: pytest.MonkeyPatch, zeus_works: bool
) -> None:
    """The GPU method on a fake board: idle baseline subtracted, per-sample energy, backend named."""
    import sys
    import types

    import torch

    fake = _FakeNvml(idle_w=50.0, joules_per_call=0.2)
    monkeypatch.setattr(measure, "gpu_available", lambda: (True, "Fake GPU"))
    monkeypatch.setattr(measure, "_nvml", lambda: fake)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)

    class FakeZeusMonitor:
        def __init__(self, gpu_indices: list[int]) -> None:
            if not zeus_works:
                raise KeyError("libamd_smi.so")
            self.open: dict[str, tuple[float, float]] = {}

        def begin_window(self, key: str, sync_execution: bool = True) -> None:
            import time

            self.open[key] = (
                fake.nvmlDeviceGetTotalEnergyConsumption(0) / 1000,
                time.perf_counter(),
            )

        def end_window(self, key: str, sync_execution: bool = True) -> object:
            import time

            e0, t0 = self.open.pop(key)
            return types.SimpleNamespace(
                time=time.perf_counter() - t0,
                gpu_energy={0: fake.nvmlDeviceGetTotalEnergyConsumption(0) / 1000 - e0},
            )

    zeus_pkg = types.ModuleType("zeus")
    zeus_pkg.__version__ = "fake"  # type: ignore[attr-defined]
    zeus_monitor = types.ModuleType("zeus.monitor")
    zeus_monitor.ZeusMonitor = FakeZeusMonitor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zeus", zeus_pkg)
    monkeypatch.setitem(sys.modules, "zeus.monitor", zeus_monitor)

    m = measure_gpu(
        fake.work, batch_size=4, window_s=0.2, repeats=3, warmup_s=0.0, idle_s=0.2, model="fake"
    )
    assert m.kind == "measured"
    assert m.extra["idle_power_w"] == pytest.approx(50.0, rel=0.05)
    assert m.dynamic_j == pytest.approx(0.2 / 4, rel=0.1)  # 0.2 J per call of 4 samples
    assert m.total_j > m.dynamic_j
    if zeus_works:
        assert m.extra["backend"].startswith("Zeus") and "Zeus" in m.method
    else:
        assert m.extra["backend"].startswith("NVML") and "libamd_smi" in m.extra["backend_note"]


def test_measurability_is_one_sentence(tmp_path: Path) -> None:
    from neurocxr.energy.measure import measurability

    none = measurability(tmp_path / "no-powercap")
    assert none.cpu.measurable is False
    if not none.gpu.measurable:
        assert none.sentence.count("not measurable here") == 1
    with_rapl = measurability(fake_powercap(tmp_path / "pc", 1000))
    assert (
        with_rapl.cpu.measurable is True
        and "CPU (" not in with_rapl.sentence.split("not measurable")[-1]
    )
    assert with_rapl.to_dict() == {
        "gpu": {"measurable": with_rapl.gpu.measurable, "reason": with_rapl.gpu.reason},
        "cpu": {"measurable": True, "reason": with_rapl.cpu.reason},
        "sentence": with_rapl.sentence,
    }


def test_whole_test_set_energy_kwh_and_labels() -> None:
    from neurocxr.energy.measure import whole_test_set_energy
    from neurocxr.energy.types import EnergyMeasurement

    measured = EnergyMeasurement(
        "snn", "GPU", "pytorch", 1, 0.01, 100.0, 0.5, 1.8, "measured", "NVML"
    )
    out = whole_test_set_energy(measured, 624)
    assert (
        out.kwh == pytest.approx(1.8 * 624 / 3.6e6)
        and out.kind == "measured"
        and out.label == "measured"
    )
    tdp = whole_test_set_energy(None, 624, latency_s=0.02, tdp_w=65.0, model="cnn")
    assert tdp.kwh == pytest.approx(65.0 * 0.02 * 624 / 3.6e6)
    assert tdp.kind == "estimated" and "TDP" in tdp.label
    est = whole_test_set_energy(cpu_energy_estimate(0.02, 65.0), 10)
    assert est.kind == "estimated" and "TDP" in est.label
    none = EnergyMeasurement(
        "snn", "CPU", "pytorch", 1, 0.01, 100.0, None, None, "not measurable", "timing"
    )
    unmeasured = whole_test_set_energy(none, 10)
    assert unmeasured.kind == "not measurable" and unmeasured.kwh is None
    assert list(out.to_dict()) == ["kwh", "joules", "samples", "kind", "label", "method", "model"]
    assert out.to_dict()["samples"] == 624 and out.to_dict()["model"] == "snn"
    with pytest.raises(NeurocxrError, match="num_samples"):
        whole_test_set_energy(measured, 0)
    with pytest.raises(NeurocxrError, match="tdp_w"):
        whole_test_set_energy(None, 5, latency_s=0.1)
