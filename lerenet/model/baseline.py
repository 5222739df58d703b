"""Prototype baseline: parameter-free matching of query pixels to support prototypes.

The reference every LERENet report and every promotion is compared with: the same pretrained
backbone, the same episodes, no head and nothing trained. Background and defect prototypes are
masked averages of the supports' pretrained features (all K shots' pixels pooled); each query
pixel's logits are its scaled cosine similarities to the two prototypes, averaged over the
backbone stages given (PANet without alignment, on several stages: ``priors.matching_logits``).
Because it has no parameters it needs no training and can be rebuilt and scored on any
episodes by the gate. Shapes follow the episode contract of ``lerenet.py`` → logits B×2×H×W.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lerenet.model.lerenet import Stages, encode_episode, stages_at_scales
from lerenet.model.priors import SCALE, matching_logits


class PrototypeBaseline(nn.Module):
    """Masked-average-pooling prototypes compared to query pixels by cosine similarity."""

    def __init__(
        self, backbone: nn.Module, stages: tuple[str, ...] = ("s4",), scale: float = SCALE
    ) -> None:
        super().__init__()
        missing = sorted(set(stages) - set(backbone.stages))
        if missing:
            raise ValueError(f"backbone was built without the stage(s) {missing}")
        self.backbone = backbone
        self.stages = tuple(stages)
        self.scale = scale

    def forward(
        self,
        query_img: torch.Tensor,
        support_imgs: torch.Tensor,
        support_masks: torch.Tensor,
    ) -> torch.Tensor:
        query, supports = encode_episode(self.backbone, query_img, support_imgs, per_group=False)
        return self.forward_stages(query, supports, support_masks, tuple(query_img.shape[-2:]))

    def image_stages(self, images: torch.Tensor) -> Stages:
        """The stages ``forward_stages`` reads, of N images on their own (``stage_memo``)."""
        return stages_at_scales(self.backbone, images)

    def forward_stages(
        self,
        query_stages: Stages,
        support_stages: Stages,
        support_masks: torch.Tensor,
        size: tuple[int, int],
    ) -> torch.Tensor:
        finest = max((tuple(query_stages[n].shape[-2:]) for n in self.stages), key=sum)
        logits = matching_logits(
            query_stages, support_stages, support_masks, self.stages, finest, self.scale
        )
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
