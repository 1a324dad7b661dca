"""Models as the pipeline uses them: a checkpoint (or an in-memory model) with its config and
metadata, the one way to run any model on images (`forward_model`), the images encoded as
the model was trained, and its float logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from neurocxr.errors import NeurocxrError

if TYPE_CHECKING:  # pragma: no cover - deployment imports this module
    pass


from neurocxr.data.encoding import encode
from neurocxr.models.base import ModelConfig, is_snn
from neurocxr.models.checkpoint import load_checkpoint
from neurocxr.validation import check_finite_inputs, check_finite_state, check_threshold


@dataclass
class LoadedModel:
    """A model with its config and training metadata, from a checkpoint or built in memory."""

    model: nn.Module
    config: Any  # ModelConfig
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.metadata.get("label") or self.config.name)

    @property
    def threshold(self) -> float:

        return check_threshold(self.metadata.get("threshold", 0.5), f"model {self.name!r}")


def load(path_or_model: str | Path | nn.Module | LoadedModel) -> LoadedModel:
    """Load a neurocxr checkpoint (or wrap a model built with `build_model`)."""
    if isinstance(path_or_model, LoadedModel):
        return path_or_model
    if isinstance(path_or_model, nn.Module):
        config = getattr(path_or_model, "config", None)
        if config is None:
            raise NeurocxrError(
                "model has no .config: build it with neurocxr.models.build_model(ModelConfig(...))"
            )

        check_finite_state(
            path_or_model.state_dict(), f"model {config.name!r}"
        )  # as checkpoints are checked
        return LoadedModel(path_or_model.eval(), config, {})

    if not isinstance(path_or_model, (str, Path)):
        import os

        if not isinstance(path_or_model, os.PathLike):
            raise NeurocxrError(
                f"load takes a checkpoint path, a model built with neurocxr.models.build_model or a "
                f"LoadedModel, got an object of type {type(path_or_model).__name__}"
            )
    ckpt = load_checkpoint(path_or_model)
    return LoadedModel(ckpt.model.eval(), ckpt.config, dict(ckpt.metadata))


def input_shape(config: Any) -> tuple[int, int, int]:
    return (config.in_channels, config.image_size, config.image_size)


def encoded_inputs(config: Any, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The exact [T, B, C, H, W] tensor an SNN sees for these images (seeded for rate coding)."""

    return encode(images, config.encoding, config.num_steps, seed=seed)


def _check_images(images: torch.Tensor) -> None:

    if len(images) == 0:
        raise NeurocxrError(
            "no images to run the model on; raise --max-samples or use a non-empty split"
        )
    check_finite_inputs(images, "images")


def encoded_batches(
    config: Any, images: torch.Tensor, *, batch_size: int = 128, seed: int = 0
) -> list[torch.Tensor]:
    """The SNN inputs `float_logits` uses: batch i of ``batch_size`` images encoded with seed + i.
    Encode once and pass them to `float_logits(encoded=...)` and to NeuroBench counting."""
    _check_images(images)
    return [
        encoded_inputs(config, images[start : start + batch_size], seed=seed + i)
        for i, start in enumerate(range(0, len(images), batch_size))
    ]


@torch.no_grad()
def float_logits(
    loaded: LoadedModel,
    images: torch.Tensor,
    *,
    batch_size: int = 128,
    seed: int = 0,
    encoded: list[torch.Tensor] | None = None,
) -> np.ndarray:
    """Logits of the float PyTorch model; SNN inputs encoded per batch with a seed derived from ``seed``
    (``encoded``: those batches already encoded by `encoded_batches`, SNNs only)."""

    _check_images(images)
    model = loaded.model.eval()
    if encoded is not None:
        return torch.cat([model(x).logits for x in encoded]).float().numpy()
    out = []
    for i, start in enumerate(range(0, len(images), batch_size)):
        out.append(
            forward_model(model, images[start : start + batch_size], loaded.config, seed=seed + i)
        )
    return torch.cat(out).float().numpy()


def forward_model(
    model: nn.Module, images: torch.Tensor, config: ModelConfig, *, seed: int | None = None
) -> torch.Tensor:
    """Logits [B, K] of any registered model for images [B, C, H, W] in [0, 1].

    SNNs receive ``encode(images, config.encoding, config.num_steps, seed)``; ``seed`` makes rate
    coding repeatable (None: draw from torch's global generator).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    if is_snn(config):
        out = model(encode(images, config.encoding, config.num_steps, seed=seed))
        return out.logits
    return model(images)
