"""Spike encoders: turn images into what an SNN receives at each time step.

Conventions (every encoder, every caller):

- Input: float images in [0, 1], shape [B, C, H, W] (any shape works; it is kept as the trailing
  dimensions). Values outside [0, 1] are clamped where an encoder needs probabilities or times.
- Output: float32 tensor [T, B, C, H, W], **time first** (T = ``num_steps``), on the input's device.
  ``rate`` and ``latency`` outputs are spikes, exactly 0.0 or 1.0; ``direct`` repeats the analog
  image every step (the model's first layer of input neurons turns it into spikes).
- ``rate``: independent Bernoulli spikes each step with p = clamp(gain * x, 0, 1). Seeded via a
  ``torch.Generator`` or ``seed`` so a run can be reproduced exactly.
- ``latency``: each pixel with x > ``threshold`` fires exactly once; brighter fires earlier; a
  pixel at x = 1 fires at t = 0; pixels at or below ``threshold`` never fire. ``linear=True``:
  t = round((1 - x) / (1 - threshold) * (T - 1)), so the faintest firing pixels fire at T - 1.
  ``linear=False``: logarithmic (Weber-like) times t = round(ln(x) / ln(threshold) * (T - 1)),
  which spreads dim pixels over more steps. Brighter never fires later (rounding may tie).
- ``regular``: deterministic, evenly spaced spikes at rate x: a first-order sigma-delta modulator
  (an integrate-and-fire neuron with reset by *subtraction*, started half-charged), so a pixel
  fires exactly round(t * x) times in its first t steps. Loihi's own neurons reset to zero, which
  makes an on-chip input neuron fire every ceil(theta / x) steps: a staircase whose top levels
  merge whole grey-level ranges (x in (2/3, 1] all fire every 3rd step at theta = 2). This code is
  computed where the input comes from (the host, or Loihi 2's embedded processors) and arrives
  as spike trains, like rate coding without its Bernoulli noise: at T = 16 a pixel has T + 1 levels.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "ENCODINGS",
    "RATE_CODES",
    "rate_encode",
    "latency_encode",
    "regular_encode",
    "direct_encode",
    "encode",
]

# The one list of input encodings: models, the exporter and the CLI read it from here (the data
# stage), so importing the encoders does not import the model zoo (snnTorch, Norse).
ENCODINGS = ("direct", "rate", "latency", "regular")
# Spike codes whose spike rate stands for the pixel (ANN -> SNN conversion maps rate x to activation x).
RATE_CODES = ("rate", "regular")


def _check(images: torch.Tensor, num_steps: int) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim < 1:
        raise ValueError("images must have at least one dimension (a batch)")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    return images.to(torch.float32)


def rate_encode(
    images: torch.Tensor,
    num_steps: int,
    *,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """Bernoulli rate code: spike at each step with probability clamp(gain * x, 0, 1).

    ``generator`` (on the images' device) takes precedence over ``seed``; with neither, torch's
    global RNG is used.
    """
    x = _check(images, num_steps)
    if gain < 0:
        raise ValueError(f"gain must be >= 0, got {gain}")
    if generator is None and seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(int(seed))
    p = (x * gain).clamp(0.0, 1.0)
    p = p.unsqueeze(0).expand(num_steps, *p.shape).contiguous()
    return torch.bernoulli(p, generator=generator)


def latency_encode(
    images: torch.Tensor, num_steps: int, *, threshold: float = 0.01, linear: bool = True
) -> torch.Tensor:
    """Time-to-first-spike code: one spike per pixel with x > threshold, brighter earlier."""
    x = _check(images, num_steps).clamp(0.0, 1.0)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    fires = x > threshold
    last = num_steps - 1
    if linear:
        t = (1.0 - x) / (1.0 - threshold) * last
    else:
        if threshold <= 0.0:
            raise ValueError("logarithmic latency coding (linear=False) needs threshold > 0")
        floor = max(
            threshold, torch.finfo(x.dtype).tiny
        )  # a float64 threshold may underflow float32
        t = torch.log(x.clamp_min(floor)) / math.log(floor) * last
    # Non-firing pixels may give inf/nan times (0 * inf); they are masked out below anyway.
    t = torch.nan_to_num(t, nan=float(last), posinf=float(last), neginf=0.0)
    t = torch.round(t).clamp_(0, last).to(torch.int64)
    out = torch.zeros((num_steps, *x.shape), dtype=torch.float32, device=x.device)
    out.scatter_(0, t.unsqueeze(0), fires.to(torch.float32).unsqueeze(0))
    return out


def regular_encode(images: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Evenly spaced spikes at rate clamp(x, 0, 1): spike at step t (0-based) iff
    round((t + 1) x) > round(t x), rounding half up, i.e. a first-order sigma-delta modulator /
    reset-by-subtraction integrate-and-fire started at half charge (module doc)."""
    x = _check(images, num_steps).clamp(0.0, 1.0)
    steps = torch.arange(num_steps + 1, dtype=torch.float64, device=x.device)
    # float64: (t x + 0.5) is exact enough that equal pixels always give equal trains.
    counts = torch.floor(steps.view(-1, *([1] * x.ndim)) * x.double().unsqueeze(0) + 0.5)
    return (counts[1:] - counts[:-1]).to(torch.float32)


def direct_encode(images: torch.Tensor, num_steps: int) -> torch.Tensor:
    """The analog image repeated at every step (a new tensor, safe to modify)."""
    x = _check(images, num_steps)
    return x.unsqueeze(0).repeat(num_steps, *([1] * x.ndim))


def encode(
    images: torch.Tensor, encoding: str, num_steps: int, *, seed: int | None = None
) -> torch.Tensor:
    """Encode with the named scheme (one of `ENCODINGS`) using default parameters."""
    if encoding == "direct":
        return direct_encode(images, num_steps)
    if encoding == "rate":
        return rate_encode(images, num_steps, seed=seed)
    if encoding == "latency":
        return latency_encode(images, num_steps)
    if encoding == "regular":
        return regular_encode(images, num_steps)
    raise ValueError(f"unknown encoding {encoding!r}; valid encodings are {', '.join(ENCODINGS)}")
