"""Measured energy and speed: NVML on NVIDIA GPUs, Intel RAPL on CPUs, plain timing otherwise.

GPU method (../../shared/docs/energy.md): NVML ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since
driver load, whole board, Volta+) read around windows of several seconds (the counter updates
every ~20-100 ms), CUDA synchronised at the window edges, a warm-up first, and an idle baseline
measured the same way and subtracted: E_dyn = E - P_idle * t. Median of repeats (>= 3), because
on A100/H100 the sensor samples only part of the runtime (Yang et al., SC24).

The windows are read through Zeus (``zeus-ml``, ``ZeusMonitor.begin_window/end_window``: the
same NVML counter, CUDA synchronised at both edges) when it imports and finds the GPU; zeus-ml
0.11 installs on Python 3.10 with numpy < 2 and torch 2.3 without changing any pin. Where Zeus
is missing or cannot open the GPU (e.g. it probes AMD's libamd_smi first), raw NVML is used and
the result says which backend measured (``extra["backend"]``).

CPU: RAPL ``/sys/class/powercap/intel-rapl:*/energy_uj`` (uJ, wraps at ``max_energy_range_uj``),
root-only since Linux 5.10 and usually absent in VMs/containers. Without it, only latency and
throughput are measured and the result says "not measurable"; `cpu_energy_estimate` gives a
clearly labelled TDP x time estimate instead, never presented as a measurement.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurocxr.energy.types import EnergyEstimate, EnergyMeasurement
from neurocxr.errors import MeasurementUnavailable, NeurocxrError

RAPL_ROOT = Path("/sys/class/powercap")


# ------------------------------------------------------------------------------------------ timing


def _check_batch(batch_size: int) -> None:
    if batch_size < 1:
        raise NeurocxrError(f"batch_size must be >= 1, got {batch_size}")


def _run_for(fn: Callable[[], None], seconds: float, sync: Callable[[], None]) -> tuple[int, float]:
    """Call fn repeatedly for at least ``seconds`` (at least once); returns (calls, elapsed s)."""
    sync()
    start = time.perf_counter()
    calls = 0
    while True:
        fn()
        calls += 1
        if time.perf_counter() - start >= seconds:
            break
    sync()
    return calls, time.perf_counter() - start


def measure_latency(
    fn: Callable[[], None], *, batch_size: int, min_time_s: float = 1.0, warmup_calls: int = 3
) -> dict[str, float]:
    """Latency of one call of ``fn`` (one batch): warm-up, then individual calls timed for at least
    ``min_time_s``; returns median/mean/min/max per batch, throughput (samples/s) and call count."""
    _check_batch(batch_size)
    for _ in range(max(warmup_calls, 0)):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while not times or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {
        "latency_s": median,
        "latency_mean_s": statistics.fmean(times),
        "latency_min_s": min(times),
        "latency_max_s": max(times),
        "throughput_sps": batch_size / median if median > 0 else float("inf"),
        "calls": float(len(times)),
    }


# ------------------------------------------------------------------------------------------ GPU


def _nvml() -> Any:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError as exc:
        raise MeasurementUnavailable("NVML bindings missing: pip install nvidia-ml-py") from exc
    return pynvml


def gpu_available() -> tuple[bool, str]:
    """(True, GPU name) when a CUDA GPU with NVML's total-energy counter is usable, else (False, why)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False, "PyTorch is not installed"
    if not torch.cuda.is_available():
        return False, "no CUDA GPU visible to PyTorch (torch.cuda.is_available() is False)"
    try:
        nvml = _nvml()
    except MeasurementUnavailable as exc:
        return False, str(exc)
    try:
        nvml.nvmlInit()
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
            name = nvml.nvmlDeviceGetName(handle)
            nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        finally:
            nvml.nvmlShutdown()
    except Exception as exc:  # NVMLError_NotSupported on pre-Volta boards, driver problems
        return False, f"NVML total-energy counter not readable: {exc}"
    return True, name.decode() if isinstance(name, bytes) else str(name)


