"""ANN -> SNN conversion: a trained chain CNN (`cnn_vgg`) becomes the spiking `snn_vgg` Loihi holds.

Rule (Rueckauer et al., "Conversion of continuous-valued deep networks to efficient event-driven
networks for image classification", Front. Neurosci. 2017, data-based normalisation with the
99.9th percentile): fold every BatchNorm into the conv/linear before it, run the CNN on training
images, take per ReLU layer l the ``percentile`` of its positive activations as lambda_l, and set

    W'_l = W_l * lambda_{l-1} / lambda_l * theta,   b'_l = b_l / lambda_l * theta,   readout W_L * lambda_{L-1}

for integrate-and-fire neurons (beta = 1) with threshold theta, so a neuron's spike rate
approximates a_l / lambda_l and the readout averaged over T steps approximates the CNN's logits.
The direct-encoded input neurons (integrate-and-fire, bias = pixel p in [0, 1], threshold
theta_in) fire every floor(theta_in / p) + 1 steps, a rate of about p / theta_in, so lambda_0 =
theta_in. theta_in = 2 (`DEFAULT_INPUT_THRESHOLD`), not the 0.5 of the networks trained from
scratch: at 0.5 every pixel above 0.5 fires every step, which flattens the upper half of a chest
X-ray's grey levels (median pixel about 0.6) into one. Measured on the 6-conv cnn_vgg (shift
augmentation, seed 0), validation ROC-AUC of the float SNN at T = 16 / 32 / 64: 0.945 / 0.955 /
0.959 with theta_in = 0.5, 0.974 / 0.976 / 0.977 with 2; 4 needs longer T (0.942 at T = 16).
Even at theta_in = 2 those input neurons quantise the image coarsely (rate 1 / ceil(theta_in / p): every
p in (2/3, 1] fires every third step), which costs the source CNN 0.02-0.03 validation AUC when it
is fed what they pass on. ``encoding="regular"`` (`neurocxr.data.encoding.regular_encode`: evenly
spaced spike trains at rate p, computed where the input comes from) drops the input neurons,
feeds the first conv spike trains with T + 1 levels per pixel and sets lambda_0 = 1; "rate"
(Bernoulli spikes at rate p) maps the same way but adds sampling noise.
Loihi resets to zero (not by subtraction), so the rates lose the residual charge at each spike;
that error, and the coarse rates at small T, is what the optional surrogate-gradient fine-tuning
(`neurocxr.training.train.train` with ``convert_from``; Rathi et al., "Enabling deep spiking neural
networks with hybrid conversion and spike timing dependent backpropagation", ICLR 2020) removes.

The result is an ordinary `snn_vgg` (`SpikingSequential`), so export, emulator, Lava parity,
quantisation checks and energy costing treat it like any other SNN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from neurocxr.data.encoding import RATE_CODES
from neurocxr.errors import ConfigError
from neurocxr.models.base import ModelConfig, SpikingSequential, build_model
from neurocxr.models.loaded import load
from neurocxr.provenance import file_sha256

CONVERSION_SOURCE = "cnn_vgg"
CONVERSION_TARGET = "snn_vgg"
DEFAULT_PERCENTILE = 99.9
DEFAULT_BALANCE_SAMPLES = 1000
DEFAULT_INPUT_THRESHOLD = 2.0  # theta_in of the converted network's input neurons (module doc)
CONVERSION_ENCODINGS = ("direct",) + RATE_CODES  # latency codes carry no rate to balance on
# Evenly spaced input spikes, not input neurons (module doc).
DEFAULT_CONVERSION_ENCODING = "regular"


@dataclass
class ConversionReport:
    """What the conversion did: the per-layer activation scales and where they came from."""

    source: str  # checkpoint path or "in-memory"
    percentile: float
    samples: int
    lambdas: list[
        float
    ]  # lambda_1..lambda_{L-1}, one per ReLU layer (lambda_0 = theta_in not listed)
    threshold: float
    # theta_in = lambda_0 with direct encoding; None for spike-train input (lambda_0 = 1)
    input_threshold: float | None
    num_steps: int
    # the SNN's input: direct (input neurons) or a rate code (spike trains)
    encoding: str = "direct"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _folded_layers(cnn: nn.Module) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor, bool]]:
    """(conv/linear module, folded weight, folded bias, followed by ReLU) per synaptic layer."""
    if not isinstance(cnn, nn.Sequential):
        raise ConfigError(
            f"conversion needs a chain CNN ({CONVERSION_SOURCE}), got {type(cnn).__name__}"
        )
    mods = [m for m in cnn if not isinstance(m, (nn.Dropout, nn.Flatten))]
    out: list[tuple[nn.Module, torch.Tensor, torch.Tensor, bool]] = []
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.AvgPool2d):  # linear: kept as a layer of its own (no weights, no ReLU)
            out.append((m, torch.empty(0), torch.empty(0), True))
            i += 1
            continue
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            raise ConfigError(
                f"conversion cannot map {type(m).__name__} at position {i}: only conv/linear, "
                "BatchNorm (folded) and ReLU chains convert (no max-pool, no skips)"
            )
        w = m.weight.detach().double().clone()
        b = (
            m.bias.detach().double().clone()
            if m.bias is not None
            else torch.zeros(w.shape[0], dtype=torch.float64)
        )
        i += 1
        if i < len(mods) and isinstance(mods[i], (nn.BatchNorm1d, nn.BatchNorm2d)):
            bn = mods[i]
            gamma = (
                bn.weight.detach().double()
                if bn.weight is not None
                else torch.ones(w.shape[0], dtype=torch.float64)
            )
            beta = (
                bn.bias.detach().double()
                if bn.bias is not None
                else torch.zeros(w.shape[0], dtype=torch.float64)
            )
            scale = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
            w = w * scale.view(-1, *([1] * (w.dim() - 1)))
            b = (b - bn.running_mean.double()) * scale + beta
            i += 1
        relu = i < len(mods) and isinstance(mods[i], nn.ReLU)
        if relu:
            i += 1
        out.append((m, w, b, relu))
    if not out or out[-1][3] or not all(r for _, _, _, r in out[:-1]):
        raise ConfigError("conversion needs ReLU after every layer but the last (the logits)")
    return out


def _synaptic(cnn: nn.Module) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor, bool]]:
    """The folded conv/linear layers only (average pools change no scale and map one to one)."""
    return [layer for layer in _folded_layers(cnn) if not isinstance(layer[0], nn.AvgPool2d)]


@torch.no_grad()
def relu_activations(cnn: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The output of every ReLU layer of the (BN-folded, eval-mode) chain CNN for ``images``, in
    order: what the converted SNN's hidden neuron layers approximate as rate x lambda_l."""
    out = []
    h = images.double()
    for m, w, b, relu in _folded_layers(cnn):
        if isinstance(m, nn.AvgPool2d):  # pooled rates = pooled activations: no new scale
            h = m(h)
            continue
        if isinstance(m, nn.Conv2d):
            h = torch.nn.functional.conv2d(h, w, b, stride=m.stride, padding=m.padding)
        else:
            h = torch.nn.functional.linear(h.flatten(1), w, b)
        if relu:
            h = torch.relu(h)
            out.append(h.float())
    return out


