"""The whole-program fused kernel against the emulator's layer-by-layer path (itself tested against Lava).

Every output the emulator gives (each layer's spikes, the readout, every count) must be identical
whichever path runs, for random programs of every layer kind and geometry, both input kinds, per-
neuron parameters, the 24-bit wraps and the voltage clip, int32 and int64 plans.
"""

from __future__ import annotations

import numpy as np
import pytest
from _netx_programs import (
    random_conv_program,
    random_inputs,
    random_program,
    saturating_program,
    saturation_events,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurocxr.exporters.program import DenseLayer, InputLayer, LoihiNeuron, LoihiProgram
from neurocxr.hardware_sims import emulator as emulator_module
from neurocxr.hardware_sims import network_kernel
from neurocxr.hardware_sims.emulator import emulate

pytestmark = pytest.mark.skipif(not network_kernel.available(), reason="numba is not installed")


def _layer_by_layer(
    program: LoihiProgram, inputs: np.ndarray, monkeypatch: pytest.MonkeyPatch, **kw
):
    with monkeypatch.context() as m:
        m.setattr(network_kernel, "available", lambda: False)
        return emulate(program, inputs, record=True, **kw)


def assert_same_run(fused, reference) -> None:
    assert fused.metadata["kernel"].startswith("fused-")
    assert "kernel" not in reference.metadata
    for k, (a, b) in enumerate(zip(fused.layer_spikes, reference.layer_spikes)):
        assert a.shape == b.shape and a.dtype == b.dtype, f"layer {k}"
        assert np.array_equal(a, b), f"layer {k}: {int(np.sum(a != b))} spikes differ"
    np.testing.assert_array_equal(fused.output_spikes, reference.output_spikes)
    if reference.readout is None:
        assert fused.readout is None
    else:
        np.testing.assert_array_equal(fused.readout, reference.readout)
    for cf, cr in zip(fused.counts, reference.counts):
        for field in (
            "input_spikes",
            "output_spikes",
            "synaptic_ops",
            "dense_synaptic_ops",
            "neuron_updates",
        ):
            np.testing.assert_array_equal(
                getattr(cf, field), getattr(cr, field), err_msg=f"{cf.name}.{field}"
            )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**31 - 1),
    input_kind=st.sampled_from(["bias", "spikes"]),
    kinds=st.lists(st.sampled_from(["conv", "dense"]), min_size=1, max_size=3),
    readout=st.booleans(),
    num_steps=st.integers(1, 7),
    samples=st.integers(1, 5),
)
def test_random_programs_match_layer_by_layer(
    monkeypatch: pytest.MonkeyPatch,
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
    inputs = random_inputs(program, rng, samples)
    assert_same_run(
        emulate(program, inputs, record=True), _layer_by_layer(program, inputs, monkeypatch)
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**31 - 1),
    input_kind=st.sampled_from(["bias", "spikes"]),
    num_conv=st.integers(1, 3),
    readout=st.booleans(),
    num_steps=st.integers(1, 6),
    threads=st.sampled_from([1, 2]),
)
def test_random_conv_geometry_matches_layer_by_layer(
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    input_kind: str,
    num_conv: int,
    readout: bool,
    num_steps: int,
    threads: int,
) -> None:
    # non-square kernels, unequal strides and paddings, dilation, groups, per-channel neuron parameters
    rng = np.random.default_rng(seed)
    program = random_conv_program(
        rng, input_kind=input_kind, num_conv=num_conv, num_steps=num_steps, readout=readout
    )
    inputs = random_inputs(program, rng, 4)
    assert_same_run(
        emulate(program, inputs, record=True, threads=threads),
        _layer_by_layer(program, inputs, monkeypatch),
    )


