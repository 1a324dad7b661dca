"""netx files as users bring them: written by lava-dl's slayer exporter, read, emulated, run on Lava.

Fixtures are written at test time into tmp dirs by tests/_slayer_files.py (small and fast). The
Lava comparisons are marked ``lava``.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from _slayer_files import (  # noqa: E402
    conv_bias_input_file,
    conv_recurrent_file,
    conv_spike_input_file,
    dense_first_file,
    edit_neuron,
    older_slayer_fields,
    recurrent_file,
)
from typer.testing import CliRunner

from neurocxr.errors import ExportError, UnsupportedLayerError  # noqa: E402
from neurocxr.exporters.netx import read_netx, write_netx  # noqa: E402
from neurocxr.exporters.program import ConvLayer, DenseLayer, InputLayer, LoihiProgram  # noqa: E402
from neurocxr.hardware_sims.emulator import emulate  # noqa: E402

STEPS = 6


def _inputs(program: LoihiProgram, n: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if program.input_kind == "spikes":
        return (rng.random((STEPS, n, *program.input_shape)) < 0.4).astype(np.int8)
    return rng.random((n, *program.input_shape))


def test_dense_first_file_takes_spike_trains_sized_by_the_weight(tmp_path: Path) -> None:
    program = read_netx(dense_first_file(tmp_path / "d.net"), num_steps=STEPS)
    first = program.layers[0]
    assert isinstance(first, InputLayer) and not first.in_file and first.neuron is None
    assert (
        program.input_kind == "spikes"
        and program.input_shape == (20,)
        and program.num_steps == STEPS
    )
    assert [type(layer) for layer in program.layers[1:]] == [DenseLayer, DenseLayer]
    # slayer's shared_param=False: one decay per neuron, kept as an array, not its first element
    i_decay = program.layers[1].neuron.i_decay
    assert (
        isinstance(i_decay, np.ndarray)
        and i_decay.shape == (12,)
        and len(set(i_decay.tolist())) > 1
    )
    assert any("no input layer" in note for note in program.metadata["read_notes"])
    # written back without an input layer, read back the same
    back = read_netx(write_netx(program, tmp_path / "again.net"))
    with h5py.File(tmp_path / "again.net") as f:
        assert f["layer/0/type"][0].decode() == "dense"
    assert not back.layers[0].in_file and back.layers[1].neuron == program.layers[1].neuron
    run = emulate(program, _inputs(program))
    assert all(c.output_spikes.sum() > 0 for c in run.counts)


def test_per_neuron_parameters_change_the_dynamics(tmp_path: Path) -> None:
    """The emulator uses every neuron's own parameters: forcing them uniform changes the spikes."""
    program = read_netx(conv_spike_input_file(tmp_path / "c.net"), num_steps=STEPS)
    conv = program.layers[1]
    assert isinstance(conv, ConvLayer) and conv.groups == 2 and conv.dilation == (2, 2)
    assert conv.neuron.v_th_mant.tolist() == [40, 64, 90, 120]
    x = _inputs(program)
    per_channel = emulate(program, x, record=True)
    from dataclasses import replace

    conv.neuron = replace(conv.neuron, v_th_mant=40, i_decay=0, v_decay=4096)
    uniform = emulate(program, x, record=True)
    c = per_channel.layer_spikes[1]
    u = uniform.layer_spikes[1]
    assert np.array_equal(c[:, :, 0], u[:, :, 0])  # channel 0 kept its parameters
    assert not np.array_equal(c[:, :, 1:], u[:, :, 1:])


def test_input_transform_encodes_the_image(tmp_path: Path) -> None:
    program = read_netx(conv_bias_input_file(tmp_path / "b.net"), num_steps=STEPS, input_scale=0.5)
    first = program.input_layer
    # slayer Input(weight=2.0, bias=0.5) exports weight 128, bias 32 (x 64): bias_mant = 128 * x * s + 32
    assert (first.transform_weight, first.transform_bias) == (128.0, 32.0)
    x = np.linspace(0, 1, 80).reshape(1, 1, 10, 8)
    np.testing.assert_array_equal(
        program.quantise_input(x), np.rint(128 * x * 0.5 + 32).astype(np.int64)
    )
    assert isinstance(program.layers[1].neuron.i_decay, np.ndarray)  # per channel (4,)
    assert program.layers[2].stride == (1, 2) and program.layers[2].padding == (1, 0)


def test_graded_spike_flag_and_refdelay_are_read_as_netx_runs_them(tmp_path: Path) -> None:
    """netx ignores gradedSpike / refDelay for CUBA neurons: same spikes, and the reader says so."""
    path = dense_first_file(tmp_path / "g.net")
    plain = read_netx(path, num_steps=STEPS)
    edit_neuron(path, 0, refDelay=np.int64(2), gradedSpike=np.bool_(True))
    graded = read_netx(path, num_steps=STEPS)
    notes = " ".join(graded.metadata["read_notes"])
    assert "refDelay [2]" in notes or "refDelay 2" in notes
    assert "gradedSpike is true" in notes
    x = _inputs(plain)
    a, b = emulate(plain, x, record=True), emulate(graded, x, record=True)
    for sa, sb in zip(a.layer_spikes, b.layer_spikes):
        np.testing.assert_array_equal(sa, sb)


