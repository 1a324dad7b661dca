"""Two counting bases side by side: chip counts and NeuroBench float-model counts, per layer.

- **chip**: the fixed-point LoihiProgram run on the bit-exact emulator (or Lava). Pooling is fused
  into the next layer's synapses (a 2x2 average pool before a 3x3 conv becomes a 6x6, stride-2
  kernel), so every spike that arrives before the pool reaches a larger fan-out.
- **neurobench**: the float PyTorch model counted with NeuroBench 2.3's definitions
  (`neurocxr.energy.neurobench`, checked against the ``neurobench`` package in the tests); pooling
  is its own layer and costs no synaptic operations, and the layer after it reads pooled values.

Both are right for the network they describe. A chip energy estimate must use chip counts; a
figure to compare with published NeuroBench numbers must use NeuroBench counts. `compare_bases`
lines the two up layer by layer (synaptic layers in order) and says why they differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from neurocxr.errors import NeurocxrError
from neurocxr.hardware_sims.results import LayerCounts

FUSED_POOL_EXPLANATION = (
    "Chip counts exceed NeuroBench counts where pooling is fused into the next layer: the chip's kernel "
    "covers the pool window too (fan-in {nb} -> {chip} per neuron), so each spike before the pool reaches "
    "a larger fan-out, while NeuroBench counts the smaller conv on the pooled map. Same function, more "
    "synaptic events on the chip. Pooling-free, strided layers avoid this."
)


def _mean(values: Any) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()) if arr.size else 0.0


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


@dataclass
class LayerBasisComparison:
    """One synaptic layer (or the input) counted on both bases, mean per sample, with ratios.
    ``explanation`` is set only where pooling is fused into this layer on the chip."""

    chip_layer: str
    neurobench_layer: str
    chip_synaptic_ops: float
    neurobench_synaptic_ops: float
    synaptic_ops_ratio: float | None
    chip_dense_ops: float
    neurobench_dense_ops: float
    dense_ops_ratio: float | None
    chip_neuron_updates: float
    neurobench_neuron_updates: float
    chip_fan_in: int
    neurobench_fan_in: int
    pool_fused: bool
    neurobench_op_type: str | None
    explanation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)  # the fields in order; explanation only where there is one
        if row["explanation"] is None:
            del row["explanation"]
        return row


@dataclass
class BasisTotals:
    """Synaptic and dense ops summed over the compared layers, on both bases."""

    chip_synaptic_ops: float
    neurobench_synaptic_ops: float
    synaptic_ops_ratio: float | None
    chip_dense_ops: float
    neurobench_dense_ops: float
    dense_ops_ratio: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BasisComparison:
    """Chip vs NeuroBench counts per layer, their totals and why they differ."""

    layers: list[LayerBasisComparison]
    total: BasisTotals
    explanations: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [r.to_dict() for r in self.layers],
            "total": self.total.to_dict(),
            "explanations": list(self.explanations),
        }


def compare_bases(
    chip: Sequence[LayerCounts], neurobench: Sequence[dict[str, Any] | LayerCounts]
) -> BasisComparison:
    """Per-layer chip vs NeuroBench counts (mean per sample) with ratios and an explanation.

    ``chip``: LayerCounts of an emulator/Lava run; ``neurobench``: `neurobench_counts` entries (or
    their `to_layer_counts`) of the float model the program was exported from, on the same samples.
    Synaptic layers are paired in order; the input entries are paired when both have one.
    """

    def get(e: Any, key: str) -> Any:
        return e[key] if isinstance(e, dict) else getattr(e, key)

    chip_syn = [c for c in chip if c.kind != "input"]
    nb_syn = [e for e in neurobench if get(e, "kind") != "input"]
    if len(chip_syn) != len(nb_syn):
        raise NeurocxrError(
            f"the chip program has {len(chip_syn)} synaptic layers but the float model {len(nb_syn)}: "
            "compare counts of the program exported from this very model"
        )
    rows: list[LayerBasisComparison] = []
    explanations: list[str] = []
    for c, e in zip(chip_syn, nb_syn):
        chip_ops, nb_ops = _mean(c.synaptic_ops), _mean(get(e, "synaptic_ops"))
        chip_dense, nb_dense = _mean(c.dense_synaptic_ops), _mean(get(e, "dense_synaptic_ops"))
        chip_fan, nb_fan = int(c.fan_in), int(get(e, "fan_in"))
        fused = chip_fan > nb_fan
        row = LayerBasisComparison(
            chip_layer=c.name,
            neurobench_layer=get(e, "name"),
            chip_synaptic_ops=chip_ops,
            neurobench_synaptic_ops=nb_ops,
            synaptic_ops_ratio=_ratio(chip_ops, nb_ops),
            chip_dense_ops=chip_dense,
            neurobench_dense_ops=nb_dense,
            dense_ops_ratio=_ratio(chip_dense, nb_dense),
            chip_neuron_updates=_mean(c.neuron_updates),
            neurobench_neuron_updates=_mean(get(e, "neuron_updates")),
            chip_fan_in=chip_fan,
            neurobench_fan_in=nb_fan,
            pool_fused=fused,
            neurobench_op_type=e.get("op_type") if isinstance(e, dict) else None,
        )
        if fused:
            text = FUSED_POOL_EXPLANATION.format(nb=nb_fan, chip=chip_fan)
            row.explanation = text
            explanations.append(f"{c.name}: {text}")
        rows.append(row)
    tot_chip = sum(r.chip_synaptic_ops for r in rows)
    tot_nb = sum(r.neurobench_synaptic_ops for r in rows)
    dense_chip = sum(r.chip_dense_ops for r in rows)
    dense_nb = sum(r.neurobench_dense_ops for r in rows)
    if not explanations and tot_nb and abs(tot_chip / tot_nb - 1) > 0.01:
        explanations.append(
            "Chip and NeuroBench counts differ without fused pooling: quantisation changes which neurons spike "
            "(the fixed-point program is not spike-for-spike the float model)."
        )
    return BasisComparison(
        layers=rows,
        total=BasisTotals(
            chip_synaptic_ops=tot_chip,
            neurobench_synaptic_ops=tot_nb,
            synaptic_ops_ratio=_ratio(tot_chip, tot_nb),
            chip_dense_ops=dense_chip,
            neurobench_dense_ops=dense_nb,
            dense_ops_ratio=_ratio(dense_chip, dense_nb),
        ),
        explanations=explanations,
    )
