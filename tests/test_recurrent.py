"""Recurrent dense layers (netx ``dense_rec``): program, netx file, emulator against Lava, counts and energy.

The emulator runs recurrent programs on Lava's global timeline (`emulate_timeline`); that path is
itself checked against the windowed paths on feed-forward programs, where both must agree exactly.
Lava comparisons carry the ``lava`` marker.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from _netx_programs import (
    random_conv_program,
    random_inputs,
    random_program,
    random_recurrent_program,
    recurrent_saturation_events,
    saturating_program,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurocxr.errors import SimulationError
from neurocxr.exporters.netx import netx_recurrent_weights, read_netx, write_netx
from neurocxr.exporters.program import (
    InputLayer,
    LoihiNeuron,
    LoihiProgram,
    ProgramError,
    RecurrentDenseLayer,
)
from neurocxr.hardware_sims.emulator import emulate, emulate_timeline
from neurocxr.hardware_sims.protocol import coerce_inputs

try:  # Lava's parity check, imported here: importing it inside a hypothesis test nests its @given tests
    from test_lava_parity import assert_identical
except BaseException:  # noqa: BLE001 - pytest's skip (no Lava) is a BaseException; the lava tests then skip too
    assert_identical = None


def _self_exciting(num_steps: int = 4) -> LoihiProgram:
    """Spike input 3 -> recurrent layer 2 whose neurons, once they spike, keep themselves spiking."""
    neuron = LoihiNeuron(
        v_th_mant=100, i_decay=4096, v_decay=4096
    )  # no memory: v = this step's input
    layer = RecurrentDenseLayer(
        "rec",
        (2,),
        neuron,
        np.full((2, 3), 120, dtype=np.int64),
        weight_rec=np.array([[120, 0], [0, 120]], dtype=np.int64),
    )
    return LoihiProgram((3,), "spikes", [InputLayer("input", (3,)), layer], num_steps)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    kind=st.sampled_from(["conv", "dense", "wrap", "clip"]),
    input_kind=st.sampled_from(["spikes", "bias"]),
    steps=st.integers(1, 6),
)
def test_timeline_equals_windowed_paths_on_feed_forward_programs(
    seed: int, kind: str, input_kind: str, steps: int
) -> None:
    """Lava's global timeline, stepped one sample after another, gives what the per-window paths give
    when no layer is recurrent (spikes, readout and counts), including the current wrap and voltage clip."""
    rng = np.random.default_rng(seed)
    if kind == "conv":
        program = random_conv_program(
            rng, input_kind=input_kind, num_conv=2, num_steps=steps, readout=bool(seed % 2)
        )
    elif kind == "dense":
        program = random_program(
            rng,
            input_kind=input_kind,
            num_hidden=3,
            kinds=["conv", "dense", "dense"],
            readout=bool(seed % 2),
            num_steps=steps,
        )
    else:
        program = saturating_program(rng, mode=kind, num_steps=max(steps, 4))
    x = random_inputs(program, rng, 3)
    windowed = emulate(program, x, record=True)
    data, t = coerce_inputs(program, x, None)
    timeline = emulate_timeline(program, data, t, record=True)
    for a, b in zip(windowed.layer_spikes, timeline.layer_spikes):
        np.testing.assert_array_equal(a, b)
    if windowed.readout is not None:
        np.testing.assert_array_equal(windowed.readout, timeline.readout)
    for ca, cb in zip(windowed.counts, timeline.counts):
        for field in (
            "input_spikes",
            "output_spikes",
            "synaptic_ops",
            "dense_synaptic_ops",
            "neuron_updates",
        ):
            np.testing.assert_array_equal(getattr(ca, field), getattr(cb, field))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    mode=st.sampled_from(["plain", "plain", "wrap", "clip"]),
    input_kind=st.sampled_from(["spikes", "bias"]),
    steps=st.integers(1, 7),
    readout=st.booleans(),
    batch_size=st.integers(1, 4),
)
def test_layer_by_layer_recurrent_path_equals_the_timeline(
    seed: int, mode: str, input_kind: str, steps: int, readout: bool, batch_size: int
) -> None:
    """emulate() runs a recurrent layer sample after sample beside the batched layers; it gives exactly what
    stepping Lava's whole timeline gives (spikes, readout, counts), carries across batches included."""
    rng = np.random.default_rng(seed)
    if mode != "plain":
        input_kind, steps = "spikes", max(steps, 5)
    program = random_recurrent_program(
        rng, input_kind=input_kind, num_steps=steps, mode=mode, readout=readout
    )
    x = random_inputs(program, rng, 5)
    if mode != "plain":
        x = (rng.random(x.shape) < 0.9).astype(np.int8)
    fast = emulate(program, x, record=True, batch_size=batch_size)
    data, t = coerce_inputs(program, x, None)
    spec = emulate_timeline(program, data, t, record=True)
    for a, b in zip(fast.layer_spikes, spec.layer_spikes):
        np.testing.assert_array_equal(a, b)
    if spec.readout is not None:
        np.testing.assert_array_equal(fast.readout, spec.readout)
    for ca, cb in zip(fast.counts, spec.counts):
        for field in (
            "input_spikes",
            "output_spikes",
            "synaptic_ops",
            "dense_synaptic_ops",
            "neuron_updates",
        ):
            np.testing.assert_array_equal(getattr(ca, field), getattr(cb, field))
        if cb.recurrent_synaptic_ops is not None:
            np.testing.assert_array_equal(ca.recurrent_synaptic_ops, cb.recurrent_synaptic_ops)


