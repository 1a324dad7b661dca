"""Energy estimates from operation counts: counts x per-op constants of a device profile.

Three conventions, so results can be compared with published work:
- `estimate_energy`: neurocxr's own: effective synaptic ops (event-driven devices) or dense ops
  (clocked devices) x E_synop + active / inactive neuron updates x E_update + emitted spikes x
  E_spike, from real runs (emulator, Lava, or `neurocxr.energy.neurobench` on the PyTorch model);
  latency, pipelined throughput and static energy (static power x chips in use x time) from the
  parallel timing model (`neurocxr.energy.timing`) where the profile has per-op times.
- `estimate_ann_energy` / `estimate_snn_ac_energy`: the MAC/AC arithmetic-only convention
  (Horowitz 2014 constants), SNN layers charged by NeuroBench's rule (spike-fed: AC, analog-fed:
  MAC). Ignores memory traffic; `neurocxr.energy.memory` adds it.
- `keras_spiking_energy`: reproduces keras-spiking 0.3.0 ``ModelEnergy`` numbers for the same
  network and inputs (connections x mean input rate, every neuron charged every step).

Every result says which counts it rests on (``basis``: chip or NeuroBench float-model counts,
see BASIS_TEXT) and what it charges (``scope``). All are estimates (``kind="estimated"``), per
inference (mean per sample).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from neurocxr.energy.macs import torch_layer_traffic
from neurocxr.energy.profiles import (
    KERAS_SPIKING_LOIHI_QUIRK,
    DeviceProfile,
    get_profile,
    resolve_profile,
)
from neurocxr.energy.timing import (
    STATIC_FOOTNOTE,
    loihi_timing,
    split_source_notes,
    split_updates,
    truenorth_mapping,
)
from neurocxr.energy.types import EnergyEstimate
from neurocxr.errors import NeurocxrError, ProfileError
from neurocxr.hardware_sims.results import LayerCounts
from neurocxr.models import is_snn

SPIKE_COUNTS_ARE_NOT_ENERGY = (
    "Estimate from op counts x published per-op constants, not a measurement; it ignores data "
    "movement off the cores, host I/O and overheads."
)

# What each counting basis means; the report prints the one a figure uses (EnergyEstimate.basis).
BASIS_TEXT: dict[str, str] = {
    "chip": (
        "chip counts: the fixed-point program on the bit-exact emulator (or Lava), pooling fused into the "
        "next layer's synapses, so every spike before a pool reaches a larger fan-out"
    ),
    "neurobench": (
        "NeuroBench counts: the float PyTorch model with NeuroBench 2.3 definitions (effective synaptic "
        "ops with binarised weights and inputs; pooling is a separate, op-free layer)"
    ),
    "cnn": "CNN MAC count: every real multiply-accumulate of one forward pass (zero-padding taps excluded)",
    "keras-spiking": "KerasSpiking's own formula (average fan-out x mean input rate; every neuron every step)",
    "measured-latency": "a measured latency times an assumed power (TDP): an estimate, not a measurement",
}
COUNTING_BASES = tuple(BASIS_TEXT)


def _check_basis(basis: str) -> str:
    if basis not in BASIS_TEXT:
        raise NeurocxrError(
            f"unknown counting basis {basis!r}; use one of {', '.join(COUNTING_BASES)}"
        )
    return basis


def _unique_names(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(names):
        base = name or f"layer{i}"
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(base if n == 0 else f"{base}#{n}")
    return out


def _mean(values: Any, what: str, layer: str) -> float:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise NeurocxrError(
            f"layer {layer}: no samples in {what}; run at least one sample before estimating energy"
        )
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise NeurocxrError(f"layer {layer}: {what} must be finite and >= 0 (got min {arr.min()})")
    return float(arr.mean())


def _layer_energy(c: LayerCounts, prof: DeviceProfile, name: str) -> tuple[float, dict[str, float]]:
    """Dynamic energy of one layer per sample and the counts it used."""
    updates = _mean(c.neuron_updates, "neuron_updates", name)
    if (
        not prof.spiking
    ):  # a clocked device computes every synapse every step and updates every neuron
        ops = _mean(c.dense_synaptic_ops, "dense_synaptic_ops", name)
        return ops * prof.energy_per_synop_j + updates * prof.energy_per_neuron_update_j, {
            "dense_synaptic_ops": ops,
            "neuron_updates": updates,
        }

    synops = _mean(c.synaptic_ops, "synaptic_ops", name)
    # spikes sent by the layer's own neurons (host-injected input spikes come from no core)
    spikes = _mean(c.output_spikes, "output_spikes", name) if updates > 0 else 0.0
    active, inactive, _ = split_updates(c)
    e_inactive = prof.energy_per_neuron_update_inactive_j
    if e_inactive is None:
        e_inactive = prof.energy_per_neuron_update_j
    energy = (
        synops * prof.energy_per_synop_j
        + active * prof.energy_per_neuron_update_j
        + inactive * e_inactive
        + spikes * (prof.energy_per_spike_j or 0.0)
    )
    return energy, {
        "synaptic_ops": synops,
        "active_neuron_updates": active,
        "inactive_neuron_updates": inactive,
        "output_spikes": spikes,
    }


@dataclass
class _Timed:
    """Latency, throughput and static energy of one estimate, and the footnotes that say how."""

    latency_s: float | None = None
    throughput_fps: float | None = None
    static_j: float | None = None
    static_j_slow_bound: float | None = None  # static energy at the profile's slow-bound step
    timing: dict[str, Any] = field(default_factory=dict)
    footnotes: list[str] = field(default_factory=list)


def _timing(
    counts: list[LayerCounts],
    prof: DeviceProfile,
    program: Any,
    chips: int | None,
    latency_s: float | None,
) -> _Timed:
    """The parallel timing model where the profile has per-op times, else the caller's latency."""
    if (
        latency_s is None
        and prof.time_per_synop_s is not None
        and prof.time_per_neuron_update_s is not None
    ):
        t = loihi_timing(counts, prof, program=program)
        if chips is not None and chips != t.chips and prof.static_power_w is not None:
            t.static_j = prof.static_power_w * chips * t.steps_per_sample * t.step_s
            t.static_j_single_inference = prof.static_power_w * chips * t.latency_s
            if t.throughput_fps_slow_bound is not None:  # 1 / fps = T steps at the slow-bound step
                t.static_j_slow_bound = prof.static_power_w * chips / t.throughput_fps_slow_bound
            t.assumptions.append(
                f"Static power charged for {chips} chip(s) as requested (mapping needs {t.chips})."
            )
        timed = _Timed(
            t.latency_s, t.throughput_fps, t.static_j, t.static_j_slow_bound, t.as_dict()
        )
        timed.footnotes.extend(t.assumptions)
        if t.static_j is not None:
            timed.footnotes.append(STATIC_FOOTNOTE)
        if t.static_j_slow_bound is not None:
            timed.footnotes.append(
                "Total energy is a bracket like the latency: the slow bound charges static power for the "
                "slow-bound step (total_j_slow_bound); dynamic energy is the same at both ends."
            )
        return timed
    if latency_s is None:
        return _Timed()
    n_chips = chips or 1
    static = prof.static_power_w * n_chips * latency_s if prof.static_power_w is not None else None
    return _Timed(
        latency_s,
        static_j=static,
        timing={"latency_s": latency_s, "chips": n_chips, "source": "given by the caller"},
        footnotes=[
            f"Latency given by the caller; static power x {n_chips} chip(s) x that latency."
        ],
    )


