"""Data loaders: real PneumoniaMNIST, MedMNIST-format npz, Kermany folders, phantoms, bad input."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import NORMAL_LEVEL, PNEUMONIA_LEVEL, write_medmnist_npz

from neurocxr.data import datasets as D
from neurocxr.data.datasets import (
    Augment,
    DataSplits,
    ImageDataset,
    balanced_sampler,
    class_weights,
    load_dataset,
    load_folder,
    load_npz,
    resolve_data_source,
    synthetic_splits,
)
from neurocxr.data.phantoms import generate_phantoms
from neurocxr.errors import DataError


def _assert_valid_splits(splits: DataSplits, size: int) -> None:
    for ds in splits:
        assert ds.images.dtype == torch.float32 and ds.labels.dtype == torch.int64
        assert ds.images.shape[1:] == (1, size, size)
        assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0
        assert set(ds.labels.unique().tolist()) <= {0, 1}


def _assert_labels_match_levels(ds: ImageDataset) -> None:
    """Factory images: NORMAL ~ NORMAL_LEVEL/255, PNEUMONIA ~ PNEUMONIA_LEVEL/255 (per image mean)."""
    means = ds.images.mean(dim=(1, 2, 3))
    expected = torch.where(ds.labels == 1, PNEUMONIA_LEVEL / 255, NORMAL_LEVEL / 255)
    assert torch.allclose(means, expected.to(means.dtype), atol=0.03), (means, ds.labels)


# ---------------------------------------------------------------- real file


def test_real_pneumoniamnist_counts(real_npz: Path) -> None:
    splits = load_npz(real_npz)
    _assert_valid_splits(splits, 28)
    assert splits.train.class_counts() == {"NORMAL": 1214, "PNEUMONIA": 3494}
    assert splits.val.class_counts() == {"NORMAL": 135, "PNEUMONIA": 389}
    assert splits.test.class_counts() == {"NORMAL": 234, "PNEUMONIA": 390}
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4708, 524, 624)
    assert not splits.synthetic and "(28x28)" in splits.source and str(real_npz) in splits.source
    # Real X-rays use the intensity range, and images differ from each other.
    assert float(splits.train.images.std()) > 0.1
    assert "4708" in splits.describe() and "NORMAL 1214" in splits.describe()


def test_real_file_resized_and_info(real_npz: Path) -> None:
    splits = load_npz(real_npz, image_size=64)
    _assert_valid_splits(splits, 64)
    assert "resized to 64x64" in splits.source
    small = load_npz(real_npz)
    # Downscaling the upscaled image back approximately recovers the original.
    back = torch.nn.functional.interpolate(
        splits.test.images[:32], size=(28, 28), mode="bilinear", antialias=True, align_corners=False
    )
    assert float((back - small.test.images[:32]).abs().mean()) < 0.03
    summary = D.info(real_npz)
    assert summary.image_size == 28 and summary.synthetic is False
    assert summary.splits["test"] == {"total": 624, "NORMAL": 234, "PNEUMONIA": 390}


def test_real_file_via_environment(real_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUROCXR_DATA", str(real_npz))
    assert resolve_data_source(None) == real_npz
    splits = load_dataset(None, synthetic_ok=False)
    assert len(splits.train) == 4708


# ---------------------------------------------------------------- npz made here


@pytest.mark.parametrize("size", [28, 64])
@pytest.mark.parametrize("channels,label_shape", [(None, "column"), (1, "flat"), (3, "column")])
def test_npz_formats(medmnist_npz, size: int, channels, label_shape: str) -> None:
    path = medmnist_npz(size=size, channels=channels, label_shape=label_shape)
    splits = load_npz(path)
    _assert_valid_splits(splits, size)
    assert splits.train.class_counts() == {"NORMAL": 6, "PNEUMONIA": 10}
    assert splits.test.class_counts() == {"NORMAL": 3, "PNEUMONIA": 4}
    for ds in splits:
        _assert_labels_match_levels(ds)


def test_npz_exact_pixel_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    arrays = {}
    for split in D.SPLITS:
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.array([[0], [1], [1], [0]], dtype=np.uint8)
    np.savez(tmp_path / "d.npz", **arrays)
    splits = load_npz(tmp_path / "d.npz")
    np.testing.assert_allclose(
        splits.val.images[:, 0].numpy(), arrays["val_images"] / 255.0, rtol=0, atol=1e-7
    )
    assert splits.val.labels.tolist() == [0, 1, 1, 0]


def test_npz_resize_28_to_64_and_back(medmnist_npz) -> None:
    path = medmnist_npz(size=28)
    up = load_npz(path, image_size=64)
    _assert_valid_splits(up, 64)
    assert "resized to 64x64" in up.source
    for ds in up:
        _assert_labels_match_levels(ds)
    down = load_npz(medmnist_npz(name="big.npz", size=64), image_size=32)
    _assert_valid_splits(down, 32)


def test_dataset_getitem_and_augment(medmnist_npz) -> None:
    splits = load_npz(medmnist_npz())
    ds = splits.train
    image, label = ds[3]
    assert image.shape == (1, 28, 28) and isinstance(label, int) and label == int(ds.labels[3])
    assert torch.equal(image, ds.images[3])  # no augmentation at evaluation
    ds.augment = Augment(seed=5)
    a1, _ = ds[3]
    a2, _ = ds[3]
    assert not torch.equal(a1, a2)  # second pass over sample 3: a fresh draw
    assert not torch.equal(a1, ds.images[3])
    assert float(a1.min()) >= 0 and float(a1.max()) <= 1
    ds.augment = Augment(seed=5)  # same seed, fresh object: the same sequence again
    b1, _ = ds[3]
    b2, _ = ds[3]
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    ds.augment = Augment(seed=5, epoch=1)
    c1, _ = ds[3]
    assert not torch.equal(a1, c1)
    assert torch.equal(ds.images[3], splits.train.images[3])  # stored images never modified


def test_augment_flip_only_is_a_mirror() -> None:
    image = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0))
    aug = Augment(hflip=True, max_rotation_deg=0, brightness=0, contrast=0)
    seen = set()
    for i in range(20):
        out = aug(image, aug.generator_for(i))
        if torch.equal(out, image):
            seen.add("same")
        else:
            assert torch.equal(out, torch.flip(image, dims=(-1,)))
            seen.add("flipped")
    assert seen == {"same", "flipped"}


def test_augment_brightness_bounded() -> None:
    image = torch.full((1, 8, 8), 0.5)
    aug = Augment(hflip=False, max_rotation_deg=0, brightness=0.1, contrast=0.0)
    shifts = [float(aug(image, aug.generator_for(i)).mean()) - 0.5 for i in range(50)]
    assert max(abs(s) for s in shifts) <= 0.1 + 1e-6
    assert min(shifts) < -0.02 and max(shifts) > 0.02


# ---------------------------------------------------------------- bad npz input


def test_missing_file() -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_npz("/nonexistent/pneumoniamnist.npz")


def test_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "notes.npz"
    path.write_text("this is plain text, not an archive\n")
    with pytest.raises(DataError, match="not an npz"):
        load_npz(path)
    npy = tmp_path / "single.npz"
    np.save(npy.with_suffix(".npy"), np.zeros(3))
    npy.with_suffix(".npy").rename(npy)
    with pytest.raises(DataError, match="single .npy array"):
        load_npz(npy)


def test_truncated_file(medmnist_npz, tmp_path: Path) -> None:
    good = medmnist_npz()
    blob = good.read_bytes()
    for keep in (len(blob) // 2, len(blob) - 30):
        cut = tmp_path / f"cut{keep}.npz"
        cut.write_bytes(blob[:keep])
        with pytest.raises(DataError, match="truncated or damaged"):
            load_npz(cut)


def test_corrupted_member(medmnist_npz, tmp_path: Path) -> None:
    """A zip whose central directory is intact but one member's data is damaged."""
    good = medmnist_npz()
    blob = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("train_images.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 10
    blob[start : start + 40] = bytes(40)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="train_images"):
        load_npz(bad)