@torch.no_grad()
def activation_scales(
    cnn: nn.Module,
    images: torch.Tensor,
    percentile: float = DEFAULT_PERCENTILE,
    batch_size: int = 250,
) -> list[float]:
    """lambda_l: the ``percentile`` of the positive activations of each ReLU layer of the
    (BN-folded) CNN over ``images`` (training images; never validation or test)."""
    if not 0.0 < percentile <= 100.0:
        raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
    layers = _synaptic(cnn)
    per_layer: list[list[torch.Tensor]] = [[] for _ in layers[:-1]]
    for start in range(0, len(images), batch_size):
        for k, h in enumerate(relu_activations(cnn, images[start : start + batch_size])):
            per_layer[k].append(h[h > 0])
    lambdas = []
    for acts in per_layer:
        flat = torch.cat(acts) if acts else torch.zeros(0)
        # Percentile of the non-zero activations (Rueckauer 2017); a silent layer keeps scale 1.
        lam = float(np.percentile(flat.numpy(), percentile)) if flat.numel() else 1.0
        lambdas.append(lam if lam > 0 else 1.0)
    return lambdas


def snn_config_for(
    cnn_config: ModelConfig,
    num_steps: int,
    threshold: float = 1.0,
    input_threshold: float = DEFAULT_INPUT_THRESHOLD,
    encoding: str = DEFAULT_CONVERSION_ENCODING,
) -> ModelConfig:
    """The `snn_vgg` config with the CNN's architecture: IF neurons (beta 1); ``encoding`` a rate code
    ("regular", the default, or "rate": spike trains into the first conv, no input neurons) or
    "direct" (input neurons with threshold ``input_threshold``; module doc)."""
    if cnn_config.name != CONVERSION_SOURCE:
        raise ConfigError(
            f"conversion source must be a {CONVERSION_SOURCE} checkpoint (a chain CNN whose "
            f"ReLU layers map one to one onto {CONVERSION_TARGET}), got {cnn_config.name!r}"
        )
    if encoding not in CONVERSION_ENCODINGS:
        raise ConfigError(
            f"conversion needs an input whose spike rate stands for the pixel: encoding must be one "
            f"of {', '.join(CONVERSION_ENCODINGS)}, got {encoding!r}"
        )
    from dataclasses import replace

    extra = {k: v for k, v in cnn_config.extra.items() if k != "input_threshold"}
    if encoding == "direct":
        extra["input_threshold"] = float(input_threshold)
    return replace(
        cnn_config,
        name=CONVERSION_TARGET,
        num_steps=num_steps,
        encoding=encoding,
        beta=1.0,
        threshold=threshold,
        extra=extra,
    )


