"""CNN systems of the papers this project grew from (../shared/docs/models.md), sized for 28 px.

- ``resnet18_sa`` (Xu & Zhang, Sci. Rep. 2026): ResNet-18 with a CBAM-style spatial-attention
  module (channel-wise mean and max -> conv 7x7 -> sigmoid, multiplied into the features) at the end
  of the residual branch of every basic block, before the addition. Adapted to 28 px as MedMNIST's
  ResNet-18 (28): 3x3 stride-1 stem and no max pool. Base width (paper/torchvision: 64) comes from
  ``config.extra["width"]`` (default 16 here: 1/16 of the MACs, 0.7 M parameters, so an epoch
  trains in minutes on a shared 2-core CPU; 64 gives the full-size 11 M-parameter network).
- ``medspectralnet`` (Afrin et al., PLoS One 2026): a small CNN whose SpectralFlow blocks split
  features into a high-frequency local stream (the residual after a 3x3 box low-pass, through a
  depthwise 3x3 + pointwise conv) and a low-frequency global stream (2x2 average pooling, a
  depthwise 7x7 conv on the 14/7/7 px coarse maps, so the whole map at the later stages, bilinear
  upsampling, plus a global-average-pool channel context), both O(HW) in cost, fused by a
  ContextGate (per-channel sigmoid gate from the pooled streams: g * high + (1 - g) * low) and
  added back residually. Stages at 28, 14, 7 px; widths ``config.extra["widths"]`` (default
  32-64-128; the paper's 8.5 M-parameter, 2 GFLOP network is for 224 px).
- ``resnet50`` (XAI-guided ResNet-50, BayesGrad-CAM): bottleneck ResNet-50 (3-4-6-3 blocks,
  expansion 4) with ``nn.Dropout`` before the classifier (``config.dropout`` when > 0, else 0.3)
  and, when ``config.extra["block_dropout"]`` > 0, ``nn.Dropout2d`` after every stage, so Monte
  Carlo dropout can be switched on at test time (find the modules with `dropout_modules`). Same
  28 px stem as above; base width ``config.extra["width"]`` (default 8: 0.37 M parameters; torchvision 64:
  23.5 M parameters and ~1 G MACs per 28 px image, too slow to train on the shared 2-core CPU).

All take images [B, C, H, W] and return logits [B, K]; every operation has an ONNX equivalent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neurocxr.models.base import ModelConfig, register_model

__all__ = [
    "SpatialAttention",
    "BasicBlockSA",
    "Bottleneck",
    "ResNet",
    "SpectralFlow",
    "ContextGate",
    "MedSpectralNet",
    "dropout_modules",
    "enable_mc_dropout",
]

RESNET18_SA_WIDTH = 16
RESNET50_WIDTH = 8
RESNET50_DROPOUT = 0.3
MEDSPECTRALNET_WIDTHS = (32, 64, 128)


def _stem(in_channels: int, width: int, image_size: int) -> nn.Sequential:
    """3x3 stride-1 stem without max pool for small images (MedMNIST 28/64 px), the ImageNet
    7x7 stride-2 stem with max pool for larger ones."""
    if image_size <= 64:
        return nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    )


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a [B, 1, H, W] map from the channel mean and max, conv 7x7, sigmoid."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlockSA(nn.Module):
    """ResNet basic block; spatial attention on the residual branch before the addition (CBAM)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.attention = SpatialAttention()
        self.shortcut = _shortcut(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.attention(self.bn2(self.conv2(out)))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck (1x1 -> 3x3 (stride) -> 1x1 x4), as torchvision's v1.5."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet of ``block`` with ``depths`` blocks per stage and stage widths w, 2w, 4w, 8w.

    ``dropout`` is applied to the pooled features before ``fc``; ``block_dropout`` (Dropout2d)
    after each stage. Both are ordinary ``nn.Dropout*`` modules, so MC dropout can enable them.
    """

    def __init__(
        self,
        block: type[BasicBlockSA] | type[Bottleneck],
        depths: tuple[int, ...],
        config: ModelConfig,
        width: int,
        *,
        dropout: float = 0.0,
        block_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.stem = _stem(config.in_channels, width, config.image_size)
        stages: list[nn.Module] = []
        cin = width
        for i, depth in enumerate(depths):
            planes = width * 2**i
            blocks: list[nn.Module] = []
            for j in range(depth):
                blocks.append(block(cin, planes, 2 if (i > 0 and j == 0) else 1))
                cin = planes * block.expansion
            if block_dropout > 0:
                blocks.append(nn.Dropout2d(block_dropout))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(cin, config.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.fc(self.dropout(h))


def _extra_int(config: ModelConfig, key: str, default: int) -> int:
    value = config.extra.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{config.name}: extra[{key!r}] must be a positive integer, got {value!r}")
    return value


def _extra_probability(config: ModelConfig, key: str, default: float) -> float:
    value = float(config.extra.get(key, default))
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{config.name}: extra[{key!r}] must be in [0, 1), got {value}")
    return value


@register_model(
    "resnet18_sa",
    kind="cnn",
    loihi_deployable=False,
    description="Xu & Zhang 2026 ResNet-18 with CBAM spatial attention (mean+max, conv7x7, sigmoid) in every "
    "basic block; 28 px: 3x3 stride-1 stem, no max pool; base width extra['width'] (default 32, paper 64)",
)
def build_resnet18_sa(config: ModelConfig) -> ResNet:
    width = _extra_int(config, "width", RESNET18_SA_WIDTH)
    return ResNet(BasicBlockSA, (2, 2, 2, 2), config, width, dropout=config.dropout)


@register_model(
    "resnet50",
    kind="cnn",
    loihi_deployable=False,
    description="ResNet-50 (bottleneck 3-4-6-3) with dropout before the classifier (config.dropout, default "
    "0.3) and optional Dropout2d per stage (extra['block_dropout']) for MC dropout / BayesGrad-CAM; 28 px "
    "stem; base width extra['width'] (default 16, torchvision 64)",
)
def build_resnet50(config: ModelConfig) -> ResNet:
    width = _extra_int(config, "width", RESNET50_WIDTH)
    dropout = config.dropout if config.dropout > 0 else RESNET50_DROPOUT
    block_dropout = _extra_probability(config, "block_dropout", 0.0)
    return ResNet(
        Bottleneck, (3, 4, 6, 3), config, width, dropout=dropout, block_dropout=block_dropout
    )


class ContextGate(nn.Module):
    """Adaptive fusion of two streams: a per-channel gate g in (0, 1) from the global average of
    both streams (squeeze-excitation style MLP); output g * high + (1 - g) * low."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Conv2d(2 * channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )

    def gate(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        context = torch.cat([high, low], dim=1).mean(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.mlp(context))

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        g = self.gate(high, low)
        return g * high + (1.0 - g) * low


class SpectralFlow(nn.Module):
    """Dual-stream block at a fixed resolution; cost linear in H*W (no attention matrix).

    high: x minus its 3x3 box low-pass (the local detail), depthwise 3x3, pointwise, BN, GELU.
    low: 2x2 average pooling (when the side is even), depthwise 7x7 (the whole coarse map at the
    14 and 7 px stages), pointwise, BN, GELU, bilinear upsampling back to H x W, plus a 1x1 conv of the
    global average (the lowest frequency). Fused by `ContextGate`, projected, added to x.
    """

    def __init__(self, channels: int, side: int) -> None:
        super().__init__()
        self.pool_factor = 2 if side % 2 == 0 and side >= 8 else 1
        self.high = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.GELU(),
        )
        self.low = nn.Sequential(
            nn.Conv2d(channels, channels, 7, padding=3, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.GELU(),
        )
        self.global_context = nn.Conv2d(channels, channels, 1)
        self.gate = ContextGate(channels)
        self.project = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels)
        )

    def streams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(high, low) feature maps, both [B, C, H, W]."""
        smooth = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        high = self.high(x - smooth)
        coarse = F.avg_pool2d(x, self.pool_factor) if self.pool_factor > 1 else x
        low = self.low(coarse)
        if self.pool_factor > 1:
            low = F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)
        low = low + self.global_context(x.mean(dim=(2, 3), keepdim=True))
        return high, low

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        high, low = self.streams(x)
        return F.relu(x + self.project(self.gate(high, low)))


class MedSpectralNet(nn.Module):
    """Stem conv 3x3, then per stage a SpectralFlow block and a strided 3x3 conv to the next width;
    global average pool, dropout, linear."""

    def __init__(self, config: ModelConfig, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        side = config.image_size
        layers: list[nn.Module] = []
        for i, w in enumerate(widths):
            layers.append(SpectralFlow(w, side))
            if i + 1 < len(widths):
                nxt = widths[i + 1]
                layers += [
                    nn.Conv2d(w, nxt, 3, 2, 1, bias=False),
                    nn.BatchNorm2d(nxt),
                    nn.ReLU(inplace=True),
                ]
                side = (side + 1) // 2
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.fc = nn.Linear(widths[-1], config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pool(self.features(self.stem(x))).flatten(1)))


@register_model(
    "medspectralnet",
    kind="cnn",
    loihi_deployable=False,
    description="Afrin et al. 2026 MedSpectralNet: SpectralFlow blocks (high-freq depthwise-3x3 local stream "
    "and low-freq pooled depthwise-7x7 + global-average stream, O(HW)) fused by a ContextGate; stages "
    "28/14/7 px, widths extra['widths'] (default 32-64-128)",
)
def build_medspectralnet(config: ModelConfig) -> MedSpectralNet:
    widths = tuple(config.extra.get("widths", MEDSPECTRALNET_WIDTHS))
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(
            f"medspectralnet: extra['widths'] must be positive integers, got {widths!r}"
        )
    return MedSpectralNet(config, widths)


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """Every dropout module of ``model`` (Dropout, Dropout2d, ... ), in module order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


def enable_mc_dropout(model: nn.Module) -> int:
    """Put ``model`` in eval mode with only its dropout modules in training mode (Monte Carlo
    dropout: BatchNorm keeps its running statistics). Returns the number of dropout modules."""
    model.eval()
    found = dropout_modules(model)
    for m in found:
        m.train()
    return len(found)
