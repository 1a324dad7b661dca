"""Emulator: hand-computed Loihi fixed-point cases, protocol timing, counts, batching."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from _netx_programs import default_shaped_program, random_images

from neurocxr.errors import SimulationError
from neurocxr.exporters.netx import netx_dense_weights
from neurocxr.exporters.program import (
    ConvLayer,
    DenseLayer,
    InputLayer,
    LoihiNeuron,
    LoihiProgram,
    ReadoutLayer,
)
from neurocxr.hardware_sims.emulator import _run_neurons, emulate


def _neuron_trace(a_in: list[int], *, i_decay: int, v_decay: int, vth: int, bias: int = 0):
    spikes, v = _run_neurons(
        torch.tensor(a_in, dtype=torch.int64).reshape(-1, 1, 1),
        torch.tensor([bias * 64]),
        4096 - i_decay,
        4096 - v_decay,
        vth << 6,
    )
    return spikes.reshape(-1).tolist(), int(v.reshape(-1)[0])


def test_single_neuron_spike_times_by_hand() -> None:
    # u = a_in << 6 (no current memory); v halves each step (vDecay 2048); vth 140 << 6 = 8960.
    # step1 v=6400; step2 v=3200+6400=9600 > 8960 -> spike, v=0; step3 v=0; step4 v=6400.
    spikes, v = _neuron_trace([100, 100, 0, 100], i_decay=4096, v_decay=2048, vth=140)
    assert spikes == [False, True, False, False]
    assert v == 6400
    # threshold is strict: v == vth << 6 does not spike (vth 150 -> 9600)
    spikes, _ = _neuron_trace([100, 100], i_decay=4096, v_decay=2048, vth=150)
    assert spikes == [False, False]


def test_negative_voltage_decay_truncates_toward_zero() -> None:
    # v = -77 << 6 = -4928; next step v = -(4928 * 3096 >> 12) = -3724 (floor division would give -3725)
    _, v = _neuron_trace([-77, 0], i_decay=4096, v_decay=1000, vth=1000)
    assert v == -3724
    # current decay is truncated the same way: u = -4928, then u = -(4928*2048 >> 12) = -2464; v = u (vDecay 4096)
    _, v = _neuron_trace([-77, 0], i_decay=2048, v_decay=4096, vth=1000)
    assert v == -2464


def test_current_wraps_at_24_bits_and_voltage_saturates() -> None:
    # a_in << 6 = 2**23 + 320 > 2**23 -> u wraps to 320 - 2**23
    _, v = _neuron_trace([2**17 + 5], i_decay=4096, v_decay=4096, vth=131071)
    assert v == 320 - 2**23
    # exactly 2**23 is not wrapped by Lava's rule (u > 2**23); v is clipped to 2**23 - 1, which is
    # still above the largest threshold 131071 << 6 = 2**23 - 64, so the neuron spikes and resets
    spikes, v = _neuron_trace([2**17], i_decay=4096, v_decay=4096, vth=131071)
    assert spikes == [True] and v == 0
    # one below: u = 2**23 - 64 == threshold -> no spike (strict >)
    spikes, v = _neuron_trace([2**17 - 1], i_decay=4096, v_decay=4096, vth=131071)
    assert spikes == [False] and v == 2**23 - 64


def test_bias_and_reset_to_zero() -> None:
    # bias 50 -> 3200 per step, no leak; vth 100 -> 6400: v = 3200, 6400, 9600 (spike -> 0), 3200, 6400, 9600 (spike)
    spikes, v = _neuron_trace([0] * 6, i_decay=4096, v_decay=0, vth=100, bias=50)
    assert spikes == [False, False, True, False, False, True]
    assert v == 0


def _chain(w1: int, w2: int, *, bias: int | None = None, v_decay: int = 4096) -> LoihiProgram:
    lif = LoihiNeuron(v_th_mant=50, i_decay=4096, v_decay=v_decay)
    return LoihiProgram(
        input_shape=(1,),
        input_kind="spikes",
        num_steps=4,
        layers=[
            InputLayer("in", (1,), None),
            DenseLayer(
                "hidden",
                (1,),
                lif,
                weight=np.array([[w1]]),
                bias=None if bias is None else np.array([bias]),
            ),
            ReadoutLayer("readout", (1,), weight=np.array([[w2]])),
        ],
    )


def test_one_step_delay_per_layer_and_readout_value() -> None:
    program = _chain(100, 3)
    spikes_in = np.array([1, 0, 1, 0], dtype=np.int8).reshape(4, 1, 1)
    res = emulate(program, spikes_in, record=True)
    assert res.time_steps == 4 + 2
    # input occupies timeline rows 0..3, hidden rows 1..4 (one step later), readout rows 2..5
    assert res.layer_spikes[0][:, 0, 0].tolist() == [1, 0, 1, 0, 0, 0]
    assert res.layer_spikes[1][:, 0, 0].tolist() == [0, 1, 0, 1, 0, 0]
    np.testing.assert_array_equal(res.output_spikes, res.layer_spikes[1])
    # readout v = (2 spikes * weight 3) << 6, no decay
    assert res.readout.tolist() == [[2 * 3 * 64]]
    assert [c.output_spikes.tolist() for c in res.counts] == [[2], [2], [0]]
    assert [c.input_spikes.tolist() for c in res.counts] == [[2], [2], [2]]


def test_bias_integrates_only_inside_the_layer_window() -> None:
    # hidden: bias 30 (1920/step), no leak, vth 50 << 6 = 3200: the bias alone needs 2 steps to spike.
    program = _chain(100, 1, bias=30, v_decay=0)
    res = emulate(program, np.zeros((4, 1, 1), dtype=np.int8), record=True)
    # window rows 1..4: v = 1920, 3840 (spike), 1920, 3840 (spike); nothing before row 1 or after row 4
    assert res.layer_spikes[1][:, 0, 0].tolist() == [0, 0, 1, 0, 1, 0]
    assert res.readout.tolist() == [[2 * 64]]


def test_conv_fanout_border_counts() -> None:
    weight = np.ones((1, 1, 3, 3), dtype=np.int64)
    layer = ConvLayer("c", (1, 3, 3), LoihiNeuron(1000, 4096, 0), weight=weight, padding=(1, 1))
    fan = layer.fanout((1, 3, 3))[0]
    assert fan.tolist() == [[4, 6, 4], [6, 9, 6], [4, 6, 4]]
    weight0 = weight.copy()
    weight0[0, 0, 0, 0] = (
        0  # the top-left tap never connects: each input loses its bottom-right neighbour
    )
    layer0 = ConvLayer("c", (1, 3, 3), LoihiNeuron(1000, 4096, 0), weight=weight0, padding=(1, 1))
    assert layer0.fanout((1, 3, 3))[0].tolist() == [[3, 5, 4], [5, 8, 6], [4, 6, 4]]
    program = LoihiProgram(
        (1, 3, 3), "spikes", [InputLayer("in", (1, 3, 3), None), layer], num_steps=2
    )
    x = np.zeros((2, 1, 1, 3, 3), dtype=np.int8)
    x[0, 0, 0, 0, 0] = 1  # corner once
    x[1, 0, 0, 1, 1] = 1  # centre once
    res = emulate(program, x)
    assert res.counts[1].synaptic_ops.tolist() == [4 + 9]
    # dense ops count real taps only (no zero padding): the all-ones fan-out map summed, per step
    assert res.counts[1].dense_synaptic_ops.tolist() == [(4 + 6 + 4 + 6 + 9 + 6 + 4 + 6 + 4) * 2]
    assert res.counts[1].neuron_updates.tolist() == [9 * 2]


@pytest.mark.parametrize("stride,padding,kernel", [(2, 2, 6), (2, 0, 3), (1, 1, 2), (3, 1, 3)])
def test_conv_fanout_matches_brute_force(stride: int, padding: int, kernel: int) -> None:
    rng = np.random.default_rng(stride * 10 + padding + kernel)
    cin, cout, h, w = 2, 3, 9, 8
    weight = rng.integers(-2, 3, (cout, cin, kernel, kernel))
    ho, wo = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    layer = ConvLayer(
        "c",
        (cout, ho, wo),
        LoihiNeuron(1, 4096, 0),
        weight=weight,
        stride=(stride, stride),
        padding=(padding, padding),
    )
    expected = np.zeros((cin, h, w), dtype=np.int64)
    for co, oy, ox, ci, ky, kx in itertools.product(
        range(cout), range(ho), range(wo), range(cin), range(kernel), range(kernel)
    ):
        y, x = oy * stride - padding + ky, ox * stride - padding + kx
        if 0 <= y < h and 0 <= x < w and weight[co, ci, ky, kx] != 0:
            expected[ci, y, x] += 1
    np.testing.assert_array_equal(layer.fanout((cin, h, w)), expected)


def test_dense_weight_packing_is_lossless_in_range() -> None:
    rng = np.random.default_rng(3)
    for lo, hi in [(-256, 255), (0, 256), (-256, 1), (-3, 6), (0, 2)]:
        w = rng.integers(lo, hi, (5, 7))
        w_eff, exp = netx_dense_weights(w)
        s = rng.integers(0, 2, (7, 4))
        acc = w_eff @ s
        acc = acc << exp if exp > 0 else acc >> -exp
        np.testing.assert_array_equal(acc, w @ s)


def test_batching_equals_one_by_one() -> None:
    program = default_shaped_program(num_steps=4)
    images = random_images(3)
    together = emulate(program, images, record=True, batch_size=256)
    for i in range(3):
        alone = emulate(program, images[i : i + 1], record=True, batch_size=1)
        np.testing.assert_array_equal(alone.readout, together.readout[i : i + 1])
        for a, b in zip(alone.layer_spikes, together.layer_spikes):
            np.testing.assert_array_equal(a[:, 0], b[:, i])
        for ca, cb in zip(alone.counts, together.counts):
            assert ca.synaptic_ops[0] == cb.synaptic_ops[i]
            assert ca.output_spikes[0] == cb.output_spikes[i]
    split = emulate(program, images, record=True, batch_size=2)
    np.testing.assert_array_equal(split.readout, together.readout)
    # images differ, so the readouts and spike counts should differ across samples
    assert len({int(c) for c in together.counts[1].output_spikes}) > 1


def test_bad_inputs_raise_simulation_error() -> None:
    program = default_shaped_program(num_steps=2)
    with pytest.raises(SimulationError, match="images"):
        emulate(program, np.zeros((2, 3, 28, 28)))
    with pytest.raises(SimulationError, match=r"\[0, 1\]"):
        emulate(program, np.full((1, 1, 28, 28), 2.0))
    spk = _chain(1, 1)
    with pytest.raises(SimulationError, match="only 0 and 1"):
        emulate(spk, np.full((4, 1, 1), 2, dtype=np.int8))


# --- fast neuron paths vs the plain int64 transcription of Lava's update -------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from neurocxr.hardware_sims.emulator import (  # noqa: E402
    _neuron_bounds,
    _neuron_step_,
    _run_neurons_reference,
    _run_neurons_torch,
)

_LIM = 2**23
_decays = st.one_of(st.sampled_from([0, 1, 410, 2048, 4095, 4096]), st.integers(0, 4096))
_near = lambda lo, hi: st.one_of(
    st.integers(lo, hi), st.integers(hi - 70, hi), st.integers(lo, lo + 70)
)  # noqa: E731


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    steps=st.integers(1, 4),
    n=st.integers(1, 6),
    i_decay=_decays,
    v_decay=_decays,
    vth=st.integers(0, 131071),
)
@pytest.mark.slow
def test_fast_neuron_step_matches_int64_reference(
    data, steps: int, n: int, i_decay: int, v_decay: int, vth: int
) -> None:
    """Any state in Lava's range (near the 24-bit limits too), any input that fits, any decay."""
    u0 = torch.tensor(
        data.draw(st.lists(_near(-_LIM + 1, _LIM), min_size=n, max_size=n)), dtype=torch.int64
    )
    v0 = torch.tensor(
        data.draw(st.lists(_near(-_LIM + 1, _LIM - 1), min_size=n, max_size=n)), dtype=torch.int64
    )
    a_val = st.one_of(
        _near(-(2**18), 2**18),
        st.sampled_from([2**17, -(2**17), 2**17 + 1, -(2**17) - 1, 2**17 - 1]),
    )
    a_in = torch.tensor(
        data.draw(st.lists(a_val, min_size=steps * n, max_size=steps * n)), dtype=torch.int64
    ).reshape(steps, 1, n)
    bias = (
        torch.tensor(
            data.draw(st.lists(_near(-4096, 4095), min_size=n, max_size=n)), dtype=torch.int64
        )
        * 64
    )
    du, dv = 4096 - i_decay, 4096 - v_decay
    ref_s, ref_u, ref_v = _run_neurons_reference(
        a_in, bias, du, dv, vth << 6, u0=u0[None], v0=v0[None]
    )
    u, v = u0[None].double(), v0[None].double()
    for t in range(steps):
        s = _neuron_step_(
            u if du else None,
            v,
            a_in[t].double() * 64,
            du / 4096,
            dv / 4096,
            float(vth << 6),
            True,
            True,
            bias.double(),
        )
        assert torch.equal(s, ref_s[t])
    assert torch.equal(v.long(), ref_v)
    if du:
        assert torch.equal(u.long(), ref_u)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    steps=st.integers(1, 6),
    n=st.integers(1, 5),
    i_decay=_decays,
    v_decay=_decays,
    vth=st.integers(0, 131071),
    a_max=st.one_of(
        st.integers(0, 2**18), st.integers(2**17 - 50, 2**17 + 50), st.integers(0, 3000)
    ),
    bias_max=st.integers(0, 4095),
)
@pytest.mark.slow
def test_bound_skipped_wrap_and_clip_match_reference(
    data, steps: int, n: int, i_decay: int, v_decay: int, vth: int, a_max: int, bias_max: int
) -> None:
    """`_run_neurons` from zero with the wrap/clip switched off exactly where `_neuron_bounds` allows,
    inputs drawn up to the bound (extremes included), float32 drive path included."""
    du, dv = 4096 - i_decay, 4096 - v_decay
    extreme = st.sampled_from([-a_max, a_max, 0])
    a_in = torch.tensor(
        data.draw(
            st.lists(
                st.one_of(extreme, st.integers(-a_max, a_max)),
                min_size=steps * n,
                max_size=steps * n,
            )
        ),
        dtype=torch.int64,
    ).reshape(steps, 1, n)
    bias = (
        torch.tensor(
            data.draw(st.lists(st.sampled_from([-bias_max, bias_max, 0]), min_size=n, max_size=n)),
            dtype=torch.int64,
        )
        * 64
    )
    u_bound, v_bound = _neuron_bounds(a_max, bias_max * 64, du, dv, steps)
    wrap_u = u_bound >= _LIM
    clamp_v = wrap_u or v_bound > _LIM - 1
    ref_s, _, ref_v = _run_neurons_reference(a_in, bias, du, dv, vth << 6)
    for a_dtype, run in itertools.product(
        (torch.int64, torch.float32), (_run_neurons_torch, _run_neurons)
    ):
        s, v = run(
            a_in.to(a_dtype),
            bias,
            du,
            dv,
            vth << 6,
            wrap_u=wrap_u,
            clamp_v=clamp_v,
            a_max=a_max,
            spike_dtype=torch.float32,
            consume_input=True,
        )
        assert torch.equal(s.bool(), ref_s)
        assert torch.equal(v.long(), ref_v)
    # the bounds really bound the reference trajectory (so skipping is justified, not lucky)
    if not wrap_u:
        u = torch.zeros(n, dtype=torch.int64)
        for t in range(steps):
            u = torch.sign(u * du) * (torch.abs(u * du) >> 12) + (a_in[t, 0] << 6)
            assert int(u.abs().max()) <= u_bound


