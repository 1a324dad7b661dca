"""Energy values that flow from counting/measuring into the report.

Every number carries whether it was measured or estimated and where its constants came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["measured", "estimated", "not measurable"]


@dataclass
class EnergyEstimate:
    """Spike/op-count based energy of one model on one device profile, per inference (one sample)."""

    model: str
    device: str  # profile name, e.g. "loihi", "loihi2", "gpu (KerasSpiking)"
    dynamic_j: float  # ops x per-op constants
    total_j: (
        float | None
    )  # dynamic + static power x latency, None where the profile has no static power
    latency_s: float | None  # estimated time per inference on that device, if the profile gives one
    per_layer_j: dict[str, float]
    constants: dict[str, float]  # the per-op constants used (J)
    source: str  # citation of the constants
    method: str  # e.g. "synaptic ops x E_synop + neuron updates x E_update"
    accuracy: float | None = None
    kind: Kind = "estimated"
    notes: str = ""
    # Which op counts the figure rests on: "chip" (fixed-point emulator/Lava counts, pooling fused into
    # the next conv, so a larger fan-out), "neurobench" (float PyTorch model, NeuroBench 2.3
    # definitions), "cnn" (a CNN's MAC count), "keras-spiking" (KerasSpiking's own formula),
    # "measured-latency" (TDP x a measured time). Empty for rows built before the field existed.
    basis: str = ""
    # What is charged: "device" (per-op constants of a device profile), "arithmetic" (Horowitz
    # MAC/AC only), "memory-inclusive" (arithmetic + SRAM/DRAM traffic), "tdp".
    scope: str = ""
    static_j: float | None = (
        None  # static power x chips in use x time per inference (None: unknown)
    )
    throughput_fps: float | None = None  # inferences per second (pipelined where the model says so)
    timing: dict[str, Any] = field(default_factory=dict)  # how latency/throughput were modelled
    detail: dict[str, Any] = field(default_factory=dict)  # per-layer counts, bytes moved, ...
    footnotes: list[str] = field(default_factory=list)  # short sentences for the report, said once
    # dynamic + static at the profile's slow-bound synaptic op time (Loihi 2's bracket: total_j is the
    # fast bound); None where the profile gives no bracket or no static power
    total_j_slow_bound: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["total_j_slow_bound"] is None:  # profiles without a bracket keep exactly their keys
            del out["total_j_slow_bound"]
        return out


@dataclass
class EnergyMeasurement:
    """Energy and speed measured on real hardware (or the reason it could not be)."""

    model: str
    device: str  # e.g. "NVIDIA H100 80GB HBM3 (driver 580.x)", "CPU (onnxruntime)"
    runtime: str  # "pytorch", "onnxruntime"
    batch_size: int
    latency_s: float | None  # per batch
    throughput_sps: float | None  # samples per second
    dynamic_j: float | None  # per sample, idle baseline subtracted
    total_j: float | None  # per sample, including idle power
    kind: Kind  # "measured" for energy read from a counter; "not measurable" otherwise
    method: str  # e.g. "NVML nvmlDeviceGetTotalEnergyConsumption, 5 s windows, median of 3"
    accuracy: float | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
