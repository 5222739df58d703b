"""VGG16 with BatchNorm (the paper's alternative backbone)."""

from __future__ import annotations

import torch
from torch import nn

from lerenet.model.backbones.base import IMAGENET_MEAN, IMAGENET_STD, LEVELS, MultiLevelBackbone

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
_VGG_LEVEL_END = {"s4": 14, "s8": 24, "s16": 34}


class VGG16BN(MultiLevelBackbone):
    """VGG16 with batch norm: ``s4`` = after the second max-pool (128 channels), ``s8`` after
    the third (256), ``s16`` after the fourth (512)."""

    out_channels = 128
    level_channels = {"s4": 128, "s8": 256, "s16": 512}
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, full_depth: bool = False, levels: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._set_levels(levels)
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
        end = len(layers) if full_depth else _VGG_LEVEL_END[self.levels[-1]]
        self.features = nn.Sequential(*layers[:end])
        self._ends = {_VGG_LEVEL_END[name] - 1: name for name in self.levels}

    def level_stage(self, name: str) -> nn.Module:
        previous = LEVELS[LEVELS.index(name) - 1]
        return self.features[_VGG_LEVEL_END[previous] : _VGG_LEVEL_END[name]]

    def forward_levels(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for idx, layer in enumerate(self.features):  # a loop, not a slice: FX-traceable
            x = layer(x)
            if idx in self._ends:
                out[self._ends[idx]] = x  # later layers (full_depth only) are discarded
        return out


def build(
    *, deep_stem: bool, feature_channels: int, full_depth: bool, levels: tuple[str, ...]
) -> VGG16BN:
    return VGG16BN(full_depth=full_depth, levels=levels)
