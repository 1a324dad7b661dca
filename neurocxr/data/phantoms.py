"""Deterministic synthetic chest X-ray phantoms, so the whole pipeline runs without real data.

Why: tests, demos and CI must work on a machine with no PneumoniaMNIST file and no network. The
phantoms are not a substitute for real data (every result on them is labelled "synthetic"), but
they look enough like a frontal chest film that the same models, encoders and exporters apply.

What one phantom holds (intensity = X-ray attenuation, bright = dense, in [0, 1]):

- dark air background and a brighter soft-tissue body (ellipse);
- two dark lung fields (ellipses with random size, tilt, darkness);
- a bright mediastinum/spine band and a heart shadow overlapping the lower left lung
  (patient's left = image right);
- posterior rib arcs across the lungs and two clavicles;
- faint vessel markings in both lungs (both classes), film grain noise, global exposure jitter.

Pneumonia (label 1) adds 1-3 patchy, blurred opacities inside the lungs, with random amplitude
(some subtle), position and size. Normal and pneumonia images share every other random factor, so
global brightness alone does not separate them: a small CNN/SNN has to find the patches.

Class balance: ``generate_phantoms`` takes ``pneumonia_fraction`` (default 0.5, exact counts).
``neurocxr.data.datasets.synthetic_splits`` uses 50/50 on purpose, unlike the real data (26% normal): with
balanced classes "well above chance" means well above 50%, and a model that predicts one class
cannot hide behind the majority rate.

Every image is drawn from its own generator seeded by ``(seed..., index)``, so images do not depend
on how many are generated, and any size works (features are defined on a [-1, 1] grid).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["generate_phantoms", "phantom_image"]


def _seed_tuple(seed: int | Sequence[int]) -> list[int]:
    if isinstance(seed, (int, np.integer)):
        return [int(seed)]
    return [int(s) for s in seed]


def _soft_ellipse(
    xx: np.ndarray,
    yy: np.ndarray,
    cx: float,
    cy: float,
    ax: float,
    ay: float,
    angle: float,
    edge: float,
) -> np.ndarray:
    """1 inside the (rotated) ellipse, 0 outside, with a smooth sigmoid edge of width ``edge``."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - cx, yy - cy
    u = (c * dx + s * dy) / ax
    v = (-s * dx + c * dy) / ay
    r = np.sqrt(u * u + v * v)
    return 1.0 / (1.0 + np.exp((r - 1.0) / edge))