def measure_gpu(
    fn: Callable[[], None],
    *,
    batch_size: int,
    window_s: float = 5.0,
    repeats: int = 3,
    warmup_s: float = 2.0,
    idle_s: float = 3.0,
    model: str = "",
    runtime: str = "pytorch",
) -> EnergyMeasurement:
    """Energy per sample of ``fn`` (one batch on the GPU) from NVML's energy counter.

    Idle power is measured over ``idle_s`` windows (as many as ``repeats``) and subtracted:
    E_dyn = E - P_idle * t. Per-sample energies are the median over ``repeats`` windows.
    Raises MeasurementUnavailable when there is no usable GPU/NVML.
    """
    _check_batch(batch_size)
    if repeats < 1 or window_s <= 0 or idle_s <= 0:
        raise NeurocxrError("repeats must be >= 1 and window_s, idle_s > 0")
    ok, why = gpu_available()
    if not ok:
        raise MeasurementUnavailable(f"cannot measure GPU energy: {why}")
    import torch

    nvml = _nvml()
    nvml.nvmlInit()
    try:
        index = torch.cuda.current_device()
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = nvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
        driver = nvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        sync = torch.cuda.synchronize

        windows = _EnergyWindows(nvml, handle, index, sync)

        idle_powers = []
        for _ in range(repeats):
            energy_j, seconds = windows.measure(lambda: time.sleep(idle_s))
            idle_powers.append(energy_j / seconds)
        p_idle = statistics.median(idle_powers)

        _run_for(fn, warmup_s, sync)
        dyn, tot, lat = [], [], []
        for _ in range(repeats):
            result: dict[str, Any] = {}

            def work(result: dict[str, Any] = result) -> None:
                result["calls"], result["elapsed"] = _run_for(fn, window_s, sync)

            energy_j, _ = windows.measure(work)
            calls, elapsed = result["calls"], result["elapsed"]
            samples = calls * batch_size
            tot.append(energy_j / samples)
            dyn.append((energy_j - p_idle * elapsed) / samples)
            lat.append(elapsed / calls)
    finally:
        nvml.nvmlShutdown()
    latency = statistics.median(lat)
    notes = ""
    if statistics.median(dyn) < 0:
        notes = (
            "Dynamic energy below the idle baseline's noise: the workload is too small to "
            "resolve at this window length."
        )
    return EnergyMeasurement(
        model=model,
        device=f"{name} (driver {driver})",
        runtime=runtime,
        batch_size=batch_size,
        latency_s=latency,
        throughput_sps=batch_size / latency if latency > 0 else None,
        dynamic_j=statistics.median(dyn),
        total_j=statistics.median(tot),
        kind="measured",
        method=(
            f"{windows.backend}: NVML total-energy counter (whole board), {window_s:g} s windows, "
            f"median of {repeats}, {warmup_s:g} s warm-up, idle baseline {p_idle:.1f} W subtracted"
        ),
        notes=notes,
        extra={
            "gpu_name": name,
            "driver": driver,
            "backend": windows.backend,
            "backend_note": windows.note,
            "idle_power_w": p_idle,
            "idle_powers_w": idle_powers,
            "dynamic_j_per_sample": dyn,
            "total_j_per_sample": tot,
            "latency_per_batch_s": lat,
        },
    )


class _EnergyWindows:
    """Energy of one window of work on one GPU: Zeus's ZeusMonitor when usable, else raw NVML."""

    def __init__(self, nvml: Any, handle: Any, index: int, sync: Callable[[], None]) -> None:
        self._nvml, self._handle, self._index, self._sync = nvml, handle, index, sync
        self._zeus: Any = None
        self.note = ""
        try:
            from zeus.monitor import ZeusMonitor

            self._zeus = ZeusMonitor(gpu_indices=[index])
            import zeus

            self.backend = f"Zeus {getattr(zeus, '__version__', '')} ZeusMonitor".replace("  ", " ")
        except Exception as exc:  # not installed, or it cannot open this GPU: NVML directly
            self.backend = "NVML nvmlDeviceGetTotalEnergyConsumption"
            self.note = f"Zeus not used: {type(exc).__name__}: {exc}"

    def measure(self, work: Callable[[], None]) -> tuple[float, float]:
        """(joules, seconds) of ``work()``, CUDA synchronised at both edges."""
        if self._zeus is not None:
            key = f"neurocxr-{time.perf_counter_ns()}"
            self._zeus.begin_window(key, sync_execution=True)
            work()
            m = self._zeus.end_window(key, sync_execution=True)
            return float(sum(m.gpu_energy.values())), float(m.time)
        self._sync()
        e0, t0 = (
            float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)),
            time.perf_counter(),
        )
        work()
        self._sync()
        e1, t1 = (
            float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)),
            time.perf_counter(),
        )
        return (e1 - e0) / 1000.0, t1 - t0


