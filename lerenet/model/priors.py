"""Training-free matching between query and support features: the class-agnostic evidence.

A few-shot model has to segment classes it never saw; what transfers is *how similar* a query
position is to what the support marks as defect or background, not what defects looked like in
training. These functions compute such similarity maps from pretrained backbone levels, with no
parameters:

- ``prototype_cosine``: cosine of every query position to the masked-average (MAP) prototype of
  the support's defect and of its background, pooled over all K shots' pixels (PANet). Pooling
  pixels over shots, rather than averaging the K masked maps position by position as LERENet's
  code does, keeps a 5-shot prototype from mixing unrelated positions.
- ``max_cosine``: the best match of each query position among the support's defect pixels and
  among its background pixels (PFENet's prior, here for both sides).

- ``support_lda``: a linear discriminant fitted in closed form to the support's own pixels
  (Fisher LDA on the levels' L2-normalised features, shrunk towards the identity by
  ``shrinkage``/K): where a prototype keeps only the class means, it also learns which feature
  directions separate *this* defect from *this* background, and uses all the pixels of K
  shots. Nothing is learned from the training classes, so nothing is biased towards them.

``matching_maps`` stacks the cosines for several levels (``s4``, ``s8``, ``s16``) at the head's
resolution, plus the LDA map: LERENet's ``matching`` prior. ``matching_logits`` averages the
levels' prototype cosines into 2-class logits: the parameter-free prototype baseline.
``lda_logits`` is the LDA as 2-class logits: the starting point of a ``residual: lda`` head;
``multiscale_lda_logits`` averages it over several input scales (``model.lda_scales``).

Masks: 1 = defect, 0 = background, 255 = ignore (neither side). Shapes in each docstring.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SCALE = 20.0  # PANet's temperature: cosines in [-1, 1] are too flat for a softmax


def area_resize(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Average each feature cell's pixels: N×C×H×W → N×C×h×w.

    A backbone level of stride 2ⁿ has ⌈H/2ⁿ⌉ cells, so an average pool with that stride and
    ``ceil_mode`` gives exactly the level's grid; unlike adaptive pooling it exports to ONNX.
    Sizes that are not such a grid fall back to adaptive pooling.
    """
    height, width = maps.shape[-2:]
    kernel = tuple(
        2 ** math.ceil(math.log2(max(1.0, int(full) / int(cells))))
        for full, cells in ((height, size[0]), (width, size[1]))
    )
    pooled = F.avg_pool2d(maps, kernel, kernel, ceil_mode=True)
    if tuple(pooled.shape[-2:]) == tuple(size):
        return pooled
    return F.adaptive_avg_pool2d(maps, size)


