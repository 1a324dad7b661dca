"""Published chest X-ray SNNs (see ../shared/docs/models.md), adapted to PneumoniaMNIST sizes.

- ``gatti2025``: Gatti, Barbato, Zandron (Knowledge-Based Systems 314, 2025) conv SNN. Their
  MaxPool 4x4/2 after conv2 becomes an AvgPool 2x2/2: max pooling of spikes has no Loihi
  equivalent, and only non-overlapping average pooling (kernel == stride) folds exactly into the
  next padded convolution (an overlapping 4x4/2 window would mix border pixels into its padding).
  Everything else is conv/linear
  plus reset-to-zero LIF, so it is Loihi-deployable.
- ``slimi2025``: Slimi et al. (Scientific Reports, 2025) hybrid CNN-GRU-SNN. GRU, BatchNorm,
  MaxPool and a float head: an accuracy reference, not deployable (the exporter must refuse it).
"""

from __future__ import annotations

from dataclasses import replace

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

from neurocxr.models.base import ModelConfig, SNNOutput, SpikingSequential, register_model
from neurocxr.models.snn import INPUT_BETA, INPUT_THRESHOLD, fc_stack, leaky

GATTI_CHANNELS = (8, 64, 128)
GATTI_HIDDEN = (128, 64, 8)
SLIMI_CHANNELS = (32, 64, 128)
SLIMI_GRU_HIDDEN = 256
SLIMI_BETA = 0.95


def _pick(values: tuple[int, ...], default: tuple[int, ...]) -> tuple[int, ...]:
    """The config's widths when it gives as many as the published model has, else the paper's."""
    return tuple(values) if len(values) == len(default) else default


@register_model(
    "gatti2025",
    kind="snn",
    loihi_deployable=True,
    description="Gatti et al. 2025 conv SNN: conv3x3 8-64-128 + LIF, fc 128-64-8 + LIF, linear 2, time "
    "average; their MaxPool 4x4/2 after conv2 replaced by AvgPool 2x2/2 so it deploys on Loihi",
)
def build_gatti2025(config: ModelConfig) -> SpikingSequential:
    """Channels/hidden come from the config when it lists three of each, else the paper's."""
    c1, c2, c3 = _pick(config.channels, GATTI_CHANNELS)
    hidden = _pick(config.hidden, GATTI_HIDDEN)
    pooled = config.image_size // 2  # AvgPool2d(2)
    layers: list[nn.Module] = []
    if config.encoding == "direct":
        layers.append(leaky(config, beta=INPUT_BETA, threshold=INPUT_THRESHOLD))
    layers += [
        nn.Conv2d(config.in_channels, c1, 3, padding=1),
        leaky(config),
        nn.Conv2d(c1, c2, 3, padding=1),
        leaky(config),
        nn.AvgPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1),
        leaky(config),
        nn.Flatten(),
    ]
    fc, width = fc_stack(
        replace(config, hidden=hidden), c3 * pooled * pooled, lambda b, t: leaky(config, b, t)
    )
    return SpikingSequential(layers + fc, readout=nn.Linear(width, config.num_classes, bias=False))


def time_weighted_image(x: torch.Tensor) -> torch.Tensor:
    """The image the CNN of slimi2025 sees: the input's average over time with weights T - t
    (earlier steps weigh more), normalised so a constant (direct-coded) input comes back unchanged.

    With latency coding (one spike per pixel, brighter earlier) this decodes intensity: a pixel
    spiking at step t gives (T - t) / sum(T - t'), so brighter pixels stay brighter. A plain mean
    would see every firing pixel as 1 / T and lose the intensity. Rate codes give a weighted rate.
    """
    steps = x.shape[0]
    weights = torch.arange(steps, 0, -1, device=x.device, dtype=x.dtype)
    weights = weights / weights.sum()
    return (x * weights.view(-1, *([1] * (x.dim() - 1)))).sum(0)


class SlimiCnnGruSnn(nn.Module):
    """CNN features of the (time-weighted average) image, repeated over T steps through a bidirectional
    GRU, projected to 64 LIF neurons; the head classifies the mean spike rate.

    ``readout_steps[t]`` is the head applied to the mean spikes up to step t, so its last entry is
    the logits (the prediction if the run stopped at step t).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c1, c2, c3 = _pick(config.channels, SLIMI_CHANNELS)
        gru_hidden = int(config.extra.get("gru_hidden", SLIMI_GRU_HIDDEN))
        self.num_steps = config.num_steps
        blocks: list[nn.Module] = []
        cin = config.in_channels
        side = config.image_size
        for cout in (c1, c2, c3):
            blocks += [
                nn.Conv2d(cin, cout, 3, stride=1, padding=1),
                nn.BatchNorm2d(cout),
                nn.LeakyReLU(0.01),
                nn.MaxPool2d(2, 2),
            ]
            cin, side = cout, side // 2
        if side < 1:
            raise ValueError(
                f"image_size {config.image_size} is too small for slimi2025's three poolings"
            )
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.gru = nn.GRU(
            c3 * side * side,
            gru_hidden,
            num_layers=2,
            batch_first=False,
            bidirectional=True,
            dropout=0.3,
        )
        self.projection = nn.Sequential(
            nn.Linear(2 * gru_hidden, 128), nn.ReLU(), nn.Linear(128, 64)
        )
        self.lif = snn.Leaky(
            beta=SLIMI_BETA,
            spike_grad=surrogate.fast_sigmoid(slope=25),
            reset_mechanism="zero",
            reset_delay=False,
            init_hidden=False,
        )
        self.head = nn.Sequential(
            nn.Linear(64, 512),
            nn.ReLU(),
            nn.Dropout(0.4),
            nn.Linear(512, 128),
            nn.ReLU(),
            nn.Dropout(0.4),
            nn.Linear(128, config.num_classes),
        )

    def forward(self, x: torch.Tensor, record: bool = False) -> SNNOutput:
        """``x``: [T, B, C, H, W] as the other SNNs receive it (the CNN sees `time_weighted_image`)."""
        if x.dim() != 5:
            raise ValueError(f"slimi2025 expects [T, B, C, H, W], got shape {tuple(x.shape)}")
        steps = x.shape[0]
        feats = self.features(time_weighted_image(x))  # [B, F]
        seq, _ = self.gru(feats.unsqueeze(0).expand(steps, -1, -1).contiguous())  # [T, B, 2H]
        current = self.projection(seq)  # [T, B, 64]
        mem = torch.zeros_like(current[0])
        spikes = []
        for t in range(steps):
            s, mem = self.lif(current[t], mem)
            spikes.append(s)
        spk = torch.stack(spikes)  # [T, B, 64]
        counts = torch.arange(1, steps + 1, device=spk.device, dtype=spk.dtype).view(-1, 1, 1)
        running_rate = spk.cumsum(0) / counts
        readout_steps = self.head(running_rate)
        return SNNOutput(readout_steps[-1], readout_steps, [spk] if record else None)


@register_model(
    "slimi2025",
    kind="snn",
    loihi_deployable=False,
    description="Slimi et al. 2025 hybrid CNN-GRU-SNN (conv 32-64-128 BN/LeakyReLU/MaxPool, 2-layer BiGRU "
    "256, fc 128-64, LIF beta 0.95, head 512-128-2); not deployable: GRU, BatchNorm, MaxPool, float head",
)
def build_slimi2025(config: ModelConfig) -> SlimiCnnGruSnn:
    return SlimiCnnGruSnn(config)
