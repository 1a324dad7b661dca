"""Model configuration, the name -> builder registry, and the step-by-step SNN container.

Every SNN in neurocxr is a `SpikingSequential`: a flat list of standard torch layers (Conv2d,
Linear, AvgPool2d, Flatten, BatchNorm, Dropout) and neuron modules, run one time step at a time,
followed by an optional linear readout without a neuron. The exporters walk that list, so any model
built this way can go to NIR and Loihi.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

ENCODINGS = ("direct", "rate", "latency")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; stored in every checkpoint.

    ``encoding`` says what the model receives each time step: ``direct`` the analog image (fed to
    the first layer of input neurons as a current), ``rate``/``latency`` binary spike trains.
    CNN baselines ignore ``num_steps``/``encoding``/neuron fields.
    """

    name: str = "snn_conv"
    image_size: int = 28
    in_channels: int = 1
    num_classes: int = 2
    num_steps: int = 16
    encoding: str = "direct"
    beta: float = 0.9
    # 0.5 rather than snnTorch's 1.0: with 1.0 the fc layer is silent at initialisation and learns slower.
    threshold: float = 0.5
    channels: tuple[int, ...] = (16, 32)
    hidden: tuple[int, ...] = (128,)
    dropout: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {self.encoding!r}; choose one of {', '.join(ENCODINGS)}")
        if self.image_size < 8:
            raise ValueError(f"image_size {self.image_size} is too small (>= 8)")
        if self.num_steps < 1:
            raise ValueError("num_steps must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {', '.join(sorted(unknown))}")
        return cls(**d)


class ModelInfo(NamedTuple):
    builder: Callable[[ModelConfig], nn.Module]
    kind: str  # "snn" or "cnn"
    loihi_deployable: bool
    description: str


MODEL_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, kind: str, loihi_deployable: bool, description: str):
    """Decorator: make a builder available to `build_model(ModelConfig(name=...))`."""

    def wrap(fn: Callable[[ModelConfig], nn.Module]) -> Callable[[ModelConfig], nn.Module]:
        MODEL_REGISTRY[name] = ModelInfo(fn, kind, loihi_deployable, description)
        return fn

    return wrap


def model_info(name: str) -> ModelInfo:
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODEL_REGISTRY))}")
    return MODEL_REGISTRY[name]


def build_model(config: ModelConfig) -> nn.Module:
    """Build a fresh (untrained) model from its config."""
    model = model_info(config.name).builder(config)
    model.config = config  # type: ignore[attr-defined]
    return model


def is_snn(model_or_config: nn.Module | ModelConfig) -> bool:
    config = model_or_config if isinstance(model_or_config, ModelConfig) else getattr(model_or_config, "config")
    return model_info(config.name).kind == "snn"


class SNNOutput(NamedTuple):
    """``logits`` [B, K]: readout averaged over time (or spike counts / T when no readout);
    ``readout_steps`` [T, B, K]; ``spikes``: per neuron layer [T, B, ...] when ``record=True``."""

    logits: torch.Tensor
    readout_steps: torch.Tensor
    spikes: list[torch.Tensor] | None


def is_neuron(module: nn.Module) -> bool:
    """A module that holds membrane state and spikes (snnTorch, Norse or our own NIR-imported ones)."""
    from neurocxr.models import neurons  # local: avoids import cycles

    return neurons.is_neuron_module(module)


class SpikingSequential(nn.Module):
    """Runs ``layers`` step by step over ``x`` of shape [T, B, ...], then the optional ``readout``.

    Neuron modules are called through `neurocxr.models.neurons.step` which hides the snnTorch /
    Norse calling conventions; their state lives in a per-call list, so the module is reentrant.
    """

    def __init__(self, layers: list[nn.Module], readout: nn.Linear | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.readout = readout

    def forward(self, x: torch.Tensor, record: bool = False) -> SNNOutput:
        from neurocxr.models import neurons

        if x.dim() < 3:
            raise ValueError(f"SNN input must be [T, B, ...], got shape {tuple(x.shape)}")
        states: list[Any] = [None] * len(self.layers)
        recorded: list[list[torch.Tensor]] = [[] for m in self.layers if is_neuron(m)] if record else []
        readouts = []
        for t in range(x.shape[0]):
            h = x[t]
            k = 0
            for i, layer in enumerate(self.layers):
                if is_neuron(layer):
                    h, states[i] = neurons.step(layer, h, states[i])
                    if record:
                        recorded[k].append(h)
                        k += 1
                else:
                    h = layer(h)
            readouts.append(self.readout(h) if self.readout is not None else h.flatten(1))
        readout_steps = torch.stack(readouts)
        spikes = [torch.stack(r) for r in recorded] if record else None
        return SNNOutput(readout_steps.mean(0), readout_steps, spikes)
