"""Prototype baseline: parameter-free matching of query pixels to support prototypes.

The reference every LERENet report and every promotion is compared with: the same pretrained
backbone, the same episodes, no head and nothing trained. Background and defect prototypes are
masked averages of the supports' pretrained features (all K shots' pixels pooled); each query
pixel's logits are its scaled cosine similarities to the two prototypes, averaged over the
backbone levels given (PANet without alignment, on several levels: ``priors.matching_logits``).
Because it has no parameters it needs no training and can be rebuilt and scored on any
episodes by the gate. Shapes follow the episode contract of ``lerenet.py`` → logits B×2×H×W.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lerenet.model.lerenet import Levels, encode_episode, levels_at_scales
from lerenet.model.priors import SCALE, matching_logits


class PrototypeBaseline(nn.Module):
    """Masked-average-pooling prototypes compared to query pixels by cosine similarity."""

    def __init__(
        self, backbone: nn.Module, levels: tuple[str, ...] = ("s4",), scale: float = SCALE
    ) -> None:
        super().__init__()
        missing = sorted(set(levels) - set(backbone.levels))
        if missing:
            raise ValueError(f"backbone was built without the level(s) {missing}")
        self.backbone = backbone
        self.levels = tuple(levels)
        self.scale = scale

    def forward(
        self,
        query_img: torch.Tensor,
        support_imgs: torch.Tensor,
        support_masks: torch.Tensor,
    ) -> torch.Tensor:
        query, supports = encode_episode(self.backbone, query_img, support_imgs, per_group=False)
        return self.forward_levels(query, supports, support_masks, tuple(query_img.shape[-2:]))

    def image_levels(self, images: torch.Tensor) -> Levels:
        """The levels ``forward_levels`` reads, of N images on their own (``level_memo``)."""
        return levels_at_scales(self.backbone, images)

    def forward_levels(
        self,
        query_levels: Levels,
        support_levels: Levels,
        support_masks: torch.Tensor,
        size: tuple[int, int],
    ) -> torch.Tensor:
        finest = max((tuple(query_levels[n].shape[-2:]) for n in self.levels), key=sum)
        logits = matching_logits(
            query_levels, support_levels, support_masks, self.levels, finest, self.scale
        )
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
