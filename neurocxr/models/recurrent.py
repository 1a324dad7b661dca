"""A recurrent spiking network for Loihi: a strided convolutional front end, then a recurrent spiking layer.

``snn_recurrent``: conv(stride 2)-LIF-conv(stride 2)-LIF-fc-RSynaptic-readout (snnTorch). The recurrent
layer is a current-based neuron (snnTorch ``Synaptic``, reset to zero at once) whose spikes feed back
through an all-to-all ``Linear`` without bias (`neurons.RecurrentNeuron`: input ``x[t] + R s[t-1]``):
snnTorch's ``RSynaptic``. It exports to NIR as ``cuba -> Linear -> cuba`` (the NIR paper's Braille
shape, which snnTorch's ``import_from_nir`` reads back as ``RSynaptic``), and to Loihi as a netx
``dense_rec`` layer. A CubaLIF rather than a LIF: its NIR form has unit input gain in snnTorch and
Norse alike, and Loihi's CUBA neuron is current-based anyway. No bias into the recurrent layer
(a bias into a CubaLIF's current has no Loihi form).
"""

from __future__ import annotations

import snntorch as snn
from snntorch import surrogate
from torch import nn

from neurocxr.models.base import ModelConfig, SpikingSequential, register_model
from neurocxr.models.neurons import RecurrentNeuron
from neurocxr.models.snn import INPUT_BETA, INPUT_THRESHOLD, _strided_side, leaky

SYNAPSE_ALPHA = 0.5  # current decay of the recurrent layer (snnTorch Synaptic alpha)


def synaptic(config: ModelConfig) -> snn.Synaptic:
    """snnTorch's current-based neuron, reset to zero at once (Loihi's CUBA neuron)."""
    return snn.Synaptic(
        alpha=SYNAPSE_ALPHA,
        beta=config.beta,
        threshold=config.threshold,
        spike_grad=surrogate.fast_sigmoid(slope=25),
        reset_mechanism="zero",
        reset_delay=False,
        init_hidden=False,
    )


@register_model(
    "snn_recurrent",
    kind="snn",
    loihi_deployable=True,
    description="conv(16, stride 2)-LIF-conv(32, stride 2)-LIF-fc(128)-recurrent CubaLIF (RSynaptic)-readout; "
    "snnTorch, exports to Loihi netx dense_rec",
)
def build_snn_recurrent(config: ModelConfig) -> SpikingSequential:
    c1, c2 = (tuple(config.channels) + (16, 32)[len(config.channels) :])[:2]
    side = _strided_side(_strided_side(config.image_size))
    hidden = int(config.hidden[0]) if config.hidden else 128
    layers: list[nn.Module] = []
    if config.encoding == "direct":
        layers.append(leaky(config, beta=INPUT_BETA, threshold=INPUT_THRESHOLD))
    layers += [
        nn.Conv2d(config.in_channels, c1, 3, stride=2, padding=1),
        leaky(config),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1),
        leaky(config),
        nn.Flatten(),
        nn.Linear(c2 * side * side, hidden, bias=False),
        RecurrentNeuron(synaptic(config), nn.Linear(hidden, hidden, bias=False)),
    ]
    return SpikingSequential(layers, readout=nn.Linear(hidden, config.num_classes, bias=False))
