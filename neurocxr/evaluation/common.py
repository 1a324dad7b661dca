"""What the evaluation modules share: float scores of any model, and the Loihi emulator path for
deployable SNNs with its operating threshold chosen on validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from neurocxr.deploy.deployment import Deployment, OperatingPoint, readout_difference  # noqa: F401 - re-exported
from neurocxr.errors import NeurocxrError
from neurocxr.models import is_snn, model_info
from neurocxr.models.loaded import float_logits


def float_logits_of(loaded: Any, images: torch.Tensor, *, seed: int = 0) -> np.ndarray:
    """Logits [N, K] of the float PyTorch model (SNN inputs encoded with a seed, as everywhere)."""

    return float_logits(loaded, images, seed=seed)


def softmax_positive(logits: np.ndarray) -> np.ndarray:
    """P(pneumonia) = softmax(logits)[:, 1]."""
    return torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float64)), 1)[:, 1].numpy()


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """Every dropout module (nn.Dropout, Dropout2d, AlphaDropout, ...) with p > 0 in ``model``."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.dropout._DropoutNd) and float(m.p) > 0
    ]


def last_conv2d(model: nn.Module, layer: str | None = None) -> tuple[str, nn.Conv2d] | None:
    """(qualified name, module) of Grad-CAM's layer: the conv named ``layer``, else the last
    nn.Conv2d registered in ``model`` with more than 2 output channels (1-2 channel convs are
    attention or gate maps, e.g. resnet18_sa's spatial attention, not feature maps), else the last
    Conv2d; None when there is none. Registration order follows the forward pass in every
    registered model."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if layer is not None:
        named = dict(convs)
        if layer not in named:
            raise NeurocxrError(
                f"no Conv2d named {layer!r} in the model; its convolutions are: "
                + ", ".join(n for n, _ in convs[-8:])
                + (" (last 8)" if len(convs) > 8 else "")
            )
        return layer, named[layer]
    features = [(n, m) for n, m in convs if m.out_channels > 2]
    return (features or convs or [None])[-1]


def is_snn_model(loaded: Any) -> bool:

    return bool(is_snn(loaded.config))


@dataclass
class Chip:
    """A deployable SNN on the chip and its operating point.

    The chip's score is the readout difference ``d = score[pneumonia] - score[normal]`` (integer
    readout membrane, or output spike counts); a case is called pneumonia when ``d >= threshold``,
    the threshold chosen once on the clean validation split by the model's own rule
    (`neurocxr.deploy.deployment.OperatingPoint`) and then kept fixed.
    """

    deployment: Deployment
    operating_point: OperatingPoint

    @property
    def program(self) -> Any:
        return self.deployment.program

    @property
    def threshold(self) -> float:
        """The operating point in readout-difference units."""
        return self.operating_point.readout_threshold

    @property
    def threshold_source(self) -> str:
        return f"{self.operating_point.rule.capitalize()} on the clean validation split (emulator readout difference)"


def chip_deployment(loaded: Any) -> tuple[Deployment | None, str | None]:
    """(Deployment, None) for a deployable SNN, else (None, why not)."""

    if not is_snn_model(loaded):
        return None, f"{loaded.name} is not a spiking model"
    if not model_info(loaded.config.name).loihi_deployable:
        return None, f"{loaded.config.name} is not Loihi-deployable (see `neurocxr models`)"
    try:
        return Deployment.from_checkpoint(loaded), None
    except NeurocxrError as exc:
        return None, f"export to Loihi refused: {exc}"


def chip_program(loaded: Any) -> tuple[Any | None, str | None]:
    """(LoihiProgram, None) for a deployable SNN, else (None, why not)."""
    deployment, reason = chip_deployment(loaded)
    return (deployment.program if deployment is not None else None), reason


def chip_inputs(loaded: Any, program: Any, images: torch.Tensor, *, seed: int = 0) -> np.ndarray:
    """What the chip receives for ``images``: the images (bias input) or the encoded spike trains
    (the same seeded encoding the float model sees, as in `Deployment.parity`)."""
    return Deployment(program=program, loaded=loaded).encode(images, seed=seed).chip_input(program)


def run_chip(
    loaded: Any, program: Any, images: torch.Tensor, *, seed: int = 0, record: bool = False
) -> Any:
    """Emulate ``program`` bit-exactly on ``images``; returns the emulator's RunResult."""
    deployment = Deployment(program=program, loaded=loaded)
    return deployment.run(deployment.encode(images, seed=seed), record=record)


def prepare_chip(
    loaded: Any, val_images: torch.Tensor, val_labels: torch.Tensor, *, seed: int = 0
) -> tuple[Chip | None, str | None]:
    """Export a deployable SNN and choose its chip threshold on validation (`Deployment.operating_point`)."""
    deployment, reason = chip_deployment(loaded)
    if deployment is None:
        return None, reason
    return Chip(
        deployment, deployment.operating_point(val_images, val_labels, seed=seed, progress=False)
    ), None


@dataclass
class EvaluatedOn:
    """What an evaluation result was measured on: model, data, split and class balance (shared
    header of the robustness and uncertainty results)."""

    model: str
    model_config: dict[str, Any]
    data: str
    synthetic: bool
    split: str
    samples: int
    positives: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_config": self.model_config,
            "data": self.data,
            "synthetic": self.synthetic,
            "split": self.split,
            "samples": self.samples,
            "positives": self.positives,
        }


def evaluated_on(loaded: Any, ds: Any, split: str, y: np.ndarray) -> EvaluatedOn:
    """The `EvaluatedOn` header for ``loaded`` evaluated on ``split`` of ``ds`` with labels ``y``."""
    return EvaluatedOn(
        model=loaded.name,
        model_config=loaded.config.to_dict(),
        data=ds.source,
        synthetic=bool(ds.synthetic),
        split=split,
        samples=int(len(y)),
        positives=int(np.sum(y)),
    )


def check_split(split: str) -> None:
    if split not in ("train", "val", "test"):
        raise NeurocxrError(f"unknown split {split!r}; choose train, val or test")


def check_max_samples(max_samples: int | None) -> None:
    if max_samples is not None and (isinstance(max_samples, bool) or int(max_samples) < 2):
        raise NeurocxrError(f"max_samples / --max-samples must be at least 2, got {max_samples}")
