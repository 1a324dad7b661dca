"""How much of a Loihi chip a `LoihiProgram` needs: neurons, synapses, synaptic memory, cores, chips.

The estimate reads the program (the single source of truth), so it counts exactly the integers the
netx file will hold. Chip limits are public figures with their source written next to them; per-core
limits Intel has not published for Loihi 2 are derived from per-chip figures and say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from neurocxr.errors import ResourceError
from neurocxr.exporters.program import ConvLayer, LoihiProgram

LOIHI2_BRIEF = "Intel, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', technology brief, 2021"
LOIHI1_PAPER = "Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', IEEE Micro 38(1), 2018"


@dataclass(frozen=True)
class ChipLimits:
    """Capacity of one neuromorphic chip, per core and per chip, with where each number comes from."""

    name: str = "Loihi 2"
    cores_per_chip: int = 128  # Loihi 2 brief: 128 neuromorphic cores per chip
    neurons_per_chip: int = 1_048_576  # Loihi 2 brief: "up to 1 million neurons" per chip (2**20)
    synapses_per_chip: int = 120_000_000  # Loihi 2 brief: "up to 120 million synapses" per chip
    # Derived, not published per core for Loihi 2: chip figure / 128 cores, assuming even spread.
    neurons_per_core: int = 8192  # 1,048,576 / 128
    synapses_per_core: int = 937_500  # 120,000,000 / 128
    # Synaptic memory per core in bits; None where no public figure exists (Loihi 2 allocates its
    # per-core memory flexibly between synapses and neuron state and does not publish the split).
    synapse_mem_bits_per_core: int | None = None
    # Conv layers: Loihi 1 expands every connection into the synaptic memory. Loihi 2 supports
    # shared (convolutional) weights, but its capacity for them is not public, so by default cores
    # are sized by the expanded synapse count: an upper bound.
    count_expanded_conv_synapses: bool = True
    max_chips: int = 1
    source: str = (
        f"{LOIHI2_BRIEF}: 128 cores, up to 1M neurons and 120M synapses per chip; per-core neuron and "
        "synapse limits derived as chip figure / 128 (Intel does not publish them per core)"
    )


LOIHI2 = ChipLimits()

LOIHI1 = ChipLimits(
    name="Loihi 1",
    cores_per_chip=128,  # Davies 2018: 128 neuromorphic cores
    neurons_per_chip=131_072,  # Davies 2018: 1024 compartments/core x 128 = 131,072 neurons
    synapses_per_chip=130_000_000,  # Davies 2018: up to 130 million synapses per chip
    neurons_per_core=1024,  # Davies 2018: 1024 neural compartments per core
    synapses_per_core=130_000_000 // 128,  # derived: chip figure / 128
    synapse_mem_bits_per_core=128 * 1024 * 8,  # Davies 2018: 128 KB synaptic memory per core
    count_expanded_conv_synapses=True,
    max_chips=1,
    source=f"{LOIHI1_PAPER}: 128 cores, 1024 compartments and 128 KB synaptic memory per core, 130M synapses per chip",
)


@dataclass
class LayerResources:
    """What one layer occupies. ``synapses`` is what is counted against the core limits (expanded
    connections for conv by default); ``stored_weights`` the unique non-zero weights in the file."""

    name: str
    kind: str
    neurons: int
    synapses: int
    stored_weights: int
    expanded_synapses: int
    weight_bits: int
    synaptic_memory_bits: int
    cores: int


@dataclass
class ResourceEstimate:
    """Per-layer resources, totals, and whether the program fits ``limits.max_chips`` chips."""

    layers: list[LayerResources]
    total_neurons: int
    total_synapses: int
    cores: int
    chips: int
    limits: ChipLimits
    fits: bool
    messages: list[str] = field(default_factory=list)


def weight_bits(weight: np.ndarray) -> int:
    """Bits per stored weight: magnitude bits of the largest |w|, plus a sign bit if signs are mixed."""
    w = np.asarray(weight)
    if w.size == 0 or not np.any(w):
        return 0
    magnitude = int(np.abs(w).max()).bit_length()
    return magnitude + (1 if (w.min() < 0 < w.max()) else 0)


def expanded_conv_synapses(layer: ConvLayer, input_shape: tuple[int, ...]) -> int:
    """Exact number of connections a conv realises: for every non-zero kernel weight, the number of
    output positions whose receptive-field tap falls inside the (unpadded) input map."""
    w = np.asarray(layer.weight)
    _, in_h, in_w = input_shape
    _, out_h, out_w = layer.shape
    (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
    nonzero_per_tap = np.count_nonzero(w, axis=(0, 1))  # (kH, kW)

    def valid_positions(k: int, size_out: int, size_in: int, stride: int, pad: int, dil: int) -> int:
        pos = np.arange(size_out) * stride + k * dil - pad
        return int(np.count_nonzero((pos >= 0) & (pos < size_in)))

    total = 0
    for ky in range(w.shape[2]):
        vy = valid_positions(ky, out_h, in_h, sh, ph, dh)
        for kx in range(w.shape[3]):
            total += int(nonzero_per_tap[ky, kx]) * vy * valid_positions(kx, out_w, in_w, sw, pw, dw)
    return total


def layer_cores(neurons: int, synapses: int, synaptic_memory_bits: int, limits: ChipLimits) -> int:
    """Cores one layer needs (layers never share cores): the most of neurons, synapses and synaptic
    memory over their per-core limits, at least one. The timing model uses the same rule."""
    need = [math.ceil(neurons / limits.neurons_per_core), math.ceil(synapses / limits.synapses_per_core)]
    if limits.synapse_mem_bits_per_core:
        need.append(math.ceil(synaptic_memory_bits / limits.synapse_mem_bits_per_core))
    return max(1, *need)


def estimate_resources(program: LoihiProgram, limits: ChipLimits = LOIHI2) -> ResourceEstimate:
    """Count neurons, synapses, memory and cores per layer; cores never share layers here."""
    rows: list[LayerResources] = []
    messages: list[str] = []
    source_shape = program.input_shape
    for layer in program.layers:
        if layer.kind == "input":
            neurons = layer.num_neurons if layer.neuron is not None else 0
            if layer.neuron is None:
                messages.append("input spikes come from the host / embedded cores: not counted on neuromorphic cores")
            cores = math.ceil(neurons / limits.neurons_per_core) if neurons else 0
            rows.append(LayerResources(layer.name, "input", neurons, 0, 0, 0, 0, 0, cores))
            source_shape = layer.shape
            continue
        w = np.asarray(layer.weight)
        stored = int(np.count_nonzero(w))
        if layer.kind == "conv":
            expanded = expanded_conv_synapses(layer, source_shape)
            synapses = expanded if limits.count_expanded_conv_synapses else stored
        else:
            expanded = stored
            synapses = stored
        bits = weight_bits(w)
        mem_bits = synapses * bits
        neurons = layer.num_neurons
        cores = layer_cores(neurons, synapses, mem_bits, limits)
        kind = "readout" if layer.is_readout else layer.kind
        rows.append(LayerResources(layer.name, kind, neurons, synapses, stored, expanded, bits, mem_bits, cores))
        source_shape = layer.shape
    total_neurons = sum(r.neurons for r in rows)
    total_synapses = sum(r.synapses for r in rows)
    cores = sum(r.cores for r in rows)
    chips = max(
        math.ceil(cores / limits.cores_per_chip),
        math.ceil(total_neurons / limits.neurons_per_chip),
        math.ceil(total_synapses / limits.synapses_per_chip),
        1,
    )
    if limits.count_expanded_conv_synapses and any(r.kind == "conv" for r in rows):
        messages.append("conv synapses counted expanded (every connection stored): an upper bound on Loihi 2")
    fits = chips <= limits.max_chips
    if not fits:
        messages.append(f"needs {chips} {limits.name} chips ({cores} cores); {limits.max_chips} allowed")
    return ResourceEstimate(rows, total_neurons, total_synapses, cores, chips, limits, fits, messages)


def check_fits(estimate: ResourceEstimate) -> None:
    """Raise ResourceError naming the biggest layers and what to try when the program does not fit."""
    if estimate.fits:
        return
    lim = estimate.limits
    capacity_cores = lim.cores_per_chip * lim.max_chips
    worst = sorted(estimate.layers, key=lambda r: r.cores, reverse=True)[:3]
    detail = ", ".join(
        f"{r.name} ({r.kind}: {r.neurons:,} neurons, {r.synapses:,} synapses -> {r.cores} cores)" for r in worst
    )
    over = []
    if estimate.cores > capacity_cores:
        over.append(f"{estimate.cores} cores vs {capacity_cores}")
    if estimate.total_neurons > lim.neurons_per_chip * lim.max_chips:
        over.append(f"{estimate.total_neurons:,} neurons vs {lim.neurons_per_chip * lim.max_chips:,}")
    if estimate.total_synapses > lim.synapses_per_chip * lim.max_chips:
        over.append(f"{estimate.total_synapses:,} synapses vs {lim.synapses_per_chip * lim.max_chips:,}")
    raise ResourceError(
        f"the network needs {estimate.chips} {lim.name} chip(s) but {lim.max_chips} allowed "
        f"({'; '.join(over)}). Largest layers: {detail}. Try fewer channels or hidden units, more pooling or "
        f"stride before the big layers, or allow more chips (ChipLimits(max_chips={estimate.chips}))"
    )