def _neuron_update_footnotes(counts: list[LayerCounts], prof: DeviceProfile) -> list[str]:
    """How neuron updates were charged, for spiking profiles without a timing model."""
    notes = []
    if any(getattr(c, "active_neuron_updates", None) is None for c in counts if c.kind != "input"):
        if prof.energy_per_neuron_update_inactive_j is not None:
            notes.append(
                "Active/inactive neuron updates not counted for this run: every update "
                "charged as active (upper bound)."
            )
    return notes + split_source_notes(counts)


def estimate_energy(
    counts: list[LayerCounts],
    profile: DeviceProfile | str,
    *,
    model: str = "",
    accuracy: float | None = None,
    chips: int | None = None,
    latency_s: float | None = None,
    program: Any = None,
    basis: str = "chip",
) -> EnergyEstimate:
    """Energy per inference (mean per sample) of a run whose per-layer counts are ``counts``.

    Event-driven (``spiking``) device: dynamic = effective synaptic ops x E_synop + active neuron
    updates x E_active + inactive updates x E_inactive + output spikes x E_spike. Clocked device:
    dense ops x E_synop + neuron updates x E_update.

    Timing: for a profile with per-op times, the parallel timing model
    (`neurocxr.energy.timing.loihi_timing`, core mapping from ``program`` when given) yields the
    latency ((T + L) steps), pipelined throughput, chips in use and static energy = static power x
    chips x T steps. ``latency_s`` overrides the model (static energy then uses it; ``chips``
    defaults to 1). total = dynamic + static, None when the profile has no static power.
    ``basis``: which counts these are ("chip" for emulator/Lava runs, "neurobench" for
    `neurobench_counts` on the float model); it labels the result.
    """
    prof = resolve_profile(profile)
    _check_basis(basis)
    if not counts:
        raise NeurocxrError("no layer counts given: run the program (emulator or Lava) first")
    if chips is not None and chips < 1:
        raise NeurocxrError(f"chips must be >= 1, got {chips}")
    if latency_s is not None and latency_s < 0:
        raise NeurocxrError(f"latency_s must be >= 0, got {latency_s}")
    names = _unique_names([c.name for c in counts])
    per_layer: dict[str, float] = {}
    layer_detail: dict[str, dict[str, float]] = {}
    for name, c in zip(names, counts):
        per_layer[name], layer_detail[name] = _layer_energy(c, prof, name)
    dynamic = float(sum(per_layer.values()))

    footnotes = [SPIKE_COUNTS_ARE_NOT_ENERGY, f"Counting basis: {BASIS_TEXT[basis]}."]
    if prof.notes:
        footnotes.append(prof.notes)
    timed = _timing(counts, prof, program, chips, latency_s)
    footnotes.extend(timed.footnotes)
    if prof.spiking and not timed.timing:
        footnotes.extend(_neuron_update_footnotes(counts, prof))
    if prof.static_power_w is None:
        footnotes.append(
            "Profile has no static power: total energy unknown, only dynamic energy given."
        )
    detail: dict[str, Any] = {"per_layer": layer_detail}
    if prof.chip == "truenorth":
        mapping = truenorth_mapping(counts)
        detail["truenorth_mapping"] = mapping.to_dict()
        if mapping.note:
            footnotes.append(mapping.note)
    total = dynamic + timed.static_j if timed.static_j is not None else None
    if prof.spiking:
        ops_desc = "effective synaptic ops x E_synop + active/inactive neuron updates x E_update + spikes x E_spike"
    else:
        ops_desc = "dense synaptic ops x E_synop + neuron updates x E_update (clocked device)"
    return EnergyEstimate(
        model=model,
        device=prof.name,
        dynamic_j=dynamic,
        total_j=total,
        latency_s=timed.latency_s,
        per_layer_j=per_layer,
        constants=prof.constants(),
        source=prof.source,
        method=ops_desc + (" + static power x chips x time" if total is not None else ""),
        accuracy=accuracy,
        kind="estimated",
        notes=" ".join(footnotes),
        basis=basis,
        scope="device",
        static_j=timed.static_j,
        throughput_fps=timed.throughput_fps,
        timing=timed.timing,
        detail=detail,
        footnotes=footnotes,
        total_j_slow_bound=None
        if timed.static_j_slow_bound is None
        else dynamic + timed.static_j_slow_bound,
    )