# ------------------------------------------------------------------------------------------ CPU


def _rapl_domains(root: Path) -> list[Path]:
    """Top-level and sub-domain RAPL zones: intel-rapl:0, intel-rapl:0:0, ... (deduplicated)."""
    if not root.is_dir():
        return []
    zones = {
        p.resolve(): p for p in sorted(root.glob("intel-rapl:*")) if (p / "energy_uj").exists()
    }
    return sorted(zones.values(), key=lambda p: p.name)


def rapl_available(root: Path | None = None) -> tuple[bool, str]:
    """(True, zone names) when RAPL energy counters are readable here, else (False, why)."""
    root = RAPL_ROOT if root is None else Path(root)
    if not root.is_dir():
        return (
            False,
            f"{root} does not exist (no RAPL: not an Intel/AMD host with powercap, or a VM/container)",
        )
    zones = _rapl_domains(root)
    if not zones:
        return False, f"no intel-rapl:* zones with energy_uj under {root}"
    try:
        for zone in zones:
            int((zone / "energy_uj").read_text().strip())
    except PermissionError:
        return False, f"{zones[0] / 'energy_uj'} is not readable (root-only since Linux 5.10)"
    except (OSError, ValueError) as exc:
        return False, f"cannot read RAPL counters: {exc}"
    return True, ", ".join(z.name for z in zones)


def read_rapl_uj(root: Path | None = None) -> dict[str, dict[str, int | str]]:
    """Current RAPL counters: {zone: {"name": domain name, "energy_uj": int, "max_energy_range_uj": int}}."""
    root = RAPL_ROOT if root is None else Path(root)
    ok, why = rapl_available(root)
    if not ok:
        raise MeasurementUnavailable(why)
    out: dict[str, dict[str, int | str]] = {}
    for zone in _rapl_domains(root):
        name_file = zone / "name"
        max_file = zone / "max_energy_range_uj"
        out[zone.name] = {
            "name": name_file.read_text().strip() if name_file.exists() else zone.name,
            "energy_uj": int((zone / "energy_uj").read_text().strip()),
            "max_energy_range_uj": int(max_file.read_text().strip()) if max_file.exists() else 0,
        }
    return out


def rapl_delta_uj(before: int, after: int, max_energy_range_uj: int) -> int:
    """Energy between two readings of one counter, correcting one wrap-around at max_energy_range_uj."""
    if after >= before:
        return after - before
    if max_energy_range_uj <= 0:
        raise MeasurementUnavailable(
            "RAPL counter went backwards and max_energy_range_uj is unknown"
        )
    return after + max_energy_range_uj - before


