"""Tuned deeper levels: a trainable copy of the backbone's last stages, read by the class memory.

Two linear discriminants over the frozen ImageNet levels, the class memory's learned one and a
closed-form one fitted to 24 images of the class, stop at the same held-out mIoU on a seen class
(docs/benchmarks.md, Quality item 24): the features, not the classifier, bound what a retrain
buys there. The authors fine-tune the backbone (at 0.1× the base lr); doing that to the shared
backbone would change what new classes get and rule out the feature cache. Instead the class
memory gets its own copy of the stages from level ``first`` down, initialised from the
pretrained ones and fine-tuned at a low lr through the memory's loss only:

- a new (unnamed) class never reads the copy, so it still gets the training-free start exactly;
- the copy re-runs from the cached map of the level before ``first``, so training keeps the
  feature cache (``lerenet/training/feature_cache.py``);
- its BatchNorm layers keep the pretrained running statistics (batches of 2 episodes);
- the memory's weights for its channels start at zero, so step 0 is still the start.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn

from lerenet.model.backbones.base import LEVELS, freeze_batchnorm

TunedFrom = Literal["off", "s8", "s16"]


class TunedLevels(nn.Module):
    """Trainable copies of ``backbone``'s stages for levels ``first`` … ``last``.

    ``forward(levels)`` reads ``levels[<the level before first>]`` (B×C×h×w, pretrained) and
    returns {name: B×C_name×h_name×w_name} for the tuned levels, in order of depth.
    """

    def __init__(self, backbone: nn.Module, first: str, last: str) -> None:
        super().__init__()
        if first not in LEVELS[1:] or LEVELS.index(last) < LEVELS.index(first):
            raise ValueError(f"cannot tune levels {first!r}..{last!r} of {list(LEVELS)}")
        self.source = LEVELS[LEVELS.index(first) - 1]
        self.names = LEVELS[LEVELS.index(first) : LEVELS.index(last) + 1]
        self.stages = nn.ModuleDict(
            {name: copy.deepcopy(backbone.level_stage(name)) for name in self.names}
        )
        self.channels = sum(int(backbone.level_channels[name]) for name in self.names)

    def train(self, mode: bool = True) -> TunedLevels:
        """Train the weights, never the BatchNorm statistics (they stay the pretrained ones)."""
        super().train(mode)
        freeze_batchnorm(self)
        return self

    def forward(self, levels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = levels[self.source].float()
        out = {}
        for name in self.names:
            x = self.stages[name](x)
            out[name] = x
        return out
