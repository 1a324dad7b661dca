"""What a run of a LoihiProgram produces: output, spikes and per-layer operation counts.

The emulator and the Lava runner both return a `RunResult`, so the energy model and the parity
checks read one type whichever simulator produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class LayerCounts:
    """Counts for one layer of a LoihiProgram, summed over time steps, per sample.

    Arrays have one entry per sample so that per-sample energy and its spread can be reported.
    Definitions (the same as NeuroBench's where it has one):
    - ``input_spikes``: spikes arriving at this layer's synapses (for the input layer: 0, or the
      encoded input spikes when the input is a spike train);
    - ``output_spikes``: spikes emitted by this layer's neurons;
    - ``synaptic_ops``: effective synaptic operations: each arriving spike times its real fan-out
      to non-zero weights (border-correct for convolutions);
    - ``dense_synaptic_ops``: the same layer applied densely (every real input position times
      every weight it meets, zero or not; taps on zero padding excluded, as NeuroBench's all-ones
      count does), i.e. what a non-event-driven accelerator would compute each step;
    - ``neuron_updates``: neurons x time steps the layer was simulated;
    - ``recurrent_synaptic_ops`` (recurrent dense layers only, else None): the part of
      ``synaptic_ops`` done by the layer's recurrent synapse (each of its own spikes times its
      fan-out to non-zero recurrent weights); ``synaptic_ops`` includes it, so energy costs it.
    """

    name: str
    kind: str
    num_neurons: int
    fan_in: int  # synapses per output neuron (structural)
    num_synapses: int  # non-zero weights, as stored in synaptic memory
    time_steps: int
    input_spikes: np.ndarray
    output_spikes: np.ndarray
    synaptic_ops: np.ndarray
    dense_synaptic_ops: np.ndarray
    neuron_updates: np.ndarray
    recurrent_synaptic_ops: np.ndarray | None = None

    @property
    def num_samples(self) -> int:
        return int(np.asarray(self.output_spikes).shape[0])

    @property
    def activation_sparsity(self) -> float:
        """Fraction of (neuron, step) slots without a spike, over all samples."""
        slots = float(np.sum(self.neuron_updates))
        return 1.0 - float(np.sum(self.output_spikes)) / slots if slots else 1.0

    def mean(self) -> dict[str, float]:
        """Per-sample means, for tables and JSON."""
        return {
            "input_spikes": float(np.mean(self.input_spikes)),
            "output_spikes": float(np.mean(self.output_spikes)),
            "synaptic_ops": float(np.mean(self.synaptic_ops)),
            "dense_synaptic_ops": float(np.mean(self.dense_synaptic_ops)),
            "neuron_updates": float(np.mean(self.neuron_updates)),
            "activation_sparsity": self.activation_sparsity,
            **(
                {"recurrent_synaptic_ops": float(np.mean(self.recurrent_synaptic_ops))}
                if self.recurrent_synaptic_ops is not None
                else {}
            ),
        }

    def to_dict(self) -> dict[str, Any]:
        d = {
            k: v for k, v in asdict(self).items() if not isinstance(v, np.ndarray) and v is not None
        }
        d["per_sample_mean"] = self.mean()
        return d


@dataclass
class RunResult:
    """Output of running a LoihiProgram on a batch of samples.

    - ``output_spikes``: ``[T_run, B, *out_shape]`` int8 spikes of the last spiking layer;
    - ``readout``: ``[B, K]`` int64 membrane of the non-spiking readout layer at the end of each
      sample's window (None when the program has no readout); prediction is its argmax, or the
      argmax of output spike counts when there is no readout;
    - ``layer_spikes``: optional ``[T_run, B, *shape]`` spikes of every layer (``record=True``);
    - ``counts``: one LayerCounts per program layer.
    """

    output_spikes: np.ndarray
    readout: np.ndarray | None
    counts: list[LayerCounts]
    time_steps: int
    layer_spikes: list[np.ndarray] | None = None
    simulator: str = "emulator"
    metadata: dict[str, Any] = field(default_factory=dict)

    def scores(self) -> np.ndarray:
        """[B, K] class scores: readout membrane, or output spike counts."""
        if self.readout is not None:
            return np.asarray(self.readout, dtype=np.float64)
        return (
            np.asarray(self.output_spikes, dtype=np.float64)
            .sum(axis=0)
            .reshape(self.output_spikes.shape[1], -1)
        )

    def predictions(self) -> np.ndarray:
        return np.argmax(self.scores(), axis=1)