def test_pooled_kernel_factorisation_is_exact() -> None:
    """A block-constant stride-2 kernel (pool folded into conv) gives the same integers either way."""
    from neurocxr.hardware_sims.emulator import _prepare, _synaptic_input

    rng = np.random.default_rng(11)
    small = rng.integers(-255, 255, (4, 3, 3, 3))
    weight = np.repeat(np.repeat(small, 2, axis=2), 2, axis=3)
    lif = LoihiNeuron(v_th_mant=100, i_decay=4096, v_decay=410)
    for padding in [(2, 2), (1, 1), (0, 3)]:
        ho = (10 + 2 * padding[0] - 6) // 2 + 1
        wo = (12 + 2 * padding[1] - 6) // 2 + 1
        layer = ConvLayer("c", (4, ho, wo), lif, weight=weight, stride=(2, 2), padding=padding)
        program = LoihiProgram(
            (3, 10, 12), "spikes", [InputLayer("in", (3, 10, 12), None), layer], num_steps=2
        )
        prep = _prepare(program)[1]
        assert prep.pool == 2
        s = torch.as_tensor(rng.integers(0, 2, (2, 5, 3 * 10 * 12)), dtype=torch.float32)
        got = _synaptic_input(prep, s)
        ref = torch.nn.functional.conv2d(
            s.reshape(10, 3, 10, 12).double(),
            torch.as_tensor(weight).double(),
            stride=2,
            padding=padding,
        )
        assert torch.equal(got.double(), ref.reshape(2, 5, -1))