def phantom_image(size: int, pneumonia: bool, rng: np.random.Generator) -> np.ndarray:
    """One phantom as float32 [size, size] in [0, 1]; all randomness comes from ``rng``."""
    if size < 8:
        raise ValueError(f"phantom size {size} is too small (>= 8)")
    lin = np.linspace(-1.0, 1.0, size, dtype=np.float64)
    yy, xx = np.meshgrid(lin, lin, indexing="ij")  # y down (top of the film = -1), x right
    edge = max(0.04, 1.5 / size)
    pix = 2.0 / size  # one pixel in grid units
    # Opacities draw from their own stream, so a pneumonia phantom and a normal one made from the
    # same ``rng`` state differ only by the opacities.
    rng_opacity = np.random.default_rng(int(rng.integers(2**63 - 1)))

    # Patient position jitter.
    ox, oy = rng.normal(0, 0.04), rng.normal(0, 0.04)

    img = np.full((size, size), rng.uniform(0.02, 0.08))
    body = _soft_ellipse(
        xx, yy, ox, 0.1 + oy, rng.uniform(0.82, 0.95), rng.uniform(0.95, 1.1), 0.0, edge
    )
    img += body * rng.uniform(0.45, 0.6)

    # Lung fields (dark): left lung of the image = patient's right.
    lung_dark = rng.uniform(0.22, 0.38)
    lungs = np.zeros_like(img)
    for side in (-1.0, 1.0):
        cx = ox + side * rng.uniform(0.33, 0.42)
        cy = oy + rng.uniform(-0.12, 0.0)
        ax = rng.uniform(0.24, 0.31)
        ay = rng.uniform(0.5, 0.62)
        ang = side * rng.uniform(0.02, 0.12)
        lungs = np.maximum(lungs, _soft_ellipse(xx, yy, cx, cy, ax, ay, ang, edge))
    img -= lungs * lung_dark

    # Mediastinum / spine (bright vertical band) and heart shadow.
    spine_w = rng.uniform(0.09, 0.13)
    spine = np.exp(-(((xx - ox) / spine_w) ** 2)) * (yy > -0.95 + oy)
    img += spine * rng.uniform(0.12, 0.2)
    heart = _soft_ellipse(
        xx,
        yy,
        ox + rng.uniform(0.1, 0.2),
        oy + rng.uniform(0.2, 0.3),
        rng.uniform(0.28, 0.36),
        rng.uniform(0.22, 0.3),
        rng.uniform(-0.3, 0.0),
        edge,
    )
    img += heart * rng.uniform(0.1, 0.16)

    # Posterior ribs: arcs that sag laterally, visible mostly over the lungs.
    rib_w = max(0.025, 0.8 * pix)
    rib_amp = rng.uniform(0.05, 0.09)
    ribs = np.zeros_like(img)
    n_ribs = int(rng.integers(7, 10))
    for k in range(n_ribs):
        y0 = oy - 0.62 + k * (1.15 / n_ribs) + rng.normal(0, 0.01)
        curve = y0 + 0.35 * (np.abs(xx - ox) - 0.15) ** 2
        ribs = np.maximum(ribs, np.exp(-(((yy - curve) / rib_w) ** 2)))
    img += ribs * (0.3 + 0.7 * lungs) * body * rib_amp

    # Clavicles: slanted bright bars near the top.
    for side in (-1.0, 1.0):
        t = (xx - ox) * side
        line = oy - 0.72 + 0.18 * t + rng.normal(0, 0.02)
        clav = np.exp(-(((yy - line) / max(0.035, pix)) ** 2)) * ((t > 0.05) & (t < 0.65))
        img += clav * rng.uniform(0.1, 0.16)

    # Vessel markings: faint small blobs in both lungs (both classes).
    sigma_vessel = max(0.6, size * 0.012)
    vessels = gaussian_filter(rng.standard_normal((size, size)), sigma_vessel)
    vessels /= vessels.std() + 1e-9
    img += np.clip(vessels, 0, None) * lungs * rng.uniform(0.01, 0.03)

    if pneumonia:
        opacity = np.zeros_like(img)
        ro = rng_opacity
        for _ in range(int(ro.integers(1, 4))):
            side = ro.choice([-1.0, 1.0])
            cx = ox + side * ro.uniform(0.25, 0.5)
            cy = oy + ro.uniform(-0.35, 0.35)
            r = ro.uniform(0.14, 0.28)
            envelope = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))
            patch = gaussian_filter(ro.standard_normal((size, size)), max(0.7, size * 0.03))
            patch = np.clip(0.6 + patch / (patch.std() + 1e-9) * 0.5, 0, None)
            opacity += envelope * patch * ro.uniform(0.3, 0.5)
        img += gaussian_filter(opacity, max(0.5, size * 0.01)) * lungs

    # Exposure and contrast jitter, film grain, then slight blur (detector response).
    img = (img - 0.3) * rng.uniform(0.85, 1.15) + 0.3 + rng.uniform(-0.05, 0.05)
    img += rng.normal(0, 0.02, size=img.shape)
    img = gaussian_filter(img, max(0.4, size * 0.006))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def generate_phantoms(
    n: int, size: int = 28, seed: int | Sequence[int] = 0, pneumonia_fraction: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` phantoms: images float32 [n, size, size] in [0, 1], labels int64 [n] (1 = pneumonia).

    Exactly ``round(n * pneumonia_fraction)`` images are pneumonia, in a seeded random order.
    """
    if n < 0:
        raise ValueError(f"number of phantoms must be >= 0, got {n}")
    if not 0.0 <= pneumonia_fraction <= 1.0:
        raise ValueError(f"pneumonia_fraction must be in [0, 1], got {pneumonia_fraction}")
    base = _seed_tuple(seed)
    n_pneumonia = int(round(n * pneumonia_fraction))
    labels = np.zeros(n, dtype=np.int64)
    labels[:n_pneumonia] = 1
    np.random.default_rng(base + [0x1ABE1]).shuffle(labels)
    images = np.empty((n, size, size), dtype=np.float32)
    for i in range(n):
        images[i] = phantom_image(size, bool(labels[i]), np.random.default_rng(base + [i]))
    return images, labels