def test_wrong_keys(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "x.npz", x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(2, np.uint8)
    )
    with pytest.raises(DataError, match="missing key.*train_images.*x_train"):
        load_npz(tmp_path / "x.npz")


def _arrays(**override) -> dict[str, np.ndarray]:
    arrays = {}
    for split in D.SPLITS:
        arrays[f"{split}_images"] = np.zeros((4, 28, 28), np.uint8)
        arrays[f"{split}_labels"] = np.array([[0], [1], [0], [1]], np.uint8)
    arrays.update(override)
    return arrays


@pytest.mark.parametrize(
    "override,pattern",
    [
        ({"val_images": np.zeros((4, 28, 28), np.float32)}, "val_images has dtype float32"),
        (
            {"test_labels": np.array([[0], [1], [2], [1]], np.uint8)},
            r"test_labels has values \[2\] outside",
        ),
        ({"train_labels": np.array([0, 1, -1, 1], np.int64)}, r"values \[-1\]"),
        ({"train_labels": np.array([0.0, 1.0, 0.0, 1.0])}, "train_labels has dtype float64"),
        (
            {"val_labels": np.zeros((3, 1), np.uint8)},
            "val_images holds 4 images but val_labels holds 3",
        ),
        ({"train_labels": np.zeros((4, 2), np.uint8)}, r"train_labels has shape \(4, 2\)"),
        (
            {"train_images": np.zeros((4, 28, 20), np.uint8)},
            r"train_images has shape \(4, 28, 20\)",
        ),
        (
            {"test_images": np.zeros((4, 32, 32), np.uint8)},
            "test_images are 32x32 but train images are 28x28",
        ),
        ({"train_images": np.zeros((4, 28, 28, 2), np.uint8)}, "train_images has shape"),
    ],
)
def test_malformed_arrays(tmp_path: Path, override, pattern: str) -> None:
    np.savez(tmp_path / "bad.npz", **_arrays(**override))
    with pytest.raises(DataError, match=pattern):
        load_npz(tmp_path / "bad.npz")


