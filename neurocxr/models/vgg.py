"""VGG-style chain networks: a deeper/wider SNN that Loihi 2 holds, and its ReLU CNN twin for conversion.

Both are plain chains (netx holds chains: no skips, no gates) of 3x3 convolutions, downsampling
inside the synapse with stride 2 (no pooling, so no fused-pool fan-out inflation on chip), then
fully connected layers and a readout without bias:

    snn_vgg:  [input neurons] (conv3x3 -> LIF) x D -> flatten -> (fc -> LIF) x H -> readout
    cnn_vgg:                  (conv3x3 -> BN -> ReLU) x D -> flatten -> (fc -> BN -> ReLU) x H -> fc (no bias)

``config.channels`` are the conv widths, one per conv layer (its length is the depth);
``config.extra["strides"]`` the stride of each conv (default: 2 at every second conv while the map
is larger than 4 px, VGG's "two convs then downsample"). `vgg_channels` builds the widths from
the ``depth``/``width`` levers. The CNN's last layer has no bias so that `neurocxr.training.conversion`
can turn it into the SNN's bias-free readout without changing any decision (a bias on a
two-class head only shifts the logit difference, which the validation threshold absorbs anyway).
"""

from __future__ import annotations

import snntorch as snn
from torch import nn

from neurocxr.models.base import ModelConfig, SpikingSequential, register_model
from neurocxr.models.snn import INPUT_BETA, INPUT_THRESHOLD, _strided_side, fc_stack, leaky

VGG_BASE_WIDTH = 16  # the first stage's channels at width 1 (snn_strided's first layer)
MAX_VGG_DEPTH = 12


def vgg_channels(depth: int, width: float = 1.0) -> tuple[int, ...]:
    """Conv widths of a VGG plan of ``depth`` convs: pairs of equal widths doubling per pair
    (16, 16, 32, 32, 64, 64, ...) times ``width``."""
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_VGG_DEPTH:
        raise ValueError(f"depth must be an integer in 1..{MAX_VGG_DEPTH}, got {depth!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a number > 0, got {width!r}")
    return tuple(max(1, int(round(VGG_BASE_WIDTH * 2 ** (i // 2) * width))) for i in range(depth))


def vgg_strides(config: ModelConfig) -> tuple[int, ...]:
    """Stride of each conv: ``extra["strides"]`` if given, else 2 at every second conv while the
    map side is still > 4 (so a deep stack at 28 px does not shrink to nothing)."""
    given = config.extra.get("strides")
    depth = len(config.channels)
    if given is not None:
        strides = tuple(given)
        if len(strides) != depth or any(
            isinstance(s, bool) or not isinstance(s, int) or s not in (1, 2) for s in strides
        ):
            raise ValueError(
                f"extra['strides'] must hold {depth} values of 1 or 2 (one per conv), got {given!r}"
            )
        return strides
    side, out = config.image_size, []
    for i in range(depth):
        s = 2 if i % 2 == 1 and side > 4 else 1
        out.append(s)
        side = _strided_side(side, s)
    return tuple(out)


def vgg_side(config: ModelConfig) -> int:
    side = config.image_size
    for s in vgg_strides(config):
        side = _strided_side(side, s)
    return side


def vgg_input_threshold(config: ModelConfig) -> float:
    """``extra["input_threshold"]``: the input neurons' threshold (default `INPUT_THRESHOLD`, 0.5).

    A direct-encoded pixel p drives an integrate-and-fire input neuron that resets to zero, so it
    fires every floor(thr / p) + 1 steps. At 0.5 every pixel above 0.5 fires every step: half of a
    chest X-ray's grey levels (median pixel about 0.6) look the same to the first conv. A converted
    network sets 2.0, where rates stay close to p / thr up to white (`neurocxr.training.conversion`).
    """
    value = config.extra.get("input_threshold", INPUT_THRESHOLD)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"extra['input_threshold'] must be a number > 0, got {value!r}")
    return float(value)


HEADS = ("flatten", "gap")


def vgg_head(config: ModelConfig) -> str:
    """``extra["head"]``: flatten (every position its own fc weights) or gap (global average pool:
    an AvgPool2d over the whole last map, which the exporter fuses into the next layer's synapses,
    so the classifier sees what is there, not where -- less sensitive to framing differences)."""
    head = config.extra.get("head", "flatten")
    if head not in HEADS:
        raise ValueError(f"extra['head'] must be one of {', '.join(HEADS)}, got {head!r}")
    return head


def _head_layers(config: ModelConfig, channels: int) -> tuple[list[nn.Module], int]:
    """Layers between the last conv and the fc stack, and the width they hand on."""
    side = vgg_side(config)
    if vgg_head(config) == "gap":
        return [nn.AvgPool2d(side), nn.Flatten()], channels
    return [nn.Flatten()], channels * side * side


@register_model(
    "snn_vgg",
    kind="snn",
    loihi_deployable=True,
    description="VGG-style chain SNN: (conv3x3-LIF) x len(channels), stride 2 every second conv, fc-LIF, "
    "readout; deeper/wider than snn_strided, no skips, no pooling; the target of ANN->SNN conversion of cnn_vgg",
)
def build_snn_vgg(config: ModelConfig) -> SpikingSequential:
    strides = vgg_strides(config)
    layers: list[nn.Module] = []
    if config.encoding == "direct":
        layers.append(leaky(config, beta=INPUT_BETA, threshold=vgg_input_threshold(config)))
    cin = config.in_channels
    for c, s in zip(config.channels, strides):
        layers += [nn.Conv2d(cin, c, 3, stride=s, padding=1), leaky(config)]
        cin = c
    head, width = _head_layers(config, cin)
    layers += head

    def neuron(beta: float, threshold: float) -> snn.Leaky:
        return leaky(config, beta=beta, threshold=threshold)

    fc, width = fc_stack(config, width, neuron)
    return SpikingSequential(layers + fc, readout=nn.Linear(width, config.num_classes, bias=False))


@register_model(
    "cnn_vgg",
    kind="cnn",
    loihi_deployable=False,
    description="snn_vgg's ReLU twin: (conv3x3-BN-ReLU) x len(channels), stride 2 every second conv, fc-BN-ReLU, "
    "fc without bias; the conversion source of neurocxr.training.conversion (BN folds, no max-pool)",
)
def build_cnn_vgg(config: ModelConfig) -> nn.Sequential:
    strides = vgg_strides(config)
    layers: list[nn.Module] = []
    cin = config.in_channels
    for c, s in zip(config.channels, strides):
        layers += [
            nn.Conv2d(cin, c, 3, stride=s, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
        ]
        cin = c
    head, width = _head_layers(config, cin)
    layers += head
    for h in config.hidden:
        layers += [nn.Linear(width, h, bias=False), nn.BatchNorm1d(h), nn.ReLU()]
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = h
    layers.append(nn.Linear(width, config.num_classes, bias=False))
    return nn.Sequential(*layers)