def _mac_energy(prof: DeviceProfile) -> float:
    if prof.energy_per_mac_j is not None:
        return prof.energy_per_mac_j
    if prof.spiking:
        raise ProfileError(
            f"profile '{prof.name}' is a spiking device without a MAC energy: an ANN's MACs cannot be "
            "charged on it; use a conventional profile such as 'horowitz45-fp32' or 'keras-spiking:gpu'"
        )
    return prof.energy_per_synop_j  # KerasSpiking convention: on CPU/GPU/ARM one synop is one MAC


def gru_macs(gru: nn.GRU, steps: int) -> int:
    """MACs of a (bi)GRU over ``steps`` steps for one sample: 3 gates x (input + hidden) x hidden
    per direction and layer (biases and gate nonlinearities not counted)."""
    total = 0
    dirs = 2 if gru.bidirectional else 1
    for layer in range(gru.num_layers):
        cin = gru.input_size if layer == 0 else gru.hidden_size * dirs
        total += dirs * 3 * (cin + gru.hidden_size) * gru.hidden_size
    return total * steps


@dataclass
class InferenceMacs:
    """MACs per inference on dense hardware, and what was counted (``basis``)."""

    macs: int
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return {"macs": self.macs, "basis": self.basis}


def inference_macs(model: nn.Module, config: Any) -> InferenceMacs:
    """MACs per inference of any registered model, on dense (conventional) hardware.

    CNNs: exact Conv/Linear MACs (`count_cnn_macs`). SNNs: the dense-hardware figure summed over
    the T steps (a neuromorphic chip does synaptic ops on spikes instead). The hybrid CNN-GRU-SNN
    (a model with a ``gru``): its CNN runs once, the BiGRU, projection and head once per step.
    """

    side = (1, config.in_channels, config.image_size, config.image_size)
    if not is_snn(config):
        return InferenceMacs(
            macs=int(sum(count_cnn_macs(model, side).values())),
            basis="conv+linear, per image",
        )
    steps = config.num_steps
    gru = getattr(model, "gru", None)
    if gru is None:
        hooks = int(sum(count_cnn_macs(model, (steps,) + side).values()))
        return InferenceMacs(
            macs=hooks,
            basis=f"dense-equivalent conv+linear MACs over {steps} steps "
            "(spikes make the chip's synaptic ops fewer)",
        )
    cnn = sum(count_cnn_macs(model.features, side).values())
    per_step = sum(count_cnn_macs(model.projection, (1, 2 * gru.hidden_size)).values())
    head_in = next(m.in_features for m in model.head.modules() if isinstance(m, nn.Linear))
    per_step += sum(count_cnn_macs(model.head, (1, head_in)).values())
    total = int(cnn + steps * per_step + gru_macs(gru, steps))
    return InferenceMacs(
        macs=total,
        basis=f"CNN once + (BiGRU + projection + head) x {steps} steps; GRU by formula "
        "(3 gates x (input + hidden) x hidden per direction, layer and step)",
    )