def test_threads_argument_restores_caller_setting() -> None:
    program = default_shaped_program(num_steps=2)
    before = torch.get_num_threads()
    images = random_images(2)
    a = emulate(program, images, threads=1)
    assert torch.get_num_threads() == before
    np.testing.assert_array_equal(a.readout, emulate(program, images).readout)
    with pytest.raises(SimulationError, match="threads"):
        emulate(program, images, threads=0)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), steps=st.integers(1, 6), batch=st.integers(1, 3), n=st.integers(1, 6))
@pytest.mark.slow
def test_per_neuron_parameters_numba_and_torch_match_reference(
    data, steps: int, batch: int, n: int
) -> None:
    """Per-neuron decays / thresholds (third-party netx files), inputs that force the wrap and the clip."""
    ints = lambda lo, hi: torch.tensor(
        data.draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)),  # noqa: E731
        dtype=torch.int64,
    )
    du, dv, vth = 4096 - ints(0, 4096), 4096 - ints(0, 4096), ints(0, 131071) << 6
    a_val = st.one_of(
        st.integers(-300, 300),
        st.integers(-(2**18), 2**18),
        st.sampled_from([2**17, -(2**17), 2**17 + 1]),
    )
    a_in = torch.tensor(
        data.draw(st.lists(a_val, min_size=steps * batch * n, max_size=steps * batch * n)),
        dtype=torch.int64,
    ).reshape(steps, batch, n)
    bias = ints(-4096, 4095) * 64
    ref_s, _, ref_v = _run_neurons_reference(a_in, bias, du, dv, vth)
    for run in (_run_neurons_torch, _run_neurons):
        s, v = run(a_in.double(), bias, du, dv, vth, spike_dtype=torch.float32)
        assert torch.equal(s.bool(), ref_s), run.__name__
        assert torch.equal(v.long(), ref_v), run.__name__


@pytest.mark.skipif(
    not __import__("neurocxr.hardware_sims.cuba_kernel", fromlist=["x"]).available(),
    reason="numba kernel not available",
)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_event_driven_conv_equals_dense_conv(seed: int) -> None:
    from neurocxr.hardware_sims.cuba_kernel import conv_events

    rng = np.random.default_rng(seed)
    groups = int(rng.choice([1, 2]))
    cin, cout = 2 * groups, 2 * groups
    h, w = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    x = torch.as_tensor((rng.random((3, cin, h, w)) < 0.3).astype(np.float32))
    weight = torch.as_tensor(
        rng.integers(-256, 255, (cout, cin // groups, kh, kw)).astype(np.float32)
    )
    try:
        ref = torch.nn.functional.conv2d(
            x, weight, stride=stride, padding=padding, dilation=dilation, groups=groups
        )
    except RuntimeError:  # kernel larger than the padded map
        return
    got = conv_events(
        x.numpy(), weight.numpy(), stride, padding, dilation, groups, tuple(ref.shape[2:])
    )
    np.testing.assert_array_equal(got, ref.numpy())