def test_older_slayer_layout_reads_with_its_training_fields_ignored(tmp_path: Path) -> None:
    """scaleRho/tauRho/theta/wgtExp (older slayer's export, written by its own export_hdf5) are ignored, as
    netx ignores them, each named in a read note; the network is the one today's layout gives."""
    current = read_netx(conv_bias_input_file(tmp_path / "now.net"), num_steps=STEPS)
    with older_slayer_fields():
        path = conv_bias_input_file(tmp_path / "old.net")
    with h5py.File(path) as f:
        assert {"scaleRho", "tauRho", "theta", "wgtExp"} <= set(f["layer/1/neuron"].keys())
    older = read_netx(path, num_steps=STEPS)
    notes = " ".join(older.metadata["read_notes"])
    for field in ("scaleRho", "tauRho", "theta", "wgtExp"):
        assert f"{field} (training-only" in notes
    assert [type(layer) for layer in older.layers] == [type(layer) for layer in current.layers]
    for a, b in zip(current.layers[1:], older.layers[1:]):
        assert a.neuron == b.neuron and np.array_equal(a.weight, b.weight)
    x = _inputs(current)
    for sa, sb in zip(
        emulate(current, x, record=True).layer_spikes, emulate(older, x, record=True).layer_spikes
    ):
        np.testing.assert_array_equal(sa, sb)


def test_unknown_cuba_field_and_slayer_descriptors_are_ignored_as_netx_does(tmp_path: Path) -> None:
    """A CUBA neuron field netx never reads (Loihi 1's vMinExp) and a conv's delay change nothing in Lava: read
    with a note; slayer's shape descriptors (inFeatures, ...) need no note."""
    path = conv_spike_input_file(tmp_path / "c.net")
    plain = read_netx(path, num_steps=STEPS)
    edit_neuron(path, 1, vMinExp=np.int64(3))
    with h5py.File(path, "r+") as f:
        f["layer/1"].create_dataset("delay", data=np.ones(4))
        assert "inChannels" in f["layer/1"]
    edited = read_netx(path, num_steps=STEPS)
    notes = " ".join(edited.metadata["read_notes"])
    assert (
        "vMinExp (not read by netx for CUBA neurons" in notes
        and "conv fields not read by netx" in notes
    )
    assert "inChannels" not in notes and "kernelSize" not in notes
    x = _inputs(plain)
    for sa, sb in zip(
        emulate(plain, x, record=True).layer_spikes, emulate(edited, x, record=True).layer_spikes
    ):
        np.testing.assert_array_equal(sa, sb)