def estimate_ann_energy(
    macs_per_layer: dict[str, int],
    profile: DeviceProfile | str = "horowitz45-fp32",
    *,
    model: str = "",
    accuracy: float | None = None,
) -> EnergyEstimate:
    """Arithmetic energy of a CNN baseline per inference: MACs x E_MAC (no memory traffic)."""
    prof = resolve_profile(profile)
    if not macs_per_layer:
        raise NeurocxrError("no MAC counts given: use count_cnn_macs(model, input_shape) first")
    e_mac = _mac_energy(prof)
    per_layer = {}
    for name, macs in macs_per_layer.items():
        if macs < 0:
            raise NeurocxrError(f"layer {name}: MAC count must be >= 0, got {macs}")
        per_layer[name] = float(macs) * e_mac
    return EnergyEstimate(
        model=model,
        device=prof.name,
        dynamic_j=float(sum(per_layer.values())),
        total_j=None,
        latency_s=None,
        per_layer_j=per_layer,
        constants={"energy_per_mac_j": e_mac},
        source=prof.source,
        method="MACs x E_MAC (arithmetic only)",
        accuracy=accuracy,
        notes="Arithmetic only: ignores memory traffic (often the larger cost), control and static power. "
        + prof.notes,
        basis="cnn",
        scope="arithmetic",
        detail={"macs": {k: int(v) for k, v in macs_per_layer.items()}},
        footnotes=[
            "Arithmetic only: ignores memory traffic (often the larger cost), control and static power.",
            f"Counting basis: {BASIS_TEXT['cnn']}.",
        ]
        + ([prof.notes] if prof.notes else []),
    )


