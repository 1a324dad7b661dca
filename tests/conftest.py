"""Shared fixtures: the real PneumoniaMNIST file (skipped when absent), and factories that build
small MedMNIST-format npz files and Kermany-layout image folders in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest

# Pixel values the factories give each class, so a test can tell which label an image got.
NORMAL_LEVEL = 60
PNEUMONIA_LEVEL = 190


@pytest.fixture(scope="session")
def real_npz() -> Path:
    """Path of the real pneumoniamnist.npz from $NEUROCXR_DATA; skips when unset or missing."""
    value = os.environ.get("NEUROCXR_DATA", "").strip()
    if not value:
        pytest.skip(
            "NEUROCXR_DATA is not set (point it at pneumoniamnist.npz to run real-data tests)"
        )
    path = Path(value).expanduser()
    if not path.is_file():
        pytest.skip(f"NEUROCXR_DATA={value} is not a file (expected pneumoniamnist.npz)")
    return path


def write_medmnist_npz(
    path: Path,
    size: int = 28,
    counts: dict[str, tuple[int, int]] | None = None,
    *,
    channels: int | None = None,
    label_shape: str = "column",
    seed: int = 0,
) -> Path:
    """Write a MedMNIST-format npz: per split (n_normal, n_pneumonia) images, uint8.

    NORMAL images sit near NORMAL_LEVEL, PNEUMONIA near PNEUMONIA_LEVEL (plus noise), in sorted
    label order shuffled by ``seed``. ``channels`` None -> (N,S,S); 1 or 3 -> (N,S,S,C).
    ``label_shape`` "column" -> (N,1) like MedMNIST, "flat" -> (N,).
    """
    counts = counts or {"train": (6, 10), "val": (2, 3), "test": (3, 4)}
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, (n0, n1) in counts.items():
        labels = np.array([0] * n0 + [1] * n1, dtype=np.uint8)
        rng.shuffle(labels)
        base = np.where(labels == 1, PNEUMONIA_LEVEL, NORMAL_LEVEL).astype(np.int16)
        imgs = base[:, None, None] + rng.integers(-20, 21, size=(labels.size, size, size))
        imgs = np.clip(imgs, 0, 255).astype(np.uint8)
        if channels is not None:
            imgs = np.repeat(imgs[..., None], channels, axis=-1)
        arrays[f"{split}_images"] = imgs
        arrays[f"{split}_labels"] = labels[:, None] if label_shape == "column" else labels
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture
def medmnist_npz(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``medmnist_npz(name="x.npz", size=28, counts=..., channels=..., label_shape=...)``."""

    def make(name: str = "pneumoniamnist.npz", size: int = 28, **kwargs) -> Path:
        return write_medmnist_npz(tmp_path / name, size, **kwargs)

    return make


def write_kermany_tree(
    root: Path,
    *,
    splits: Sequence[str] = ("train", "val", "test"),
    per_class: int = 3,
    classes: Sequence[str] = ("NORMAL", "PNEUMONIA"),
    sizes: Sequence[tuple[int, int]] = ((40, 32), (64, 48), (30, 30), (50, 70)),
    kinds: Sequence[tuple[str, str]] = (
        ("L", "png"),
        ("RGB", "jpeg"),
        ("RGB", "png"),
        ("L", "jpg"),
    ),
) -> Path:
    """Write ``root/<split>/<class>/img<i>.<ext>`` with ``per_class`` images per class.

    Images cycle through ``sizes`` (width, height) and ``kinds`` (PIL mode, extension), so one tree
    mixes gray/RGB PNG/JPEG of different sizes. NORMAL images are uniform NORMAL_LEVEL gray,
    PNEUMONIA ones PNEUMONIA_LEVEL (RGB ones tinted but with that luma), so labels can be checked.
    """
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    k = 0
    for split in splits:
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            level = PNEUMONIA_LEVEL if cls.upper() == "PNEUMONIA" else NORMAL_LEVEL
            for i in range(per_class):
                w, h = sizes[k % len(sizes)]
                mode, ext = kinds[k % len(kinds)]
                k += 1
                if mode == "L":
                    img = Image.new("L", (w, h), level)
                else:  # tinted RGB with luma ~ level: 0.299 r + 0.587 g + 0.114 b
                    img = Image.new("RGB", (w, h), (level + 20, level - 10, level + 2))
                img.save(folder / f"img{i}.{ext}")
    return root


@pytest.fixture
def kermany_tree(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``kermany_tree(name="kermany", splits=..., per_class=..., ...)`` -> root folder.

    See `write_kermany_tree` for the options; each call makes a fresh tree under tmp_path.
    """

    def make(name: str = "kermany", **kwargs) -> Path:
        return write_kermany_tree(tmp_path / name, **kwargs)

    return make


# --- markers that stay true -------------------------------------------------------------------
# `pytest -m "not slow and not lava"` is the fast inner loop, so a test that runs Lava must say so:
# the Lava runner's importer is wrapped for each test, and a call from an unmarked test fails it.


@pytest.fixture(autouse=True)
def _lava_marker_is_accurate(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    import neurocxr.hardware_sims.lava as lava_runner

    calls: list[int] = []
    original = lava_runner._import_lava

    def recording_import():
        calls.append(1)
        return original()

    monkeypatch.setattr(lava_runner, "_import_lava", recording_import)
    yield
    if calls and request.node.get_closest_marker("lava") is None:
        pytest.fail(
            f"{request.node.nodeid} runs Lava but is not marked @pytest.mark.lava", pytrace=False
        )
