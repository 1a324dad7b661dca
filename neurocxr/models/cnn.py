"""CNN baselines: a small CNN the size of snn_conv, and ResNet-18 for one-channel images.

They take images [B, C, H, W] and return logits [B, K]; `neurocxr.models.loaded.forward_model` is the
one place that knows SNNs get encoded spike trains instead.
"""

from __future__ import annotations

from torch import nn

from neurocxr.models.base import ModelConfig, register_model


@register_model(
    "cnn_small",
    kind="cnn",
    loihi_deployable=False,
    description="conv(16)-ReLU-avgpool-conv(32)-ReLU-avgpool-fc(128)-ReLU-fc(2): snn_conv's shape as a plain CNN",
)
def build_cnn_small(config: ModelConfig) -> nn.Sequential:
    c1, c2 = (tuple(config.channels) + (16, 32)[len(config.channels) :])[:2]
    side = config.image_size // 4
    layers: list[nn.Module] = [
        nn.Conv2d(config.in_channels, c1, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
    ]
    width = c2 * side * side
    for h in config.hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = h
    layers.append(nn.Linear(width, config.num_classes))
    return nn.Sequential(*layers)


@register_model(
    "resnet18",
    kind="cnn",
    loihi_deployable=False,
    description="torchvision ResNet-18 (random init), 1-channel conv1; for <= 64 px a 3x3 stride-1 conv1 "
    "and no max pool, as MedMNIST's 28x28 benchmark",
)
def build_resnet18(config: ModelConfig) -> nn.Module:
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=config.num_classes)
    if config.image_size <= 64:
        model.conv1 = nn.Conv2d(
            config.in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False
        )
        model.maxpool = nn.Identity()
    else:
        model.conv1 = nn.Conv2d(
            config.in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False
        )
    return model