def estimate_snn_ac_energy(
    counts: list[LayerCounts],
    profile: DeviceProfile | str = "horowitz45-fp32",
    *,
    op_types: Sequence[str | None] | None = None,
    first_layer_mac: bool = False,
    model: str = "",
    accuracy: float | None = None,
    basis: str = "chip",
) -> EnergyEstimate:
    """SNN on a conventional accelerator, arithmetic only, by NeuroBench's rule: a layer fed by
    spikes (every input in {-1, 0, 1}) does accumulates (effective synaptic ops x E_AC), a layer
    fed by analog values does multiply-accumulates (effective ops x E_MAC).

    ``op_types``: "AC"/"MAC" per entry of ``counts`` (None for the input entry), e.g. the
    ``op_type`` of `neurobench_counts` entries. Without it every synaptic layer counts as
    spike-fed, which is right for chip counts: on the chip every synaptic layer receives spikes
    (spike input, or input neurons that turn the image into spikes). ``first_layer_mac=True``
    instead follows the Spikformer/SpikingJelly convention (first layer's dense ops x E_MAC,
    labelled as such); it overcharges a first layer that receives spikes. Neuron updates and
    memory traffic are ignored (see `neurocxr.energy.memory` for a memory-inclusive figure).
    """
    prof = resolve_profile(profile)
    _check_basis(basis)
    if prof.energy_per_ac_j is None:
        raise ProfileError(
            f"profile '{prof.name}' has no energy_per_ac_j; use 'horowitz45-fp32' or 'horowitz45-int8'"
        )
    e_mac = _mac_energy(prof)
    if not counts:
        raise NeurocxrError("no layer counts given: run the program (emulator or Lava) first")
    if op_types is not None and len(op_types) != len(counts):
        raise NeurocxrError(
            f"op_types has {len(op_types)} entries but there are {len(counts)} layer counts"
        )
    names = _unique_names([c.name for c in counts])
    per_layer: dict[str, float] = {}
    layer_ops: dict[str, dict[str, Any]] = {}
    first_done = False
    for i, (name, c) in enumerate(zip(names, counts)):
        if c.kind == "input":
            per_layer[name] = 0.0
            continue
        if first_layer_mac and not first_done:
            op, ops = "MAC", _mean(c.dense_synaptic_ops, "dense_synaptic_ops", name)
        else:
            op = (op_types[i] if op_types is not None else None) or "AC"
            if op not in ("AC", "MAC"):
                raise NeurocxrError(f"layer {name}: op type must be 'AC' or 'MAC', got {op!r}")
            ops = _mean(c.synaptic_ops, "synaptic_ops", name)
        per_layer[name] = ops * (e_mac if op == "MAC" else prof.energy_per_ac_j)
        layer_ops[name] = {"op_type": op, "ops": ops}
        first_done = True
    if first_layer_mac:
        rule = "Spikformer/SpikingJelly convention: first layer's dense ops x E_MAC, later effective ops x E_AC"
    else:
        rule = "NeuroBench rule: spike-fed layers' effective ops x E_AC, analog-fed layers' effective ops x E_MAC"
    footnotes = [
        "Arithmetic only: ignores memory traffic, neuron updates, control and static power.",
        rule + ".",
        f"Counting basis: {BASIS_TEXT[basis]}.",
    ]
    if prof.notes:
        footnotes.append(prof.notes)
    return EnergyEstimate(
        model=model,
        device=prof.name,
        dynamic_j=float(sum(per_layer.values())),
        total_j=None,
        latency_s=None,
        per_layer_j=per_layer,
        constants={"energy_per_mac_j": e_mac, "energy_per_ac_j": prof.energy_per_ac_j},
        source=prof.source,
        method=rule,
        accuracy=accuracy,
        notes=" ".join(footnotes),
        basis=basis,
        scope="arithmetic",
        detail={"per_layer": layer_ops},
        footnotes=footnotes,
    )


def count_cnn_macs(
    model: nn.Module, input_shape: Sequence[int], *, include_padding: bool = False
) -> dict[str, int]:
    """Exact MACs per sample of every Conv1d/2d/3d and Linear, keyed by module name and type.

    ``input_shape`` is the full input shape including the batch dimension (e.g. (1, 1, 28, 28));
    counts are per sample. The counting rule lives in `neurocxr.energy.macs` (shared with
    `exporters.onnx.onnx_macs`): convolution taps on zero padding are not counted unless
    ``include_padding``; reflect/replicate/circular padding taps are real values and always count.
    """
    macs: dict[str, int] = {}
    for row in torch_layer_traffic(model, input_shape, include_padding=include_padding):
        macs[row.name] = macs.get(row.name, 0) + row.macs
    return macs


# ---------------------------------------------------------------------------------------------
# KerasSpiking-compatible mode


@dataclass(frozen=True)
class KSLayer:
    """One layer as keras-spiking's ModelEnergy sees it.

    ``connections``: input elements to units (conv: outputs x kh*kw*C_in, padding ignored; dense:
    in x out); ``neurons``: neuron updates per time step (0 for a linear layer); ``rate_hz``:
    mean |input| of the layer read as Hz (spikes per element per step / dt).
    """

    name: str
    connections: int
    neurons: int
    rate_hz: float