@pytest.mark.parametrize("mode", ["wrap", "clip"])
def test_current_wrap_and_voltage_clip_match(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    rng = np.random.default_rng(3)
    program = saturating_program(rng, mode=mode, num_steps=12)
    inputs = (rng.random((12, 6, *program.input_shape)) < 0.85).astype(np.int8)
    wraps, clips = saturation_events(program, inputs)
    assert (wraps if mode == "wrap" else clips) > 0, (
        "the program must exercise the saturation it is for"
    )
    assert_same_run(
        emulate(program, inputs, record=True), _layer_by_layer(program, inputs, monkeypatch)
    )


def _int64_program(num_steps: int = 6) -> LoihiProgram:
    """A dense layer so wide that its current can pass 2**31 without wrapping back: only int64 is exact."""
    rng = np.random.default_rng(0)
    n_in = 40_000
    layers = [
        InputLayer("input", (n_in,), None),
        DenseLayer(
            "wide",
            (4,),
            LoihiNeuron(v_th_mant=131_000, i_decay=0, v_decay=0),
            rng.integers(120, 127, (4, n_in)) * 2,
        ),
        DenseLayer(
            "out", (2,), LoihiNeuron(10, 4096, 0), np.array([[100, -60, 20, 8], [-30, 90, 4, 60]])
        ),
    ]
    program = LoihiProgram(
        input_shape=(n_in,), input_kind="spikes", layers=layers, num_steps=num_steps
    )
    program.validate()
    return program


def test_int64_plan_when_int32_could_overflow(monkeypatch: pytest.MonkeyPatch) -> None:
    program = _int64_program()
    prepared = emulator_module._prepare(program)
    u_bounds = [
        emulator_module._neuron_bounds(p.a_max, p.bias_max, p.du_factor, p.dv_factor, 6)[0]
        for p in prepared[1:]
    ]
    assert max(u_bounds) > 2**31
    assert network_kernel.plan_dtype(prepared, u_bounds) == np.dtype(np.int64)
    rng = np.random.default_rng(1)
    inputs = (rng.random((6, 3, 40_000)) < 0.9).astype(np.int8)
    fused = emulate(program, inputs, record=True)
    assert fused.metadata["kernel"] == "fused-int64"
    assert_same_run(fused, _layer_by_layer(program, inputs, monkeypatch))


def test_small_programs_use_int32() -> None:
    rng = np.random.default_rng(2)
    program = random_program(
        rng, input_kind="spikes", num_hidden=2, kinds=["conv", "dense"], readout=True, num_steps=4
    )
    result = emulate(program, random_inputs(program, rng, 2))
    assert result.metadata["kernel"] == "fused-int32"


def test_chunks_threads_and_recording_do_not_change_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(5)
    program = random_conv_program(rng, input_kind="bias", num_conv=2, num_steps=5, readout=True)
    inputs = random_inputs(program, rng, 11)
    whole = emulate(program, inputs, record=True, threads=1)
    monkeypatch.setattr(emulator_module, "FUSED_CHUNK", 3)
    chunked = emulate(program, inputs, record=False, threads=2)
    np.testing.assert_array_equal(chunked.output_spikes, whole.output_spikes)
    np.testing.assert_array_equal(chunked.readout, whole.readout)
    assert chunked.layer_spikes is None
    for a, b in zip(chunked.counts, whole.counts):
        np.testing.assert_array_equal(a.synaptic_ops, b.synaptic_ops)
        np.testing.assert_array_equal(a.output_spikes, b.output_spikes)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 12),
    kernel=st.integers(1, 7),
    stride=st.integers(1, 4),
    padding=st.integers(0, 3),
)
def test_row_runs_cover_exactly_the_conv_taps(
    size: int, kernel: int, stride: int, padding: int
) -> None:
    out_size = (size + 2 * padding - kernel) // stride + 1
    if out_size < 1:
        return
    layout = network_kernel.row_run_layout(size, out_size, kernel, stride, padding, 1)
    assert layout is not None
    order, table = layout
    assert sorted(order.tolist()) == list(range(kernel))
    table = table.reshape(size, 3)
    for x in range(size):
        expected = {
            (k, (x + padding - k) // stride)
            for k in range(kernel)
            if (x + padding - k) >= 0
            and (x + padding - k) % stride == 0
            and (x + padding - k) // stride < out_size
        }
        count, first, first_out = (int(v) for v in table[x])
        got = {(int(order[first + j]), first_out + j) for j in range(count)}
        assert got == expected


@pytest.mark.parametrize(
    "kernel,stride,padding,dilation",
    [
        ((3, 3), (1, 1), (1, 1), (1, 1)),
        ((3, 3), (2, 2), (1, 1), (1, 1)),
        ((2, 5), (1, 2), (0, 2), (2, 1)),
        ((1, 1), (1, 1), (0, 0), (1, 1)),
    ],
)
def test_single_channel_pattern_lookup_matches(
    monkeypatch: pytest.MonkeyPatch, kernel, stride, padding, dilation
) -> None:
    # dense single-channel input takes the pattern-lookup path (sparse steps the spike path); both exact
    from neurocxr.exporters.program import ConvLayer, ReadoutLayer

    rng = np.random.default_rng(11)
    h = w = 9
    ho = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    layers = [
        InputLayer("input", (1, h, w), None),
        ConvLayer(
            "conv",
            (5, ho, wo),
            LoihiNeuron(v_th_mant=rng.integers(50, 300, 5), i_decay=1024, v_decay=300),
            rng.integers(-128, 128, (5, 1, *kernel)),
            rng.integers(-20, 20, 5),
            stride=stride,
            padding=padding,
            dilation=dilation,
        ),
        ReadoutLayer(
            "readout", (2,), rng.integers(-128, 128, (2, 5 * ho * wo)), flatten_input=True
        ),
    ]
    program = LoihiProgram(input_shape=(1, h, w), input_kind="spikes", layers=layers, num_steps=8)
    program.validate()
    plan = network_kernel.build_plan(program, emulator_module._prepare(program), np.dtype(np.int32))
    assert plan.meta[1, network_kernel.LUT_OFF] >= 0
    # steps alternate dense (lookup) and sparse (spike path)
    density = np.where(np.arange(8) % 2 == 0, 0.9, 0.05)[:, None, None, None, None]
    inputs = (rng.random((8, 5, 1, h, w)) < density).astype(np.int8)
    assert_same_run(
        emulate(program, inputs, record=True), _layer_by_layer(program, inputs, monkeypatch)
    )


def test_scratch_limit_falls_back_to_layer_by_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    program = random_program(
        rng, input_kind="bias", num_hidden=2, kinds=["conv", "dense"], readout=True, num_steps=6
    )
    inputs = random_inputs(program, rng, 3)
    fused = emulate(program, inputs)
    assert network_kernel.scratch_bytes(program, 6, 2) > 0
    monkeypatch.setattr(emulator_module, "FUSED_SCRATCH_LIMIT", 0)
    fallback = emulate(program, inputs)
    assert "kernel" not in fallback.metadata and fused.metadata["kernel"].startswith("fused-")
    np.testing.assert_array_equal(fallback.readout, fused.readout)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**31 - 1),
    cin=st.sampled_from([8, 16, 24]),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    pool=st.sampled_from([1, 2, 3]),
    input_kind=st.sampled_from(["bias", "spikes"]),
)
def test_byte_pattern_delivery_matches(
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    cin: int,
    kernel: int,
    stride: int,
    padding: int,
    pool: int,
    input_kind: str,
) -> None:
    # multi-channel convs (channels a multiple of 8) deliver dense steps by channel-byte pattern, pooled ones
    # (block-constant kernels) by bit plane of the block counts; sparse steps by spike. A dense step of the
    # layer before reaches them as its spike map (no event list), a sparse one as events; all exact
    from neurocxr.exporters.program import ConvLayer, ReadoutLayer

    rng = np.random.default_rng(seed)
    h = w = int(rng.integers(6, 11))
    if (
        pool > 1
    ):  # an average pool folded into the conv: kernel constant on pool x pool blocks, stride = pool
        stride, small = pool, rng.integers(-60, 61, (4, cin, kernel, kernel))
        weight = np.repeat(np.repeat(small, pool, axis=2), pool, axis=3)
    else:
        weight = rng.integers(-60, 61, (4, cin, kernel, kernel))
    k = weight.shape[2]
    padding = min(padding, k - 1)
    ho = (h + 2 * padding - k) // stride + 1
    if ho < 1:
        return
    in_shape = (2, h, w)
    input_neuron = LoihiNeuron(40, 4096, 0) if input_kind == "bias" else None
    # the first conv fires densely on dense input steps (low thresholds, mostly excitatory weights)
    first = ConvLayer(
        "conv0",
        (cin, h, w),
        LoihiNeuron(v_th_mant=rng.integers(1, 40, cin), i_decay=2048, v_decay=2048),
        rng.integers(-20, 121, (cin, 2, 3, 3)),
        padding=(1, 1),
    )
    layers = [
        InputLayer("input", in_shape, input_neuron),
        first,
        ConvLayer(
            "conv",
            (4, ho, ho),
            LoihiNeuron(v_th_mant=rng.integers(20, 300, 4), i_decay=1024, v_decay=300),
            weight,
            rng.integers(-20, 20, 4),
            stride=(stride, stride),
            padding=(padding, padding),
        ),
        ReadoutLayer(
            "readout", (2,), rng.integers(-128, 128, (2, 4 * ho * ho)), flatten_input=True
        ),
    ]
    program = LoihiProgram(input_shape=in_shape, input_kind=input_kind, layers=layers, num_steps=8)
    program.validate()
    prepared = emulator_module._prepare(program)
    factors = emulator_module._factors(input_neuron, in_shape) if input_neuron is not None else None
    plan = network_kernel.build_plan(program, prepared, np.dtype(np.int32), factors)
    assert plan.meta[2, network_kernel.BYTE_LUT_OFF] >= 0
    assert (plan.meta[2, network_kernel.POOL_OFF] >= 0) == (pool > 1)
    if input_kind == "spikes":  # steps alternate dense and sparse
        density = np.where(np.arange(8) % 2 == 0, 0.6, 0.01)[:, None, None, None, None]
        inputs = (rng.random((8, 4, *in_shape)) < density).astype(np.int8)
    else:  # bright and dark images
        inputs = (
            rng.random((4, *in_shape)) * np.array([1.0, 0.05, 1.0, 0.02])[:, None, None, None]
        ).astype(np.float32)
    assert_same_run(
        emulate(program, inputs, record=True), _layer_by_layer(program, inputs, monkeypatch)
    )
