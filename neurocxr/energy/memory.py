"""Memory-inclusive energy on conventional hardware: arithmetic plus moving weights and activations.

The arithmetic-only rows (4.6 pJ per fp32 MAC) leave out what usually dominates on a CPU, GPU or
accelerator: reading weights and activations from memory. Loihi's per-op energies include its
synaptic memory, so comparing them with arithmetic-only CNN figures compares unlike things. This
module charges the memory traffic too, with Horowitz's 45 nm access energies (ISSCC 2014):

- on-chip SRAM, per 64-bit read: 10 pJ (8 KB), 20 pJ (32 KB), 100 pJ (1 MB); a buffer is charged
  at the smallest of these sizes that holds its data (a step function, no interpolation);
- off-chip DRAM when the data exceed 1 MB: 1.3-2.6 nJ per 64 bits; the lower end is charged, the
  upper end is reported in ``detail`` (``memory_j_dram_high``).
A write is charged like a read (Horowitz gives reads only).

Dataflow assumed (stated in every result):
- CNN, weight-stationary: each weight is read once per batch (``batch`` images share it), each
  layer reads its input activations once and writes its outputs once; ReLU, batch norm and pooling
  are fused into the producing layer (no extra traffic). Weights sit in one buffer sized by all
  the model's weights; activations in one buffer sized by the largest layer's input + output.
- SNN on the same hardware, the same favourable dataflow, layer by layer with time inside: a
  layer's weights are read once per inference and stay resident while it runs all T steps; every
  step it reads its input (1 bit per spike, packed; ``act_bits`` per value when analog-fed) and
  writes its output spikes, and reads and writes the membrane state of its neurons (``state_bits``
  each). Arithmetic as the NeuroBench-rule arithmetic row: effective ops, ACs for spike-fed
  layers, MACs for analog-fed ones. Use the NeuroBench (float-model) counts for this row where
  available: conventional hardware runs the unfused network (pooling is cheap there), while chip
  counts carry the fused pooling's larger kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from torch import nn

from neurocxr.energy.estimate import BASIS_TEXT, _check_basis
from neurocxr.energy.macs import torch_layer_traffic
from neurocxr.energy.profiles import get_profile
from neurocxr.energy.types import EnergyEstimate
from neurocxr.errors import NeurocxrError
from neurocxr.hardware_sims.results import LayerCounts

HOROWITZ = "Horowitz, ISSCC 2014, 45 nm: SRAM 64-bit read 10/20/100 pJ (8 KB/32 KB/1 MB), DRAM 1.3-2.6 nJ per 64 bits"
# (buffer capacity in bytes, energy per 64-bit access in J), Horowitz 2014
SRAM_64BIT_J: tuple[tuple[int, float], ...] = (
    (8 * 1024, 10e-12),
    (32 * 1024, 20e-12),
    (1024 * 1024, 100e-12),
)
DRAM_64BIT_J = (1.3e-9, 2.6e-9)  # Horowitz 2014: low, high

# bits of weights / activations / membrane state, and the arithmetic profile of each precision
PRECISIONS: dict[str, dict[str, Any]] = {
    "fp32": {"weight_bits": 32, "act_bits": 32, "state_bits": 32, "profile": "horowitz45-fp32"},
    # int8 weights and activations; an SNN's membrane kept at 16 bits (8 bits would overflow)
    "int8": {"weight_bits": 8, "act_bits": 8, "state_bits": 16, "profile": "horowitz45-int8"},
}

CNN_DATAFLOW = (
    "Weight-stationary dataflow: each weight read once per batch, each layer reads its input activations "
    "once and writes its outputs once; ReLU/batch norm/pooling fused into the producing layer; weights and "
    "activations each in one buffer charged at the smallest Horowitz SRAM size that holds them, DRAM above 1 MB "
    "(lower end 1.3 nJ per 64 bits; a write costs a read)."
)
SNN_DATAFLOW = (
    "SNN on the same hardware, layer by layer with time inside: each weight read once per inference; every step "
    "each layer reads its input (1 bit per spike, full precision when analog-fed), writes its output spikes, and "
    "reads and writes its neurons' membrane state; arithmetic = effective ops (AC when spike-fed, MAC when "
    "analog-fed); buffers priced as for the CNN."
)


def access_energy_64bit(nbytes: float) -> tuple[float, float, str]:
    """(J per 64-bit access, upper-end J, where) for a buffer that must hold ``nbytes``."""
    for capacity, energy in SRAM_64BIT_J:
        if nbytes <= capacity:
            return energy, energy, f"SRAM <= {capacity // 1024} KB"
    return DRAM_64BIT_J[0], DRAM_64BIT_J[1], "DRAM (> 1 MB)"


def _words(bits: float) -> float:
    return bits / 64.0


def _precision(precision: str) -> dict[str, Any]:
    if precision not in PRECISIONS:
        raise NeurocxrError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def memory_inclusive_cnn(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    precision: str = "fp32",
    batch: int = 1,
    name: str = "",
    accuracy: float | None = None,
) -> EnergyEstimate:
    """Arithmetic + memory energy per inference of a CNN on conventional hardware (see module doc)."""
    p = _precision(precision)
    if batch < 1:
        raise NeurocxrError(f"batch must be >= 1, got {batch}")
    prof = get_profile(p["profile"])
    assert prof.energy_per_mac_j is not None
    rows = torch_layer_traffic(model, input_shape)
    if not rows:
        raise NeurocxrError("the model has no Conv/Linear layer to count")
    weight_bytes = sum(r.weights for r in rows) * p["weight_bits"] / 8
    act_bytes = max((r.input_elements + r.output_elements) * p["act_bits"] / 8 for r in rows)
    e_w, e_w_hi, where_w = access_energy_64bit(weight_bytes)
    e_a, e_a_hi, where_a = access_energy_64bit(act_bytes)
    per_layer: dict[str, float] = {}
    detail_rows = []
    arith_total = mem_total = mem_high = 0.0
    for r in rows:
        arith = r.macs * prof.energy_per_mac_j
        w_words = _words(r.weights * p["weight_bits"]) / batch
        a_words = _words((r.input_elements + r.output_elements) * p["act_bits"])
        mem = w_words * e_w + a_words * e_a
        per_layer[r.name] = arith + mem
        arith_total += arith
        mem_total += mem
        mem_high += w_words * e_w_hi + a_words * e_a_hi
        detail_rows.append({**asdict(r), "arithmetic_j": arith, "memory_j": mem})
    footnotes = [
        CNN_DATAFLOW,
        f"Memory energies: {HOROWITZ}. Arithmetic: {prof.source}.",
        f"Weights ({weight_bytes / 1024:.1f} KB at {p['weight_bits']} bit) from {where_w}; activations "
        f"(largest layer {act_bytes / 1024:.1f} KB) from {where_a}; batch {batch}.",
    ]
    return EnergyEstimate(
        model=name,
        device=f"conventional {precision} (memory-inclusive)",
        dynamic_j=arith_total + mem_total,
        total_j=None,
        latency_s=None,
        per_layer_j=per_layer,
        constants={
            "energy_per_mac_j": prof.energy_per_mac_j,
            "weight_access_64bit_j": e_w,
            "activation_access_64bit_j": e_a,
        },
        source=f"{HOROWITZ}; {prof.source}",
        method="MACs x E_MAC + 64-bit words of weights and activations moved x access energy",
        accuracy=accuracy,
        notes=" ".join(footnotes),
        basis="cnn",
        scope="memory-inclusive",
        detail={
            "arithmetic_j": arith_total,
            "memory_j": mem_total,
            "memory_j_dram_high": mem_high,
            "weight_bytes": weight_bytes,
            "weight_buffer": where_w,
            "activation_bytes": act_bytes,
            "activation_buffer": where_a,
            "precision": precision,
            "batch": batch,
            "per_layer": detail_rows,
        },
        footnotes=footnotes,
    )


def _snn_layer_inputs(
    counts: Sequence[LayerCounts],
    input_elements: int | None,
    input_sizes: Sequence[int | None] | None,
    op_types: Sequence[str | None] | None,
) -> list[tuple[LayerCounts, int, str]]:
    """(counts, input elements, op type) of each synaptic layer: the input size is ``input_sizes[i]``
    when given, else the previous entry's neurons, else ``input_elements``."""
    layers = []
    prev_neurons = input_elements
    for i, c in enumerate(counts):
        if c.kind == "input":
            prev_neurons = int(c.num_neurons)
            continue
        if input_sizes is not None and input_sizes[i]:
            prev_neurons = int(input_sizes[i])  # type: ignore[arg-type]
        if prev_neurons is None:
            raise NeurocxrError(
                f"layer {c.name}: input size unknown; pass input_elements (pixels per image)"
            )
        op = (op_types[i] if op_types is not None else None) or "AC"
        layers.append((c, int(prev_neurons), op))
        prev_neurons = int(c.num_neurons)
    return layers


