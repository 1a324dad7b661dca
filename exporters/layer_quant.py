"""Typed per-layer quantisation records of a `LoihiProgram`: how each layer's floats became Loihi
integers (layer kinds: `neurocxr.exporters.program.LayerKind`, re-exported here).

The exporter (`neurocxr.exporters.loihi`) records its quantisation choices per layer in the layer's
``quant`` dict (and netx files carry that dict back); `LayerQuant` reads it into typed fields
without changing what the exporter computes. `quantisation_table` rows (export_report.json's
``layers``) are `LayerQuant.to_row()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from neurocxr.exporters.program import LayerKind, LoihiProgram

__all__ = ["LayerKind", "LayerQuant", "TABLE_KEYS", "layer_quants"]


# The quantisation facts a table row shows, in this order (export_report.json / .md).
TABLE_KEYS = (
    "scale",
    "scale_source",
    "weight_grid",
    "num_weight_bits",
    "weight_exponent",
    "weight_min",
    "weight_max",
    "weight_max_abs_error",
    "weight_relative_error",
    "weight_rms_error",
    "input_error_per_step",
    "input_error_vs_threshold",
    "weights_zeroed",
    "clipped_count",
    "clipped_fraction",
    "v_th_mant",
    "threshold_abs_error",
    "i_decay",
    "v_decay",
    "decay_error",
    "bias_min",
    "bias_max",
    "bias_max_abs_error",
    "max_input_per_step",
    "u_may_wrap",
)
_NEURON_KEYS = ("v_th_mant", "i_decay", "v_decay")
SPIKE_INPUT_NOTE = "binary input spikes (no quantisation)"


@dataclass(frozen=True)
class LayerQuant:
    """How one layer's floats became integers: scale, weight grid, ranges, errors, clipping, decays.

    A field is None when the exporter recorded nothing for it (a spike input has no scale, a readout
    no neuron); ``columns`` lists, in table order, the fields this layer's table row shows (a
    recorded None is shown, an unrecorded field is not). ``details`` keeps the rest of the
    exporter's record (grids tried, scale bounds, source nodes, float decays, ...) as written.
    """

    index: int
    name: str
    kind: LayerKind
    note: str | None = None
    scale: float | None = None
    scale_source: str | None = None
    weight_grid: str | None = None
    num_weight_bits: int | None = None
    weight_exponent: int | None = None
    weight_min: int | None = None
    weight_max: int | None = None
    weight_max_abs_error: float | None = None
    weight_relative_error: float | None = None
    weight_rms_error: float | None = None
    input_error_per_step: float | None = None
    input_error_vs_threshold: float | None = None
    weights_zeroed: int | None = None
    clipped_count: int | None = None
    clipped_fraction: float | None = None
    v_th_mant: int | None = None
    threshold_abs_error: float | None = None
    i_decay: int | None = None
    v_decay: int | None = None
    decay_error: float | None = None
    bias_min: int | None = None
    bias_max: int | None = None
    bias_max_abs_error: float | None = None
    max_input_per_step: int | None = None
    u_may_wrap: bool | None = None
    columns: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, index: int, layer: Any) -> LayerQuant:
        """The record of ``layer`` (position ``index`` in its program)."""
        quant: Mapping[str, Any] = layer.quant or {}
        values = {key: quant[key] for key in TABLE_KEYS if key in quant}
        neuron = getattr(layer, "neuron", None)
        if (
            neuron is not None
        ):  # the neuron's own integers where the exporter recorded none (shown last)
            for key in _NEURON_KEYS:
                values.setdefault(key, getattr(neuron, key))
        columns = tuple(values)
        note = SPIKE_INPUT_NOTE if layer.kind == "input" and neuron is None else None
        details = {k: v for k, v in quant.items() if k not in TABLE_KEYS}
        return cls(
            index=index,
            name=str(layer.name),
            kind=LayerKind.of(layer),
            note=note,
            columns=columns,
            details=details,
            **values,
        )

    def to_row(self) -> dict[str, Any]:
        """The table row (export_report.json ``layers``): index, name, kind, [note], then ``columns``."""
        row: dict[str, Any] = {"index": self.index, "name": self.name, "kind": self.kind.value}
        if self.note is not None:
            row["note"] = self.note
        for key in self.columns:
            row[key] = getattr(self, key)
        return row

    def to_dict(self) -> dict[str, Any]:
        return self.to_row()


def layer_quants(program: LoihiProgram) -> list[LayerQuant]:
    """One `LayerQuant` per layer of ``program``, in order."""
    return [LayerQuant.of(index, layer) for index, layer in enumerate(program.layers)]
