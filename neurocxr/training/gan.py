"""Double SGAN minority-class augmentation (after Xu & Zhang, Sci. Rep. 2026), small enough for a CPU.

What the paper summary gives (../shared/docs/models.md): a GAN that makes normal-class images to
balance training, spectral normalisation in every generator and discriminator layer,
self-attention in the generator's conv layers, hinge loss. What "Double" means here — our
faithful-but-small reading, not the paper's exact network:

- **two generator stages**: stage 1 maps z (64-d) to a 14x14 coarse image through
  SN-linear -> 7x7 -> upsample + SN-conv -> self-attention at 14x14; stage 2 refines it to 28x28
  (upsample + SN-conv -> self-attention at 28x28 with keys/values pooled to 14x14 -> SN-conv);
  each stage ends in a 1-channel tanh image;
- **two spectrally normalised discriminators**: D14 judges the stage-1 image against real images
  average-pooled to 14x14, D28 the final image against real 28x28 images;
- **hinge loss** on both (D: relu(1 - D(real)) + relu(1 + D(fake)); G: -D(fake)), summed;
  Adam (0, 0.9) with the two time-scale rule (G 1e-4, D 4e-4), as SAGAN.

`balance_with_sgan` trains it on the training split's normal images only, generates as many normal
images as the classes differ by, appends them to the training split (labelled normal, marked in
the record) and saves a PNG grid of samples. Validation and test are untouched. On a shared
2-core CPU, ``SganConfig.steps`` (default 300 batches of 32) keeps training to a few minutes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from neurocxr.data.datasets import DataSplits, ImageDataset
from neurocxr.errors import DataError
from neurocxr.fileio import atomic_write
from neurocxr.models.checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "SganConfig",
    "SelfAttention",
    "DoubleSganGenerator",
    "SnDiscriminator",
    "DoubleSgan",
    "train_sgan",
    "save_grid",
    "balance_with_sgan",
]

NORMAL = 0


@dataclass
class SganConfig:
    """Sizes and schedule of the Double SGAN (defaults: a few CPU minutes)."""

    z_dim: int = 64
    width: int = (
        32  # generator channels at 7x7 (halved per upsampling); discriminators start at width/2
    )
    steps: int = 300
    batch_size: int = 32
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    seed: int = 0
    image_size: int = 28

    def __post_init__(self) -> None:
        if self.image_size != 28:
            raise ValueError(f"the Double SGAN is built for 28 px images, got {self.image_size}")
        if self.steps < 1 or self.batch_size < 2 or self.z_dim < 1 or self.width < 8:
            raise ValueError("steps >= 1, batch_size >= 2, z_dim >= 1 and width >= 8 are required")


class SelfAttention(nn.Module):
    """SAGAN self-attention over the H*W positions (spectrally normalised 1x1 projections);
    ``gamma`` starts at 0 so the block starts as the identity. ``pool`` > 1 average-pools keys and
    values (as BigGAN's attention max-pools them), dividing the cost of the HW x HW' map by pool^2."""

    def __init__(self, channels: int, pool: int = 1) -> None:
        super().__init__()
        inner = max(channels // 8, 1)
        self.pool = pool
        self.query = spectral_norm(nn.Conv2d(channels, inner, 1, bias=False))
        self.key = spectral_norm(nn.Conv2d(channels, inner, 1, bias=False))
        self.value = spectral_norm(nn.Conv2d(channels, channels, 1, bias=False))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # [B, HW, c']
        kv_in = F.avg_pool2d(x, self.pool) if self.pool > 1 else x
        k = self.key(kv_in).flatten(2)  # [B, c', HW']
        attn = torch.softmax(q @ k, dim=-1)  # [B, HW, HW']
        v = self.value(kv_in).flatten(2)  # [B, C, HW']
        out = (v @ attn.transpose(1, 2)).view(b, c, h, w)
        return x + self.gamma * out


def _up_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        spectral_norm(nn.Conv2d(cin, cout, 3, padding=1)),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DoubleSganGenerator(nn.Module):
    """z -> (14x14 stage-1 image, 28x28 stage-2 image), both in [-1, 1]."""

    def __init__(self, z_dim: int = 64, width: int = 64) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.width = width
        self.project = spectral_norm(nn.Linear(z_dim, width * 7 * 7))
        self.stage1 = nn.Sequential(_up_block(width, width // 2), SelfAttention(width // 2))
        self.to_image1 = spectral_norm(nn.Conv2d(width // 2, 1, 3, padding=1))
        self.stage2 = nn.Sequential(
            _up_block(width // 2, width // 4),
            SelfAttention(width // 4, pool=2),
            spectral_norm(nn.Conv2d(width // 4, width // 4, 3, padding=1)),
            nn.BatchNorm2d(width // 4),
            nn.ReLU(inplace=True),
        )
        self.to_image2 = spectral_norm(nn.Conv2d(width // 4, 1, 3, padding=1))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.project(z)).view(-1, self.width, 7, 7)
        h1 = self.stage1(h)
        h2 = self.stage2(h1)
        return torch.tanh(self.to_image1(h1)), torch.tanh(self.to_image2(h2))


class SnDiscriminator(nn.Module):
    """Spectrally normalised strided-conv discriminator for ``side`` x ``side`` images -> a score."""

    def __init__(self, side: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, cout = 1, width
        while side > 4:
            layers += [
                spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)),
                nn.LeakyReLU(0.1, inplace=True),
            ]
            cin, cout, side = cout, cout * 2, side // 2
        layers += [spectral_norm(nn.Conv2d(cin, cin, 3, 1, 1)), nn.LeakyReLU(0.1, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.score = spectral_norm(nn.Linear(cin, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(x).sum(dim=(2, 3))).view(-1)


class DoubleSgan(nn.Module):
    """Generator plus the two discriminators (14 px for stage 1, 28 px for stage 2)."""

    def __init__(self, config: SganConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = DoubleSganGenerator(config.z_dim, config.width)
        self.d14 = SnDiscriminator(14, config.width // 2)
        self.d28 = SnDiscriminator(28, config.width // 2)

    @torch.no_grad()
    def sample(self, n: int, *, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
        """``n`` generated images [n, 1, 28, 28] in [0, 1] (eval mode, seeded)."""
        g = torch.Generator().manual_seed(seed)
        was_training = self.generator.training
        self.generator.eval()
        out = []
        try:
            for start in range(0, n, batch_size):
                z = torch.randn(min(batch_size, n - start), self.config.z_dim, generator=g)
                out.append((self.generator(z)[1] + 1.0) / 2.0)
        finally:
            self.generator.train(was_training)
        if not out:
            return torch.zeros(0, 1, 28, 28)
        return torch.cat(out).clamp_(0.0, 1.0)


def train_sgan(
    images: torch.Tensor, config: SganConfig, *, progress: bool = False
) -> tuple[DoubleSgan, list[dict[str, float]]]:
    """Train a Double SGAN on ``images`` [N, 1, 28, 28] in [0, 1]; returns the GAN and a loss log."""
    from tqdm.auto import tqdm

    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise DataError(
            f"the Double SGAN trains on [N, 1, 28, 28] images, got {tuple(images.shape)}"
        )
    if images.shape[0] < 2:
        raise DataError("the Double SGAN needs at least 2 training images")
    torch.manual_seed(config.seed)
    gan = DoubleSgan(config)
    opt_g = torch.optim.Adam(gan.generator.parameters(), lr=config.lr_g, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(
        list(gan.d14.parameters()) + list(gan.d28.parameters()), lr=config.lr_d, betas=(0.0, 0.9)
    )
    real_all = images.float() * 2.0 - 1.0
    rng = torch.Generator().manual_seed(config.seed)
    log: list[dict[str, float]] = []
    gan.train()
    for step in tqdm(range(config.steps), desc="Double SGAN", disable=not progress, leave=False):
        idx = torch.randint(0, real_all.shape[0], (config.batch_size,), generator=rng)
        real28 = real_all[idx]
        real14 = F.avg_pool2d(real28, 2)
        z = torch.randn(config.batch_size, config.z_dim, generator=rng)
        fake14, fake28 = gan.generator(z)
        # Discriminators: hinge loss on both scales.
        d_loss = (
            F.relu(1.0 - gan.d28(real28)).mean()
            + F.relu(1.0 + gan.d28(fake28.detach())).mean()
            + F.relu(1.0 - gan.d14(real14)).mean()
            + F.relu(1.0 + gan.d14(fake14.detach())).mean()
        )
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # Generator: hinge (-D(fake)) on both scales.
        g_loss = -(gan.d28(fake28).mean() + gan.d14(fake14).mean())
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if step % 50 == 0 or step == config.steps - 1:
            log.append({"step": step, "d_loss": float(d_loss), "g_loss": float(g_loss)})
    gan.eval()
    return gan, log


def save_grid(images: torch.Tensor, path: str | Path, *, columns: int = 8) -> Path:
    """Write images [N, 1, H, W] in [0, 1] as one grayscale PNG grid (1-pixel gaps), atomically."""
    from PIL import Image

    if images.ndim != 4 or images.shape[1] != 1 or images.shape[0] == 0:
        raise ValueError(
            f"save_grid needs a non-empty [N, 1, H, W] batch, got {tuple(images.shape)}"
        )
    n, _, h, w = images.shape
    cols = min(columns, n)
    rows = -(-n // cols)
    canvas = np.zeros((rows * (h + 1) - 1, cols * (w + 1) - 1), dtype=np.uint8)
    pixels = (images[:, 0].clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = pixels[i]
    out = Path(path)
    atomic_write(out, lambda tmp: Image.fromarray(canvas, mode="L").save(tmp, format="PNG"))
    return out


def balance_with_sgan(
    splits: Any,
    config: SganConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    prefix: str = "sgan",
    progress: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Train the Double SGAN on the normal training images and append generated normal images until
    both classes have as many training images. Returns new splits (val/test unchanged) and a record.

    With ``out_dir``: ``<prefix>.sgan_samples.png`` (an 8x8 grid of generated images only) and
    ``<prefix>.sgan.pt`` (generator weights and config) are written there.
    """

    config = config or SganConfig()
    train = splits.train
    if not isinstance(train, ImageDataset):
        raise DataError(
            f"--balance sgan needs the training split as an ImageDataset, got {type(train).__name__}"
        )
    if train.image_size != 28:
        raise DataError(
            f"--balance sgan is built for 28 px images; the data is {train.image_size} px"
        )
    labels = train.labels
    normal = train.images[labels == NORMAL]
    n_normal, n_pneumonia = int(normal.shape[0]), int((labels != NORMAL).sum())
    if n_normal < 2:
        raise DataError(
            f"--balance sgan needs normal (class 0) training images to learn from; found {n_normal}"
        )
    missing = max(n_pneumonia - n_normal, 0)
    started = time.perf_counter()
    gan, log = train_sgan(normal, config, progress=progress)
    generated = gan.sample(missing, seed=config.seed + 1)
    seconds = time.perf_counter() - started
    new_train = replace(
        train,
        images=torch.cat([train.images, generated.float()]),
        labels=torch.cat([labels, torch.full((missing,), NORMAL, dtype=torch.int64)]),
        source=f"{train.source} + {missing} Double-SGAN normal images",
    )
    record: dict[str, Any] = {
        "config": asdict(config),
        "seconds": seconds,
        "real_normal": n_normal,
        "real_pneumonia": n_pneumonia,
        "generated": missing,
        "loss_log": log,
        "generated_mean_intensity": float(generated.mean()) if missing else None,
        "real_normal_mean_intensity": float(normal.mean()),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        grid = save_grid(gan.sample(64, seed=config.seed + 2), out / f"{prefix}.sgan_samples.png")
        weights = out / f"{prefix}.sgan.pt"
        state = {"config": asdict(config), "generator": gan.generator.state_dict()}
        atomic_write(weights, lambda tmp: torch.save(state, tmp))
        # File names only: the folder may be a staging folder moved into place afterwards.
        record["samples_png"] = grid.name
        record["generator_weights"] = weights.name
    return DataSplits(new_train, splits.val, splits.test), record


def sgan_files(prefix: str) -> list[str]:
    """Names of the files `balance_with_sgan` writes next to a checkpoint called ``<prefix>.pt``."""
    return [f"{prefix}.sgan_samples.png", f"{prefix}.sgan.pt"]


def record_in_checkpoint(path: str | Path, record: dict[str, Any]) -> None:
    """Add ``balance: "sgan"`` and the SGAN record (without its loss log) to a checkpoint's metadata:
    the training config there says ``balance: none`` because the generated images did the balancing."""

    ckpt = load_checkpoint(path)
    meta = dict(ckpt.metadata)
    meta["balance"] = "sgan"
    meta["sgan"] = {k: v for k, v in record.items() if k != "loss_log"}
    save_checkpoint(path, ckpt.model, ckpt.config, meta)
