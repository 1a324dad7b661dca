"""The default Loihi-friendly convolutional SNN (snnTorch).

Only what Loihi 2 holds exactly: convolution, average pooling (fused into the next synaptic layer
at export), linear layers, and LIF neurons that reset to zero with no delay (snnTorch
``reset_mechanism="zero", reset_delay=False``; its default "subtract" never matches Loihi).
With ``encoding="direct"`` the image drives a first layer of input neurons as a constant current:
on Loihi that layer is netx's ``input`` layer with a neuron whose bias is the image.
"""

from __future__ import annotations

from typing import Callable

import snntorch as snn
from snntorch import surrogate
from torch import nn

from neurocxr.models.base import ModelConfig, SpikingSequential, register_model

# Input neurons: integrate-and-fire (no leak) with threshold 0.5, so a white pixel fires every step
# and the integer export is exact (bias = 16 * pixel_uint8, vThMant = 2040).
INPUT_BETA = 1.0
INPUT_THRESHOLD = 0.5


def leaky(
    config: ModelConfig, beta: float | None = None, threshold: float | None = None
) -> snn.Leaky:
    return snn.Leaky(
        beta=config.beta if beta is None else beta,
        threshold=config.threshold if threshold is None else threshold,
        spike_grad=surrogate.fast_sigmoid(slope=25),
        reset_mechanism="zero",
        reset_delay=False,
        init_hidden=False,
    )


NeuronFactory = Callable[[float, float], nn.Module]  # (beta, threshold) -> a neuron module


def fc_stack(config: ModelConfig, width: int, neuron: NeuronFactory) -> tuple[list[nn.Module], int]:
    """The hidden fully connected layers (Linear + neuron [+ Dropout]) and the width they end with."""
    layers: list[nn.Module] = []
    for h in config.hidden:
        layers += [nn.Linear(width, h), neuron(config.beta, config.threshold)]
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = h
    return layers, width


def conv_snn(
    config: ModelConfig, neuron: NeuronFactory, input_neuron: NeuronFactory
) -> SpikingSequential:
    """conv-neuron-avgpool-conv-neuron-avgpool-fc-neuron-readout, with the given neuron implementation."""
    c1, c2 = (tuple(config.channels) + (16, 32)[len(config.channels) :])[:2]
    side = config.image_size // 4
    layers: list[nn.Module] = []
    if config.encoding == "direct":
        layers.append(input_neuron(INPUT_BETA, INPUT_THRESHOLD))
    layers += [
        nn.Conv2d(config.in_channels, c1, 3, padding=1),
        neuron(config.beta, config.threshold),
        nn.AvgPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        neuron(config.beta, config.threshold),
        nn.AvgPool2d(2),
        nn.Flatten(),
    ]
    fc, width = fc_stack(config, c2 * side * side, neuron)
    # No bias in the readout: on Loihi it integrates over the whole run, longer than T steps.
    return SpikingSequential(layers + fc, readout=nn.Linear(width, config.num_classes, bias=False))


@register_model(
    "snn_conv",
    kind="snn",
    loihi_deployable=True,
    description="conv(16)-LIF-avgpool-conv(32)-LIF-avgpool-fc(128)-LIF-readout; snnTorch, Loihi-exportable",
)
def build_snn_conv(config: ModelConfig) -> SpikingSequential:
    def neuron(beta: float, threshold: float) -> snn.Leaky:
        return leaky(config, beta=beta, threshold=threshold)

    return conv_snn(config, neuron, neuron)


def _strided_side(size: int, stride: int = 2) -> int:
    """Output side of a 3x3 convolution with padding 1 and the given stride."""
    return (size + 2 - 3) // stride + 1


def strided_conv_snn(
    config: ModelConfig, neuron: NeuronFactory, input_neuron: NeuronFactory
) -> SpikingSequential:
    """conv(stride 2)-neuron-conv(stride 2)-neuron-fc-neuron-readout: no pooling at all.

    A pooling layer fused into the next synaptic layer makes every pre-pool spike fan out to a
    kernel p x p times larger (a 2x2 pool before a 3x3 conv is a 6x6 stride-2 kernel on chip), and
    the un-pooled map holds 4x the neurons. Strided 3x3 convolutions downsample inside the
    synapse instead, so the chip computes exactly the network that was trained, with fewer
    neurons and a fan-out of C_out x 9 / 4 per spike.
    """
    c1, c2 = (tuple(config.channels) + (16, 32)[len(config.channels) :])[:2]
    side = _strided_side(_strided_side(config.image_size))
    layers: list[nn.Module] = []
    if config.encoding == "direct":
        layers.append(input_neuron(INPUT_BETA, INPUT_THRESHOLD))
    layers += [
        nn.Conv2d(config.in_channels, c1, 3, stride=2, padding=1),
        neuron(config.beta, config.threshold),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1),
        neuron(config.beta, config.threshold),
        nn.Flatten(),
    ]
    fc, width = fc_stack(config, c2 * side * side, neuron)
    return SpikingSequential(layers + fc, readout=nn.Linear(width, config.num_classes, bias=False))


@register_model(
    "snn_strided",
    kind="snn",
    loihi_deployable=True,
    description="conv(16, stride 2)-LIF-conv(32, stride 2)-LIF-fc(128)-LIF-readout; pooling-free, so the chip "
    "runs the trained network without fused-pool fan-out inflation",
)
def build_snn_strided(config: ModelConfig) -> SpikingSequential:
    def neuron(beta: float, threshold: float) -> snn.Leaky:
        return leaky(config, beta=beta, threshold=threshold)

    return strided_conv_snn(config, neuron, neuron)
