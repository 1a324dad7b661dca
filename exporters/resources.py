"""How much of a Loihi chip a `LoihiProgram` needs: neurons, synapses, synaptic memory, cores, chips.

The estimate reads the program (the single source of truth), so it counts exactly the integers the
netx file will hold. Chip limits are public figures with their source written next to them; per-core
limits Intel has not published for Loihi 2 are named parameters that say so (``ChipLimits.citations``).

Two partition rules (``ChipLimits.partition``):
- ``"fewest"`` (Loihi 1): every layer on the fewest cores its neurons, synapses and synaptic memory
  allow, its work split evenly over them.
- ``"compiler"`` (Loihi 2): what Intel's Loihi 2 compiler does with conv and dense layers, as its
  per-core distribution printed in lava-dl's PilotNet benchmark notebooks shows
  (``tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb``): a conv layer is cut into slabs of
  whole (H x C) output columns, its kernel stored once per core (shared weights); a dense layer is
  cut into neuron groups whose fan-in x group size fits the core's synaptic memory; every core
  also respects the CUBA neuron, input-axon and output-axon limits. The Loihi 2 partitioner is not
  in the open-source Lava, so this is a model of it, built from public limits only; nothing is
  fitted to a board result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from neurocxr.errors import ResourceError
from neurocxr.exporters.program import ConvLayer, LoihiProgram

LOIHI2_BRIEF = (
    "Intel, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', technology brief, 2021"
)
LOIHI1_PAPER = "Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', IEEE Micro 38(1), 2018"


LOIHI2_COMPILE_LOG = (
    "Loihi 2 compiler output printed in lava-dl's tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb and "
    "pilotnet_sdnn/benchmark.ipynb (Intel, 2022): per-core distribution of the PilotNet networks"
)

# Where each Loihi 2 per-core limit comes from, and where it is not public (ChipLimits.citations).
LOIHI2_CITATIONS: tuple[tuple[str, str], ...] = (
    ("cores_per_chip", f"{LOIHI2_BRIEF}: 128 neuromorphic cores per chip"),
    ("neurons_per_chip", f"{LOIHI2_BRIEF}: up to 1 million neurons per chip"),
    ("synapses_per_chip", f"{LOIHI2_BRIEF}: up to 120 million synapses per chip"),
    (
        "neurons_per_core",
        f"{LOIHI2_BRIEF}: up to 8,192 neurons per core (1,048,576 / 128) for the simplest neuron model",
    ),
    (
        "cuba_neurons_per_core",
        "Not public. A CUBA LIF neuron keeps two state variables (current u and voltage v), so half of the 8,192 "
        "neuron-state slots per core: 4,096 (assumption). Consistent with the compile log of the PilotNet networks, "
        "where no core holds more than 3,168 CUBA neurons.",
    ),
    (
        "synapse_mem_bits_per_core",
        f"Not public for Loihi 2 (its per-core memory is shared flexibly between synapses, neuron state and routing). "
        f"Loihi 1's 128 KB of synaptic memory per core ({LOIHI1_PAPER}) is used.",
    ),
    (
        "synapses_per_core",
        "derived: 120,000,000 synapses per chip / 128 cores (not published per core)",
    ),
    (
        "axons_in_per_core",
        "Not public for Loihi 2. Loihi 1's 4,096 input axons per core (Intel NxSDK core limits) is used; the compile "
        "log places a dense layer's 2,560 input axons on single cores.",
    ),
    (
        "axons_out_per_core",
        "Not public for Loihi 2. Loihi 1's 4,096 output axons per core (Intel NxSDK core limits) is used.",
    ),
    (
        "shared_conv_weights",
        f"{LOIHI2_BRIEF} (convolutional connectivity with shared weights); the compile log ({LOIHI2_COMPILE_LOG}) "
        "shows conv cores storing 81-2,880 synapses for layers that realise millions of connections.",
    ),
    (
        "partition",
        f"compiler-like: conv layers in slabs of whole (H x C) columns, dense layers in groups sized by "
        f"synaptic memory, as in the compile log ({LOIHI2_COMPILE_LOG}); the partitioner itself is not public",
    ),
)


@dataclass(frozen=True)
class ChipLimits:
    """Capacity of one neuromorphic chip, per core and per chip, with where each number comes from.

    ``partition``: ``"fewest"`` (each layer on the fewest cores, work split evenly) or
    ``"compiler"`` (conv slabs of whole columns with shared weights, dense groups sized by synaptic
    memory; module docstring). ``cuba_neurons_per_core``, ``axons_in_per_core``,
    ``axons_out_per_core`` and ``shared_conv_weights`` are used by the compiler rule only.
    ``citations``: (parameter, source or "not public" note) pairs.
    """

    name: str = "Loihi 2"
    cores_per_chip: int = 128  # Loihi 2 brief: 128 neuromorphic cores per chip
    neurons_per_chip: int = 1_048_576  # Loihi 2 brief: "up to 1 million neurons" per chip (2**20)
    synapses_per_chip: int = 120_000_000  # Loihi 2 brief: "up to 120 million synapses" per chip
    neurons_per_core: int = 8192  # Loihi 2 brief: up to 8,192 neurons per core (1,048,576 / 128)
    synapses_per_core: int = 937_500  # derived: 120,000,000 / 128 (not published per core)
    # Synaptic memory per core in bits; None where no figure is used. Loihi 2's is not public: Loihi 1's 128 KB.
    synapse_mem_bits_per_core: int | None = 128 * 1024 * 8
    # Count conv synapses as every realised connection (Loihi 1 expands conv weights into synaptic memory).
    # Under the compiler rule with shared weights, cores are sized by the stored kernel instead; the
    # expanded count is kept for the chip-level synapse total (an upper bound there).
    count_expanded_conv_synapses: bool = True
    max_chips: int = 1
    source: str = (
        f"{LOIHI2_BRIEF}: 128 cores, up to 1M neurons and 120M synapses per chip; per-core limits Intel does not "
        "publish for Loihi 2 are named parameters saying so (ChipLimits.citations)"
    )
    partition: str = "compiler"
    cuba_neurons_per_core: int | None = (
        4096  # not public: 8,192 state slots / 2 states of CUBA LIF (assumption)
    )
    axons_in_per_core: int | None = 4096  # not public for Loihi 2: Loihi 1's NxSDK limit
    axons_out_per_core: int | None = 4096  # not public for Loihi 2: Loihi 1's NxSDK limit
    shared_conv_weights: bool = (
        True  # Loihi 2 brief: convolutional connectivity with shared weights
    )
    citations: tuple[tuple[str, str], ...] = LOIHI2_CITATIONS

    def cited(self) -> dict[str, str]:
        """Parameter -> where its value comes from (or why it is not public)."""
        return dict(self.citations)


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
    partition="fewest",
    cuba_neurons_per_core=None,
    axons_in_per_core=None,
    axons_out_per_core=None,
    shared_conv_weights=False,
    citations=(("all", f"{LOIHI1_PAPER}"),),
)


@dataclass
class LayerResources:
    """What one layer occupies. ``synapses`` is what is counted against the chip limits (expanded
    connections for conv by default); ``stored_weights`` the unique non-zero weights in the file.
    ``max_core_neurons``: neurons on the fullest core of the layer (its share of the layer's work);
    ``binding_limit``: which per-core limit set the number of cores."""

    name: str
    kind: str
    neurons: int
    synapses: int
    stored_weights: int
    expanded_synapses: int
    weight_bits: int
    synaptic_memory_bits: int
    cores: int
    max_core_neurons: int = 0
    binding_limit: str = ""
    axons_in_per_core: int = 0

    @property
    def max_core_share(self) -> float:
        """Fraction of the layer's neurons (and so of its work) on its fullest core."""
        if self.cores <= 0 or self.neurons <= 0:
            return 0.0
        if self.max_core_neurons <= 0:
            return 1.0 / self.cores
        return min(1.0, self.max_core_neurons / self.neurons)


@dataclass
class CorePartition:
    """How the compiler rule cuts one layer: cores, neurons on the fullest core, what bound it."""

    cores: int
    max_core_neurons: int
    binding_limit: str
    axons_in_per_core: int
    messages: list[str] = field(default_factory=list)


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

    def valid_positions(
        k: int, size_out: int, size_in: int, stride: int, pad: int, dil: int
    ) -> int:
        pos = np.arange(size_out) * stride + k * dil - pad
        return int(np.count_nonzero((pos >= 0) & (pos < size_in)))

    total = 0
    for ky in range(w.shape[2]):
        vy = valid_positions(ky, out_h, in_h, sh, ph, dh)
        for kx in range(w.shape[3]):
            total += (
                int(nonzero_per_tap[ky, kx]) * vy * valid_positions(kx, out_w, in_w, sw, pw, dw)
            )
    return total


def layer_cores(neurons: int, synapses: int, synaptic_memory_bits: int, limits: ChipLimits) -> int:
    """Cores one layer needs under the "fewest" rule (layers never share cores): the most of
    neurons, synapses and synaptic memory over their per-core limits, at least one."""
    need = [
        math.ceil(neurons / limits.neurons_per_core),
        math.ceil(synapses / limits.synapses_per_core),
    ]
    if limits.synapse_mem_bits_per_core:
        need.append(math.ceil(synaptic_memory_bits / limits.synapse_mem_bits_per_core))
    return max(1, *need)


def _neuron_cap(limits: ChipLimits, spiking: bool) -> tuple[int, str]:
    """Neurons one core may hold, and the name of that limit."""
    if spiking and limits.cuba_neurons_per_core:
        cap, name = (
            min(limits.neurons_per_core, limits.cuba_neurons_per_core),
            "cuba_neurons_per_core",
        )
    else:
        cap, name = limits.neurons_per_core, "neurons_per_core"
    if spiking and limits.axons_out_per_core and limits.axons_out_per_core < cap:
        # every spiking neuron needs at least one output-axon routing entry on its core
        cap, name = limits.axons_out_per_core, "axons_out_per_core"
    return cap, name


def _floor_pow2(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


def partition_map(
    shape: tuple[int, int, int],
    cap: int,
    kernel_bits_per_channel: int,
    limits: ChipLimits,
    cap_name: str,
) -> CorePartition:
    """Cut a (C, H, W) map as the Loihi 2 compiler cuts conv layers: slabs of whole (H x C) columns
    along W, the widest power of two columns that stays below ``cap`` neurons; a column too big for
    one core is cut along H (a power of two rows), after C. This reproduces the slabs Intel's
    compiler prints for all six maps of the PilotNet LIF network (16, 4, 4, 8, 8 and 16 columns;
    no core filled to 4,096). With shared weights each core stores the kernel of its channels
    (``kernel_bits_per_channel`` x channels on the core)."""
    c, h, w = shape
    tc, limit = c, cap_name
    mem = limits.synapse_mem_bits_per_core
    if mem and kernel_bits_per_channel and tc * kernel_bits_per_channel > mem:
        tc, limit = max(1, mem // kernel_bits_per_channel), "synapse_mem_bits_per_core"
    tc = min(tc, max(1, cap - 1))
    below = max(1, cap - 1)  # neurons a slab may hold: fewer than the cap
    if h * tc <= below:
        th, tw = h, _floor_pow2(min(w, below // (h * tc)))
    else:
        th, tw = _floor_pow2(max(1, below // tc)), 1
    cores = math.ceil(c / tc) * math.ceil(h / th) * math.ceil(w / tw)
    return CorePartition(cores, tc * th * tw, limit, 0)


def partition_dense(
    neurons: int, fan_in: int, bits_per_neuron: int, cap: int, limits: ChipLimits, cap_name: str
) -> CorePartition:
    """Cut a dense layer into neuron groups: as many neurons per core as the neuron limit and the
    synaptic memory (each neuron stores its row of ``bits_per_neuron``) allow."""
    messages: list[str] = []
    per_core, limit = min(cap, neurons), cap_name
    mem = limits.synapse_mem_bits_per_core
    if mem and bits_per_neuron:
        by_mem = mem // bits_per_neuron
        if by_mem < 1:
            messages.append(
                f"one neuron's {bits_per_neuron:,} bits of synapses exceed a core's synaptic memory "
                f"({mem:,} bits): the layer does not map without splitting its fan-in"
            )
            by_mem = 1
        if by_mem < per_core:
            per_core, limit = by_mem, "synapse_mem_bits_per_core"
    if limits.axons_in_per_core and fan_in > limits.axons_in_per_core:
        messages.append(
            f"fan-in {fan_in:,} exceeds the {limits.axons_in_per_core:,} input axons of a core: a "
            "compiler must split the input over several cores (not modelled; cores undercounted)"
        )
    cores = math.ceil(neurons / per_core)
    return CorePartition(cores, min(per_core, neurons), limit, fan_in, messages)


def compiler_partition(
    layer: object, source_shape: tuple[int, ...], limits: ChipLimits
) -> CorePartition:
    """Cores of one layer under the compiler rule (module docstring)."""
    kind = getattr(layer, "kind", "")
    shape = tuple(int(s) for s in layer.shape)  # type: ignore[attr-defined]
    neurons = int(np.prod(shape))
    spiking = getattr(layer, "neuron", None) is not None
    cap, cap_name = _neuron_cap(limits, spiking)
    if kind == "input":  # input neurons driven by bias: neurons only, no synapses
        if len(shape) == 3:
            return partition_map(shape, cap, 0, limits, cap_name)  # type: ignore[arg-type]
        return partition_dense(neurons, 0, 0, cap, limits, cap_name)
    w = np.asarray(layer.weight)  # type: ignore[attr-defined]
    bits = weight_bits(w)
    if kind == "conv" and limits.shared_conv_weights and len(shape) == 3:
        cout = w.shape[0]
        kernel_bits = (
            int(np.count_nonzero(w)) * bits // max(cout, 1)
        )  # stored kernel bits per output channel
        part = partition_map(shape, cap, max(kernel_bits, 0), limits, cap_name)  # type: ignore[arg-type]
        # input axons: one per source core feeding the slab (shared-weight axons), never binding here
        part.axons_in_per_core = 1
        return part
    # a recurrent dense layer (dense_rec) also stores its recurrent matrix: its joint weight holds both
    joint = np.asarray(getattr(layer, "joint_weight", w))
    fan_in = int(getattr(layer, "fan_in", int(np.prod(w.shape[1:]))))
    stored, bits = int(np.count_nonzero(joint)), weight_bits(joint)
    rows = max(neurons, 1)
    bits_per_neuron = math.ceil(stored / rows) * bits
    return partition_dense(neurons, fan_in, bits_per_neuron, cap, limits, cap_name)


def estimate_resources(program: LoihiProgram, limits: ChipLimits = LOIHI2) -> ResourceEstimate:
    """Count neurons, synapses, memory and cores per layer; cores never share layers here."""
    rows: list[LayerResources] = []
    messages: list[str] = []
    source_shape = program.input_shape
    compiler = limits.partition == "compiler"
    for layer in program.layers:
        if layer.kind == "input":
            neurons = layer.num_neurons if layer.neuron is not None else 0
            if layer.neuron is None:
                messages.append(
                    "input spikes come from the host / embedded cores: not counted on neuromorphic cores"
                )
            if neurons and compiler:
                part = compiler_partition(layer, source_shape, limits)
                rows.append(
                    LayerResources(
                        layer.name,
                        "input",
                        neurons,
                        0,
                        0,
                        0,
                        0,
                        0,
                        part.cores,
                        part.max_core_neurons,
                        part.binding_limit,
                        0,
                    )
                )
            else:
                cores = math.ceil(neurons / limits.neurons_per_core) if neurons else 0
                rows.append(LayerResources(layer.name, "input", neurons, 0, 0, 0, 0, 0, cores))
            source_shape = layer.shape
            continue
        # recurrent dense layers store input and recurrent weights together (netx packs them jointly)
        w = np.asarray(getattr(layer, "joint_weight", layer.weight))
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
        kind = "readout" if layer.is_readout else layer.kind
        if compiler:
            part = compiler_partition(layer, source_shape, limits)
            messages.extend(f"{layer.name}: {m}" for m in part.messages)
            rows.append(
                LayerResources(
                    layer.name,
                    kind,
                    neurons,
                    synapses,
                    stored,
                    expanded,
                    bits,
                    mem_bits,
                    part.cores,
                    part.max_core_neurons,
                    part.binding_limit,
                    part.axons_in_per_core,
                )
            )
        else:
            cores = layer_cores(neurons, synapses, mem_bits, limits)
            rows.append(
                LayerResources(
                    layer.name, kind, neurons, synapses, stored, expanded, bits, mem_bits, cores
                )
            )
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
        if compiler and limits.shared_conv_weights:
            messages.append(
                "conv layers: cores sized by their shared kernels; the chip's synapse total counts every "
                "realised connection (an upper bound)"
            )
        else:
            messages.append(
                "conv synapses counted expanded (every connection stored): an upper bound on Loihi 2"
            )
    fits = chips <= limits.max_chips
    if not fits:
        messages.append(
            f"needs {chips} {limits.name} chips ({cores} cores); {limits.max_chips} allowed"
        )
    return ResourceEstimate(
        rows, total_neurons, total_synapses, cores, chips, limits, fits, messages
    )


def check_fits(estimate: ResourceEstimate) -> None:
    """Raise ResourceError naming the biggest layers and what to try when the program does not fit."""
    if estimate.fits:
        return
    lim = estimate.limits
    capacity_cores = lim.cores_per_chip * lim.max_chips
    worst = sorted(estimate.layers, key=lambda r: r.cores, reverse=True)[:3]
    detail = ", ".join(
        f"{r.name} ({r.kind}: {r.neurons:,} neurons, {r.synapses:,} synapses -> {r.cores} cores)"
        for r in worst
    )
    over = []
    if estimate.cores > capacity_cores:
        over.append(f"{estimate.cores} cores vs {capacity_cores}")
    if estimate.total_neurons > lim.neurons_per_chip * lim.max_chips:
        over.append(
            f"{estimate.total_neurons:,} neurons vs {lim.neurons_per_chip * lim.max_chips:,}"
        )
    if estimate.total_synapses > lim.synapses_per_chip * lim.max_chips:
        over.append(
            f"{estimate.total_synapses:,} synapses vs {lim.synapses_per_chip * lim.max_chips:,}"
        )
    raise ResourceError(
        f"the network needs {estimate.chips} {lim.name} chip(s) but {lim.max_chips} allowed "
        f"({'; '.join(over)}). Largest layers: {detail}. Try fewer channels or hidden units, more pooling or "
        f"stride before the big layers, or allow more chips (ChipLimits(max_chips={estimate.chips}))"
    )