def test_slayer_recurrent_file_reads_as_recurrent_dense(tmp_path: Path) -> None:
    from neurocxr.exporters.program import RecurrentDenseLayer

    program = read_netx(recurrent_file(tmp_path / "r.net"), num_steps=STEPS)
    rec = program.layers[1]
    assert (
        isinstance(rec, RecurrentDenseLayer)
        and rec.weight_rec.shape == (12, 12)
        and rec.weight.shape == (12, 20)
    )
    assert program.is_recurrent
    notes = " ".join(program.metadata["read_notes"])
    assert "weight_exp (slayer's weight-scale norm exponent" in notes
    back = read_netx(write_netx(program, tmp_path / "again.net"))
    with h5py.File(tmp_path / "again.net") as f:
        assert f["layer/0/type"][0].decode() == "dense_rec" and f["layer/0/weight_rec"].shape == (
            12,
            12,
        )
    assert np.array_equal(back.layers[1].weight_rec, rec.weight_rec)
    run = emulate(program, _inputs(program))
    assert (
        run.counts[1].recurrent_synaptic_ops is not None
        and run.counts[1].recurrent_synaptic_ops.sum() > 0
    )
    assert np.all(run.counts[1].synaptic_ops >= run.counts[1].recurrent_synaptic_ops)


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "case,error,pattern",
    [
        ("truncated", ExportError, "truncated or not HDF5"),
        ("text", ExportError, "not a readable HDF5"),
        ("foreign_hdf5", ExportError, "no /layer group"),
        ("conv_first", UnsupportedLayerError, "starts with a conv layer and no input layer"),
        ("sdnn", UnsupportedLayerError, "'SDNN'"),
        ("delay", UnsupportedLayerError, "'delay'"),
        ("complex_weight", UnsupportedLayerError, "'weight/real'.*complex weights"),
        ("pool", UnsupportedLayerError, "'pool'.*NotImplementedError"),
        ("unknown_type", UnsupportedLayerError, "unknown layer type 'skip'.*would skip this layer"),
        ("per_neuron_conv", ExportError, "one value per channel"),
        ("dense_rec_without_weight_rec", ExportError, "dense_rec layer without 'weight_rec'"),
        ("dense_rec_without_neuron", UnsupportedLayerError, "dense_rec layer without neuron group"),
        ("message_bits", UnsupportedLayerError, "'messageBits'.*cannot load it"),
        ("no_weight", ExportError, "without 'weight'"),
    ],
)
def test_bad_files_are_refused_by_name(
    tmp_path: Path, case: str, error: type, pattern: str
) -> None:
    path = tmp_path / f"{case}.net"
    if case == "truncated":
        _truncate(conv_bias_input_file(path))
    elif case == "text":
        path.write_text("layer 0: dense\n")
    elif case == "foreign_hdf5":
        with h5py.File(path, "w") as f:
            f.create_dataset("images", data=np.zeros((2, 3)))
    elif case == "conv_first":
        conv_spike_input_file(path)
        with h5py.File(path, "r+") as f:  # drop the shape-only input layer, renumber
            del f["layer/0"]
            for i in range(1, len(f["layer"]) + 1):
                f.move(f"layer/{i}", f"layer/{i - 1}")
    elif case == "sdnn":
        dense_first_file(path)
        edit_neuron(path, 1, type="SDNN")
    elif case == "delay":
        dense_first_file(path)
        with h5py.File(path, "r+") as f:
            f["layer/1"].create_dataset("delay", data=np.ones(4))
    elif case == "complex_weight":
        dense_first_file(path)
        with h5py.File(path, "r+") as f:
            w = f["layer/1/weight"][()]
            del f["layer/1/weight"]
            f["layer/1"].create_dataset("weight/real", data=w)
            f["layer/1"].create_dataset("weight/imag", data=w)
    elif case in ("pool", "unknown_type"):
        dense_first_file(path)
        with h5py.File(path, "r+") as f:
            del f["layer/1/type"]
            f["layer/1"].create_dataset(
                "type", (1,), "S10", [case.replace("unknown_type", "skip").encode()]
            )
    elif case == "per_neuron_conv":
        conv_spike_input_file(path)
        edit_neuron(path, 1, vThMant=np.arange(4 * 9 * 7) + 10)
    elif case == "dense_rec_without_weight_rec":
        recurrent_file(path)
        with h5py.File(path, "r+") as f:
            del f["layer/0/weight_rec"]
    elif case == "dense_rec_without_neuron":
        recurrent_file(path)
        with h5py.File(path, "r+") as f:
            del f["layer/0/neuron"]
    elif case == "message_bits":
        dense_first_file(path)
        edit_neuron(path, 0, messageBits=np.int64(3))
    elif case == "no_weight":
        dense_first_file(path)
        with h5py.File(path, "r+") as f:
            del f["layer/1/weight"]
    with pytest.raises(error, match=pattern) as info:
        read_netx(path)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_cli_netx_options_and_refusal(tmp_path: Path) -> None:
    from neurocxr.cli import app

    runner = CliRunner()
    path = conv_spike_input_file(tmp_path / "c.net")
    res = runner.invoke(
        app, ["netx", str(path), "--num-steps", "5", "--samples", "2"], catch_exceptions=False
    )
    assert res.exit_code == 0, res.output
    assert "5 steps" in res.output
    bad = _truncate(dense_first_file(tmp_path / "t.net"))
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "neurocxr.cli", "netx", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines() + proc.stdout.strip().splitlines()) == 1
    assert "truncated" in proc.stderr + proc.stdout


@pytest.mark.lava
@pytest.mark.parametrize(
    "make,older",
    [
        (dense_first_file, False),
        (conv_bias_input_file, False),
        (conv_spike_input_file, False),
        (dense_first_file, True),
        (conv_bias_input_file, True),
        (recurrent_file, False),
        (conv_recurrent_file, True),
    ],
    ids=[
        "dense_first_per_neuron",
        "conv_bias_transform",
        "conv_spikes_per_channel",
        "older_dense_first",
        "older_conv_bias",
        "recurrent_norm",
        "older_conv_recurrent",
    ],
)
def test_slayer_files_emulator_equals_lava(tmp_path: Path, make, older: bool) -> None:
    from test_lava_parity import assert_identical

    from neurocxr.hardware_sims.lava import run_lava

    if older:  # older slayer's field layout, written by slayer's own export_hdf5
        with older_slayer_fields():
            path = make(tmp_path / "f.net")
    else:
        path = make(tmp_path / "f.net")
    if make is dense_first_file:  # fields netx reads but does not use for CUBA neurons
        edit_neuron(path, 0, gradedSpike=np.bool_(True), refDelay=np.int64(2))
    program = read_netx(path, num_steps=STEPS, input_scale=0.8)
    x = _inputs(program, n=2, seed=4)
    emu = emulate(program, x, record=True)
    lava = run_lava(path, x, num_steps=STEPS, program=program, record=True)
    assert_identical(emu, lava)
    assert all(c.output_spikes.sum() > 0 for c in emu.counts[1:] if c.kind != "dense_readout")
