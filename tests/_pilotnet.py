"""A LoihiProgram of the shapes of lava-dl's PilotNet LIF network (tutorials/lava/lib/dl/netx/pilotnet_snn).

Layer shapes as netx prints the tutorial's ``network.net`` (W x H x C): input 200x66x3 driven by bias,
convs 99x32x24, 49x15x36, 24x7x48 (3x3, stride 2), 22x4x64 (stride (H 2, W 1), pad (H 1, W 0)),
20x2x64, then dense 100, 50, 10, 1; T = 16 (its reset_interval). The weights are random integers
(the real file is not redistributed here); thresholds were set once so that every hidden layer fires
about 12% of the time on random images, so the counts are those of a busy network of these shapes,
not of Intel's trained one.

Intel's Loihi 2 compiler output for the real network (lava-dl pilotnet_snn/benchmark.ipynb) places it
on 74 cores: input 13, convs 25, 13, 3, 3, 2, dense 12, 1, 1, 1 (neurons per core 3168, 3072, 2160,
2688, 2048, 2048); its board runs it at 342.29 frames/s (1 / (mean time per step x 16 steps)), i.e.
182.6 µs per step. This fixture's activity is not the trained network's (published only as a plot), so
its modelled step time is not a check against that figure.
"""

from __future__ import annotations

import numpy as np

from neurocxr.exporters.program import (
    ConvLayer,
    DenseLayer,
    InputLayer,
    LoihiNeuron,
    LoihiProgram,
    ReadoutLayer,
)

# vThMant per hidden layer: about 12% firing on random images (set once by bisection, see module docstring)
PILOTNET_THRESHOLDS = (1035, 1157, 1804, 1907, 3412, 2538, 468, 255)
INTEL_COMPILER_CORES = {
    "input": 13,
    "conv1": 25,
    "conv2": 13,
    "conv3": 3,
    "conv4": 3,
    "conv5": 2,
    "fc1": 12,
    "fc2": 1,
    "fc3": 1,
    "out": 1,
}


def pilotnet_program(seed: int = 0, num_steps: int = 16) -> LoihiProgram:
    """The PilotNet-shaped program (module docstring)."""
    rng = np.random.default_rng(seed)
    th = iter(PILOTNET_THRESHOLDS)

    def lif() -> LoihiNeuron:
        return LoihiNeuron(v_th_mant=next(th), i_decay=4096, v_decay=410)

    def w(shape: tuple[int, ...], lo: int = -40, hi: int = 60) -> np.ndarray:
        return rng.integers(lo, hi, shape)

    layers = [
        InputLayer("input", (3, 66, 200), LoihiNeuron(2040, 4096, 0)),
        ConvLayer("conv1", (24, 32, 99), lif(), weight=w((24, 3, 3, 3)), stride=(2, 2)),
        ConvLayer("conv2", (36, 15, 49), lif(), weight=w((36, 24, 3, 3)), stride=(2, 2)),
        ConvLayer("conv3", (48, 7, 24), lif(), weight=w((48, 36, 3, 3)), stride=(2, 2)),
        ConvLayer(
            "conv4", (64, 4, 22), lif(), weight=w((64, 48, 3, 3)), stride=(2, 1), padding=(1, 0)
        ),
        ConvLayer("conv5", (64, 2, 20), lif(), weight=w((64, 64, 3, 3))),
        DenseLayer("fc1", (100,), lif(), weight=w((100, 2560), -120, 128), flatten_input=True),
        DenseLayer("fc2", (50,), lif(), weight=w((50, 100))),
        DenseLayer("fc3", (10,), lif(), weight=w((10, 50))),
        ReadoutLayer("out", (1,), weight=w((1, 10))),
    ]
    program = LoihiProgram(
        input_shape=(3, 66, 200),
        input_kind="bias",
        layers=layers,
        num_steps=num_steps,
        input_scale=4080.0,
        metadata={"source": "PilotNet-shaped test program"},
    )
    program.validate()
    return program
