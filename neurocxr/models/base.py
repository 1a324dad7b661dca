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

from neurocxr.data.encoding import ENCODINGS
from neurocxr.errors import ConfigError
from neurocxr.validation import check_float, check_int

# Upper bounds that catch typos (an image of 28000 pixels a side) before they exhaust memory.
MAX_IMAGE_SIZE = 1024
MAX_NUM_STEPS = 10_000


def _check_known_model(name: str) -> None:
    """Refuse a model name the registry does not hold (importing neurocxr.models fills it)."""
    # lazy: neurocxr.models imports this module
    import neurocxr.models  # noqa: F401  (registers the built-in builders)

    if name not in MODEL_REGISTRY:
        raise ConfigError(
            f"unknown model {name!r}; choose one of {', '.join(sorted(MODEL_REGISTRY))} "
            "(`neurocxr models` lists them)"
        )


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
        # ConfigError is also a ValueError: callers that caught ValueError keep working.
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"model name must be a non-empty string, got {self.name!r}")
        _check_known_model(self.name)
        if self.encoding not in ENCODINGS:
            raise ConfigError(
                f"unknown encoding {self.encoding!r}; choose one of {', '.join(ENCODINGS)}"
            )
        self.image_size = check_int("image_size", self.image_size, 8, MAX_IMAGE_SIZE)
        self.in_channels = check_int("in_channels", self.in_channels, 1, 16)
        self.num_classes = check_int("num_classes", self.num_classes, 2, 1000)
        self.num_steps = check_int("num_steps", self.num_steps, 1, MAX_NUM_STEPS)
        self.beta = check_float("beta", self.beta, 0.0, 1.0)
        self.threshold = check_float("threshold", self.threshold, 0.0, None, low_open=True)
        self.dropout = check_float("dropout", self.dropout, 0.0, 1.0, high_open=True)
        if isinstance(self.channels, (str, bytes)) or isinstance(self.hidden, (str, bytes)):
            raise ConfigError("channels and hidden must be lists of integers, e.g. [16, 32]")
        try:
            self.channels = tuple(check_int("channels", c, 1, 4096) for c in self.channels)
            self.hidden = tuple(check_int("hidden", h, 1, 65536) for h in self.hidden)
        except TypeError:
            raise ConfigError(
                "channels and hidden must be lists of integers, e.g. [16, 32]"
            ) from None
        if not isinstance(self.extra, dict):
            raise ConfigError(f"extra must be a dict, got {type(self.extra).__name__}")

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
            raise ConfigError(
                f"unknown model config fields: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
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
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODEL_REGISTRY))}")
    return MODEL_REGISTRY[name]


def build_model(config: ModelConfig) -> nn.Module:
    """Build a fresh (untrained) model from its config.

    A builder's ValueError (a setting this model cannot take, e.g. an image too small for its
    poolings) becomes a ConfigError naming the model."""
    builder = model_info(config.name).builder
    try:
        model = builder(config)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"model {config.name!r} cannot be built with this config: {exc}") from exc
    model.config = config  # type: ignore[attr-defined]
    return model


def is_snn(model_or_config: nn.Module | ModelConfig) -> bool:
    config = model_or_config if isinstance(model_or_config, ModelConfig) else model_or_config.config
    return model_info(config.name).kind == "snn"


class SNNOutput(NamedTuple):
    """``logits`` [B, K]: readout averaged over time (or spike counts / T when no readout);
    ``readout_steps`` [T, B, K]; ``spikes``: per neuron layer [T, B, ...] when ``record=True``."""

    logits: torch.Tensor
    readout_steps: torch.Tensor
    spikes: list[torch.Tensor] | None


def is_neuron(module: nn.Module) -> bool:
    """A module that holds membrane state and spikes (snnTorch, Norse or our own NIR-imported ones)."""
    # lazy: neurocxr.models.neurons imports this module
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
        # lazy: neurocxr.models.neurons imports this module
        from neurocxr.models import neurons

        if x.dim() < 3:
            raise ValueError(f"SNN input must be [T, B, ...], got shape {tuple(x.shape)}")
        states: list[Any] = [None] * len(self.layers)
        recorded: list[list[torch.Tensor]] = (
            [[] for m in self.layers if is_neuron(m)] if record else []
        )
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
