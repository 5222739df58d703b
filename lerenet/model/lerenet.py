"""LERENet assembly: shared backbone → support masking and K-shot averaging → MPR ∥ MPE → IFM.

Episode contract (STYLE.md, pattern 2): ``query_img`` B×3×H×W, ``support_imgs`` B×K×3×H×W,
``support_masks`` B×K×H×W with 1 = defect, 0 = background and 255 = ignore → logits B×2×H×W.
K-shot handling lives here: the K masked support feature maps are averaged before the head, so
the output does not depend on support order and K identical supports equal one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lerenet.model.ifm import IFM, PriorMode, similarity_prior
from lerenet.model.mpe import MPE, PrototypeMode, support_prototype
from lerenet.model.mpr import MPR


def encode_episode(
    backbone: nn.Module, query_img: torch.Tensor, support_imgs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the shared backbone once over query and supports.

    One batched call (B + B·K images) instead of K + 1 calls: the same weights, fewer kernel
    launches. Shapes: → query B×C×h×w, supports B×K×C×h×w.
    """
    b, k = support_imgs.shape[:2]
    feats = backbone(torch.cat([query_img, support_imgs.flatten(0, 1)], dim=0))
    return feats[:b], feats[b:].unflatten(0, (b, k))


def masked_support_mean(
    support_feats: torch.Tensor, support_masks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask each support's features with its resized defect mask and average over K shots.

    The mask is ``label == 1`` (255 counts as background, as in the authors' code), resized
    bilinearly with ``align_corners=True`` to the feature size.
    Shapes: ``support_feats`` B×K×C×h×w, ``support_masks`` B×K×H×W → masked mean B×C×h×w and the
    shot-averaged mask B×1×h×w.
    """
    b, k, c, h, w = support_feats.shape
    fg = (support_masks == 1).to(support_feats.dtype).flatten(0, 1).unsqueeze(1)
    fg = F.interpolate(fg, size=(h, w), mode="bilinear", align_corners=True)
    masked = support_feats.flatten(0, 1) * fg
    return masked.view(b, k, c, h, w).mean(1), fg.view(b, k, 1, h, w).mean(1)


class LERENet(nn.Module):
    """Few-shot defect segmentation network (arXiv 2403.11122).

    Args:
        backbone: a stride-4 feature extractor with ``out_channels``.
        num_state / num_node: MPR graph size (default C).
        reduction: MPE channel-excitation reduction ratio.
        prototype: MPE prototype mode (``gap`` = authors' code).
        prior: IFM prior mode (``positional`` = authors' code).
        normalize_graph: MPR 1/HW normalisation of pooled node states.
        dropout: IFM classifier dropout.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_state: int | None = None,
        num_node: int | None = None,
        reduction: int = 16,
        prototype: PrototypeMode = "gap",
        prior: PriorMode = "positional",
        normalize_graph: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        channels = int(backbone.out_channels)
        self.backbone = backbone
        self.mpr = MPR(channels, num_state, num_node, normalize=normalize_graph)
        self.mpe = MPE(channels, reduction)
        self.ifm = IFM(channels, dropout)
        self.prototype_mode: PrototypeMode = prototype
        self.prior_mode: PriorMode = prior

    def forward(
        self,
        query_img: torch.Tensor,
        support_imgs: torch.Tensor,
        support_masks: torch.Tensor,
    ) -> torch.Tensor:
        query, supports = encode_episode(self.backbone, query_img, support_imgs)
        support, mask = masked_support_mean(supports, support_masks)
        prototype = support_prototype(support, mask, self.prototype_mode)
        mpr_out = self.mpr(support, query)
        mpe_out = self.mpe(query, prototype)
        prior = similarity_prior(query, support, prototype, self.prior_mode)
        return self.ifm(mpr_out, mpe_out, prior, size=tuple(query_img.shape[-2:]))
