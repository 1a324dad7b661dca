"""Spike encoders: value sets, shapes, statistics of rate coding, latency timing, seeding."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocxr.data.encoding import (
    ENCODINGS,
    direct_encode,
    encode,
    latency_encode,
    rate_encode,
    regular_encode,
)

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def image_batches(draw) -> torch.Tensor:
    """Random image batches [B, C, H, W] in [0, 1], including exact 0s and 1s."""
    b = draw(st.integers(1, 3))
    c = draw(st.integers(1, 2))
    h = draw(st.integers(1, 6))
    w = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g)
    # Sprinkle exact extremes, which are edge cases for both codes.
    mask = torch.rand(b, c, h, w, generator=g)
    x = torch.where(mask < 0.1, torch.zeros_like(x), x)
    x = torch.where(mask > 0.9, torch.ones_like(x), x)
    return x


@SETTINGS
@given(x=image_batches(), t=st.integers(1, 12), seed=st.integers(0, 1000))
def test_rate_spikes_binary_shape_and_seeded(x: torch.Tensor, t: int, seed: int) -> None:
    s1 = rate_encode(x, t, seed=seed)
    s2 = rate_encode(x, t, seed=seed)
    assert s1.shape == (t, *x.shape) and s1.dtype == torch.float32
    assert set(s1.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(s1, s2)
    # p = 0 never fires, p = 1 always fires.
    assert torch.all(s1[:, x == 0] == 0) and torch.all(s1[:, x == 1] == 1)


def test_rate_generator_and_gain() -> None:
    x = torch.full((2, 1, 4, 4), 0.3)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(rate_encode(x, 5, generator=g1), rate_encode(x, 5, generator=g2))
    assert not torch.equal(rate_encode(x, 50, seed=1), rate_encode(x, 50, seed=2))
    assert torch.all(rate_encode(x, 4, gain=4.0, seed=0) == 1)  # clamp(4 * 0.3) = 1
    assert torch.all(rate_encode(x, 4, gain=0.0, seed=0) == 0)


def _bernstein_bound(p: float, n: int, delta: float = 1e-7) -> float:
    """|mean - p| of n Bernoulli(p) draws exceeds this with probability < delta (Bernstein's
    inequality; valid for every p, unlike a normal approximation, which fails for tiny p)."""
    log_term = math.log(2.0 / delta)
    return math.sqrt(2.0 * p * (1.0 - p) * log_term / n) + 2.0 * log_term / (3.0 * n)


@SETTINGS
@given(p=st.floats(0.0, 1.0), seed=st.integers(0, 10_000))
def test_rate_mean_tracks_intensity(p: float, seed: int) -> None:
    """Mean over T steps tracks p, over all 64 pixels (n = 64 T draws) and per pixel (n = T)."""
    t = 200
    x = torch.full((1, 1, 8, 8), p)
    spikes = rate_encode(x, t, seed=seed)
    assert abs(spikes.mean().item() - p) <= _bernstein_bound(p, spikes.numel())
    per_pixel = spikes.mean(dim=0)
    assert (per_pixel - p).abs().max().item() <= _bernstein_bound(p, t, delta=1e-7 / 64)


def test_rate_mean_orders_pixels() -> None:
    x = torch.linspace(0, 1, 11).view(1, 1, 1, 11)
    rates = rate_encode(x, 4000, seed=0).mean(dim=0).flatten()
    assert torch.allclose(rates, x.flatten(), atol=0.03)


@SETTINGS
@given(x=image_batches(), t=st.integers(1, 16), threshold=st.floats(0.0, 0.5), linear=st.booleans())
def test_latency_one_spike_brighter_earlier(
    x: torch.Tensor, t: int, threshold: float, linear: bool
) -> None:
    if not linear and threshold <= 0:
        threshold = 0.01
    spikes = latency_encode(x, t, threshold=threshold, linear=linear)
    assert spikes.shape == (t, *x.shape) and spikes.dtype == torch.float32
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    count = spikes.sum(dim=0)
    assert torch.equal(count, (x > threshold).float())  # exactly once above, never at/below
    # Spike time per firing pixel; brighter pixels never fire later.
    time_of = spikes.argmax(dim=0).flatten()
    fired = (x > threshold).flatten()
    vals, times = x.flatten()[fired], time_of[fired]
    order = torch.argsort(vals)
    assert torch.all(times[order][1:] <= times[order][:-1])
    # x = 1 fires at t = 0.
    assert torch.all(spikes[0][x == 1] == 1)


def test_latency_uses_the_window_and_is_strict_when_spread() -> None:
    t = 11
    x = torch.tensor([1.0, 0.9, 0.5, 0.1, 0.011, 0.01, 0.0]).view(1, 1, 1, 7)
    spikes = latency_encode(x, t, threshold=0.01)
    times = [
        int(spikes[:, 0, 0, 0, i].argmax()) if spikes[:, 0, 0, 0, i].sum() else None
        for i in range(7)
    ]
    # t = round((1 - x) / 0.99 * 10)
    assert times == [0, 1, 5, 9, 10, None, None]
    log_spikes = latency_encode(x, t, threshold=0.01, linear=False)
    log_times = [int(log_spikes[:, 0, 0, 0, i].argmax()) for i in range(5)]
    # t = round(ln x / ln 0.01 * 10): 0, 0.23, 1.5, 5, 9.8
    assert log_times == [0, 0, 2, 5, 10]
    assert torch.all(latency_encode(x, 1)[0] == (x > 0.01).float())
    # Regression (found by hypothesis): a threshold that underflows float32 gave log(0) * 0 = nan
    # spike times and an out-of-range scatter index.
    tiny = latency_encode(x, 1, threshold=5e-324, linear=False)
    assert torch.equal(tiny[0], (x > 0).float())


def test_direct_repeats_the_image() -> None:
    x = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    out = direct_encode(x, 4)
    assert out.shape == (4, 2, 1, 5, 5)
    for step in out:
        assert torch.equal(step, x)
    out[0].zero_()
    assert torch.equal(out[1], x)  # steps are independent storage, input untouched
    assert float(x.sum()) > 0


def test_encode_dispatch_and_errors() -> None:
    from neurocxr.models.base import ENCODINGS as MODEL_ENCODINGS

    assert ENCODINGS == MODEL_ENCODINGS
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(encode(x, "direct", 3), direct_encode(x, 3))
    assert torch.equal(encode(x, "rate", 6, seed=4), rate_encode(x, 6, seed=4))
    assert torch.equal(encode(x, "latency", 6), latency_encode(x, 6))
    assert torch.equal(encode(x, "regular", 6), regular_encode(x, 6))
    with pytest.raises(ValueError, match="valid encodings are direct, rate, latency"):
        encode(x, "poisson", 3)
    with pytest.raises(ValueError, match="num_steps"):
        encode(x, "rate", 0)
    with pytest.raises(ValueError, match="threshold"):
        latency_encode(x, 4, threshold=1.0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        rate_encode([[0.5]], 3)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    p=st.floats(0.0, 1.0, allow_nan=False),
    t=st.integers(1, 64),
)
def test_regular_code_fires_round_t_x_times_evenly_spaced(p: float, t: int) -> None:
    """After every step k the count is round(k p) (half up): the spike count is the pixel to within
    half a spike at any horizon, and the gaps between spikes differ by at most one step."""
    pixel = torch.tensor([[p]])  # float32, as images are
    p = float(pixel)  # the value the encoder sees (0.35 is 0.3499999940 in float32)
    out = regular_encode(pixel, t)
    assert out.shape == (t, 1, 1) and set(out.unique().tolist()) <= {0.0, 1.0}
    counts = out[:, 0, 0].cumsum(0)
    for k in range(1, t + 1):
        assert float(counts[k - 1]) == math.floor(k * p + 0.5)
    times = torch.nonzero(out[:, 0, 0]).flatten()
    if len(times) > 2:
        gaps = times.diff()
        assert int(gaps.max() - gaps.min()) <= 1


def test_regular_code_keeps_grey_levels_apart_where_input_neurons_merge_them() -> None:
    """Loihi's reset-to-zero input neuron at theta 2 fires every ceil(2 / p) steps: 0.7, 0.85 and 1.0
    all every 3rd step. The regular code gives them 11, 14 and 16 spikes in 16 steps."""
    x = torch.tensor([0.7, 0.85, 1.0, 0.0, 1.7, -0.2])
    counts = regular_encode(x, 16).sum(0).tolist()
    assert counts == [11.0, 14.0, 16.0, 0.0, 16.0, 0.0]  # clamped to [0, 1] like rate coding
    # deterministic and shape-preserving for image batches
    imgs = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(regular_encode(imgs, 8), regular_encode(imgs, 8))
    assert regular_encode(imgs, 8).shape == (8, 2, 1, 5, 5)
