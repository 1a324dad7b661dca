"""Hand-built and random LoihiPrograms shared by the netx / emulator / Lava parity tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from neurocxr.exporters.program import ConvLayer, DenseLayer, InputLayer, LoihiNeuron, LoihiProgram, ReadoutLayer


def default_shaped_program(seed: int = 0, num_steps: int = 8) -> LoihiProgram:
    """A program shaped like the default snn_conv model after pool folding (random integer weights)."""
    rng = np.random.default_rng(seed)
    lif = LoihiNeuron(v_th_mant=400, i_decay=4096, v_decay=410)
    layers = [
        InputLayer("input", (1, 28, 28), LoihiNeuron(2040, 4096, 0)),
        ConvLayer("conv1", (16, 28, 28), lif, weight=rng.integers(-120, 254, (16, 1, 3, 3)),
                   bias=rng.integers(-20, 20, 16), padding=(1, 1)),
        # AvgPool2 folded into a 3x3 conv: 6x6 kernel, stride 2, pad 2 -> 32 x 14 x 14
        ConvLayer("conv2_pool", (32, 14, 14), lif, weight=rng.integers(-60, 80, (32, 16, 6, 6)),
                   bias=rng.integers(-20, 20, 32), stride=(2, 2), padding=(2, 2)),
        # second AvgPool2 folded into the dense layer: reads the 32 x 14 x 14 map
        DenseLayer("fc1", (128,), lif, weight=rng.integers(-6, 7, (128, 32 * 14 * 14)),
                   flatten_input=True),
        ReadoutLayer("readout", (2,), weight=rng.integers(-256, 254, (2, 128))),
    ]
    program = LoihiProgram(input_shape=(1, 28, 28), input_kind="bias", layers=layers, num_steps=num_steps,
                           input_scale=4080.0, metadata={"source": "hand-built default-shaped program"})
    program.validate()
    return program


def random_images(n: int, seed: int = 1) -> np.ndarray:
    """Smooth-ish random images in [0, 1], [n, 1, 28, 28]."""
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28))


def random_program(rng: np.random.Generator, *, input_kind: str, num_hidden: int, kinds: list[str],
                   readout: bool, num_steps: int) -> LoihiProgram:
    """A small random valid program: conv/dense hidden layers with random CUBA parameters."""

    def neuron() -> LoihiNeuron:
        return LoihiNeuron(v_th_mant=int(rng.integers(0, 600)), i_decay=int(rng.integers(0, 4097)),
                           v_decay=int(rng.integers(0, 4097)))

    def weights(shape: tuple[int, ...]) -> np.ndarray:
        lo, hi = [(-256, 255), (0, 256), (-256, 1), (-20, 21)][int(rng.integers(0, 4))]
        w = rng.integers(lo, hi, shape)
        if not w.any():
            w.flat[0] = 1 if hi > 1 else -1
        return w

    c, h, w = int(rng.integers(1, 3)), int(rng.integers(3, 7)), int(rng.integers(3, 7))
    shape: tuple[int, ...] = (c, h, w)
    if input_kind == "bias":
        layers = [InputLayer("input", shape, LoihiNeuron(int(rng.integers(100, 3000)), 4096, int(rng.integers(0, 500))))]
    else:
        layers = [InputLayer("input", shape, None)]
    for i in range(num_hidden):
        kind = kinds[i] if len(shape) == 3 else "dense"
        if kind == "conv":
            k, s, p = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 2))
            cin, hh, ww = shape
            if hh + 2 * p < k or ww + 2 * p < k:
                k = 1
            cout = int(rng.integers(1, 4))
            out = (cout, (hh + 2 * p - k) // s + 1, (ww + 2 * p - k) // s + 1)
            bias = rng.integers(-60, 61, cout) if rng.random() < 0.7 else None
            layers.append(ConvLayer(f"conv{i}", out, neuron(), weight=weights((cout, cin, k, k)), bias=bias,
                                     stride=(s, s), padding=(p, p)))
            shape = out
        else:
            n_in, n = int(np.prod(shape)), int(rng.integers(2, 7))
            bias = rng.integers(-60, 61, n) if rng.random() < 0.7 else None
            layers.append(DenseLayer(f"dense{i}", (n,), neuron(), weight=weights((n, n_in)), bias=bias,
                                     flatten_input=len(shape) > 1))
            shape = (n,)
    if readout:
        n_in = int(np.prod(shape))
        layers.append(ReadoutLayer("readout", (2,), weight=weights((2, n_in)), flatten_input=len(shape) > 1))
    program = LoihiProgram(input_shape=layers[0].shape, input_kind=input_kind, layers=layers,  # type: ignore[arg-type]
                           num_steps=num_steps, input_scale=float(rng.integers(200, 4096)))
    program.validate()
    return program


def random_inputs(program: LoihiProgram, rng: np.random.Generator, n: int) -> np.ndarray:
    """Images in [0, 1] for bias programs, Bernoulli spike trains for spike programs."""
    if program.input_kind == "bias":
        return rng.random((n, *program.input_shape))
    return (rng.random((program.num_steps, n, *program.input_shape)) < rng.uniform(0.1, 0.6)).astype(np.int8)


def write_slayer_file(path: Path, *, layer_type: str = "conv", neuron_type: str = "LOIHI") -> None:
    """An older slayer-style export: 5-D conv weights, LOIHI neurons, float datasets, no metadata."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        def s(g: h5py.Group, key: str, value: str) -> None:
            g.create_dataset(key, (1,), "S10", [value.encode("ascii")])

        def neuron(g: h5py.Group) -> None:
            n = g.create_group("neuron")
            s(n, "type", neuron_type)
            for key, value in (("vThMant", 80), ("iDecay", 1024), ("vDecay", 128), ("refDelay", 1)):
                n.create_dataset(key, data=value)
        l0 = f.create_group("layer/0")
        s(l0, "type", "input")
        l0.create_dataset("shape", data=np.array([1, 6, 6]))
        l1 = f.create_group("layer/1")
        s(l1, "type", layer_type)
        l1.create_dataset("shape", data=np.array([2, 6, 6]))
        l1.create_dataset("weight", data=rng.integers(-50, 50, (2, 1, 3, 3, 1)).astype(np.float32))
        for key, value in (("stride", [1, 1]), ("padding", [1, 1]), ("dilation", [1, 1])):
            l1.create_dataset(key, data=np.array(value))
        l1.create_dataset("groups", data=1)
        neuron(l1)
        s(f.create_group("layer/2"), "type", "flatten")
        l3 = f.create_group("layer/3")
        s(l3, "type", "dense")
        l3.create_dataset("shape", data=np.array([3]))
        l3.create_dataset("weight", data=rng.integers(-50, 50, (3, 72)).astype(np.float32))
        l4 = f.create_group("layer/4")
        s(l4, "type", "dense")
        l4.create_dataset("shape", data=np.array([2]))
        l4.create_dataset("weight", data=rng.integers(-50, 50, (2, 3)).astype(np.float32))
        neuron(l3)
