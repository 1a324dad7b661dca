"""The standard set of energy rows for a report, as plain data (the report only lays them out).

- `snn_estimates`: an SNN's rows from its chip counts (and, when given, its NeuroBench float-model
  counts): every neuromorphic profile with the parallel timing model, KerasSpiking-compatible rows,
  arithmetic rows by NeuroBench's AC/MAC rule, and memory-inclusive rows for conventional hardware.
- `cnn_estimates`: a CNN baseline's arithmetic-only and memory-inclusive rows (fp32 and int8), from
  the one MAC counter.
- `counting_bases`: both bases per layer with the ratio and why they differ.

Every row is an `EnergyEstimate` whose ``basis`` says which counts it uses ("chip", "neurobench",
"cnn", "keras-spiking") and whose ``scope`` says what it charges ("device", "arithmetic",
"memory-inclusive").
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from neurocxr.energy.bases import BasisComparison, compare_bases
from neurocxr.energy.estimate import (
    count_cnn_macs,
    estimate_ann_energy,
    estimate_energy,
    estimate_snn_ac_energy,
    keras_layers_from_neurobench,
    keras_layers_from_program,
    keras_spiking_energy,
    keras_spiking_estimate,
)
from neurocxr.energy.memory import memory_inclusive_cnn, memory_inclusive_snn
from neurocxr.energy.neurobench import to_layer_counts
from neurocxr.energy.profiles import DeviceProfile
from neurocxr.energy.types import EnergyEstimate
from neurocxr.hardware_sims.results import LayerCounts

# Neuromorphic device profiles estimated from chip counts (constants and citations in profiles.py).
SNN_PROFILES = ("loihi", "loihi-sanafe", "loihi2", "spinnaker", "spinnaker2", "truenorth")
# Profiles also shown on the NeuroBench basis, so the two bases can be compared on one device.
NEUROBENCH_BASIS_PROFILES = ("loihi",)
# KerasSpiking ModelEnergy devices reproduced with its own formulas.
KERAS_SPIKING_DEVICES = ("cpu", "gpu", "loihi")
PRECISIONS = ("fp32", "int8")


def snn_estimates(
    program: Any,
    counts: Sequence[LayerCounts],
    *,
    model: str,
    accuracy: float | None = None,
    neurobench_entries: Sequence[dict[str, Any]] | None = None,
    float_accuracy: float | None = None,
    profiles: Sequence[str | DeviceProfile] = SNN_PROFILES,
    keras_devices: Sequence[str] = KERAS_SPIKING_DEVICES,
) -> list[EnergyEstimate]:
    """All energy rows of one SNN per inference. ``counts``: chip counts of ``program`` (emulator or
    Lava); ``neurobench_entries``: `neurobench_counts` of the float model on the same samples.
    ``accuracy`` labels chip rows, ``float_accuracy`` the float-model (NeuroBench-basis) rows."""
    counts = list(counts)
    if neurobench_entries and all(
        getattr(c, "active_neuron_updates", None) is None for c in counts
    ):
        counts = with_float_activity(counts, neurobench_entries)
    rows = [
        estimate_energy(counts, p, model=model, accuracy=accuracy, program=program, basis="chip")
        for p in profiles
    ]
    nb_counts = to_layer_counts(list(neurobench_entries)) if neurobench_entries else None
    f_acc = float_accuracy if float_accuracy is not None else accuracy
    if nb_counts is not None:
        for p in NEUROBENCH_BASIS_PROFILES:
            # no program: the float model's layers do not map 1:1 onto the chip's cores
            rows.append(
                estimate_energy(nb_counts, p, model=model, accuracy=f_acc, basis="neurobench")
            )
    # KerasSpiking-compatible rows: on the float model (unfused, as KerasSpiking sees a Keras model)
    # when its counts are there, else on the chip program (fused pooling: not KerasSpiking's own number).
    if neurobench_entries:
        ks_layers = keras_layers_from_neurobench(neurobench_entries)
        ks_steps = int(neurobench_entries[-1]["time_steps"])
    else:
        ks_layers = keras_layers_from_program(program, counts)
        ks_steps = int(program.num_steps)
    for device in keras_devices:
        ks = keras_spiking_energy(ks_layers, device, timesteps=ks_steps)
        est = keras_spiking_estimate(
            ks, model=model, accuracy=f_acc if neurobench_entries else accuracy
        )
        if not neurobench_entries:
            est.footnotes.append(
                "KerasSpiking row built from the chip program (pooling fused): KerasSpiking on "
                "the unfused float model would count fewer connections."
            )
        rows.append(est)
    # The SNN on conventional hardware: arithmetic rows on both bases; the memory-inclusive row on the
    # float model's counts when given (a CPU/GPU runs the unfused network), else on the chip's.
    op_types = [e.get("op_type") for e in neurobench_entries] if neurobench_entries else None
    for precision in PRECISIONS:
        arith_profile = f"horowitz45-{precision}"
        rows.append(
            estimate_snn_ac_energy(
                counts, arith_profile, model=model, accuracy=accuracy, basis="chip"
            )
        )
        if nb_counts is not None and neurobench_entries:
            rows.append(
                estimate_snn_ac_energy(
                    nb_counts,
                    arith_profile,
                    op_types=op_types,
                    model=model,
                    accuracy=f_acc,
                    basis="neurobench",
                )
            )
            rows.append(
                memory_inclusive_snn(
                    nb_counts,
                    precision=precision,
                    name=model,
                    accuracy=f_acc,
                    basis="neurobench",
                    op_types=op_types,
                    input_sizes=[e.get("input_size") for e in neurobench_entries],
                    input_elements=_input_elements(program),
                )
            )
        else:
            rows.append(
                memory_inclusive_snn(
                    counts,
                    precision=precision,
                    name=model,
                    accuracy=accuracy,
                    basis="chip",
                    input_sizes=_program_input_sizes(program, counts),
                    input_elements=_input_elements(program),
                )
            )
    return rows


def _program_input_sizes(program: Any, counts: Sequence[LayerCounts]) -> list[int | None] | None:
    shapes = getattr(program, "layer_input_shapes", None)
    if shapes is None:
        return None
    sizes = [int(np.prod(s)) for s in shapes()]
    return sizes if len(sizes) == len(counts) else None


FLOAT_ACTIVITY_SOURCE = (
    "chip neurons' active fraction taken from the same neurons of the float model (NeuroBench counts); "
    "quantisation changes a few spikes, so this is an approximation"
)


def with_float_activity(
    counts: Sequence[LayerCounts], neurobench_entries: Sequence[dict[str, Any]]
) -> list[LayerCounts]:
    """Copies of chip ``counts`` whose neuron updates are split active/inactive with the fraction the
    float model's same neurons show (pooling fusion changes synapses, not neurons). Layers are paired
    like `compare_bases` (synaptic layers in order, input with input); a layer whose neuron count
    differs keeps no split (charged as active)."""
    chip_syn = [i for i, c in enumerate(counts) if c.kind != "input"]
    nb_syn = [e for e in neurobench_entries if e["kind"] != "input"]
    pairs: dict[int, dict[str, Any]] = {}
    if len(chip_syn) == len(nb_syn):
        pairs.update(zip(chip_syn, nb_syn))
    chip_in = [i for i, c in enumerate(counts) if c.kind == "input"]
    nb_in = [e for e in neurobench_entries if e["kind"] == "input"]
    if chip_in and nb_in:
        pairs[chip_in[0]] = nb_in[0]
    out = []
    for i, c in enumerate(counts):
        c2 = copy.copy(c)
        e = pairs.get(i)
        if (
            e is not None
            and e.get("active_neuron_updates") is not None
            and int(e["num_neurons"]) == int(c.num_neurons)
        ):
            nb_updates = np.asarray(e["neuron_updates"], dtype=np.float64)
            nb_active = np.asarray(e["active_neuron_updates"], dtype=np.float64)
            updates = np.asarray(c.neuron_updates, dtype=np.float64)
            if nb_updates.shape == updates.shape:
                frac = np.divide(
                    nb_active, nb_updates, out=np.ones_like(nb_updates), where=nb_updates > 0
                )
            else:
                frac = np.full(
                    updates.shape, nb_active.sum() / nb_updates.sum() if nb_updates.sum() else 1.0
                )
            c2.active_neuron_updates = updates * frac  # type: ignore[attr-defined]
            c2.active_neuron_updates_source = FLOAT_ACTIVITY_SOURCE  # type: ignore[attr-defined]
        out.append(c2)
    return out


def _input_elements(program: Any) -> int | None:
    shape = getattr(program, "input_shape", None)
    if not shape:
        return None
    n = 1
    for s in shape:
        n *= int(s)
    return n


def cnn_estimates(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    name: str,
    accuracy: float | None = None,
    batch: int = 1,
) -> list[EnergyEstimate]:
    """Arithmetic-only and memory-inclusive rows of a CNN baseline, fp32 and int8, per inference.
    ``input_shape`` includes the batch dimension (e.g. (1, 1, 28, 28))."""
    macs = count_cnn_macs(model, input_shape)
    rows = []
    for precision in PRECISIONS:
        rows.append(
            estimate_ann_energy(macs, f"horowitz45-{precision}", model=name, accuracy=accuracy)
        )
        rows.append(
            memory_inclusive_cnn(
                model, input_shape, precision=precision, batch=batch, name=name, accuracy=accuracy
            )
        )
    return rows


def counting_bases(
    counts: Sequence[LayerCounts], neurobench_entries: Sequence[dict[str, Any]]
) -> BasisComparison:
    """Chip and NeuroBench counts per layer, their ratio and the explanation (see energy.bases)."""
    return compare_bases(counts, neurobench_entries)
