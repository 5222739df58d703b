"""MPE: multi-prototype excitation with a global support prototype.

The prototype p (B×C) modulates the query features (Q ⊙ p), then channel squeeze-and-excitation
and spatial excitation are applied in that order (LERENet.md, "MPE").
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

PrototypeMode = Literal["gap", "masked_mean"]


def support_prototype(
    masked_support: torch.Tensor, mask: torch.Tensor, mode: PrototypeMode = "gap"
) -> torch.Tensor:
    """Global prototype of the masked support features.

    ``gap`` is the authors' code: a plain average over all H×W positions, so small defects give
    small prototypes. ``masked_mean`` divides by the mask area instead (the usual MAP).

    Shapes: ``masked_support`` B×C×H×W, ``mask`` B×1×H×W → B×C.
    """
    if mode == "gap":
        return masked_support.mean(dim=(2, 3))
    if mode == "masked_mean":
        area = mask.sum(dim=(2, 3)).clamp_min(1e-5)
        return masked_support.sum(dim=(2, 3)) / area
    raise ValueError(f"unknown prototype mode {mode!r}; expected 'gap' or 'masked_mean'")


class MPE(nn.Module):
    """Prototype modulation, channel excitation, then spatial excitation.

    Shapes: ``query`` B×C×H×W, ``prototype`` B×C → B×C×H×W.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.channel_fc = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )
        self.spatial_conv = nn.Conv2d(channels, 1, kernel_size=1, bias=False)

    def forward(self, query: torch.Tensor, prototype: torch.Tensor) -> torch.Tensor:
        x = query * prototype[:, :, None, None]
        x = x * self.channel_fc(x.mean(dim=(2, 3)))[:, :, None, None]
        return x * torch.sigmoid(self.spatial_conv(x))