def test_pickled_object_array_rejected(tmp_path: Path) -> None:
    arrays = _arrays(train_labels=np.array([0, 1, "x", 1], dtype=object))
    np.savez(tmp_path / "obj.npz", **arrays)
    with pytest.raises(DataError, match="train_labels holds pickled Python objects"):
        load_npz(tmp_path / "obj.npz")


def test_bad_image_size(medmnist_npz) -> None:
    with pytest.raises(DataError, match="image_size"):
        load_npz(medmnist_npz(), image_size=4)


# ---------------------------------------------------------------- Kermany folders


def test_kermany_mixed_images(kermany_tree) -> None:
    root = kermany_tree(per_class=4)
    splits = load_folder(root, image_size=32)
    _assert_valid_splits(splits, 32)
    for ds in splits:
        assert ds.class_counts() == {"NORMAL": 4, "PNEUMONIA": 4}
        _assert_labels_match_levels(ds)
    assert splits.source.startswith("Kermany folders") and "no val/" not in splits.source
    assert load_dataset(root, image_size=32).train.class_counts() == {"NORMAL": 4, "PNEUMONIA": 4}


def test_kermany_centre_crop(tmp_path: Path) -> None:
    """A wide image with a bright centre square and dark side bands: the crop keeps the centre."""
    from PIL import Image

    root = tmp_path / "k"
    for split in ("train", "val", "test"):
        for cls in D.CLASS_NAMES:
            (root / split / cls).mkdir(parents=True)
            arr = np.zeros((40, 80), np.uint8)
            arr[:, 20:60] = 200
            Image.fromarray(arr).save(root / split / cls / "a.png")
    splits = load_folder(root, image_size=20)
    assert torch.allclose(
        splits.test.images, torch.full_like(splits.test.images, 200 / 255), atol=1e-6
    )


def test_kermany_without_val_carves_stratified(kermany_tree) -> None:
    root = kermany_tree(splits=("train", "test"), per_class=20)
    splits = load_folder(root, image_size=16, seed=3)
    assert splits.val.class_counts() == {"NORMAL": 2, "PNEUMONIA": 2}
    assert splits.train.class_counts() == {"NORMAL": 18, "PNEUMONIA": 18}
    assert "val = stratified 10% of train" in splits.source
    _assert_labels_match_levels(splits.val)


def test_kermany_ignores_hidden_and_non_images(kermany_tree) -> None:
    root = kermany_tree(per_class=2)
    (root / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1garbage")
    (root / "train" / "NORMAL" / "._img0.png").write_bytes(b"AppleDouble junk")
    (root / "train" / "PNEUMONIA" / "notes.txt").write_text("not an image")
    (root / "train" / "PNEUMONIA" / "Thumbs.db").write_bytes(b"junk")
    (root / "train" / "PNEUMONIA" / "subdir.png").mkdir()
    (root / ".DS_Store").write_bytes(b"junk")
    splits = load_folder(root, image_size=16)
    assert splits.train.class_counts() == {"NORMAL": 2, "PNEUMONIA": 2}


def test_kermany_unreadable_image_named(kermany_tree) -> None:
    root = kermany_tree(per_class=2)
    broken = root / "test" / "PNEUMONIA" / "broken.jpeg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpeg"):
        load_folder(root)


