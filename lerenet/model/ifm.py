"""IFM: information fusion of the MPR and MPE branches with a similarity prior.

Concatenate [MPR (C), MPE (C), prior (P)], fuse with a 1×1 conv, refine with a residual block of
two 3×3 convs, classify into background/defect, upsample to the input size (LERENet.md, "IFM").
The paper's prior is one channel (P = 1); the ``matching`` prior of ``priors.py`` has more.
With ``residual=True`` the classifier's last layer starts at zero and its output is added to
given ``base`` logits (the parameter-free matching), so training starts exactly at that
baseline and learns a correction to it.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

PriorMode = Literal["positional", "prototype", "matching"]


def similarity_prior(
    query: torch.Tensor,
    masked_support: torch.Tensor,
    prototype: torch.Tensor,
    mode: PriorMode = "positional",
) -> torch.Tensor:
    """One-channel cosine-similarity prior.

    ``positional`` is the authors' code: cosine between query and masked support features at
    the *same* position (meaningful because defects on a surface often share location
    statistics); ``prototype`` compares every query position with the global prototype.
    An all-zero support (empty mask) gives a zero prior, not NaN: the norms are clamped.

    Shapes: ``query``/``masked_support`` B×C×H×W, ``prototype`` B×C → B×1×H×W.
    """
    if mode == "positional":
        other = masked_support
    elif mode == "prototype":
        other = prototype[:, :, None, None].expand_as(query)
    else:
        raise ValueError(f"unknown prior mode {mode!r}; expected 'positional' or 'prototype'")
    return F.cosine_similarity(query, other, dim=1, eps=1e-7).unsqueeze(1)


class IFM(nn.Module):
    """Fusion head producing 2-class logits at the input resolution.

    Shapes: ``mpr_out``/``mpe_out`` B×C×h×w, ``prior`` B×P×h×w, ``base`` B×2×h×w or None,
    ``size`` (H, W) → B×2×H×W.
    """

    def __init__(
        self,
        channels: int,
        dropout: float = 0.1,
        num_classes: int = 2,
        prior_channels: int = 1,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * channels + prior_channels, channels, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
        )
        self.residual = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(channels, num_classes, kernel_size=1),
        )
        if residual:
            nn.init.zeros_(self.classifier[-1].weight)
            nn.init.zeros_(self.classifier[-1].bias)

    def forward(
        self,
        mpr_out: torch.Tensor,
        mpe_out: torch.Tensor,
        prior: torch.Tensor,
        size: tuple[int, int],
        base: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.trunk(mpr_out, mpe_out, prior)
        return self.finish(self.classifier(x), size, base)

    def trunk(self, mpr_out: torch.Tensor, mpe_out: torch.Tensor, prior: torch.Tensor):
        """The fused, refined B×C×h×w features the classifier reads (and a class memory)."""
        x = self.fuse(torch.cat([mpr_out, mpe_out, prior], dim=1))
        return x + self.residual(x)

    @staticmethod
    def finish(
        logits: torch.Tensor, size: tuple[int, int], base: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Head-grid logits (+ the residual's ``base``) upsampled to the input size."""
        if base is not None:
            logits = logits + base
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