def _keras_device(device: DeviceProfile | str) -> DeviceProfile:
    if isinstance(device, DeviceProfile):
        return device
    name = str(device).lower()
    try:
        return get_profile(name if name.startswith("keras-spiking:") else f"keras-spiking:{name}")
    except ProfileError:
        return get_profile(name)


@dataclass
class KerasSpikingLayerEnergy:
    """One layer's KerasSpiking energy per inference (synaptic + neuron parts)."""

    name: str
    connections: int
    neurons: int
    rate_hz: float
    synop_j: float
    neuron_j: float
    energy_j: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "connections": self.connections,
            "neurons": self.neurons,
            "rate_hz": self.rate_hz,
            "synop_j": self.synop_j,
            "neuron_j": self.neuron_j,
            "energy_j": self.energy_j,
        }


@dataclass
class KerasSpikingEnergy:
    """Energy per inference as keras-spiking 0.3.0 ModelEnergy computes it, per layer and in total."""

    device: str
    spiking: bool
    dt: float
    timesteps: int
    layers: list[KerasSpikingLayerEnergy]
    synop_j: float
    neuron_j: float
    total_j: float
    source: str
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "spiking": self.spiking,
            "dt": self.dt,
            "timesteps": self.timesteps,
            "layers": [r.to_dict() for r in self.layers],
            "synop_j": self.synop_j,
            "neuron_j": self.neuron_j,
            "total_j": self.total_j,
            "source": self.source,
            "method": self.method,
        }


def keras_spiking_energy(
    layers: Sequence[KSLayer],
    device: DeviceProfile | str,
    *,
    dt: float = 0.001,
    timesteps: int = 1,
) -> KerasSpikingEnergy:
    """Energy per inference as keras-spiking 0.3.0 ModelEnergy.total_energy computes it.

    Spiking device: synop_j = E_synop x connections x rate_hz x dt x timesteps and
    neuron_j = E_neuron x neurons x timesteps. Non-spiking device (one ANN pass, independent of
    rates): synop_j = E_synop x connections, neuron_j = E_neuron x neurons. ``device`` is a
    KerasSpiking name ("cpu", "gpu", "arm", "loihi", "spinnaker", "spinnaker2": its own table),
    or any profile.
    """
    prof = _keras_device(device)
    if dt <= 0:
        raise NeurocxrError(f"dt must be > 0 seconds, got {dt}")
    if timesteps < 1:
        raise NeurocxrError(f"timesteps must be >= 1, got {timesteps}")
    rows: list[KerasSpikingLayerEnergy] = []
    for layer in layers:
        if layer.connections < 0 or layer.neurons < 0 or layer.rate_hz < 0:
            raise NeurocxrError(
                f"KerasSpiking layer {layer.name}: connections, neurons and rate must be >= 0"
            )
        if prof.spiking:
            synop = prof.energy_per_synop_j * layer.connections * layer.rate_hz * dt * timesteps
            neuron = prof.energy_per_neuron_update_j * layer.neurons * timesteps
        else:  # KerasSpiking: input rate 1/dt, a single time step
            synop = prof.energy_per_synop_j * layer.connections * (1.0 / dt) * dt * 1
            neuron = prof.energy_per_neuron_update_j * layer.neurons * 1
        rows.append(
            KerasSpikingLayerEnergy(
                name=layer.name,
                connections=layer.connections,
                neurons=layer.neurons,
                rate_hz=layer.rate_hz,
                synop_j=synop,
                neuron_j=neuron,
                energy_j=synop + neuron,
            )
        )
    synop_total = float(sum(r.synop_j for r in rows))
    neuron_total = float(sum(r.neuron_j for r in rows))
    return KerasSpikingEnergy(
        device=prof.name,
        spiking=prof.spiking,
        dt=dt,
        timesteps=timesteps,
        layers=rows,
        synop_j=synop_total,
        neuron_j=neuron_total,
        total_j=synop_total + neuron_total,
        source=prof.source,
        method="keras-spiking 0.3.0 ModelEnergy formulas",
    )