def test_kermany_truncated_jpeg_named(kermany_tree) -> None:
    from PIL import Image

    root = kermany_tree(per_class=2)
    full = root / "val" / "NORMAL" / "big.jpeg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(full)
    full.write_bytes(full.read_bytes()[:400])
    with pytest.raises(DataError, match=r"big\.jpeg"):
        load_folder(root)


def test_kermany_single_class_names_missing(kermany_tree) -> None:
    root = kermany_tree(classes=("PNEUMONIA",))
    with pytest.raises(DataError, match=r"NORMAL is missing"):
        load_folder(root)


def test_kermany_empty_class_folder(kermany_tree) -> None:
    root = kermany_tree(per_class=2)
    for f in (root / "test" / "NORMAL").iterdir():
        f.unlink()
    (root / "test" / "NORMAL" / ".DS_Store").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"test/NORMAL holds no"):
        load_folder(root)


def test_kermany_empty_root_and_missing_split(tmp_path: Path, kermany_tree) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty/train is missing"):
        load_folder(tmp_path / "empty")
    root = kermany_tree(splits=("train", "val"))
    with pytest.raises(DataError, match=r"test is missing"):
        load_folder(root)
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "nope")


# ---------------------------------------------------------------- synthetic and dispatch


def test_synthetic_splits_deterministic_and_balanced() -> None:
    a = synthetic_splits(image_size=24, n_train=40, n_val=10, n_test=12, seed=1)
    b = synthetic_splits(image_size=24, n_train=40, n_val=10, n_test=12, seed=1)
    c = synthetic_splits(image_size=24, n_train=40, n_val=10, n_test=12, seed=2)
    _assert_valid_splits(a, 24)
    assert a.synthetic and a.source == "synthetic phantoms (seed 1)"
    assert a.train.class_counts() == {"NORMAL": 20, "PNEUMONIA": 20}
    assert a.test.class_counts() == {"NORMAL": 6, "PNEUMONIA": 6}
    assert torch.equal(a.train.images, b.train.images) and torch.equal(
        a.train.labels, b.train.labels
    )
    assert not torch.equal(a.train.images, c.train.images)
    assert not torch.equal(a.train.images[:10], a.val.images)  # splits are different images


def test_phantoms_any_size_and_prefix_stable() -> None:
    for size in (16, 28, 96):
        imgs, labels = generate_phantoms(6, size, seed=0)
        assert imgs.shape == (6, size, size) and imgs.dtype == np.float32
        assert imgs.min() >= 0 and imgs.max() <= 1 and imgs.std() > 0.05
    # Image i depends only on (seed, i) and its label.
    imgs_a, labels_a = generate_phantoms(10, 28, seed=(4, 0), pneumonia_fraction=0.5)
    imgs_b, labels_b = generate_phantoms(10, 28, seed=(4, 0), pneumonia_fraction=0.5)
    np.testing.assert_array_equal(imgs_a, imgs_b)
    assert labels_a.sum() == 5


def test_phantom_pneumonia_adds_lung_opacity() -> None:
    """Same random draw with and without pneumonia: opacity only brightens, and only in the lungs."""
    from neurocxr.data.phantoms import phantom_image

    diffs = []
    for i in range(20):
        normal = phantom_image(64, False, np.random.default_rng([9, i]))
        sick = phantom_image(64, True, np.random.default_rng([9, i]))
        d = sick - normal
        diffs.append(d)
        assert d.min() > -0.05  # up to clipping, opacity never darkens
    mean_diff = np.mean(diffs, axis=0)
    lungs_band = mean_diff[16:48, 8:24].mean() + mean_diff[16:48, 40:56].mean()
    outside = mean_diff[:, :3].mean() + mean_diff[:3, :].mean()
    assert lungs_band > 0.02 and abs(outside) < 0.005


