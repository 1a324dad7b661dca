"""Chest X-ray datasets: the PneumoniaMNIST npz, Kermany-style image folders, synthetic phantoms.

Every loader returns a `DataSplits` of three `ImageDataset`s holding float32 images [N, 1, H, W]
in [0, 1] and int64 labels [N] (0 = NORMAL, 1 = PNEUMONIA), plus a human-readable ``source`` so
reports can say exactly what a number was measured on. Malformed input raises `DataError` with a
message naming the file/key/folder at fault; library exceptions never reach the user raw.

Where data comes from when the user names nothing (`resolve_data_source`): an explicit path, then
``$NEUROCXR_DATA``, then ``~/.medmnist/pneumoniamnist.npz`` (where ``medmnist`` downloads it), and
finally synthetic phantoms (`neurocxr.data.phantoms`), which are always labelled synthetic.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, WeightedRandomSampler

from neurocxr.data.phantoms import generate_phantoms
from neurocxr.errors import DataError
from neurocxr.validation import (
    PIXEL_RULE,
    check_finite_inputs,
    describe_file,
    file_kind,
    show_progress,
)

__all__ = [
    "CLASS_NAMES",
    "SPLITS",
    "MEDMNIST_SIZES",
    "Augment",
    "ImageDataset",
    "DataSplits",
    "load_npz",
    "load_folder",
    "synthetic_splits",
    "resolve_data_source",
    "load_dataset",
    "recorded_data",
    "data_for_checkpoint",
    "check_data_path",
    "fetch_pneumoniamnist",
    "info",
    "class_weights",
    "balanced_sampler",
]

CLASS_NAMES = ("NORMAL", "PNEUMONIA")
SPLITS = ("train", "val", "test")
MEDMNIST_SIZES = (28, 64, 128, 224)
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
DEFAULT_MEDMNIST_ROOT = Path("~/.medmnist")


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------


@dataclass
class Augment:
    """Light, label-preserving training augmentation applied per sample by `ImageDataset`.

    Random horizontal flip, rotation up to ``max_rotation_deg`` (border pixels repeated, no black
    corners), brightness shift up to +-``brightness`` and contrast scale up to +-``contrast``; the
    result is clamped to [0, 1]. Randomness is seeded: the draw for sample ``i`` depends only on
    ``(seed, epoch, i, k)`` where k counts earlier draws of sample ``i`` by this object, so a run
    is reproducible, and each pass over the data (k = 0, 1, ...) gets fresh transforms. With
    non-persistent DataLoader workers the count restarts in each worker copy; call `set_epoch`
    each epoch (as with DistributedSampler) to get fresh draws there too.

    Acquisition-shift transforms (all off by default; ``for_mode("shift")`` turns them on) mimic
    how X-ray machines and their processing differ: ``scale`` zooms by 1 +- scale around a centre
    moved by up to +-``shift`` of the side (crop/field-of-view jitter), ``gamma`` applies
    x**g with log g uniform in +-log(1 + gamma) (detector response / windowing), ``blur`` a
    Gaussian of sigma uniform in [0, blur] px (resolution), ``noise`` Gaussian noise of std uniform
    in [0, noise] (dose). They draw after the light transforms, so the light draws are unchanged.
    """

    hflip: bool = True
    max_rotation_deg: float = 7.0
    brightness: float = 0.1
    contrast: float = 0.1
    scale: float = 0.0
    shift: float = 0.0
    gamma: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    seed: int = 0
    epoch: int = 0
    _draws: dict[int, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_rotation_deg < 0 or self.brightness < 0 or self.contrast < 0:
            raise ValueError(
                "Augment magnitudes (max_rotation_deg, brightness, contrast) must be >= 0"
            )
        if self.contrast >= 1:
            raise ValueError(
                f"Augment contrast must be < 1 (a scale of 1 +- contrast), got {self.contrast}"
            )
        if (
            min(self.scale, self.shift, self.gamma, self.blur, self.noise) < 0
            or self.scale >= 1
            or self.shift >= 1
        ):
            raise ValueError(
                "Augment scale, shift, gamma, blur and noise must be >= 0 (scale and shift < 1)"
            )

    @classmethod
    def for_mode(cls, mode: str, seed: int = 0) -> "Augment":
        """``light``: the defaults; ``shift``: light plus acquisition differences (scale 0.1, shift
        0.06, gamma 0.4, blur 1 px, noise 0.03 -- magnitudes a few times what separates X-ray units)."""
        if mode == "light":
            return cls(seed=seed)
        if mode == "shift":
            return cls(
                contrast=0.2,
                brightness=0.1,
                scale=0.1,
                shift=0.06,
                gamma=0.4,
                blur=1.0,
                noise=0.03,
                seed=seed,
            )
        raise ValueError(f"unknown augmentation mode {mode!r}; choose light or shift")

    def set_epoch(self, epoch: int) -> None:
        """Change the epoch so the next pass draws new random transforms."""
        self.epoch = int(epoch)

    def generator_for(self, index: int, draw: int = 0) -> torch.Generator:
        """The seeded generator for the ``draw``-th augmentation of sample ``index`` this epoch."""
        g = torch.Generator()
        # Mix the integers into one 63-bit seed (splitmix-style odd constants, deterministic).
        mixed = (
            self.seed * 0x9E3779B97F4A7C15
            + self.epoch * 0xBF58476D1CE4E5B9
            + index * 0x94D049BB133111EB
            + draw * 0xD6E8FEB86659FD93
        )
        g.manual_seed(mixed % (2**63 - 1))
        return g

    def next_generator(self, index: int) -> torch.Generator:
        """Generator for the next draw of sample ``index`` (advances its draw count)."""
        draw = self._draws.get(index, 0)
        self._draws[index] = draw + 1
        return self.generator_for(index, draw)

    def __call__(
        self, image: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Augment one image [C, H, W] in [0, 1]; returns a new tensor, the input is untouched."""
        if image.ndim != 3:
            raise ValueError(f"Augment expects one image [C, H, W], got shape {tuple(image.shape)}")
        g = generator if generator is not None else torch.Generator().manual_seed(self.seed)
        u = torch.rand(4, generator=g)  # flip, angle, brightness, contrast
        out = image.clone()
        if self.hflip and u[0] < 0.5:
            out = torch.flip(out, dims=(-1,))
        if self.max_rotation_deg > 0:
            angle = math.radians(float((2 * u[1] - 1) * self.max_rotation_deg))
            if angle != 0.0:
                c, s = math.cos(angle), math.sin(angle)
                theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=out.dtype).unsqueeze(0)
                grid = F.affine_grid(theta, [1, *out.shape], align_corners=False)
                out = F.grid_sample(
                    out.unsqueeze(0),
                    grid,
                    mode="bilinear",
                    padding_mode="border",
                    align_corners=False,
                ).squeeze(0)
        if self.contrast > 0:
            scale = 1.0 + float((2 * u[3] - 1) * self.contrast)
            mean = out.mean()
            out = (out - mean) * scale + mean
        if self.brightness > 0:
            out = out + float((2 * u[2] - 1) * self.brightness)
        if self.scale > 0 or self.shift > 0 or self.gamma > 0 or self.blur > 0 or self.noise > 0:
            out = self._acquisition(out.clamp(0.0, 1.0), g)
        return out.clamp_(0.0, 1.0)

    def _acquisition(self, out: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        v = torch.rand(6, generator=g)  # zoom, shift x, shift y, gamma, blur, noise
        if self.scale > 0 or self.shift > 0:
            zoom = 1.0 + float((2 * v[0] - 1) * self.scale)
            tx, ty = (
                float((2 * v[k] - 1) * self.shift * 2) for k in (1, 2)
            )  # grid units span 2 per side
            theta = torch.tensor(
                [[1.0 / zoom, 0.0, tx], [0.0, 1.0 / zoom, ty]], dtype=out.dtype
            ).unsqueeze(0)
            grid = F.affine_grid(theta, [1, *out.shape], align_corners=False)
            out = F.grid_sample(
                out.unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=False
            ).squeeze(0)
        if self.gamma > 0:
            exponent = math.exp(float((2 * v[3] - 1) * math.log1p(self.gamma)))
            out = out.clamp(1e-6, 1.0) ** exponent
        if self.blur > 0:
            sigma = float(v[4] * self.blur)
            if sigma > 0.05:
                radius = max(1, int(math.ceil(2 * sigma)))
                x = torch.arange(-radius, radius + 1, dtype=out.dtype)
                k = torch.exp(-0.5 * (x / sigma) ** 2)
                k = k / k.sum()
                c = out.shape[0]
                padded = F.pad(out.unsqueeze(0), (radius, radius, radius, radius), mode="replicate")
                padded = F.conv2d(padded, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
                out = F.conv2d(padded, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c).squeeze(0)
        if self.noise > 0:
            out = out + float(v[5] * self.noise) * torch.randn(
                out.shape, generator=g, dtype=out.dtype
            )
        return out


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


@dataclass
class ImageDataset(Dataset):
    """One split: images float32 [N, 1, H, W] in [0, 1], labels int64 [N] (0 normal, 1 pneumonia).

    ``augment`` is applied in ``__getitem__`` only when set (training); leave it None to evaluate.
    """

    images: torch.Tensor
    labels: torch.Tensor
    split: str
    source: str
    synthetic: bool = False
    augment: Augment | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 1:
            raise DataError(
                f"{self.split} images must be [N, 1, H, W], got shape {tuple(self.images.shape)}"
            )
        if self.images.dtype != torch.float32:
            raise DataError(f"{self.split} images must be float32, got {self.images.dtype}")
        if self.labels.ndim != 1 or self.labels.dtype != torch.int64:
            raise DataError(
                f"{self.split} labels must be int64 [N], got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if self.labels.shape[0] != self.images.shape[0]:
            raise DataError(
                f"{self.split}: {self.images.shape[0]} images but {self.labels.shape[0]} labels"
            )
        if not bool(torch.isfinite(self.images).all()):
            check_finite_inputs(self.images, f"{self.split} images")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i]
        if self.augment is not None:
            image = self.augment(image, self.augment.next_generator(int(i)))
        return image, int(self.labels[i])

    @property
    def image_size(self) -> int:
        """Side length H (images are square)."""
        return int(self.images.shape[-1])

    def class_counts(self) -> dict[str, int]:
        """Number of images per class, e.g. ``{"NORMAL": 1214, "PNEUMONIA": 3494}``."""
        counts = torch.bincount(self.labels, minlength=len(CLASS_NAMES))
        return {name: int(counts[k]) for k, name in enumerate(CLASS_NAMES)}


@dataclass
class DataSplits:
    """The train / val / test splits of one data source."""

    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    origin: str | None = (
        None  # what `load_dataset` read: "synthetic" or the absolute path (checkpoints record it)
    )

    def __iter__(self):
        return iter((self.train, self.val, self.test))

    @property
    def source(self) -> str:
        """Where the data came from (the train split's source; all splits share it)."""
        return self.train.source

    @property
    def synthetic(self) -> bool:
        """True when any split is synthetic phantoms rather than real X-rays."""
        return self.train.synthetic or self.val.synthetic or self.test.synthetic

    @property
    def image_size(self) -> int:
        return self.train.image_size

    def describe(self) -> str:
        """One line per split with the count per class and the image size."""
        lines = []
        for ds in (self.train, self.val, self.test):
            counts = ds.class_counts()
            per_class = ", ".join(f"{name} {n}" for name, n in counts.items())
            lines.append(
                f"{ds.split:<5} {len(ds):>6} images ({per_class}), {ds.image_size}x{ds.image_size}"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _resize(images: torch.Tensor, size: int, chunk: int = 512) -> torch.Tensor:
    """Resize float images [N, 1, H, W] to size x size (bilinear, antialiased), in chunks."""
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((images.shape[0], 1, size, size), dtype=torch.float32)
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk]
        out[start : start + chunk] = F.interpolate(
            part, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        ).clamp_(0.0, 1.0)
    return out


MIN_IMAGE_SIZE = 8  # the smallest image side the loaders produce


def _check_image_size(image_size: int | None) -> None:
    if image_size is not None and (not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE):
        raise DataError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")


def _uint8_to_float(gray: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] -> float32 [N, 1, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(gray)).to(torch.float32).div_(255.0).unsqueeze(1)


def _rgb_to_gray_uint8(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (what PIL's convert("L") uses) of uint8 [..., 3], rounded back to uint8."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.rint(rgb.astype(np.float32) @ weights), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# MedMNIST npz
# --------------------------------------------------------------------------------------------


def _check_npz_file(path: Path) -> None:
    """DataError (one line) unless ``path`` is a file that looks like an npz (zip) archive."""
    if not path.exists():
        raise DataError(
            f"data file {path} does not exist; pass the path to pneumoniamnist.npz "
            f"(or run `neurocxr data fetch`)"
        )
    if path.is_dir():
        raise DataError(f"{path} is a folder, not an npz file; use load_folder for image folders")
    if file_kind(path) in ("checkpoint", "nir", "netx", "hdf5", "onnx", "toml", "image"):
        raise DataError(
            f"{path} {describe_file(path)}; a data set is a PneumoniaMNIST .npz or a Kermany folder"
        )
    if zipfile.is_zipfile(path):
        return
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head.startswith(b"PK"):
        raise DataError(f"{path} is a truncated or damaged npz (zip) archive; download it again")
    if head == b"\x93NUMPY":
        raise DataError(
            f"{path} is a single .npy array, not an npz archive with train/val/test splits"
        )
    raise DataError(
        f"{path} is not an npz (zip) archive; expected a MedMNIST file such as pneumoniamnist.npz"
    )


def _npz_images(path: Path, key: str, imgs: np.ndarray, side: int | None) -> np.ndarray:
    """One split's images as uint8 (N, S, S) gray, of the train split's size ``side``."""
    if imgs.dtype != np.uint8:
        raise DataError(f"{path}: {key} has dtype {imgs.dtype}; MedMNIST images are uint8 (0-255)")
    if imgs.ndim == 4 and imgs.shape[-1] == 1:
        imgs = imgs[..., 0]
    elif imgs.ndim == 4 and imgs.shape[-1] == 3:
        imgs = _rgb_to_gray_uint8(imgs)
    if imgs.ndim != 3 or imgs.shape[1] != imgs.shape[2]:
        raise DataError(
            f"{path}: {key} has shape {imgs.shape}; expected (N, S, S), (N, S, S, 1) "
            f"or (N, S, S, 3) with square images"
        )
    if side is not None and imgs.shape[1] != side:
        raise DataError(
            f"{path}: {key} are {imgs.shape[1]}x{imgs.shape[2]} but train images are "
            f"{side}x{side}; all splits must have one size"
        )
    return imgs


def _npz_labels(path: Path, lkey: str, labels: np.ndarray, key: str, n_images: int) -> np.ndarray:
    """One split's labels as int64 (N,) in {0, 1}, one per image."""
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise DataError(
            f"{path}: {lkey} has dtype {labels.dtype}; expected integer class labels 0/1"
        )
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(
            f"{path}: {lkey} has shape {labels.shape}; expected (N, 1) or (N,) "
            f"(PneumoniaMNIST is binary, one label per image)"
        )
    if labels.shape[0] != n_images:
        raise DataError(
            f"{path}: {key} holds {n_images} images but {lkey} holds {labels.shape[0]} labels"
        )
    bad = np.setdiff1d(np.unique(labels.astype(np.int64)), [0, 1])
    if bad.size:
        raise DataError(
            f"{path}: {lkey} has values {bad.tolist()[:5]} outside {{0, 1}} "
            f"(0 = normal, 1 = pneumonia); is this PneumoniaMNIST?"
        )
    return labels.astype(np.int64)


def load_npz(path: str | Path, image_size: int | None = None) -> DataSplits:
    """Load a MedMNIST-format npz (PneumoniaMNIST, any of sizes 28/64/128/224).

    Expects keys ``{train,val,test}_images`` (uint8, (N,S,S), (N,S,S,1) or RGB (N,S,S,3) converted
    to gray) and ``{train,val,test}_labels`` ((N,1) or (N,), values in {0, 1}). Resizes to
    ``image_size`` when given and different. Raises DataError naming whatever is wrong.
    """
    _check_image_size(image_size)
    path = Path(path).expanduser()
    _check_npz_file(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"cannot open {path} as an npz archive ({exc}); the file may be truncated or "
            f"damaged, download it again"
        ) from exc

    with archive:
        expected = [f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels")]
        missing = [k for k in expected if k not in archive.files]
        if missing:
            raise DataError(
                f"{path} is missing key(s) {', '.join(missing)} (it has: {', '.join(archive.files) or 'none'}); "
                f"expected a MedMNIST npz with train/val/test _images and _labels"
            )

        def read(key: str) -> np.ndarray:
            try:
                return archive[key]
            except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as exc:
                if "allow_pickle" in str(exc):
                    raise DataError(
                        f"{path}: {key} holds pickled Python objects; MedMNIST arrays are "
                        f"plain uint8 numbers (not loading pickles from a data file)"
                    ) from exc
                raise DataError(
                    f"cannot read array {key!r} from {path} ({exc}); the file is truncated or "
                    f"damaged, download it again"
                ) from exc

        raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        side: int | None = None
        for split in SPLITS:
            key, lkey = f"{split}_images", f"{split}_labels"
            imgs, labels = read(key), read(lkey)
            imgs = _npz_images(path, key, imgs, side)
            side = int(imgs.shape[1])
            raw[split] = (imgs, _npz_labels(path, lkey, labels, key, imgs.shape[0]))

    assert side is not None
    target = side if image_size is None else image_size
    source = f"PneumoniaMNIST npz {path} ({side}x{side})"
    if target != side:
        source += f" resized to {target}x{target}"
    datasets = {}
    for split, (imgs, labels) in raw.items():
        images = _resize(_uint8_to_float(imgs), target)
        datasets[split] = ImageDataset(images, torch.from_numpy(labels), split, source)
    return DataSplits(**datasets)


# --------------------------------------------------------------------------------------------
# Kermany-style folders
# --------------------------------------------------------------------------------------------


def _find_child(parent: Path, name: str) -> Path | None:
    """The child folder called ``name`` (case-insensitive), or None."""
    exact = parent / name
    if exact.is_dir():
        return exact
    for child in parent.iterdir():
        if child.is_dir() and child.name.lower() == name.lower():
            return child
    return None


def _image_files(folder: Path) -> list[Path]:
    """Image files in ``folder`` (jpeg/jpg/png, any case), sorted; hidden files and others skipped."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def wide_mode_to_unit(img: Any, path: Path) -> np.ndarray:
    """Pixels of a 16-bit ("I;16*"), 32-bit integer ("I") or float ("F") PIL image as float64 in
    [0, 1] by the one pixel rule (`neurocxr.validation.PIXEL_RULE`): 16-bit data divided by 65535
    (PNG readers may hold it in mode "I"), floats kept and required in [0, 1]; anything else refused."""

    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise DataError(
                f"{path} is a float image with values {arr.min():g}..{arr.max():g}; {PIXEL_RULE}"
            )
        return arr
    if arr.min() < 0 or arr.max() > 65535:
        raise DataError(
            f"{path} holds 32-bit pixel values {arr.min():g}..{arr.max():g}; {PIXEL_RULE}"
        )
    return arr / 65535.0


def _read_image(path: Path, size: int) -> np.ndarray:
    """Read one image file as gray, centre-crop to a square, resize to size x size; uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("L", (2 * size, 2 * size))  # fast DCT downscale; keeps >= 2*size pixels
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                # The one pixel rule (README "Image values"): 16-bit / 65535, never stretched per image,
                # so an X-ray scores the same as an 8-bit or a 16-bit file.
                unit = wide_mode_to_unit(img, path)
                img = Image.fromarray(np.rint(unit * 255.0).astype(np.uint8), mode="L")
            else:
                img = img.convert("L")
            w, h = img.size
            s = min(w, h)
            left, top_px = (w - s) // 2, (h - s) // 2
            img = img.crop((left, top_px, left + s, top_px + s))
            img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image file {path} ({exc}); remove or replace it") from exc


def _load_folder_split(split_dir: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    images: list[np.ndarray] = []
    labels: list[int] = []
    names: list[str] = []
    for label, name in enumerate(CLASS_NAMES):
        class_dir = _find_child(split_dir, name)
        if class_dir is None:
            present = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
            raise DataError(
                f"class folder {split_dir / name} is missing (found: {', '.join(present) or 'none'}); "
                f"each split needs both {' and '.join(CLASS_NAMES)} folders"
            )
        files = _image_files(class_dir)
        if not files:
            raise DataError(f"class folder {class_dir} holds no .jpeg/.jpg/.png images")
        from tqdm import tqdm

        bar = tqdm(
            files,
            desc=f"reading {split_dir.name}/{class_dir.name}",
            unit="image",
            leave=False,
            disable=not show_progress() or len(files) < 200,
        )
        for f in bar:
            images.append(_read_image(f, size))
            labels.append(label)
            names.append(f.name)
    return np.stack(images), np.asarray(labels, dtype=np.int64), names


_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),  # Kermany pneumonia: person1000_bacteria_2931.jpeg
    re.compile(
        r"^((?:NORMAL2-)?IM-\d+)-", re.IGNORECASE
    ),  # Kermany normals: IM-0115-0001, NORMAL2-IM-1427-0001
)


def patient_id(file_name: str) -> str | None:
    """The patient a Kermany file name belongs to (``PERSON123``, ``IM-0115``, ``NORMAL2-IM-1427``),
    or None when the name carries no patient id."""
    for pattern in _PATIENT_PATTERNS:
        m = pattern.match(file_name)
        if m:
            return m.group(1).upper()
    return None


def _patient_split(
    labels: np.ndarray, names: list[str], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Indices (keep, held_out) holding out ``fraction`` of each class's patients, every image of a
    patient on one side; None when a file name carries no patient id (then split by image)."""
    groups = [patient_id(n) for n in names]
    if not names or any(g is None for g in groups):
        return None
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for c in np.unique(labels):
        # a patient's class is that of their images (Kermany keeps a patient in one class folder)
        patients = sorted({g for g, y in zip(groups, labels) if y == c})
        rng.shuffle(patients)
        n = max(1, int(round(fraction * len(patients)))) if len(patients) > 1 else 0
        chosen = set(patients[:n])
        held += [i for i, (g, y) in enumerate(zip(groups, labels)) if y == c and g in chosen]
    held_idx = np.asarray(sorted(held), dtype=np.int64)
    return np.setdiff1d(np.arange(labels.size), held_idx), held_idx


def _stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) with ``fraction`` of each class (at least one) held out."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n = max(1, int(round(fraction * idx.size))) if idx.size > 1 else 0
        held.append(idx[:n])
    held_idx = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    keep_idx = np.setdiff1d(np.arange(labels.size), held_idx)
    return keep_idx, held_idx


def load_folder(
    root: str | Path, image_size: int = 28, *, val_fraction: float = 0.1, seed: int = 0
) -> DataSplits:
    """Load Kermany-layout folders ``<root>/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg|jpg|png``.

    Images of any size, RGB or gray, become gray, centre-cropped to a square and resized to
    ``image_size`` (like MedMNIST). Hidden files and non-image files are ignored. When ``val/`` is
    missing, a stratified ``val_fraction`` of train becomes val (Kermany's official val has only 16
    images), and the source says so.
    """
    _check_image_size(image_size)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder")
    split_dirs = {s: _find_child(root, s) for s in SPLITS}
    for s in ("train", "test"):
        if split_dirs[s] is None:
            raise DataError(
                f"split folder {root / s} is missing; expected {root}/{{train,val,test}}/"
                f"{{NORMAL,PNEUMONIA}}/ with images (val/ is optional)"
            )
    loaded = {s: _load_folder_split(d, image_size) for s, d in split_dirs.items() if d is not None}
    source = f"Kermany folders {root} (resized to {image_size}x{image_size})"
    if "val" not in loaded:
        imgs, labels, names = loaded["train"]
        # By patient where the file names say who it is (Kermany's do): a patient's images, and the
        # duplicate files of one image, never sit on both sides, so validation sees unseen patients.
        by_patient = _patient_split(labels, names, val_fraction, seed)
        keep, held = (
            by_patient if by_patient is not None else _stratified_split(labels, val_fraction, seed)
        )
        if held.size == 0:
            raise DataError(
                f"{root}/train is too small to carve a validation split from; add a val/ folder"
            )
        loaded["train"] = (imgs[keep], labels[keep], [names[i] for i in keep])
        loaded["val"] = (imgs[held], labels[held], [names[i] for i in held])
        unit = "patients" if by_patient is not None else "images"
        source += (
            f"; no val/ folder, val = stratified {val_fraction:.0%} of train {unit} (seed {seed})"
        )
    datasets = {
        s: ImageDataset(_uint8_to_float(imgs), torch.from_numpy(labels), s, source)
        for s, (imgs, labels, _names) in loaded.items()
    }
    return DataSplits(**datasets)


# --------------------------------------------------------------------------------------------
# Synthetic phantoms, source resolution, dispatch
# --------------------------------------------------------------------------------------------


def synthetic_splits(
    image_size: int = 28, n_train: int = 600, n_val: int = 150, n_test: int = 150, seed: int = 0
) -> DataSplits:
    """Synthetic chest X-ray phantoms (50% pneumonia in every split), deterministic in ``seed``."""

    _check_image_size(image_size)
    source = f"synthetic phantoms (seed {seed})"
    datasets = {}
    for k, (split, n) in enumerate(zip(SPLITS, (n_train, n_val, n_test))):
        imgs, labels = generate_phantoms(n, image_size, seed=(seed, k), pneumonia_fraction=0.5)
        datasets[split] = ImageDataset(
            torch.from_numpy(imgs).unsqueeze(1),
            torch.from_numpy(labels),
            split,
            source,
            synthetic=True,
        )
    return DataSplits(**datasets)


def resolve_data_source(path: str | Path | None) -> str | Path | None:
    """Which data to use: explicit ``path`` > ``$NEUROCXR_DATA`` > ``~/.medmnist/pneumoniamnist.npz``
    > None (meaning synthetic phantoms). The string "synthetic" is passed through unchanged.

    A configured path is returned even when it does not exist, so a typo gives an error instead of
    a silent fall-back to synthetic data.
    """
    if path is not None and str(path) != "":
        if isinstance(path, str) and path.lower() == "synthetic":
            return "synthetic"
        return Path(path).expanduser()
    env = os.environ.get("NEUROCXR_DATA", "").strip()
    if env:
        return "synthetic" if env.lower() == "synthetic" else Path(env).expanduser()
    default = (DEFAULT_MEDMNIST_ROOT / "pneumoniamnist.npz").expanduser()
    if default.is_file():
        return default
    return None


def load_dataset(
    source: str | Path | None = None,
    image_size: int = 28,
    *,
    synthetic_ok: bool = True,
    seed: int = 0,
) -> DataSplits:
    """Load splits from ``source``: None (resolved via `resolve_data_source`), "synthetic", a folder
    (Kermany layout) or an npz file. With ``synthetic_ok=False``, finding no data is a DataError
    instead of a fall-back to phantoms (an explicit "synthetic" is still honoured).
    """
    resolved = resolve_data_source(source)
    if resolved is None:
        if not synthetic_ok:
            raise DataError(
                "no data found: pass a path to pneumoniamnist.npz or a Kermany folder, set "
                "NEUROCXR_DATA, or run `neurocxr data fetch` (downloads to ~/.medmnist)"
            )
        return _with_origin(synthetic_splits(image_size, seed=seed), "synthetic")
    if resolved == "synthetic":
        return _with_origin(synthetic_splits(image_size, seed=seed), "synthetic")
    path = Path(resolved)
    if not path.exists():
        raise DataError(
            f"data path {path} does not exist; pass an existing npz file or image folder "
            f"(check NEUROCXR_DATA)"
        )
    if path.is_dir():
        return _with_origin(load_folder(path, image_size, seed=seed), str(path.resolve()))
    return _with_origin(load_npz(path, image_size), str(path.resolve()))


def _with_origin(splits: DataSplits, origin: str) -> DataSplits:
    splits.origin = origin
    return splits


_RECORDED_SOURCE = (
    re.compile(r"^PneumoniaMNIST npz (.+) \(\d+x\d+\)"),
    re.compile(r"^Kermany folders (.+) \(resized to \d+x\d+\)"),
)


def recorded_data(metadata: dict[str, Any]) -> str | None:
    """The data a checkpoint was trained on, from its metadata: "synthetic", a path, or None when
    it records nothing usable. ``data_origin`` is written by training; older checkpoints only hold
    the human-readable ``data_source``, whose path is read back from the loaders' wording."""
    origin = metadata.get("data_origin")
    if isinstance(origin, str) and origin:
        return origin
    source = metadata.get("data_source")
    if not isinstance(source, str):
        return None
    if source.startswith("synthetic"):
        return "synthetic"
    for pattern in _RECORDED_SOURCE:
        match = pattern.match(source)
        if match:
            return match.group(1)
    return None


def check_data_path(data: str | Path | None, where: str = "--data") -> None:
    """Refuse, before any work, a data path (given, or from $NEUROCXR_DATA) that does not exist or
    is a file of another kind (a checkpoint, a NIR graph, an image...); damaged archives are left to
    the loaders, which say what is wrong inside them."""

    resolved = resolve_data_source(data)
    if resolved is None or resolved == "synthetic":
        return
    kind = file_kind(resolved)
    if kind == "missing":
        raise DataError(
            f"{where} {resolved} does not exist; give an existing PneumoniaMNIST .npz or Kermany folder"
        )
    if kind in ("checkpoint", "nir", "netx", "hdf5", "onnx", "toml", "image"):
        raise DataError(
            f"{where} {resolved} {describe_file(resolved)}; a data set is a PneumoniaMNIST .npz or a Kermany folder"
        )


def data_for_checkpoint(data: str | Path | None, metadata: dict[str, Any]) -> str | Path | None:
    """What to score a checkpoint on: ``data`` when given; else the data the checkpoint records
    (phantoms only when it was trained on phantoms); else, when the recorded file is gone, a real
    data set configured by $NEUROCXR_DATA / ~/.medmnist. A model trained on real X-rays is never
    scored on phantoms unless asked (``--data synthetic``): DataError instead. None: nothing is
    recorded, the usual default chain (`resolve_data_source`) applies."""
    if data is not None and str(data) != "":
        return data
    recorded = recorded_data(metadata)
    if recorded is None or recorded == "synthetic":
        return recorded
    if Path(recorded).expanduser().exists():
        return recorded
    configured = resolve_data_source(None)
    if configured is not None and configured != "synthetic":
        return configured
    raise DataError(
        f"the checkpoint was trained on {recorded}, which is not there; pass --data with that data set's "
        "new path (or set NEUROCXR_DATA), or --data synthetic to score it on phantoms explicitly"
    )


def fetch_pneumoniamnist(size: int = 28, root: Path = DEFAULT_MEDMNIST_ROOT) -> Path:
    """Download the official PneumoniaMNIST npz with ``medmnist`` (MD5-checked) and return its path.

    Needs network access; does nothing but verify when the file is already there.
    """
    if size not in MEDMNIST_SIZES:
        raise DataError(
            f"PneumoniaMNIST comes in sizes {', '.join(map(str, MEDMNIST_SIZES))}, not {size}"
        )
    root = Path(root).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create download folder {root} ({exc})") from exc
    try:
        import medmnist
    except ImportError as exc:  # pragma: no cover - medmnist is a declared dependency
        raise DataError(
            "the medmnist package is needed to download PneumoniaMNIST: pip install medmnist"
        ) from exc
    try:
        medmnist.PneumoniaMNIST(split="train", download=True, size=size, root=str(root))
    except Exception as exc:  # medmnist raises bare RuntimeError with a multi-line hint
        raise DataError(
            f"downloading PneumoniaMNIST ({size}x{size}) to {root} failed: "
            f"{' '.join(str(exc).split())}"
        ) from exc
    flag = "" if size == 28 else f"_{size}"
    path = root / f"pneumoniamnist{flag}.npz"
    if not path.is_file():
        raise DataError(f"medmnist reported success but {path} is not there")
    return path


@dataclass
class DataInfo:
    """What `info` returns: the data source, whether it is synthetic, image size, counts per split and class."""

    source: str
    synthetic: bool
    image_size: int
    splits: dict[str, dict[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "synthetic": self.synthetic,
            "image_size": self.image_size,
            "splits": self.splits,
        }


def info(path: str | Path | None, image_size: int | None = None) -> DataInfo:
    """Summary for ``neurocxr data info``: source, synthetic flag, image size, counts per split/class."""
    resolved = resolve_data_source(path)
    if resolved is not None and resolved != "synthetic" and Path(resolved).is_file():
        splits = load_npz(resolved, image_size)  # native size unless asked
    else:
        splits = load_dataset(resolved, image_size or 28)
    return DataInfo(
        source=splits.source,
        synthetic=splits.synthetic,
        image_size=splits.image_size,
        splits={ds.split: {"total": len(ds), **ds.class_counts()} for ds in splits},
    )


# --------------------------------------------------------------------------------------------
# Class imbalance
# --------------------------------------------------------------------------------------------


def class_weights(ds: ImageDataset) -> torch.Tensor:
    """Inverse-frequency weights [num_classes] for CrossEntropyLoss: N / (K * n_k) (mean-1 for the
    samples). Raises DataError when a class has no samples (its weight would be infinite)."""
    counts = torch.bincount(ds.labels, minlength=len(CLASS_NAMES)).to(torch.float32)
    empty = [CLASS_NAMES[k] for k in range(len(CLASS_NAMES)) if counts[k] == 0]
    if empty:
        raise DataError(f"{ds.split} split has no {', '.join(empty)} images; cannot weight classes")
    return counts.sum() / (len(CLASS_NAMES) * counts)


def balanced_sampler(ds: ImageDataset, seed: int = 0) -> WeightedRandomSampler:
    """Sampler drawing len(ds) samples with replacement so each class is drawn equally often."""
    per_class = class_weights(ds)
    weights = per_class[ds.labels].to(torch.float64)
    g = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(weights, num_samples=len(ds), replacement=True, generator=g)