def test_recurrent_layer_validation_names_the_problem() -> None:
    good = _self_exciting()
    good.validate()
    layer = good.layers[1]
    for change, pattern in [
        (
            dict(weight_rec=np.ones((2, 3), dtype=np.int64)),
            r"recurrent weight \(2, 3\) must be \(2, 2\)",
        ),
        (dict(weight_rec=None), "without recurrent weights"),
        (dict(weight_rec=np.ones((2, 2))), "recurrent weights must be integers"),
        # input weights 1 (odd) with recurrent -255: mixed sign, packed together they need 9 bits
        (
            dict(
                weight=np.ones((2, 3), dtype=np.int64),
                weight_rec=np.full((2, 2), -255, dtype=np.int64),
            ),
            "packed together, as netx does.*need 9 bits",
        ),
    ]:
        bad = LoihiProgram((3,), "spikes", [good.layers[0], replace(layer, **change)], 4)
        with pytest.raises(ProgramError, match=pattern) as info:
            bad.validate()
        assert "\n" not in str(info.value)
    with pytest.raises(ProgramError, match="needs spiking neurons"):
        LoihiProgram((3,), "spikes", [good.layers[0], replace(layer, neuron=None)], 4).validate()


def test_recurrent_weights_are_packed_together_as_netx_packs_them() -> None:
    """One exponent for both synapses, from the joint matrix: small input weights beside large recurrent
    ones are shifted less than alone would be."""
    w, r = np.array([[2, 4]]), np.array([[200]])
    w_eff, r_eff, exp = netx_recurrent_weights(w, r)
    assert exp == 0 and w_eff.tolist() == [[2, 4]] and r_eff.tolist() == [[200]]
    from neurocxr.exporters.netx import netx_dense_weights

    alone, exp_alone = netx_dense_weights(w)
    assert exp_alone < 0 and alone.tolist() != w.tolist()  # packed alone, netx would shift them up


def test_recurrent_netx_round_trip(tmp_path: Path) -> None:
    program = random_recurrent_program(
        np.random.default_rng(3), input_kind="spikes", num_steps=5, readout=True
    )
    path = write_netx(program, tmp_path / "r.net")
    with h5py.File(path) as f:
        types = [f[f"layer/{i}/type"][0].decode() for i in range(len(f["layer"]))]
        assert "dense_rec" in types
        g = f[f"layer/{types.index('dense_rec')}"]
        assert g["weight_rec"].shape == (program.layers[-3].num_neurons,) * 2
    back = read_netx(path)
    rec = next(layer for layer in back.layers if isinstance(layer, RecurrentDenseLayer))
    np.testing.assert_array_equal(rec.weight_rec, program.layers[-3].weight_rec)
    x = random_inputs(program, np.random.default_rng(0), 3)
    for a, b in zip(
        emulate(program, x, record=True).layer_spikes, emulate(back, x, record=True).layer_spikes
    ):
        np.testing.assert_array_equal(a, b)


def test_recurrent_spikes_carry_into_the_next_sample() -> None:
    """As on Lava and the chip, a recurrent layer's spikes of a sample's last step arrive at the first step
    of the next sample's window (the staggered reset clears u and v, not the synapse in flight)."""
    program = _self_exciting(num_steps=4)
    strong = np.ones((4, 1, 3), dtype=np.int8)
    silent = np.zeros((4, 1, 3), dtype=np.int8)
    alone = emulate(program, silent, record=True)
    after = emulate(program, np.concatenate([strong, silent], axis=1), record=True)
    assert alone.layer_spikes[1].sum() == 0
    assert after.layer_spikes[1][:, 0].sum() > 0
    # the silent sample keeps spiking from the carried spikes alone: every step of its window
    assert after.layer_spikes[1][1:5, 1].sum() == 4 * 2


