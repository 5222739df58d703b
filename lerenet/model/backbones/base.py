"""What every backbone shares: named stages by stride, the ImageNet statistics, BatchNorm
freezing and the depth to build (``lerenet/model/backbones/__init__.py`` has the contract)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

StageName = Literal["s4", "s8", "s16"]
STAGES: tuple[str, ...] = ("s4", "s8", "s16")  # in order of depth
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
