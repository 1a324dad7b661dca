"""Checkpoints: a model's config, weights and training metadata in one torch file.

The file is a plain dict (no pickled classes of ours), so loading needs only the registry:
``{"format": "neurocxr-checkpoint", "version": 1, "config": ModelConfig.to_dict(),
"state_dict": ..., "metadata": {...}}``. Written atomically (temp file + ``os.replace``).
"""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neurocxr.errors import CheckpointError
from neurocxr.fileio import atomic_write
from neurocxr.models.base import MODEL_REGISTRY, ModelConfig, build_model
from neurocxr.provenance import package_versions
from neurocxr.validation import check_finite_state, check_threshold, describe_file, file_kind

CHECKPOINT_FORMAT = "neurocxr-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class Checkpoint:
    """A rebuilt model (eval mode) with its config and the metadata saved alongside it."""

    model: nn.Module
    config: ModelConfig
    metadata: dict[str, Any] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that define how the weights behave (recorded for provenance)."""
    versions = {"python": platform.python_version()}
    versions.update(
        {
            k: v
            for k, v in package_versions(
                ("torch", "snntorch", "norse", "numpy", "neurocxr")
            ).items()
            if v is not None
        }
    )
    return versions


def _plain(value: Any) -> Any:
    """Metadata as plain Python (dict/list/str/number/bool/None) so `torch.load(weights_only=True)`
    can read it back: numpy scalars/arrays, Paths, tuples and objects with ``to_dict`` converted."""
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return _plain(value.to_dict())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    return str(value)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def save_checkpoint(
    path: str | Path, model: nn.Module, config: ModelConfig, metadata: dict[str, Any]
) -> Path:
    """Write ``model``'s weights with ``config`` and ``metadata`` (threshold, data source, history...)
    to ``path`` atomically; library versions and the creation time are added to the metadata."""
    meta = dict(metadata)
    meta.setdefault("library_versions", library_versions())
    meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": _plain(meta),
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Rebuild the model of a checkpoint written by `save_checkpoint` (eval mode, CPU).

    Raises CheckpointError for a missing file, a file torch cannot read, a torch file that is not
    a neurocxr checkpoint, a newer format version, an unknown model name, weights that do not
    fit the rebuilt model, any NaN/inf tensor (named in the message), a stored threshold outside
    [0, 1], or a file of another kind (a NIR graph, netx file, npz, folder: named, with the command
    that reads it).
    """

    path = Path(path)
    kind = file_kind(path)
    if kind == "missing":
        raise CheckpointError(f"checkpoint {path} does not exist (train one with `neurocxr train`)")
    if kind not in ("checkpoint", "unknown"):
        # A NIR graph, netx file, npz, folder...: say what it is and which command reads it.
        raise CheckpointError(
            f"{path} {describe_file(path)}; a checkpoint is a .pt file written by `neurocxr train`"
        )
    try:
        # weights_only: a checkpoint is plain data; refuse to run pickled code from a foreign file.
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  torch.load of a foreign file fails in many ways (IndexError, KeyError...)
        raise CheckpointError(
            f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {_first_line(exc)}); "
            "point to a .pt file written by `neurocxr train`"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is a torch file but not a neurocxr checkpoint (no format marker {CHECKPOINT_FORMAT!r}); "
            "bare state_dicts and other projects' checkpoints cannot be loaded"
        )
    version = payload.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this neurocxr reads up to "
            f"{CHECKPOINT_VERSION}: upgrade neurocxr"
        )
    for key in ("config", "state_dict"):
        if key not in payload:
            raise CheckpointError(
                f"{path} is damaged: it has no {key!r} entry; retrain or re-save it"
            )
    if not isinstance(payload["config"], dict):
        raise CheckpointError(
            f"{path} is damaged: its 'config' entry is a {type(payload['config']).__name__}, not a dict"
        )
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path} is damaged: its 'state_dict' entry is not a mapping of tensors; retrain or re-save it"
        )
    name = payload["config"].get("name")
    if isinstance(name, str) and name not in MODEL_REGISTRY:
        raise CheckpointError(
            f"{path} is a {name!r} model, which this neurocxr does not know; "
            f"known models: {', '.join(sorted(MODEL_REGISTRY))}"
        )
    try:
        config = ModelConfig.from_dict(dict(payload["config"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} holds an invalid model config: {exc}") from exc
    # A NaN/inf weight, bias or threshold would evaluate silently and export as garbage integers.
    check_finite_state(state, str(path))
    try:
        model = build_model(config)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: the saved weights do not fit a {config.name!r} model built from the saved config "
            f"({_first_line(exc)}); the checkpoint is damaged or from an incompatible version"
        ) from exc
    metadata = payload.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(
            f"{path} is damaged: its 'metadata' entry is a {type(metadata).__name__}, not a dict"
        )
    if "threshold" in metadata:  # the operating point decides every call: checked where it enters
        check_threshold(metadata["threshold"], str(path))
    return Checkpoint(model.eval(), config, dict(metadata))
