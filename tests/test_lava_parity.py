"""The central guarantee: the emulator equals Lava's fixed-point simulator spike for spike.

Runs Lava (sequentially; Lava spawns processes). Marked ``lava``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _netx_programs import (
    default_shaped_program,
    random_conv_program,
    random_images,
    random_inputs,
    random_program,
    saturating_program,
    saturation_events,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurocxr.errors import SimulationError
from neurocxr.exporters.netx import netx_dense_weights, write_netx
from neurocxr.hardware_sims.emulator import emulate
from neurocxr.hardware_sims.lava import run_lava

pytestmark = pytest.mark.lava


def assert_identical(emu, lava) -> None:
    assert emu.time_steps == lava.time_steps
    assert len(emu.layer_spikes) == len(lava.layer_spikes)
    for k, (a, b) in enumerate(zip(emu.layer_spikes, lava.layer_spikes)):
        assert a.shape == b.shape, f"layer {k} shape"
        mismatch = int(np.sum(a != b))
        assert mismatch == 0, f"layer {k}: {mismatch} spikes differ"
    if emu.readout is None:
        assert lava.readout is None
    else:
        np.testing.assert_array_equal(emu.readout, lava.readout)
    for ce, cl in zip(emu.counts, lava.counts):
        for field in ("input_spikes", "output_spikes", "synaptic_ops", "neuron_updates"):
            np.testing.assert_array_equal(
                getattr(ce, field), getattr(cl, field), err_msg=f"{ce.name}.{field}"
            )


def test_default_shaped_program_parity(tmp_path: Path) -> None:
    program = default_shaped_program(num_steps=8)
    path = write_netx(program, tmp_path / "default.net")
    images = random_images(3, seed=5)
    emu = emulate(program, images, record=True)
    lava = run_lava(path, images, num_steps=8, program=program, record=True)
    assert_identical(emu, lava)
    # the check has teeth: layers are active but not saturated, and samples differ
    for c in emu.counts[1:-1]:
        assert 0 < c.output_spikes.sum() < c.neuron_updates.sum()
    assert not np.array_equal(emu.readout[0], emu.readout[1])
    assert lava.metadata["compile_s"] > 0 and lava.metadata["select_tag"] == "fixed_pt"


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**31 - 1),
    input_kind=st.sampled_from(["bias", "spikes"]),
    kinds=st.lists(st.sampled_from(["conv", "dense"]), min_size=1, max_size=2),
    readout=st.booleans(),
    num_steps=st.integers(1, 6),
    samples=st.integers(1, 3),
)
def test_random_program_parity(
    tmp_path: Path,
    seed: int,
    input_kind: str,
    kinds: list[str],
    readout: bool,
    num_steps: int,
    samples: int,
) -> None:
    rng = np.random.default_rng(seed)
    program = random_program(
        rng,
        input_kind=input_kind,
        num_hidden=len(kinds),
        kinds=kinds,
        readout=readout,
        num_steps=num_steps,
    )
    x = random_inputs(program, rng, samples)
    path = write_netx(program, tmp_path / f"rand{seed}.net")
    emu = emulate(program, x, record=True)
    lava = run_lava(path, x, num_steps=num_steps, program=program, record=True)
    assert_identical(emu, lava)


def test_dense_packing_matches_netx_and_lava() -> None:
    from neurocxr.hardware_sims.lava import _import_lava

    _import_lava()  # Lava's own import fails once another module fixed the multiprocessing context
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    rng = np.random.default_rng(11)
    for lo, hi in [(-256, 255), (0, 256), (-256, 1), (-256, 0), (-5, 9), (0, 3), (-300, 400)]:
        w = rng.integers(lo, hi, (6, 9))
        w[0, 0] = lo if lo < 0 else max(w[0, 0], 1)
        packed, _, exp, _ = optimize_weight_bits(w.copy())
        _, num_bits, _, _ = optimize_weight_bits(w.copy())
        mode = determine_sign_mode(packed)
        lava_w = truncate_weights(clip_weights(packed, mode, num_bits=8), mode, num_bits)
        ours, our_exp = netx_dense_weights(w)
        np.testing.assert_array_equal(ours, lava_w)
        assert our_exp == exp


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**31 - 1),
    input_kind=st.sampled_from(["bias", "spikes"]),
    num_conv=st.integers(1, 2),
    readout=st.booleans(),
    num_steps=st.integers(2, 5),
)
def test_random_conv_geometry_parity(
    tmp_path: Path, seed: int, input_kind: str, num_conv: int, readout: bool, num_steps: int
) -> None:
    """Non-square kernels, unequal strides / paddings / dilations, groups, per-channel neurons: against Lava."""
    rng = np.random.default_rng(seed)
    program = random_conv_program(
        rng, input_kind=input_kind, num_conv=num_conv, num_steps=num_steps, readout=readout
    )
    x = random_inputs(program, rng, 2)
    path = write_netx(program, tmp_path / f"conv{seed}.net")
    emu = emulate(program, x, record=True)
    lava = run_lava(path, x, num_steps=num_steps, program=program, record=True)
    assert_identical(emu, lava)


@settings(
    max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(["wrap", "clip"]))
def test_current_wrap_and_voltage_clip_parity(tmp_path: Path, seed: int, mode: str) -> None:
    """Programs that force Lava's 24-bit current wrap or its voltage clip, compared against Lava."""
    rng = np.random.default_rng(seed)
    program = saturating_program(rng, mode=mode, num_steps=12)
    x = (rng.random((12, 2, *program.input_shape)) < 0.85).astype(np.int8)
    wraps, clips = saturation_events(program, x)
    assert (wraps if mode == "wrap" else clips) > 0, (
        "the program must exercise the saturation it is for"
    )
    path = write_netx(program, tmp_path / f"sat{seed}.net")
    emu = emulate(program, x, record=True)
    lava = run_lava(path, x, num_steps=12, program=program, record=True)
    assert_identical(emu, lava)


def test_output_only_monitor_gives_the_same_result(tmp_path: Path) -> None:
    # the benchmark times Lava with one sink on the output layer: same output and readout, no counts
    program = default_shaped_program(num_steps=5)
    path = write_netx(program, tmp_path / "default.net")
    images = random_images(2, seed=9)
    full = run_lava(path, images, num_steps=5, program=program)
    lean = run_lava(path, images, num_steps=5, program=program, monitor="output")
    np.testing.assert_array_equal(lean.output_spikes, full.output_spikes)
    np.testing.assert_array_equal(lean.readout, full.readout)
    assert lean.counts == [] and lean.metadata["monitor"] == "output"
    assert full.output_spikes.any()
    with pytest.raises(SimulationError, match="monitor"):
        run_lava(path, images, num_steps=5, program=program, monitor="none")
    with pytest.raises(SimulationError, match="record=True needs"):
        run_lava(path, images, num_steps=5, program=program, monitor="output", record=True)