def support_weights(
    support_masks: torch.Tensor, size: tuple[int, int], area: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Defect and background weights of each support at feature size.

    ``area=False``: bilinear resizing (align_corners=True), the authors' and PANet's masking,
    kept for the prototypes (measured: prototypes from area weights score lower). ``area=True``:
    the share of each feature cell's pixels that are defect / background. At stride 4 bilinear
    resizing reads one pixel in four per axis, and a pit of a few pixels between those samples
    disappears from the support altogether (tested); the pixel-level matchers (best-pixel
    cosine, support LDA) use area weights for that reason.
    Shapes: ``support_masks`` B×K×H×W → fg, bg each B×K×1×h×w.
    """
    b, k = support_masks.shape[:2]

    def resize(mask: torch.Tensor) -> torch.Tensor:
        flat = mask.float().flatten(0, 1).unsqueeze(1)
        if area:
            return area_resize(flat, size).view(b, k, 1, *size)
        out = F.interpolate(flat, size=size, mode="bilinear", align_corners=True)
        return out.view(b, k, 1, *size)

    return resize(support_masks == 1), resize(support_masks == 0)


def side_pixels(weight: torch.Tensor) -> torch.Tensor:
    """Which support pixels stand for a side: weight at least half the episode's peak.

    Relative, not an absolute 0.5: a defect smaller than one feature cell (a pit of a few
    pixels) resizes to weights below 0.5 everywhere and would otherwise have no pixel at all.
    Shapes: B×K×1×h×w → B×K·h·w bool (False everywhere when the side is empty).
    """
    flat = weight.flatten(1)
    peak = flat.amax(dim=1, keepdim=True)
    return (flat >= 0.5 * peak) & (peak > 0)


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


# Floats of one block of the query-by-support cosine matrix (4 MiB, the fastest of 1-64 MiB
# on a 2-core CPU with 2 MiB L2 per core). Blocks that stay in cache made the 5-shot prior
# at 80×80 3-5× faster than one product whose 130-800 MB result the maxima then read back
# from memory (bench/prior_speed.py).
COSINE_BLOCK = 2**20


def max_cosine(
    query: torch.Tensor, supports: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor
) -> torch.Tensor:
    """Highest cosine of each query position to any background / defect support pixel.

    Support pixels count for a side as ``side_pixels`` says; an empty side gives -1
    everywhere. The side's mask rides along the product as an extra channel (a constant 1
    on the query, 0 or -4 on the support pixels), so pixels of the other side score below
    -3 without a masked copy of the matrix, and the query positions go in blocks of
    ``COSINE_BLOCK`` floats (one product when exporting: the graph stays small).
    Shapes as ``prototype_cosine`` → B×2×h×w.
    """
    b, c, h, w = query.shape
    q = F.normalize(query.flatten(2), dim=1, eps=1e-7)  # B×C×hw
    q = torch.cat([q, torch.ones_like(q[:, :1])], dim=1).transpose(1, 2)  # B×hw×(C+1)
    s = F.normalize(supports.flatten(3), dim=2, eps=1e-7)  # B×K×C×hw
    s = s.transpose(1, 2).flatten(2)  # B×C×K·hw
    rows = h * w
    if not torch.onnx.is_in_onnx_export():
        rows = max(16, COSINE_BLOCK // max(1, b * s.shape[-1]))
    maps = []
    for weight in (bg, fg):
        penalty = (~side_pixels(weight)).to(s.dtype).unsqueeze(1) * -4.0  # B×1×K·hw
        side = torch.cat([s, penalty], dim=1)
        best = [torch.bmm(q[:, i : i + rows], side).amax(dim=2) for i in range(0, h * w, rows)]
        maps.append(torch.cat(best, dim=1).clamp_min(-1.0).view(b, 1, h, w))
    return torch.cat(maps, dim=1)


def _pixels(levels_maps: dict[str, torch.Tensor], names: tuple[str, ...], size) -> torch.Tensor:
    """The levels L2-normalised per pixel, resized to ``size`` and concatenated: …×D×h×w."""
    out = []
    for name in names:
        feat = levels_maps[name].float()
        lead = feat.shape[:-3]
        flat = F.interpolate(
            feat.flatten(0, feat.dim() - 4), size=size, mode="bilinear", align_corners=True
        )
        out.append(F.normalize(flat, dim=1, eps=1e-7).unflatten(0, lead))
    return torch.cat(out, dim=-3)


CG_STEPS = 48


def solve_spd(matrix: torch.Tensor, rhs: torch.Tensor, steps: int = CG_STEPS) -> torch.Tensor:
    """x with matrix·x = rhs for symmetric positive definite matrices, by conjugate gradients.

    Matrix products only, so the model exports to ONNX (which has no solver or inverse op) and
    runs where the batched LU of the CPU wheel's MKL fails (two threads: "Parameter 6 was
    incorrect on entry to SLASWP"). The shrunk covariances here have condition numbers of about
    10 (K = 1) to 50 (K = 5) on defects9, so a fixed ``steps`` converges to float precision
    (tested against a direct solve). Shapes: B×D×D, B×D → B×D.
    """
    x = torch.zeros_like(rhs)
    residual = rhs
    direction = rhs
    norm = (residual * residual).sum(-1, keepdim=True)
    for _ in range(steps):
        image = torch.bmm(matrix, direction.unsqueeze(-1)).squeeze(-1)
        step = norm / (direction * image).sum(-1, keepdim=True).clamp_min(1e-30)
        x = x + step * direction
        residual = residual - step * image
        new_norm = (residual * residual).sum(-1, keepdim=True)
        direction = residual + new_norm / norm.clamp_min(1e-30) * direction
        norm = new_norm
    return x


def support_lda(
    query_levels: dict[str, torch.Tensor],
    support_levels: dict[str, torch.Tensor],
    support_masks: torch.Tensor,
    levels: tuple[str, ...],
    size: tuple[int, int],
    shrinkage: float = 3.0,
) -> torch.Tensor:
    """Fisher LDA fitted to the supports' defect vs background pixels, applied to the query.

    The within-class covariance Σ of the support pixels (features of ``levels`` normalised and
    concatenated at ``size``) is shrunk to Σ + (shrinkage/K)·tr(Σ)/D·I — more shots, more
    pixels, less shrinkage — and w = (Σ + …)⁻¹(μ_defect − μ_background). The map is
    w·x − w·(μ_d + μ_b)/2 in units of w·(μ_d − μ_b)/4, so it is +2 at the defect mean and −2 at
    the background mean whatever the episode. Episodes whose supports show no defect pixel get
    zeros. Computed in float32 (the solve is ill-conditioned in half precision).
    Shapes as ``matching_maps`` → B×1×h×w.
    """
    with torch.autocast(support_masks.device.type, enabled=False):
        query = _pixels(query_levels, levels, size)  # B×D×h×w
        supports = _pixels(support_levels, levels, size)  # B×K×D×h×w
        b, k, d = supports.shape[:3]
        fg, bg = support_weights(support_masks, size, area=True)
        x = supports.permute(0, 1, 3, 4, 2).reshape(b, -1, d)  # B×N×D
        weights = [side_pixels(w).float() for w in (fg, bg)]  # B×N each
        counts = [w.sum(1).clamp_min(1.0) for w in weights]
        means = [
            (x * w[..., None]).sum(1) / n[:, None] for w, n in zip(weights, counts, strict=True)
        ]
        # centred before the products: Σxxᵀ − n·mmᵀ cancels badly in float32
        scatter = (
            sum(
                torch.einsum("bn,bni,bnj->bij", w, x - m[:, None], x - m[:, None])
                for w, m in zip(weights, means, strict=True)
            )
            / (counts[0] + counts[1])[:, None, None]
        )
        trace = torch.diagonal(scatter, dim1=1, dim2=2).sum(1).clamp_min(1e-6) / d
        eye = torch.eye(d, device=x.device)
        ridge = scatter + (shrinkage / k) * trace[:, None, None] * eye + 1e-6 * eye
        diff = means[0] - means[1]
        direction = solve_spd(ridge, diff)  # B×D
        separation = (direction * diff).sum(1).clamp_min(1e-6)
        bias = (direction * (means[0] + means[1])).sum(1) / 2
        score = torch.einsum("bd,bdhw->bhw", direction, query) - bias[:, None, None]
        score = 4 * score / separation[:, None, None]
        has_defect = (weights[0].sum(1) > 0).float()[:, None, None]
        return (score * has_defect).unsqueeze(1)


def lda_logits(
    query_levels: dict[str, torch.Tensor],
    support_levels: dict[str, torch.Tensor],
    support_masks: torch.Tensor,
    levels: tuple[str, ...],
    size: tuple[int, int],
    shrinkage: float = 3.0,
) -> torch.Tensor:
    """``support_lda`` as 2-class logits [−s/2, s/2]: B×2×h×w (channel 1 = defect)."""
    score = support_lda(query_levels, support_levels, support_masks, levels, size, shrinkage)
    return torch.cat([-score / 2, score / 2], dim=1)


def scale_key(name: str, scale: float) -> str:
    """Where a level computed from the input resized by ``scale`` lives in a level dict."""
    return f"{name}@{scale:g}"


def scaled_size(size: tuple[int, ...], scale: float) -> list[int]:
    """(H, W) of an input resized by ``scale``: the same for images and their masks."""
    return [max(32, round(scale * int(side))) for side in size]


def multiscale_lda_logits(
    query_levels: dict[str, torch.Tensor],
    support_levels: dict[str, torch.Tensor],
    support_masks: torch.Tensor,
    levels: tuple[str, ...],
    size: tuple[int, int],
    scales: tuple[float, ...],
    shrinkage: float = 3.0,
) -> torch.Tensor:
    """Mean over input ``scales`` of ``lda_logits``, each fitted on its own scale's grid.

    A defect's texture sits at one scale of the pretrained filters and its outline at another;
    the support LDA of one input size misses what another catches (measured on defects9:
    sizes 200, 256 and 320 averaged beat 320 alone on every fold, docs/benchmarks.md). Scale 1
    reads ``levels`` themselves; scale s reads ``scale_key(name, s)`` (the levels of the input
    resized by s, ``lerenet.model.lerenet.levels_at_scales``). Each scale's LDA is fitted and
    applied at its finest level's grid, with the support masks resized (nearest) to that
    scale's input first, as the images were; then resized to ``size``. Shapes as
    ``lda_logits``.
    """
    total = None
    for scale in scales:
        names = levels if scale == 1.0 else tuple(scale_key(n, scale) for n in levels)
        grid = size if scale == 1.0 else tuple(query_levels[names[0]].shape[-2:])
        masks = support_masks
        if scale != 1.0:  # the masks of the resized supports, then pooled to the grid by area
            masks = F.interpolate(
                support_masks.float(), size=scaled_size(support_masks.shape[-2:], scale)
            ).to(support_masks.dtype)
        logits = lda_logits(query_levels, support_levels, masks, names, grid, shrinkage)
        if grid != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
        total = logits if total is None else total + logits
    assert total is not None, "the LDA needs at least one scale"
    return total / len(scales)


def box_smooth(logits: torch.Tensor, cells: int) -> torch.Tensor:
    """Mean of each ``cells``×``cells`` neighbourhood (odd; edges average what they have).

    The support LDA scores each cell on its own; a lone cell above the threshold is noise
    more often than a defect, and a defect spans several cells. On defects9 a 3×3 box over the
    multi-scale LDA's logits raised novel-class mIoU on every fold and on the training
    classes' episodes too (docs/benchmarks.md, "Quality"). ``cells`` = 1 returns ``logits``.
    """
    if cells <= 1:
        return logits
    return F.avg_pool2d(logits, cells, stride=1, padding=cells // 2, count_include_pad=False)


def matching_maps(
    query_levels: dict[str, torch.Tensor],
    support_levels: dict[str, torch.Tensor],
    support_masks: torch.Tensor,
    levels: tuple[str, ...],
    size: tuple[int, int],
    shrinkage: float = 3.0,
    area: bool = False,
) -> torch.Tensor:
    """[prototype cosine (2), max cosine (2)] of every level, then the support LDA (1), all at
    ``size``; ``area`` resizes the prototypes' masks by area too (the pixel-level matchers
    always do).

    Shapes: level maps B×C_s×h_s×w_s (query) and B×K×C_s×h_s×w_s (supports),
    ``support_masks`` B×K×H×W → B×(4·len(levels) + 1)×h×w.
    """
    maps = []
    for name in levels:
        query, supports = query_levels[name], support_levels[name]
        cells = tuple(query.shape[-2:])
        by_area = support_weights(support_masks, cells, area=True)  # pixel-level: always
        by_proto = by_area if area else support_weights(support_masks, cells)
        both = torch.cat(
            [prototype_cosine(query, supports, *by_proto), max_cosine(query, supports, *by_area)],
            1,
        )
        maps.append(F.interpolate(both, size=size, mode="bilinear", align_corners=True))
    maps.append(support_lda(query_levels, support_levels, support_masks, levels, size, shrinkage))
    return torch.cat(maps, dim=1)


def matching_logits(
    query_levels: dict[str, torch.Tensor],
    support_levels: dict[str, torch.Tensor],
    support_masks: torch.Tensor,
    levels: tuple[str, ...],
    size: tuple[int, int],
    scale: float = SCALE,
) -> torch.Tensor:
    """Scaled mean over levels of the prototype cosines: parameter-free 2-class logits.

    Shapes as ``matching_maps`` → B×2×h×w (channel 1 = defect).
    """
    total = None
    for name in levels:
        query, supports = query_levels[name], support_levels[name]
        fg, bg = support_weights(support_masks, tuple(query.shape[-2:]))
        sim = prototype_cosine(query, supports, fg, bg)
        sim = F.interpolate(sim, size=size, mode="bilinear", align_corners=True)
        total = sim if total is None else total + sim
    assert total is not None, "matching needs at least one level"
    return scale * total / len(levels)
