"""Prototype baseline: masked average pooling + cosine similarity (PANet-style, no alignment).

The reference every LERENet report is compared with: same backbone, same episodes, no head.
Foreground and background prototypes are masked averages of the shot-pooled support features;
each query pixel's logits are its scaled cosine similarities to the two prototypes.
Shapes follow the episode contract of ``lerenet.py`` → logits B×2×H×W.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lerenet.model.lerenet import encode_episode


class PrototypeBaseline(nn.Module):
    """Masked-average-pooling prototypes compared to query pixels by cosine similarity."""

    def __init__(self, backbone: nn.Module, scale: float = 20.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.scale = scale  # PANet's temperature: cosine in [-1, 1] is too flat for softmax

    def forward(
        self,
        query_img: torch.Tensor,
        support_imgs: torch.Tensor,
        support_masks: torch.Tensor,
    ) -> torch.Tensor:
        query, supports = encode_episode(self.backbone, query_img, support_imgs)
        b, k, c, h, w = supports.shape
        fg = (support_masks == 1).to(query.dtype).flatten(0, 1).unsqueeze(1)
        fg = F.interpolate(fg, size=(h, w), mode="bilinear", align_corners=True)
        valid = (support_masks != 255).to(query.dtype).flatten(0, 1).unsqueeze(1)
        valid = F.interpolate(valid, size=(h, w), mode="bilinear", align_corners=True)
        bg = (valid - fg).clamp_min(0)
        flat = supports.flatten(0, 1)

        def pooled(weight: torch.Tensor) -> torch.Tensor:
            num = (flat * weight).view(b, k, c, -1).sum(dim=(1, 3))
            den = weight.view(b, k, -1).sum(dim=(1, 2)).clamp_min(1e-5)
            return num / den[:, None]

        protos = torch.stack([pooled(bg), pooled(fg)], dim=1)  # B×2×C
        sim = F.cosine_similarity(
            query.unsqueeze(1), protos[:, :, :, None, None], dim=2, eps=1e-7
        )  # B×2×h×w
        logits = self.scale * sim
        return F.interpolate(logits, size=query_img.shape[-2:], mode="bilinear", align_corners=True)