def test_recurrent_counts_and_energy() -> None:
    """Recurrent synaptic ops: each spike of the layer times its non-zero recurrent fan-out; part of
    synaptic_ops, so the energy estimate costs them."""
    from neurocxr.energy.estimate import estimate_energy

    program = random_recurrent_program(np.random.default_rng(7), input_kind="spikes", num_steps=6)
    x = random_inputs(program, np.random.default_rng(1), 4)
    run = emulate(program, x, record=True)
    rec = (
        program.layers[1]
        if isinstance(program.layers[1], RecurrentDenseLayer)
        else program.layers[2]
    )
    k = program.layers.index(rec)
    own = run.layer_spikes[k].reshape(run.layer_spikes[k].shape[0], 4, -1).sum(axis=0)  # [B, N]
    expected_rec = own @ np.count_nonzero(rec.weight_rec, axis=0)
    c = run.counts[k]
    np.testing.assert_array_equal(c.recurrent_synaptic_ops, expected_rec)
    prev = run.layer_spikes[k - 1].reshape(run.layer_spikes[k - 1].shape[0], 4, -1).sum(axis=0)
    np.testing.assert_array_equal(
        c.synaptic_ops, prev @ np.count_nonzero(rec.weight, axis=0) + expected_rec
    )
    assert c.dense_synaptic_ops[0] == (rec.weight.size + rec.weight_rec.size) * 6
    assert c.fan_in == rec.weight.shape[1] + rec.num_neurons
    assert expected_rec.sum() > 0 and c.mean()["recurrent_synaptic_ops"] == expected_rec.mean()
    assert "recurrent_synaptic_ops" not in run.counts[-1].to_dict()  # feed-forward layers unchanged
    with_rec = estimate_energy(run.counts, "loihi")
    without = [
        replace(
            cc,
            synaptic_ops=cc.synaptic_ops
            - (cc.recurrent_synaptic_ops if cc.recurrent_synaptic_ops is not None else 0),
        )
        for cc in run.counts
    ]
    assert with_rec.dynamic_j > estimate_energy(without, "loihi").dynamic_j


def test_emulate_refuses_a_recurrent_program_it_cannot_run() -> None:
    program = _self_exciting()
    program.layers[1].weight_rec = np.ones((3, 3), dtype=np.int64)
    with pytest.raises(SimulationError, match="not runnable.*recurrent weight"):
        emulate(program, np.zeros((4, 1, 3), dtype=np.int8))


@pytest.mark.lava
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 2**31 - 1),
    input_kind=st.sampled_from(["spikes", "bias"]),
    steps=st.integers(1, 6),
    readout=st.booleans(),
)
def test_random_recurrent_programs_equal_lava(
    tmp_path_factory: pytest.TempPathFactory, seed: int, input_kind: str, steps: int, readout: bool
) -> None:
    from neurocxr.hardware_sims.lava import run_lava

    rng = np.random.default_rng(seed)
    program = random_recurrent_program(rng, input_kind=input_kind, num_steps=steps, readout=readout)
    path = write_netx(program, tmp_path_factory.mktemp("rec") / "r.net")
    x = random_inputs(program, rng, 3)
    assert_identical(
        emulate(program, x, record=True),
        run_lava(path, x, num_steps=steps, program=program, record=True),
    )


@pytest.mark.lava
@pytest.mark.parametrize("mode", ["wrap", "clip"])
def test_saturating_recurrent_programs_equal_lava(tmp_path: Path, mode: str) -> None:
    """The recurrent layer's 24-bit current wraps (or its voltage clips): still spike-identical to Lava."""
    from neurocxr.hardware_sims.lava import run_lava

    rng = np.random.default_rng(11 if mode == "wrap" else 12)
    program = random_recurrent_program(rng, input_kind="spikes", num_steps=10, mode=mode)
    path = write_netx(program, tmp_path / "s.net")
    x = (rng.random((10, 3, 96)) < 0.9).astype(np.int8)
    emu = emulate(program, x, record=True)
    assert_identical(emu, run_lava(path, x, num_steps=10, program=program, record=True))
    first = emulate(program, x[:, :1], record=True)
    wraps, clips = recurrent_saturation_events(program, x[:, :1], first.layer_spikes[1][1:11])
    assert (wraps if mode == "wrap" else clips) > 0