def rapl_energy_j(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> float:
    """Package energy (J) between two read_rapl_uj() readings: sum of the top-level zones
    (intel-rapl:N, whose counters already include their sub-zones)."""
    total = 0
    for zone, b in before.items():
        if zone.count(":") != 1 or zone not in after:
            continue
        total += rapl_delta_uj(
            int(b["energy_uj"]), int(after[zone]["energy_uj"]), int(b["max_energy_range_uj"])
        )
    return total / 1e6


def measure_cpu(
    fn: Callable[[], None],
    *,
    batch_size: int,
    window_s: float = 3.0,
    repeats: int = 3,
    model: str = "",
    runtime: str = "pytorch",
    rapl_root: Path | None = None,
) -> EnergyMeasurement:
    """Latency/throughput of ``fn`` on the CPU, and RAPL package energy per sample when readable.

    Without RAPL the result has kind "not measurable", dynamic_j/total_j None and notes saying why;
    use `cpu_energy_estimate` for a labelled estimate. With RAPL, total_j is the package energy per
    sample and dynamic_j subtracts an idle baseline measured over the same window length.
    """
    _check_batch(batch_size)
    if repeats < 1 or window_s <= 0:
        raise NeurocxrError("repeats must be >= 1 and window_s > 0")
    ok, why = rapl_available(rapl_root)
    no_sync = lambda: None  # noqa: E731
    fn()  # warm-up
    lat, dyn, tot = [], [], []
    p_idle = None
    if ok:
        idle = []
        for _ in range(repeats):
            r0, t0 = read_rapl_uj(rapl_root), time.perf_counter()
            time.sleep(window_s)
            r1, t1 = read_rapl_uj(rapl_root), time.perf_counter()
            idle.append(rapl_energy_j(r0, r1) / (t1 - t0))
        p_idle = statistics.median(idle)
    for _ in range(repeats):
        r0 = read_rapl_uj(rapl_root) if ok else None
        calls, elapsed = _run_for(fn, window_s, no_sync)
        lat.append(elapsed / calls)
        if ok and r0 is not None and p_idle is not None:
            energy = rapl_energy_j(r0, read_rapl_uj(rapl_root))
            tot.append(energy / (calls * batch_size))
            dyn.append((energy - p_idle * elapsed) / (calls * batch_size))
    latency = statistics.median(lat)
    common: dict[str, Any] = dict(
        model=model,
        device=f"CPU ({runtime})",
        runtime=runtime,
        batch_size=batch_size,
        latency_s=latency,
        throughput_sps=batch_size / latency if latency > 0 else None,
    )
    if not ok:
        return EnergyMeasurement(
            **common,
            dynamic_j=None,
            total_j=None,
            kind="not measurable",
            method=f"wall-clock timing, {window_s:g} s windows, median of {repeats}; no energy counter",
            notes=f"CPU energy not measurable here: {why}. Latency and throughput are measured.",
            extra={"latency_per_batch_s": lat},
        )
    return EnergyMeasurement(
        **common,
        dynamic_j=statistics.median(dyn),
        total_j=statistics.median(tot),
        kind="measured",
        method=(
            f"Intel RAPL package counters ({why}), {window_s:g} s windows, median of "
            f"{repeats}, idle baseline subtracted"
        ),
        notes="RAPL covers the whole CPU package (other processes included), not DRAM unless listed.",
        extra={
            "idle_power_w": p_idle,
            "latency_per_batch_s": lat,
            "dynamic_j_per_sample": dyn,
            "total_j_per_sample": tot,
        },
    )


def cpu_energy_estimate(
    latency_s: float, tdp_w: float, *, batch_size: int = 1, model: str = ""
) -> EnergyEstimate:
    """A labelled ESTIMATE (not a measurement): TDP x latency per batch / batch size.

    TDP is the thermal design power, an upper-bound-ish guess of package power under load; the
    user supplies it. Use only where RAPL is not readable, and report it as estimated.
    """
    if latency_s < 0 or tdp_w <= 0 or batch_size < 1:
        raise NeurocxrError("latency_s must be >= 0, tdp_w > 0 and batch_size >= 1")
    energy = tdp_w * latency_s / batch_size
    return EnergyEstimate(
        model=model,
        device="CPU (TDP estimate)",
        dynamic_j=energy,
        total_j=energy,
        latency_s=latency_s,
        per_layer_j={},
        constants={"tdp_w": float(tdp_w)},
        source="user-supplied TDP",
        method="TDP x measured latency per batch / batch size",
        kind="estimated",
        notes="Estimated, not measured: assumes the package draws its full TDP for the whole latency.",
    )


# ------------------------------------------------------------------------------------------ summaries


@dataclass
class DeviceMeasurability:
    """Whether one device's energy can be measured here, and why (or why not)."""

    measurable: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"measurable": self.measurable, "reason": self.reason}