def test_resolve_data_source_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "DEFAULT_MEDMNIST_ROOT", tmp_path / "medmnist")
    monkeypatch.delenv("NEUROCXR_DATA", raising=False)
    assert resolve_data_source(None) is None
    default = tmp_path / "medmnist" / "pneumoniamnist.npz"
    default.parent.mkdir()
    default.write_bytes(b"")
    assert resolve_data_source(None) == default
    monkeypatch.setenv("NEUROCXR_DATA", str(tmp_path / "env.npz"))
    assert resolve_data_source(None) == tmp_path / "env.npz"
    assert resolve_data_source(tmp_path / "explicit.npz") == tmp_path / "explicit.npz"
    assert resolve_data_source("synthetic") == "synthetic"


@pytest.mark.slow
def test_load_dataset_dispatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, medmnist_npz
) -> None:
    monkeypatch.setattr(D, "DEFAULT_MEDMNIST_ROOT", tmp_path / "nothing")
    monkeypatch.delenv("NEUROCXR_DATA", raising=False)
    synth = load_dataset(None, image_size=20)
    assert synth.synthetic and synth.image_size == 20 and len(synth.train) == 600
    with pytest.raises(DataError, match="no data found"):
        load_dataset(None, synthetic_ok=False)
    assert load_dataset("synthetic", synthetic_ok=False).synthetic
    npz = load_dataset(medmnist_npz(), image_size=28)
    assert not npz.synthetic and len(npz.train) == 16
    monkeypatch.setenv("NEUROCXR_DATA", str(tmp_path / "typo.npz"))
    with pytest.raises(DataError, match="typo.npz does not exist"):
        load_dataset(None)


def test_fetch_validates_size_and_wraps_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medmnist

    with pytest.raises(DataError, match="sizes 28, 64, 128, 224"):
        D.fetch_pneumoniamnist(size=32, root=tmp_path)

    calls = []

    def fake_download(split, download, size, root):  # what the real class would do, offline
        calls.append((split, download, size, root))
        write_medmnist_npz(Path(root) / f"pneumoniamnist_{size}.npz", size=size)

    monkeypatch.setattr(medmnist, "PneumoniaMNIST", fake_download)
    path = D.fetch_pneumoniamnist(size=64, root=tmp_path / "mm")
    assert path == tmp_path / "mm" / "pneumoniamnist_64.npz" and calls[0][1] is True
    assert load_npz(path).image_size == 64

    def failing(**kwargs):
        raise RuntimeError("\n   Automatic download failed!\n   check network")

    monkeypatch.setattr(medmnist, "PneumoniaMNIST", failing)
    with pytest.raises(DataError, match="failed: Automatic download failed! check network"):
        D.fetch_pneumoniamnist(size=28, root=tmp_path / "mm2")


# ---------------------------------------------------------------- imbalance helpers


def test_class_weights_and_balanced_sampler() -> None:
    labels = torch.tensor([0] * 25 + [1] * 75)
    ds = ImageDataset(torch.zeros(100, 1, 8, 8), labels, "train", "test data")
    w = class_weights(ds)
    assert torch.allclose(w, torch.tensor([2.0, 2.0 / 3.0]))
    # Weighted loss gives both classes equal total weight.
    assert torch.isclose(w[0] * 25, w[1] * 75)
    drawn = torch.tensor(list(balanced_sampler(ds, seed=0)))
    assert drawn.numel() == 100
    drawn_many = torch.cat([torch.tensor(list(balanced_sampler(ds, seed=s))) for s in range(20)])
    frac_normal = (labels[drawn_many] == 0).float().mean().item()
    assert abs(frac_normal - 0.5) < 0.05  # 2000 draws: 5 sigma is ~0.056
    assert torch.equal(
        torch.tensor(list(balanced_sampler(ds, seed=3))),
        torch.tensor(list(balanced_sampler(ds, seed=3))),
    )
    one_class = ImageDataset(torch.zeros(4, 1, 8, 8), torch.ones(4, dtype=torch.int64), "val", "x")
    with pytest.raises(DataError, match="no NORMAL"):
        class_weights(one_class)


def test_image_dataset_rejects_bad_tensors() -> None:
    with pytest.raises(DataError, match=r"\[N, 1, H, W\]"):
        ImageDataset(torch.zeros(4, 8, 8), torch.zeros(4, dtype=torch.int64), "train", "x")
    with pytest.raises(DataError, match="4 images but 3 labels"):
        ImageDataset(torch.zeros(4, 1, 8, 8), torch.zeros(3, dtype=torch.int64), "train", "x")
