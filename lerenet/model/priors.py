"""Training-free matching between query and support features: the class-agnostic evidence.

A few-shot model has to segment classes it never saw; what transfers is *how similar* a query
position is to what the support marks as defect or background, not what defects looked like in
training. These functions compute such similarity maps from pretrained backbone stages, with no
parameters:

- ``prototype_cosine``: cosine of every query position to the masked-average (MAP) prototype of
  the support's defect and of its background, pooled over all K shots' pixels (PANet). Pooling
  pixels over shots, rather than averaging the K masked maps position by position as LERENet's
  code does, keeps a 5-shot prototype from mixing unrelated positions.
- ``max_cosine``: the best match of each query position among the support's defect pixels and
  among its background pixels (PFENet's prior, here for both sides).

``matching_maps`` stacks both for several stages (``s4``, ``s8``, ``s16``) at the head's
resolution: LERENet's ``matching`` prior. ``matching_logits`` averages the stages' prototype
cosines into 2-class logits: the parameter-free prototype baseline, and the starting point of a
``residual`` LERENet head.

Masks: 1 = defect, 0 = background, 255 = ignore (neither side). Shapes in each docstring.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SCALE = 20.0  # PANet's temperature: cosines in [-1, 1] are too flat for a softmax


def support_weights(
    support_masks: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Defect and background weights of each support at feature size.

    Shapes: ``support_masks`` B×K×H×W → fg, bg each B×K×1×h×w (bilinear, align_corners=True).
    """
    b, k = support_masks.shape[:2]

    def resize(mask: torch.Tensor) -> torch.Tensor:
        flat = mask.float().flatten(0, 1).unsqueeze(1)
        return F.interpolate(flat, size=size, mode="bilinear", align_corners=True).view(
            b, k, 1, *size
        )

    return resize(support_masks == 1), resize(support_masks == 0)


def prototype_cosine(
    query: torch.Tensor, supports: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor
) -> torch.Tensor:
    """Cosine of each query position to the background and defect prototypes.

    Shapes: ``query`` B×C×h×w, ``supports`` B×K×C×h×w, ``fg``/``bg`` B×K×1×h×w → B×2×h×w
    (channel 0 background, 1 defect). An empty side gives a zero prototype and a zero map.
    """

    def prototype(weight: torch.Tensor) -> torch.Tensor:
        area = weight.sum(dim=(1, 3, 4)).clamp_min(1e-5)  # B×1
        return (supports * weight).sum(dim=(1, 3, 4)) / area  # B×C

    protos = torch.stack([prototype(bg), prototype(fg)], dim=1)  # B×2×C
    return F.cosine_similarity(query.unsqueeze(1), protos[..., None, None], dim=2, eps=1e-7)


def max_cosine(
    query: torch.Tensor, supports: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor
) -> torch.Tensor:
    """Highest cosine of each query position to any background / defect support pixel.

    Support pixels count for a side when their resized weight is over 0.5; a side with no such
    pixel gives -1 everywhere. Shapes as ``prototype_cosine`` → B×2×h×w.
    """
    b, c, h, w = query.shape
    q = F.normalize(query.flatten(2), dim=1, eps=1e-7)  # B×C×hw
    s = F.normalize(supports.flatten(3), dim=2, eps=1e-7)  # B×K×C×hw
    s = s.transpose(1, 2).flatten(2)  # B×C×K·hw
    cos = torch.bmm(q.transpose(1, 2), s)  # B×hw×K·hw
    maps = []
    for weight in (bg, fg):
        keep = (weight.flatten(1) > 0.5).unsqueeze(1)  # B×1×K·hw
        best = cos.masked_fill(~keep, -1.0).amax(dim=2)
        maps.append(best.view(b, 1, h, w))
    return torch.cat(maps, dim=1)


def matching_maps(
    query_stages: dict[str, torch.Tensor],
    support_stages: dict[str, torch.Tensor],
    support_masks: torch.Tensor,
    stages: tuple[str, ...],
    size: tuple[int, int],
) -> torch.Tensor:
    """[prototype cosine (2), max cosine (2)] of every stage, resized to ``size``.

    Shapes: stage maps B×C_s×h_s×w_s (query) and B×K×C_s×h_s×w_s (supports),
    ``support_masks`` B×K×H×W → B×4·len(stages)×h×w.
    """
    maps = []
    for name in stages:
        query, supports = query_stages[name], support_stages[name]
        fg, bg = support_weights(support_masks, tuple(query.shape[-2:]))
        both = torch.cat(
            [prototype_cosine(query, supports, fg, bg), max_cosine(query, supports, fg, bg)], 1
        )
        maps.append(F.interpolate(both, size=size, mode="bilinear", align_corners=True))
    return torch.cat(maps, dim=1)


def matching_logits(
    query_stages: dict[str, torch.Tensor],
    support_stages: dict[str, torch.Tensor],
    support_masks: torch.Tensor,
    stages: tuple[str, ...],
    size: tuple[int, int],
    scale: float = SCALE,
) -> torch.Tensor:
    """Scaled mean over stages of the prototype cosines: parameter-free 2-class logits.

    Shapes as ``matching_maps`` → B×2×h×w (channel 1 = defect).
    """
    total = None
    for name in stages:
        query, supports = query_stages[name], support_stages[name]
        fg, bg = support_weights(support_masks, tuple(query.shape[-2:]))
        sim = prototype_cosine(query, supports, fg, bg)
        sim = F.interpolate(sim, size=size, mode="bilinear", align_corners=True)
        total = sim if total is None else total + sim
    assert total is not None, "matching needs at least one stage"
    return scale * total / len(stages)