@dataclass
class Measurability:
    """What this machine can measure (GPU, CPU) and the one sentence to print about it."""

    gpu: DeviceMeasurability
    cpu: DeviceMeasurability
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        return {"gpu": self.gpu.to_dict(), "cpu": self.cpu.to_dict(), "sentence": self.sentence}


def measurability(rapl_root: Path | None = None) -> Measurability:
    """What this machine can measure, and one sentence to print once (not in every table cell)."""
    gpu_ok, gpu_why = gpu_available()
    cpu_ok, cpu_why = rapl_available(rapl_root)
    missing = []
    if not gpu_ok:
        missing.append(f"GPU ({gpu_why})")
    if not cpu_ok:
        missing.append(f"CPU ({cpu_why})")
    if not missing:
        sentence = f"GPU ({gpu_why}) and CPU ({cpu_why}) energy are measured."
    else:
        sentence = (
            "Energy not measurable here: "
            + "; ".join(missing)
            + ". Latency is measured; energies are estimates."
        )
    return Measurability(
        gpu=DeviceMeasurability(measurable=gpu_ok, reason=gpu_why),
        cpu=DeviceMeasurability(measurable=cpu_ok, reason=cpu_why),
        sentence=sentence,
    )


@dataclass
class WholeTestSetEnergy:
    """kWh (and J) to classify a whole test set once; ``kind`` is "measured", "estimated" or
    "not measurable" (then ``kwh`` and ``joules`` are None)."""

    kwh: float | None
    joules: float | None
    samples: int
    kind: str
    label: str
    method: str
    model: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kwh": self.kwh,
            "joules": self.joules,
            "samples": self.samples,
            "kind": self.kind,
            "label": self.label,
            "method": self.method,
            "model": self.model,
        }


def whole_test_set_energy(
    row: EnergyMeasurement | EnergyEstimate | None = None,
    num_samples: int = 0,
    *,
    latency_s: float | None = None,
    tdp_w: float | None = None,
    batch_size: int = 1,
    model: str = "",
) -> WholeTestSetEnergy:
    """CodeCarbon-style figure: kWh to classify a whole test set of ``num_samples`` images.

    From a measurement (NVML/RAPL row: kind "measured") or an estimate row: per-sample total energy
    (dynamic when no total) x samples. Without a row, from a measured ``latency_s`` per batch x a
    user-supplied ``tdp_w`` (what CodeCarbon falls back to without RAPL): labelled an estimate.
    """
    if num_samples < 1:
        raise NeurocxrError(f"num_samples must be >= 1, got {num_samples}")
    if row is not None:
        per_sample = row.total_j if row.total_j is not None else row.dynamic_j
        if per_sample is None:
            return WholeTestSetEnergy(
                kwh=None,
                joules=None,
                samples=num_samples,
                kind="not measurable",
                label="not measurable here",
                method=row.method,
                model=model or row.model,
            )
        kind = "measured" if row.kind == "measured" else "estimated"
        method = (
            f"{'total' if row.total_j is not None else 'dynamic'} J per sample x "
            f"{num_samples} samples ({row.method})"
        )
        model = model or row.model
    else:
        if latency_s is None or tdp_w is None:
            raise NeurocxrError("give a measured/estimated row, or both latency_s and tdp_w")
        est = cpu_energy_estimate(latency_s, tdp_w, batch_size=batch_size, model=model)
        per_sample, kind = est.total_j, "estimated"
        method = f"TDP {tdp_w:g} W x measured latency per sample x {num_samples} samples (as CodeCarbon without RAPL)"
    assert per_sample is not None
    joules = float(per_sample) * num_samples
    label = (
        "measured"
        if kind == "measured"
        else "estimate"
        + (
            " (rests on TDP, not measured)"
            if row is None or row.device.endswith("(TDP estimate)")
            else ""
        )
    )
    return WholeTestSetEnergy(
        kwh=joules / 3.6e6,
        joules=joules,
        samples=num_samples,
        kind=kind,
        label=label,
        method=method,
        model=model,
    )
