"""netx HDF5 writer/reader: Lava's loader accepts our files, round trip, slayer files, errors."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import h5py
import numpy as np
import pytest
from _netx_programs import default_shaped_program, write_slayer_file

from neurocxr.errors import ExportError, UnsupportedLayerError
from neurocxr.exporters.netx import read_netx, write_netx
from neurocxr.exporters.program import (
    ConvLayer,
    DenseLayer,
    InputLayer,
    LoihiNeuron,
    LoihiProgram,
)


def assert_programs_equal(a: LoihiProgram, b: LoihiProgram) -> None:
    assert a.input_shape == b.input_shape and a.input_kind == b.input_kind
    assert a.num_steps == b.num_steps and a.input_scale == b.input_scale
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert type(la) is type(lb)
        assert (la.kind, la.name, tuple(la.shape), la.neuron) == (
            lb.kind,
            lb.name,
            tuple(lb.shape),
            lb.neuron,
        )
        if isinstance(la, InputLayer):
            assert (la.transform_weight, la.transform_bias, la.in_file) == (
                lb.transform_weight,
                lb.transform_bias,
                lb.in_file,
            )
            continue
        if isinstance(la, ConvLayer):
            assert (la.stride, la.padding, la.dilation, la.groups) == (
                lb.stride,
                lb.padding,
                lb.dilation,
                lb.groups,
            )
        else:
            assert la.flatten_input == lb.flatten_input
        for x, y in ((la.weight, lb.weight), (la.bias, lb.bias)):
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip(tmp_path: Path) -> None:
    program = default_shaped_program()
    path = write_netx(program, tmp_path / "net.h5")
    back = read_netx(path)
    assert_programs_equal(program, back)
    assert back.metadata["source"] == "hand-built default-shaped program"
    assert not list(tmp_path.glob("*.tmp")), "the atomic write left its temp file"


@pytest.mark.lava
def test_written_file_loads_in_lava_netx(tmp_path: Path) -> None:
    from neurocxr.hardware_sims.lava import _import_lava

    netx = _import_lava()[
        0
    ]  # not a bare import: Lava's import fails once another module fixed the mp context
    path = write_netx(default_shaped_program(), tmp_path / "net.h5")
    with contextlib.redirect_stdout(io.StringIO()):
        net = netx.hdf5.Network(net_config=str(path))
    # input neuron + 2 conv + dense + readout; netx shapes are W,H,C
    assert [type(layer).__name__ for layer in net.layers] == [
        "Input",
        "Conv",
        "Conv",
        "Dense",
        "Dense",
    ]
    assert [tuple(layer.shape) for layer in net.layers] == [
        (28, 28, 1),
        (28, 28, 16),
        (14, 14, 32),
        (128,),
        (2,),
    ]
    conv2 = net.layers[2]
    assert tuple(conv2.synapse.weight.init.shape) == (32, 6, 6, 16)  # netx's (Cout, W, H, Cin)
    # readout: default non-leaky integrator (iDecay 0 -> du = -1, vDecay 4096)
    assert int(net.layers[-1].neuron.dv.init) == 4096


def test_spike_input_program_round_trip(tmp_path: Path) -> None:
    program = LoihiProgram(
        (2, 4, 4),
        "spikes",
        [
            InputLayer("in", (2, 4, 4), None),
            DenseLayer(
                "d",
                (3,),
                LoihiNeuron(10, 100, 200),
                weight=np.arange(96).reshape(3, 32) % 7 - 3,
                bias=np.array([1, -2, 3]),
                flatten_input=True,
            ),
        ],
        num_steps=5,
    )
    back = read_netx(write_netx(program, tmp_path / "s.h5"))
    assert_programs_equal(program, back)
    assert back.input_kind == "spikes" and not back.has_readout
    with h5py.File(tmp_path / "s.h5") as f:
        assert [f["layer"][str(i)]["type"][0].decode() for i in range(3)] == [
            "input",
            "flatten",
            "dense",
        ]


@pytest.mark.lava
def test_reads_oldwrite_slayer_file(tmp_path: Path) -> None:
    path = tmp_path / "slayer.net"
    write_slayer_file(path)
    program = read_netx(path)
    assert [layer.kind for layer in program.layers] == ["input", "conv", "dense", "readout"]
    assert program.input_kind == "spikes" and program.has_readout
    assert program.layers[1].weight.shape == (2, 1, 3, 3)
    assert program.layers[1].neuron == LoihiNeuron(80, 1024, 128)
    assert program.layers[2].flatten_input and program.layers[2].weight.shape == (3, 72)
    assert any("num_steps defaults" in note for note in program.metadata["read_notes"])
    from neurocxr.hardware_sims.lava import _import_lava

    netx = _import_lava()[0]  # Lava is a dependency: failing to import it is a failure
    with contextlib.redirect_stdout(io.StringIO()):
        net = netx.hdf5.Network(net_config=str(path))
    assert len(net.layers) == 3  # conv, dense, readout (the input has no neuron)


@pytest.mark.parametrize("layer_type", ["pool", "average", "concat", "convT", "unpool"])
def test_unsupported_layer_types_are_named(tmp_path: Path, layer_type: str) -> None:
    path = tmp_path / "bad.net"
    write_slayer_file(path, layer_type=layer_type)
    with pytest.raises(UnsupportedLayerError, match=rf"'{layer_type}'.*netx itself cannot build"):
        read_netx(path)


@pytest.mark.parametrize("neuron_type", ["SDNN", "RF_PHASE"])
def test_unsupported_neuron_types_are_named(tmp_path: Path, neuron_type: str) -> None:
    path = tmp_path / "bad.net"
    write_slayer_file(path, neuron_type=neuron_type)
    with pytest.raises(UnsupportedLayerError, match=neuron_type):
        read_netx(path)


def test_writer_refuses_invalid_programs(tmp_path: Path) -> None:
    program = default_shaped_program()
    program.layers[3].flatten_input = False
    with pytest.raises(ExportError, match="flatten_input"):
        write_netx(program, tmp_path / "x.h5")
    program = default_shaped_program()
    program.layers[1].weight = program.layers[1].weight * 0 + 300  # all-positive > 255: lava-dl#170
    with pytest.raises(ExportError, match="weights"):
        write_netx(program, tmp_path / "y.h5")
    assert not (tmp_path / "x.h5").exists() and not list(tmp_path.glob("*.tmp"))


def test_missing_file_is_an_export_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        read_netx(tmp_path / "nope.h5")


def test_program_refuses_weights_the_chip_cannot_store() -> None:
    """Odd mixed-sign weights beyond [-128, 127] need 9 bits as lava-dl packs them: Lava's CPU model
    would run them (parity cannot catch it), Loihi's 8-bit synapse cannot hold them."""
    import pytest

    from neurocxr.exporters.program import ProgramError

    def program(weight: np.ndarray) -> LoihiProgram:
        layers = [
            InputLayer("input", (3,), None),
            DenseLayer("fc", (1,), LoihiNeuron(100, 4096, 0), weight),
        ]
        return LoihiProgram(input_shape=(3,), input_kind="spikes", layers=layers, num_steps=2)

    with pytest.raises(ProgramError, match="9 bits"):
        program(np.array([[253, -256, 3]])).validate()
    program(np.array([[252, -256, 4]])).validate()  # even: 8-bit mantissa x 2
    program(np.array([[127, -128, 3]])).validate()  # within [-128, 127]
    program(np.array([[255, 0, 3]])).validate()  # one sign: [0, 255]