def keras_spiking_estimate(
    result: KerasSpikingEnergy, *, model: str = "", accuracy: float | None = None
) -> EnergyEstimate:
    """Wrap a keras_spiking_energy result as an EnergyEstimate for the report."""
    return EnergyEstimate(
        model=model,
        device=f"{result.device} (KerasSpiking)",
        dynamic_j=float(result.total_j),
        total_j=None,
        latency_s=None,
        per_layer_j={r.name: float(r.energy_j) for r in result.layers},
        constants={"dt_s": float(result.dt), "timesteps": float(result.timesteps)},
        source=result.source,
        method=result.method,
        accuracy=accuracy,
        notes="KerasSpiking-compatible: average fan-out x mean input rate, every neuron charged every step; "
        "no static power, data movement or overheads.",
        basis="keras-spiking",
        scope="device",
        detail={
            "layers": [r.to_dict() for r in result.layers],
            "dt": result.dt,
            "timesteps": result.timesteps,
        },
        footnotes=_keras_footnotes(result),
    )


def _keras_footnotes(result: KerasSpikingEnergy) -> list[str]:

    notes = [
        "KerasSpiking-compatible row: keras-spiking 0.3.0 ModelEnergy's own formula (average fan-out x mean "
        "input rate; every neuron charged every step; one ANN pass on cpu/gpu/arm); no static power, data "
        "movement or overheads.",
    ]
    if str(result.device).endswith("loihi"):
        notes.append(KERAS_SPIKING_LOIHI_QUIRK)
    return notes


def keras_layers_from_neurobench(
    entries: Sequence[dict[str, Any]], *, dt: float = 0.001
) -> list[KSLayer]:
    """KerasSpiking rows of the float model as KerasSpiking itself sees it (no pooling fused).

    From `neurobench_counts` entries: connections = outputs x fan-in (padding ignored, as
    KerasSpiking does); neurons = the neuron layer after the synapse (0 for the readout);
    rate = mean |input| per element and step / dt (for spikes: the spike rate; for an analog
    image: its mean intensity, which is what KerasSpiking reads). Pooling layers carry no
    KerasSpiking stats and cost nothing there, as in KerasSpiking run on the same Keras model.
    This is the way to reproduce KerasSpiking's numbers for a network with pooling;
    `keras_layers_from_program` charges the chip's fused layers instead.
    """
    rows = []
    for e in entries:
        neurons = int(e["num_neurons"]) if e["has_neuron"] else 0
        if e["kind"] == "input":
            rows.append(KSLayer(e["name"], 0, neurons, 0.0))
            continue
        steps = max(int(e["time_steps"]), 1)
        size = max(int(e.get("input_size") or 0), 1)
        rate = float(np.mean(e["input_abs_sum"])) / (size * steps) / dt
        rows.append(KSLayer(e["name"], int(e["num_neurons"]) * int(e["fan_in"]), neurons, rate))
    return rows


def keras_layers_from_program(
    program: Any, counts: Sequence[LayerCounts], *, dt: float = 0.001
) -> list[KSLayer]:
    """KerasSpiking rows for a LoihiProgram and the LayerCounts of a run of it (one per layer).

    Connections follow KerasSpiking (conv: outputs x kh*kw*C_in/groups, padding ignored; dense:
    in x out); neurons = the layer's neurons (0 for the non-spiking readout); rate = spikes that
    arrived per input element per step (mean over samples) / dt. Layers with a pooling layer fused in
    count the fused kernel's connections; KerasSpiking run on the unfused Keras model would count the
    conv alone and skip the pooling layer (it has no stats for it), so compare on pool-free networks.
    """
    layers = list(program.layers)
    if len(layers) != len(counts):
        raise NeurocxrError(
            f"program has {len(layers)} layers but the run has counts for {len(counts)}"
        )
    rows = []
    for i, (layer, c) in enumerate(zip(layers, counts)):
        neurons = int(layer.num_neurons) if layer.neuron is not None else 0
        if layer.kind == "input":
            rows.append(KSLayer(layer.name, 0, neurons, 0.0))
            continue
        w = np.asarray(layer.weight)
        if layer.kind == "conv":
            connections = int(np.prod(layer.shape)) * int(np.prod(w.shape[1:]))
        else:
            connections = int(w.shape[0]) * int(w.shape[1])
        n_in = int(np.prod(layers[i - 1].shape)) if i > 0 else int(np.prod(program.input_shape))
        steps = max(int(c.time_steps), 1)
        rate = float(np.mean(c.input_spikes)) / (n_in * steps) / dt
        rows.append(KSLayer(layer.name, connections, neurons, rate))
    return rows
