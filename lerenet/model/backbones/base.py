"""What every backbone shares: named levels by stride, the ImageNet statistics, BatchNorm
freezing and the depth to build (``lerenet/model/backbones/__init__.py`` has the contract)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

LevelName = Literal["s4", "s8", "s16"]
LEVELS: tuple[str, ...] = ("s4", "s8", "s16")  # in order of depth
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _depth(levels: tuple[str, ...], head_levels: tuple[str, ...]) -> int:
    """How many levels must be built: up to the deepest one asked for (1 = ``s4``)."""
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown:
        raise ValueError(f"unknown backbone level(s) {unknown}; expected some of {list(LEVELS)}")
    return max(LEVELS.index(name) for name in (*levels, *head_levels)) + 1


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer in ``module`` in eval mode: it normalises with its pretrained
    running statistics and never updates them (batches of 2 episodes would swamp them)."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


class MultiLevelBackbone(nn.Module):
    """What every backbone shares: the level bookkeeping and BatchNorm freezing.

    ``frozen_bn`` keeps the *pretrained* BatchNorm layers in eval mode (running statistics)
    even while the model trains; new layers (the EfficientNet projection) keep training.
    """

    head_levels: tuple[str, ...] = ("s4",)
    level_channels: dict[str, int] = {}
    frozen_bn = False

    def _set_levels(self, levels: tuple[str, ...]) -> None:
        self.levels = tuple(name for name in LEVELS if name in (*levels, *self.head_levels))

    def pretrained_modules(self) -> list[nn.Module]:
        return [m for name, m in self.named_children() if name != "projection"]

    def train(self, mode: bool = True) -> MultiLevelBackbone:
        super().train(mode)
        if mode and self.frozen_bn:
            for module in self.pretrained_modules():
                freeze_batchnorm(module)
        return self

    def forward_levels(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def head_features(self, levels: dict[str, torch.Tensor]) -> torch.Tensor:
        return levels["s4"]

    def level_stage(self, name: str) -> nn.Module:
        """The layers that take the previous level's map to level ``name`` (``s8`` or
        ``s16``): what a tuned copy of the deeper levels re-runs from a cached shallower one
        (``lerenet/model/tuned_levels.py``)."""
        raise NotImplementedError(f"{type(self).__name__} has no stage for level {name!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_features(self.forward_levels(x))
