"""Per-layer operation counts of a run, shared by the emulator and the Lava runner.

Both simulators hand over each layer's window spikes ``[T, B, N]`` (bool or 0/1) for a batch; a
`CountAccumulator` turns them into `LayerCounts` with the definitions in hardware_sims/results.py.
The structural numbers (fan-out per input position, dense operations, fan-in, stored synapses) come
from the layer types in exporters/program.py, which own those rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neurocxr.exporters.program import InputLayer, LoihiProgram, RecurrentDenseLayer

from .results import LayerCounts

__all__ = ["LayerStatics", "layer_statics", "CountAccumulator"]


@dataclass(frozen=True)
class LayerStatics:
    """Structural numbers of one synaptic layer (None stands for the input layer)."""

    fanout: np.ndarray  # [Nin] int64: non-zero synapses each input position reaches
    dense_ops_per_step: int  # every weight on every real input position (NeuroBench's dense ops)
    fan_in: int
    num_synapses: int
    recurrent_fanout: np.ndarray | None = (
        None  # [N] recurrent layers: non-zero recurrent synapses each own spike reaches
    )


def layer_statics(program: LoihiProgram) -> list[LayerStatics | None]:
    """One entry per program layer: None for the input, LayerStatics for synaptic layers."""
    out: list[LayerStatics | None] = []
    for layer, in_shape in zip(program.layers, program.layer_input_shapes()):
        if isinstance(layer, InputLayer):
            out.append(None)
            continue
        out.append(
            LayerStatics(
                fanout=np.asarray(layer.fanout(in_shape)).reshape(-1).astype(np.int64),
                dense_ops_per_step=layer.dense_ops_per_step(in_shape),
                fan_in=layer.fan_in,
                num_synapses=layer.num_synapses,
                recurrent_fanout=layer.recurrent_fanout()
                if isinstance(layer, RecurrentDenseLayer)
                else None,
            )
        )
    return out


class CountAccumulator:
    """Collects per-sample counts batch by batch; `result` assembles one LayerCounts per layer."""

    def __init__(
        self, program: LoihiProgram, statics: list[LayerStatics | None] | None = None
    ) -> None:
        self.program = program
        self.statics = statics if statics is not None else layer_statics(program)
        self._fanout = [None if s is None else s.fanout.astype(np.float64) for s in self.statics]
        self._rec_fanout = [
            None
            if s is None or s.recurrent_fanout is None
            else s.recurrent_fanout.astype(np.float64)
            for s in self.statics
        ]
        self._parts: list[dict[str, list[np.ndarray]]] = [
            {"in": [], "out": [], "sops": [], "rec_sops": []} for _ in program.layers
        ]

    def add(
        self, windows: list[torch.Tensor], summed: list[torch.Tensor | None] | None = None
    ) -> None:
        """Add one batch; ``windows[k]`` is layer k's window spikes [T, B, N] (bool or 0/1).

        ``summed[k]`` (optional): layer k's spikes already summed over the window [B, N] (float32).

        Synaptic ops use the spikes summed over the window once, times the fan-out map (exact:
        float32 sums of 0/1 below 2**24 steps, products in float64 below 2**53).
        """
        given = summed if summed is not None else [None] * len(windows)
        # per sample and neuron spikes over the window, as float64 numpy (exact: integers < 2**53)
        per_neuron = [
            (
                g.numpy()
                if g is not None
                else w.reshape(w.shape[0], w.shape[1], -1).to(torch.float32).sum(dim=0).numpy()
            ).astype(np.float64)
            for g, w in zip(given, windows)
        ]
        out_counts = [np.rint(p.sum(axis=1)).astype(np.int64) for p in per_neuron]
        spike_input = self.program.input_kind == "spikes"
        for k in range(len(self.program.layers)):
            out = out_counts[k]
            parts = self._parts[k]
            fan = self._fanout[k]
            if (
                fan is None
            ):  # input layer: its spikes are the encoded input (spike input) or its neurons' output
                parts["in"].append(out.copy() if spike_input else np.zeros_like(out))
                parts["sops"].append(np.zeros_like(out))
            else:
                parts["in"].append(out_counts[k - 1].copy())
                sops = np.rint(per_neuron[k - 1] @ fan).astype(np.int64)
                rec_fan = self._rec_fanout[k]
                if rec_fan is not None:  # the layer's own spikes through its recurrent synapse
                    rec = np.rint(per_neuron[k] @ rec_fan).astype(np.int64)
                    parts["rec_sops"].append(rec)
                    sops = sops + rec
                parts["sops"].append(sops)
            parts["out"].append(out)

    def add_totals(self, totals: np.ndarray) -> None:
        """Add one batch already counted by a kernel: ``totals`` [B, L, 3] int64 holding, per sample and
        layer, (input spikes, output spikes, synaptic ops) with the definitions `add` uses."""
        if any(fan is not None for fan in self._rec_fanout):
            raise ValueError(
                "kernel totals carry no recurrent synaptic ops: recurrent programs are counted by add()"
            )
        for k in range(len(self.program.layers)):
            parts = self._parts[k]
            parts["in"].append(np.asarray(totals[:, k, 0], dtype=np.int64).copy())
            parts["out"].append(np.asarray(totals[:, k, 1], dtype=np.int64).copy())
            parts["sops"].append(np.asarray(totals[:, k, 2], dtype=np.int64).copy())

    def result(self, steps: int, num_samples: int) -> list[LayerCounts]:
        counts: list[LayerCounts] = []
        for layer, stat, parts in zip(self.program.layers, self.statics, self._parts):
            cat = {
                key: np.concatenate(vals).astype(np.int64) if vals else np.zeros(0, dtype=np.int64)
                for key, vals in parts.items()
            }
            has_neurons = not isinstance(layer, InputLayer) or layer.neuron is not None
            counts.append(
                LayerCounts(
                    name=layer.name,
                    kind="dense_readout" if layer.is_readout else layer.kind,
                    num_neurons=layer.num_neurons,
                    fan_in=stat.fan_in if stat else 0,
                    num_synapses=stat.num_synapses if stat else 0,
                    time_steps=steps,
                    input_spikes=cat["in"],
                    output_spikes=cat["out"],
                    synaptic_ops=cat["sops"],
                    dense_synaptic_ops=np.full(
                        num_samples, stat.dense_ops_per_step * steps if stat else 0, dtype=np.int64
                    ),
                    neuron_updates=np.full(
                        num_samples, layer.num_neurons * steps if has_neurons else 0, dtype=np.int64
                    ),
                    recurrent_synaptic_ops=cat["rec_sops"]
                    if stat is not None and stat.recurrent_fanout is not None
                    else None,
                )
            )
        return counts
