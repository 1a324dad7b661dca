"""Hand-built and random LoihiPrograms shared by the netx / emulator / Lava parity tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from neurocxr.exporters.program import (
    ConvLayer,
    DenseLayer,
    InputLayer,
    LoihiNeuron,
    LoihiProgram,
    ReadoutLayer,
    RecurrentDenseLayer,
)


def grid8(w: np.ndarray) -> np.ndarray:
    """Random weights put where Loihi's 8-bit synapse can hold them (the program refuses the rest):
    mixed-sign weights beyond [-128, 127] are rounded down to even values in [-256, 254]."""
    w = np.asarray(w, dtype=np.int64)
    # lava-dl counts a matrix as mixed sign when it has a negative value and no all-negative range
    if w.size and w.min() < 0 <= w.max() and (w.min() < -128 or w.max() > 127):
        w = (w // 2) * 2
    return w


def default_shaped_program(seed: int = 0, num_steps: int = 8) -> LoihiProgram:
    """A program shaped like the default snn_conv model after pool folding (random integer weights)."""
    rng = np.random.default_rng(seed)
    lif = LoihiNeuron(v_th_mant=400, i_decay=4096, v_decay=410)
    layers = [
        InputLayer("input", (1, 28, 28), LoihiNeuron(2040, 4096, 0)),
        ConvLayer(
            "conv1",
            (16, 28, 28),
            lif,
            weight=grid8(rng.integers(-120, 254, (16, 1, 3, 3))),
            bias=rng.integers(-20, 20, 16),
            padding=(1, 1),
        ),
        # AvgPool2 folded into a 3x3 conv: 6x6 kernel, stride 2, pad 2 -> 32 x 14 x 14
        ConvLayer(
            "conv2_pool",
            (32, 14, 14),
            lif,
            weight=rng.integers(-60, 80, (32, 16, 6, 6)),
            bias=rng.integers(-20, 20, 32),
            stride=(2, 2),
            padding=(2, 2),
        ),
        # second AvgPool2 folded into the dense layer: reads the 32 x 14 x 14 map
        DenseLayer(
            "fc1", (128,), lif, weight=rng.integers(-6, 7, (128, 32 * 14 * 14)), flatten_input=True
        ),
        ReadoutLayer("readout", (2,), weight=grid8(rng.integers(-256, 254, (2, 128)))),
    ]
    program = LoihiProgram(
        input_shape=(1, 28, 28),
        input_kind="bias",
        layers=layers,
        num_steps=num_steps,
        input_scale=4080.0,
        metadata={"source": "hand-built default-shaped program"},
    )
    program.validate()
    return program


def random_images(n: int, seed: int = 1) -> np.ndarray:
    """Smooth-ish random images in [0, 1], [n, 1, 28, 28]."""
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28))


def random_program(
    rng: np.random.Generator,
    *,
    input_kind: str,
    num_hidden: int,
    kinds: list[str],
    readout: bool,
    num_steps: int,
) -> LoihiProgram:
    """A small random valid program: conv/dense hidden layers with random CUBA parameters."""

    def neuron() -> LoihiNeuron:
        return LoihiNeuron(
            v_th_mant=int(rng.integers(0, 600)),
            i_decay=int(rng.integers(0, 4097)),
            v_decay=int(rng.integers(0, 4097)),
        )

    def weights(shape: tuple[int, ...]) -> np.ndarray:
        lo, hi = [(-256, 255), (0, 256), (-256, 1), (-20, 21)][int(rng.integers(0, 4))]
        w = grid8(rng.integers(lo, hi, shape))
        if not w.any():
            w.flat[0] = 1 if hi > 1 else -1
        return w

    c, h, w = int(rng.integers(1, 3)), int(rng.integers(3, 7)), int(rng.integers(3, 7))
    shape: tuple[int, ...] = (c, h, w)
    if input_kind == "bias":
        layers = [
            InputLayer(
                "input",
                shape,
                LoihiNeuron(int(rng.integers(100, 3000)), 4096, int(rng.integers(0, 500))),
            )
        ]
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
            layers.append(
                ConvLayer(
                    f"conv{i}",
                    out,
                    neuron(),
                    weight=weights((cout, cin, k, k)),
                    bias=bias,
                    stride=(s, s),
                    padding=(p, p),
                )
            )
            shape = out
        else:
            n_in, n = int(np.prod(shape)), int(rng.integers(2, 7))
            bias = rng.integers(-60, 61, n) if rng.random() < 0.7 else None
            layers.append(
                DenseLayer(
                    f"dense{i}",
                    (n,),
                    neuron(),
                    weight=weights((n, n_in)),
                    bias=bias,
                    flatten_input=len(shape) > 1,
                )
            )
            shape = (n,)
    if readout:
        n_in = int(np.prod(shape))
        layers.append(
            ReadoutLayer("readout", (2,), weight=weights((2, n_in)), flatten_input=len(shape) > 1)
        )
    program = LoihiProgram(
        input_shape=layers[0].shape,
        input_kind=input_kind,
        layers=layers,  # type: ignore[arg-type]
        num_steps=num_steps,
        input_scale=float(rng.integers(200, 4096)),
    )
    program.validate()
    return program


def random_inputs(program: LoihiProgram, rng: np.random.Generator, n: int) -> np.ndarray:
    """Images in [0, 1] for bias programs, Bernoulli spike trains for spike programs."""
    if program.input_kind == "bias":
        return rng.random((n, *program.input_shape))
    return (
        rng.random((program.num_steps, n, *program.input_shape)) < rng.uniform(0.1, 0.6)
    ).astype(np.int8)


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


def random_conv_program(
    rng: np.random.Generator, *, input_kind: str, num_conv: int, num_steps: int, readout: bool
) -> LoihiProgram:
    """Convs with independent kernel height/width, strides, paddings, dilations and channel groups."""

    def neuron(channels: int) -> LoihiNeuron:
        if rng.random() < 0.5:  # per-channel parameters
            return LoihiNeuron(
                v_th_mant=rng.integers(0, 400, channels),
                i_decay=rng.integers(0, 4097, channels),
                v_decay=rng.integers(0, 4097, channels),
            )
        return LoihiNeuron(
            int(rng.integers(0, 400)), int(rng.integers(0, 4097)), int(rng.integers(0, 4097))
        )

    cin = int(rng.choice([1, 2, 4]))
    shape: tuple[int, ...] = (cin, int(rng.integers(5, 10)), int(rng.integers(5, 10)))
    if input_kind == "bias":
        layers: list = [InputLayer("input", shape, neuron(cin))]
    else:
        layers = [InputLayer("input", shape, None)]
    for i in range(num_conv):
        c, h, w = shape
        groups = int(rng.choice([g for g in (1, 2, 4) if c % g == 0]))
        cout = groups * int(rng.integers(1, 3))
        while True:
            kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
            sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
            ph, pw = int(rng.integers(0, 3)), int(rng.integers(0, 3))
            dh, dw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
            ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            if ho >= 1 and wo >= 1:
                break
        weight = rng.integers(-80, 120, (cout, c // groups, kh, kw))
        bias = rng.integers(-40, 41, cout) if rng.random() < 0.5 else None
        layers.append(
            ConvLayer(
                f"conv{i}",
                (cout, ho, wo),
                neuron(cout),
                weight,
                bias,
                stride=(sh, sw),
                padding=(ph, pw),
                dilation=(dh, dw),
                groups=groups,
            )
        )
        shape = (cout, ho, wo)
    n_in = int(np.prod(shape))
    if readout:
        layers.append(
            ReadoutLayer("readout", (2,), rng.integers(-100, 100, (2, n_in)), flatten_input=True)
        )
    program = LoihiProgram(
        input_shape=layers[0].shape,
        input_kind=input_kind,
        layers=layers,  # type: ignore[arg-type]
        num_steps=num_steps,
        input_scale=float(rng.integers(500, 4096)),
    )
    program.validate()
    return program


def saturating_program(rng: np.random.Generator, *, mode: str, num_steps: int) -> LoihiProgram:
    """Spike input -> dense layer whose 24-bit current wraps (``mode='wrap'``) or whose voltage hits the
    negative clip (``mode='clip'``) -> a second dense layer, so the effect reaches later spikes too.

    ``wrap``: 96 inputs with weights near 254 and no current decay: a_in << 6 summed over steps passes
    2**23. ``clip``: strongly negative weights without leak drive v below -(2**23 - 1).
    """
    n_in, n_hidden = 96, 6
    if mode == "wrap":
        weight = rng.integers(200, 255, (n_hidden, n_in))
        hidden = LoihiNeuron(
            v_th_mant=rng.integers(100_000, 131_072, n_hidden),
            i_decay=0,
            v_decay=rng.integers(0, 4097, n_hidden),
        )
    else:
        weight = rng.integers(-256, -150, (n_hidden, n_in))
        weight[:, : n_in // 8] = rng.integers(
            150, 255, (n_hidden, n_in // 8)
        )  # a few excitatory inputs
        weight = grid8(weight)
        hidden = LoihiNeuron(
            v_th_mant=rng.integers(1, 2000, n_hidden),
            i_decay=rng.integers(0, 300, n_hidden),
            v_decay=0,
        )
    layers: list = [
        InputLayer("input", (n_in,), None),
        DenseLayer("hidden", (n_hidden,), hidden, weight),
        DenseLayer(
            "out", (3,), LoihiNeuron(50, 4096, 200), grid8(rng.integers(-100, 200, (3, n_hidden)))
        ),
    ]
    program = LoihiProgram(
        input_shape=(n_in,), input_kind="spikes", layers=layers, num_steps=num_steps
    )
    program.validate()
    return program


def saturation_events(program: LoihiProgram, spikes: np.ndarray) -> tuple[int, int]:
    """(current wraps, voltage clips) in the first synaptic layer, by a plain int64 transcription of
    Lava's CUBA update; ``spikes`` [T, B, N] is the program's spike input."""
    from neurocxr.exporters.netx import netx_dense_weights

    layer = program.layers[1]
    w_eff, exp = netx_dense_weights(np.asarray(layer.weight))
    a_in = np.einsum("ij,tbj->tbi", w_eff, spikes.astype(np.int64))
    a_in = a_in << exp if exp >= 0 else a_in >> -exp
    vth, i_decay, v_decay = layer.neuron.per_neuron(layer.shape)
    u = np.zeros(a_in.shape[1:], dtype=np.int64)
    v = np.zeros_like(u)
    wraps = clips = 0
    trunc = lambda x: np.sign(x) * (np.abs(x) >> 12)  # noqa: E731
    for t in range(a_in.shape[0]):
        u = trunc(u * (4096 - i_decay)) + (a_in[t] << 6)
        wraps += int(np.sum((u > 2**23) | (u <= -(2**23))))
        u = np.where(u > 2**23, u - 2**24, np.where(u <= -(2**23), u + 2**24, u))
        v = trunc(v * (4096 - v_decay)) + u
        clips += int(np.sum(np.abs(v) > 2**23 - 1))
        v = np.clip(v, -(2**23 - 1), 2**23 - 1)
        v = np.where(v > (vth << 6), 0, v)
    return wraps, clips


def random_recurrent_program(
    rng: np.random.Generator,
    *,
    input_kind: str,
    num_steps: int,
    mode: str = "plain",
    readout: bool = False,
) -> LoihiProgram:
    """Input -> (a conv, sometimes) -> recurrent dense layer -> dense -> (readout).

    ``mode='wrap'``: the recurrent layer has large positive input and recurrent weights and no current
    decay, so its 24-bit current wraps; ``'clip'``: strongly negative weights without leak drive its
    voltage into the negative clip; ``'plain'``: random CUBA parameters and weights on netx's grids.
    The recurrent layer has no bias in the saturating modes (see `recurrent_saturation_events`).
    """

    def neuron(n: int) -> LoihiNeuron:
        if rng.random() < 0.5:
            return LoihiNeuron(
                rng.integers(0, 500, n), rng.integers(0, 4097, n), rng.integers(0, 4097, n)
            )
        return LoihiNeuron(
            int(rng.integers(0, 500)), int(rng.integers(0, 4097)), int(rng.integers(0, 4097))
        )

    if mode == "plain":
        shape: tuple[int, ...] = (
            int(rng.integers(1, 3)),
            int(rng.integers(3, 6)),
            int(rng.integers(3, 6)),
        )
    else:
        shape = (96,)
    if input_kind == "bias":
        layers: list = [
            InputLayer(
                "input",
                shape,
                LoihiNeuron(int(rng.integers(100, 3000)), 4096, int(rng.integers(0, 500))),
            )
        ]
    else:
        layers = [InputLayer("input", shape, None)]
    if len(shape) == 3 and rng.random() < 0.5:
        cout = int(rng.integers(1, 4))
        out = (cout, shape[1] - 1, shape[2] - 1)
        layers.append(
            ConvLayer(
                "conv",
                out,
                neuron(cout),
                grid8(rng.integers(-100, 160, (cout, shape[0], 2, 2))),
                rng.integers(-40, 41, cout) if rng.random() < 0.5 else None,
            )
        )
        shape = out
    n_in, n = int(np.prod(shape)), int(rng.integers(3, 9))
    bias = None
    if mode == "wrap":
        weight = rng.integers(200, 255, (n, n_in))
        weight_rec = rng.integers(100, 255, (n, n))
        rec_neuron = LoihiNeuron(
            v_th_mant=rng.integers(100_000, 131_072, n), i_decay=0, v_decay=rng.integers(0, 4097, n)
        )
    elif mode == "clip":
        weight = rng.integers(-256, -150, (n, n_in))
        weight[:, : n_in // 8] = rng.integers(150, 255, (n, n_in // 8))
        weight, weight_rec = grid8(weight), grid8(rng.integers(-256, 200, (n, n)))
        rec_neuron = LoihiNeuron(
            v_th_mant=rng.integers(1, 2000, n), i_decay=rng.integers(0, 300, n), v_decay=0
        )
    else:
        lo, hi = [(-256, 255), (0, 256), (-20, 21)][int(rng.integers(0, 3))]
        joint = grid8(rng.integers(lo, hi, (n, n_in + n)))
        if not joint.any():
            joint[0, 0] = 1
        weight, weight_rec = joint[:, :n_in], joint[:, n_in:]
        if not weight.any():
            weight[0, 0] = 2
        rec_neuron = neuron(n)
        bias = rng.integers(-60, 61, n) if rng.random() < 0.5 else None
    layers.append(
        RecurrentDenseLayer(
            "rec",
            (n,),
            rec_neuron,
            weight,
            bias,
            flatten_input=len(shape) > 1,
            weight_rec=weight_rec,
        )
    )
    layers.append(
        DenseLayer("out", (3,), LoihiNeuron(50, 4096, 200), grid8(rng.integers(-100, 200, (3, n))))
    )
    if readout:
        layers.append(ReadoutLayer("readout", (2,), grid8(rng.integers(-100, 100, (2, 3)))))
    program = LoihiProgram(
        input_shape=layers[0].shape,
        input_kind=input_kind,
        layers=layers,  # type: ignore[arg-type]
        num_steps=num_steps,
        input_scale=float(rng.integers(200, 4096)),
    )
    program.validate()
    return program


def recurrent_saturation_events(
    program: LoihiProgram, spikes: np.ndarray, rec_spikes: np.ndarray
) -> tuple[int, int]:
    """(current wraps, voltage clips) in the recurrent layer ``program.layers[1]`` of a spike-input program
    without bias there, for ONE sample: ``spikes`` [T, 1, N] its input, ``rec_spikes`` [T, 1, N] the
    layer's window spikes. Before its window the layer sees nothing, so in window step ``j`` its input is
    ``W' x[j] + R' s[j-1]`` (a plain int64 transcription of Lava's update)."""
    from neurocxr.exporters.netx import netx_recurrent_weights

    layer = program.layers[1]
    assert isinstance(layer, RecurrentDenseLayer) and spikes.shape[1] == 1
    w_eff, r_eff, exp = netx_recurrent_weights(layer.weight, layer.weight_rec)
    shift = (lambda a: a << exp) if exp >= 0 else (lambda a: a >> -exp)  # noqa: E731
    vth, i_decay, v_decay = layer.neuron.per_neuron(layer.shape)
    u = np.zeros(layer.num_neurons, dtype=np.int64)
    v = np.zeros_like(u)
    prev = np.zeros_like(u)
    wraps = clips = 0
    trunc = lambda x: np.sign(x) * (np.abs(x) >> 12)  # noqa: E731
    for t in range(spikes.shape[0]):
        a_in = shift(w_eff @ spikes[t, 0].reshape(-1).astype(np.int64)) + shift(r_eff @ prev)
        u = trunc(u * (4096 - i_decay)) + (a_in << 6)
        wraps += int(np.sum((u > 2**23) | (u <= -(2**23))))
        u = np.where(u > 2**23, u - 2**24, np.where(u <= -(2**23), u + 2**24, u))
        v = trunc(v * (4096 - v_decay)) + u
        clips += int(np.sum(np.abs(v) > 2**23 - 1))
        v = np.clip(v, -(2**23 - 1), 2**23 - 1)
        s = v > (vth << 6)
        v = np.where(s, 0, v)
        assert np.array_equal(s, rec_spikes[t, 0].reshape(-1).astype(bool)), (
            f"step {t}: transcription differs"
        )
        prev = s.astype(np.int64)
    return wraps, clips