@torch.no_grad()
def convert(
    cnn: nn.Module,
    cnn_config: ModelConfig,
    images: torch.Tensor,
    *,
    num_steps: int,
    threshold: float = 1.0,
    percentile: float = DEFAULT_PERCENTILE,
    input_threshold: float = DEFAULT_INPUT_THRESHOLD,
    encoding: str = DEFAULT_CONVERSION_ENCODING,
    source: str = "in-memory",
) -> tuple[SpikingSequential, ModelConfig, ConversionReport]:
    """Convert a trained `cnn_vgg` into an `snn_vgg` with data-normalised weights (see module doc).

    ``images``: training images [N, C, H, W] in [0, 1] for the activation percentiles."""
    cnn = cnn.eval()
    config = snn_config_for(cnn_config, num_steps, threshold, input_threshold, encoding)
    snn = build_model(config)
    assert isinstance(snn, SpikingSequential)
    layers = _synaptic(cnn)
    lambdas = activation_scales(cnn, images, percentile)
    targets = [m for m in snn.layers if isinstance(m, (nn.Conv2d, nn.Linear))] + [snn.readout]
    if len(targets) != len(layers):
        raise ConfigError(f"the CNN has {len(layers)} synaptic layers, its SNN twin {len(targets)}")
    # lambda_0: input rate ~ pixel / theta_in (input neurons) or pixel (spike trains at rate p)
    prev = config.extra["input_threshold"] if encoding == "direct" else 1.0
    for k, ((_, w, b, relu), target) in enumerate(zip(layers, targets)):
        if target.weight.shape != w.shape:
            raise ConfigError(
                f"layer {k}: CNN weight {tuple(w.shape)} vs SNN {tuple(target.weight.shape)}"
            )
        if relu:
            lam = lambdas[k]
            target.weight.copy_((w * prev / lam * threshold).float())
            target.bias.copy_((b / lam * threshold).float())
            prev = lam
        else:  # the readout: logits = W_L a_{L-1} = W_L (rate x lambda_{L-1})
            target.weight.copy_((w * prev).float())
    report = ConversionReport(
        source=source,
        percentile=float(percentile),
        samples=int(len(images)),
        lambdas=[float(x) for x in lambdas],
        threshold=float(threshold),
        input_threshold=float(config.extra["input_threshold"]) if encoding == "direct" else None,
        num_steps=int(num_steps),
        encoding=encoding,
    )
    return snn, config, report


def convert_checkpoint(
    path: str,
    images: torch.Tensor,
    *,
    num_steps: int,
    threshold: float = 1.0,
    percentile: float = DEFAULT_PERCENTILE,
    input_threshold: float = DEFAULT_INPUT_THRESHOLD,
    encoding: str = DEFAULT_CONVERSION_ENCODING,
) -> tuple[SpikingSequential, ModelConfig, ConversionReport]:
    """`convert` the model in a neurocxr checkpoint; the report names the file and its SHA-256."""

    loaded = load(path)
    snn, config, report = convert(
        loaded.model,
        loaded.config,
        images,
        num_steps=num_steps,
        threshold=threshold,
        percentile=percentile,
        input_threshold=input_threshold,
        encoding=encoding,
        source=str(path),
    )
    report.extra["source_sha256"] = file_sha256(path)
    report.extra["source_val_auc"] = loaded.metadata.get("val_auc")
    return snn, config, report
