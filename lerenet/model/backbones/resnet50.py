"""ResNet-50 with the deep stem of PSPNet/PFENet (the paper's backbone) or torchvision's."""

from __future__ import annotations

import torch
from torch import nn

from lerenet.model.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LEVELS,
    MultiLevelBackbone,
    _depth,
)


class Bottleneck(nn.Module):
    """ResNet bottleneck (torchvision layout, stride on the 3×3 conv)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != width:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _resnet_layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [Bottleneck(inplanes, planes, stride)]
    layers += [Bottleneck(planes * 4, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet50(MultiLevelBackbone):
    """ResNet-50: ``s4`` = layer1 (256 channels), ``s8`` = layer2 (512), ``s16`` = layer3 (1024).

    ``deep_stem=True`` (the paper's, PSPNet/PFENet variant): three 3×3 convs 64-64-128.
    ``deep_stem=False``: torchvision's single 7×7 conv, so torchvision ImageNet weights load.
    """

    out_channels = 256
    level_channels = {"s4": 256, "s8": 512, "s16": 1024}
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(
        self, deep_stem: bool = True, full_depth: bool = False, levels: tuple[str, ...] = ()
    ) -> None:
        super().__init__()
        self.deep_stem = deep_stem
        self._set_levels(levels)
        if deep_stem:
            self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.conv2 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(64)
            self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
            self.bn3 = nn.BatchNorm2d(128)
            stem_out = 128
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            stem_out = 64
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _resnet_layer(stem_out, 64, 3, 1)
        depth = 4 if full_depth else _depth(self.levels, self.head_levels)
        specs = [(256, 128, 4), (512, 256, 6), (1024, 512, 3)]  # layer2..layer4
        for index, (inplanes, planes, blocks) in enumerate(specs[: depth - 1], start=2):
            setattr(self, f"layer{index}", _resnet_layer(inplanes, planes, blocks, 2))
        self.depth = depth

    def level_stage(self, name: str) -> nn.Module:
        return getattr(self, f"layer{LEVELS.index(name) + 1}")

    def forward_levels(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.deep_stem:
            x = self.relu(self.bn2(self.conv2(x)))
            x = self.relu(self.bn3(self.conv3(x)))
        x = self.layer1(self.maxpool(x))
        out = {"s4": x}
        for index in range(2, self.depth + 1):  # deeper layers beyond s16: full_depth only
            x = getattr(self, f"layer{index}")(x)
            if index - 1 < len(LEVELS):
                out[LEVELS[index - 1]] = x
        return {name: out[name] for name in self.levels}


def build(
    *, deep_stem: bool, feature_channels: int, full_depth: bool, levels: tuple[str, ...]
) -> ResNet50:
    return ResNet50(deep_stem=deep_stem, full_depth=full_depth, levels=levels)