def _snn_layer_words(
    c: LayerCounts, n_in: int, op: str, p: dict[str, Any], steps: int
) -> tuple[float, float]:
    """64-bit words one layer moves per inference: (weights, once; inputs + spikes + membranes, every step)."""
    has_neurons = (
        float(np.mean(np.asarray(c.neuron_updates, dtype=np.float64))) > 0
        or c.kind == "dense_readout"
    )
    in_bits = n_in * (p["act_bits"] if op == "MAC" else 1)
    out_bits = int(c.num_neurons) * (1 if has_neurons and c.kind != "dense_readout" else 0)
    state_bits = 2 * int(c.num_neurons) * p["state_bits"]  # read + write every step
    w_words = _words(int(c.num_synapses) * p["weight_bits"])  # resident over the T steps
    return w_words, _words(in_bits + out_bits + state_bits) * steps


def memory_inclusive_snn(
    counts: Sequence[LayerCounts],
    *,
    input_elements: int | None = None,
    input_sizes: Sequence[int | None] | None = None,
    op_types: Sequence[str | None] | None = None,
    precision: str = "fp32",
    name: str = "",
    accuracy: float | None = None,
    basis: str = "chip",
) -> EnergyEstimate:
    """Arithmetic + memory energy per inference of an SNN run time-stepped on conventional hardware.

    ``counts``: per-layer counts (chip or NeuroBench basis). A layer's input size is
    ``input_sizes[i]`` when given (e.g. NeuroBench entries' ``input_size``: the pooled map), else
    the previous entry's neurons, and ``input_elements`` for a first synaptic layer without an
    input entry. ``op_types`` as in `estimate_snn_ac_energy` (default: every layer spike-fed).
    """

    p = _precision(precision)
    _check_basis(basis)
    prof = get_profile(p["profile"])
    assert prof.energy_per_mac_j is not None and prof.energy_per_ac_j is not None
    if not counts:
        raise NeurocxrError("no layer counts given: run the program (emulator or Lava) first")
    if op_types is not None and len(op_types) != len(counts):
        raise NeurocxrError(
            f"op_types has {len(op_types)} entries but there are {len(counts)} layer counts"
        )
    if input_sizes is not None and len(input_sizes) != len(counts):
        raise NeurocxrError(
            f"input_sizes has {len(input_sizes)} entries but there are {len(counts)} layer counts"
        )
    layers = _snn_layer_inputs(counts, input_elements, input_sizes, op_types)
    steps = max(int(max(c.time_steps for c in counts)), 1)
    weight_bytes = sum(int(c.num_synapses) for c, _, _ in layers) * p["weight_bits"] / 8
    act_bytes = max(
        (n_in * (p["act_bits"] if op == "MAC" else 1) + int(c.num_neurons) * (1 + p["state_bits"]))
        / 8
        for c, n_in, op in layers
    )
    e_w, e_w_hi, where_w = access_energy_64bit(weight_bytes)
    e_a, e_a_hi, where_a = access_energy_64bit(act_bytes)
    per_layer: dict[str, float] = {}
    detail_rows = []
    arith_total = mem_total = mem_high = 0.0
    for c, n_in, op in layers:
        ops = float(np.mean(np.asarray(c.synaptic_ops, dtype=np.float64)))
        arith = ops * (prof.energy_per_mac_j if op == "MAC" else prof.energy_per_ac_j)
        w_words, a_words = _snn_layer_words(c, n_in, op, p, steps)
        mem = w_words * e_w + a_words * e_a
        per_layer[c.name] = arith + mem
        arith_total += arith
        mem_total += mem
        mem_high += w_words * e_w_hi + a_words * e_a_hi
        detail_rows.append(
            {
                "name": c.name,
                "op_type": op,
                "ops": ops,
                "weights": int(c.num_synapses),
                "input_elements": n_in,
                "neurons": int(c.num_neurons),
                "arithmetic_j": arith,
                "memory_j": mem,
            }
        )
    footnotes = [
        SNN_DATAFLOW,
        f"Memory energies: {HOROWITZ}. Arithmetic: {prof.source}.",
        f"{steps} time steps; weights ({weight_bytes / 1024:.1f} KB at {p['weight_bits']} bit) from {where_w}; "
        f"spikes and {p['state_bits']}-bit membranes (largest layer {act_bytes / 1024:.1f} KB) from {where_a}.",
        f"Counting basis: {BASIS_TEXT[basis]}.",
    ]
    return EnergyEstimate(
        model=name,
        device=f"conventional {precision} (memory-inclusive)",
        dynamic_j=arith_total + mem_total,
        total_j=None,
        latency_s=None,
        per_layer_j=per_layer,
        constants={
            "energy_per_mac_j": prof.energy_per_mac_j,
            "energy_per_ac_j": prof.energy_per_ac_j,
            "weight_access_64bit_j": e_w,
            "activation_access_64bit_j": e_a,
        },
        source=f"{HOROWITZ}; {prof.source}",
        method="effective ops x E_AC/E_MAC + 64-bit words of weights, spikes and membranes moved x access energy",
        accuracy=accuracy,
        notes=" ".join(footnotes),
        basis=basis,
        scope="memory-inclusive",
        detail={
            "arithmetic_j": arith_total,
            "memory_j": mem_total,
            "memory_j_dram_high": mem_high,
            "weight_bytes": weight_bytes,
            "weight_buffer": where_w,
            "activation_bytes": act_bytes,
            "activation_buffer": where_a,
            "precision": precision,
            "time_steps": steps,
            "per_layer": detail_rows,
        },
        footnotes=footnotes,
    )


__all__ = [
    "access_energy_64bit",
    "memory_inclusive_cnn",
    "memory_inclusive_snn",
    "PRECISIONS",
    "SRAM_64BIT_J",
    "DRAM_64BIT_J",
]
