"""LERENet assembly: shared backbone → support masking and K-shot averaging → MPR ∥ MPE → IFM.

Episode contract (STYLE.md, pattern 2): ``query_img`` B×3×H×W, ``support_imgs`` B×K×3×H×W,
``support_masks`` B×K×H×W with 1 = defect, 0 = background and 255 = ignore → logits B×2×H×W.
K-shot handling lives here: the K masked support feature maps are averaged before the head, so
the output does not depend on support order and K identical supports equal one.

The forward pass has two halves: ``encode_episode`` runs the backbone's pretrained levels, and
``forward_levels`` does everything after them. Training a frozen backbone from cached level
features calls the second half only (``lerenet/training/feature_cache.py``).

Deviations from the authors' code, each off by default and switched on by params (measured in
docs/benchmarks.md): ``prototype="masked_mean"``, ``prior="matching"`` (training-free
similarity maps from several pretrained levels instead of the positional cosine),
``residual`` (the head corrects parameter-free logits — the prototype baseline's or the
support LDA's — instead of starting from nothing) and ``backbone_bn`` other than ``per_group``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lerenet.model.fallback import lift_empty
from lerenet.model.ifm import IFM, PriorMode, similarity_prior
from lerenet.model.memory import ClassMemory, routing_descriptor
from lerenet.model.mpe import MPE, PrototypeMode, support_prototype
from lerenet.model.mpr import MPR
from lerenet.model.priors import (
    box_smooth,
    matching_logits,
    matching_maps,
    multiscale_lda_logits,
    scale_key,
    scaled_size,
    support_weights,
)
from lerenet.model.tuned_levels import TunedFrom, TunedLevels

BackboneBN = Literal["joint", "per_group", "frozen"]
MARGIN_SCALE = 10.0  # the start's logit margins reach tens: tanh(margin / 10) keeps their sign
Levels = dict[str, torch.Tensor]


def levels_at_scales(
    backbone: nn.Module,
    images: torch.Tensor,
    scales: tuple[float, ...] = (1.0,),
    names: tuple[str, ...] = (),
) -> Levels:
    """The backbone's levels of ``images``, plus levels ``names`` of the images resized by each
    other scale, under ``priors.scale_key`` (what ``multiscale_lda_logits`` reads).

    Resizing is bilinear without antialiasing: ONNX opset 17 has no antialiased resize, and
    the scales used (≥ 0.6) alias little.
    Shapes: N×3×H×W → {level: N×C×h×w, "level@s": N×C×h_s×w_s}.
    """
    feats = dict(backbone.forward_levels(images))
    for scale in scales:
        if scale == 1.0 or not names:
            continue
        size = scaled_size(images.shape[-2:], scale)
        resized = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        extra = backbone.forward_levels(resized)
        feats.update({scale_key(name, scale): extra[name] for name in names})
    return feats


def encode_episode(
    backbone: nn.Module,
    query_img: torch.Tensor,
    support_imgs: torch.Tensor,
    per_group: bool,
    scales: tuple[float, ...] = (1.0,),
    names: tuple[str, ...] = (),
) -> tuple[Levels, Levels]:
    """Run the backbone's pretrained levels over query and supports (``levels_at_scales``).

    ``per_group=False``: one batched call (B + B·K images), fewest kernel launches.
    ``per_group=True`` (the authors' code): the query batch, then each shot's batch, so that
    in training every BatchNorm sees batch statistics of one group only. In eval mode both
    give the same features, so only a training step pays for the extra calls.
    Shapes: → {level: B×C×h×w} (query), {level: B×K×C×h×w} (supports).
    """
    if per_group and backbone.training:
        query = levels_at_scales(backbone, query_img, scales, names)
        k = support_imgs.shape[1]
        shots = [levels_at_scales(backbone, support_imgs[:, i], scales, names) for i in range(k)]
        return query, {name: torch.stack([s[name] for s in shots], 1) for name in query}
    return encode_together(
        query_img, support_imgs, lambda images: levels_at_scales(backbone, images, scales, names)
    )


def encode_together(
    query_img: torch.Tensor,
    support_imgs: torch.Tensor,
    encode: Callable[[torch.Tensor], Levels],
) -> tuple[Levels, Levels]:
    """``encode`` over the B queries and B·K supports as one batch (queries first), split back
    into {level: B×C×h×w} and {level: B×K×C×h×w}: ``encode_episode``'s batched path, and the
    evaluation's through ``level_memo``."""
    b, k = support_imgs.shape[:2]
    feats = encode(torch.cat([query_img, support_imgs.flatten(0, 1)], dim=0))
    return (
        {name: f[:b] for name, f in feats.items()},
        {name: f[b:].unflatten(0, (b, k)) for name, f in feats.items()},
    )


def head_inputs(
    backbone: nn.Module, query_levels: Levels, support_levels: Levels
) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's C-channel maps: query B×C×h×w and supports B×K×C×h×w."""
    b, k = next(iter(support_levels.values())).shape[:2]
    query = backbone.head_features(query_levels)
    flat = {name: f.flatten(0, 1) for name, f in support_levels.items()}
    return query, backbone.head_features(flat).unflatten(0, (b, k))


def masked_support_mean(
    support_feats: torch.Tensor, support_masks: torch.Tensor, area: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask each support's features with its resized defect mask and average over K shots.

    The mask is ``label == 1`` (255 counts as background, as in the authors' code), resized
    bilinearly with ``align_corners=True`` to the feature size (the authors'), or by area
    (``area=True``: a defect smaller than a feature cell keeps its share of that cell instead
    of vanishing between the bilinear samples; ``priors.support_weights``).
    Shapes: ``support_feats`` B×K×C×h×w, ``support_masks`` B×K×H×W → masked mean B×C×h×w and the
    shot-averaged mask B×1×h×w.
    """
    fg, _ = support_weights(support_masks, tuple(support_feats.shape[-2:]), area=area)
    fg = fg.to(support_feats.dtype)
    return (support_feats * fg).mean(1), fg.mean(1)


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
        prior_levels: pretrained levels of the ``matching`` prior and of ``residual``.
        residual: ``off``, or the parameter-free logits the IFM output is added to
            (``prototype``: the prototype baseline's; ``lda``: the support LDA's).
        lda_shrinkage: the support LDA's ridge at K = 1.
        lda_scales: input scales whose support LDAs the ``lda`` start averages (1 = the
            input itself; ``priors.multiscale_lda_logits``).
        lda_smooth: box filter width (cells) over the ``lda`` start (``priors.box_smooth``).
        mask_resize: how support masks reach the feature grid for the masked support mean
            and the prior's prototypes — ``bilinear`` (the authors') or ``area``.
        backbone_bn: BatchNorm of the pretrained backbone in training — ``per_group`` (the
            authors': query and each shot in separate calls), ``joint`` (one call for all)
            or ``frozen`` (running statistics).
        memory_classes: the training classes of a class memory (``memory.py``): learned
            per-class classifiers over the IFM trunk, applied to episodes routed to them;
            empty: none (the authors').
        memory_routing: which episodes a class memory serves — ``name``: those whose class
            the caller names (``route``; unnamed episodes get the class-agnostic output),
            ``support``: those whose supports' descriptor matches a class (calibrated).
        memory_tuned: ``off``, or the first level of a trainable copy of the backbone's
            deeper stages that the class memory also reads (``tuned_levels.py``).
        empty_fallback: 0 (the authors'), or the share of the supports' defect share that an
            otherwise empty eval-mode mask gets at the query's highest margins
            (``fallback.lift_empty``); ``fallback_gate``: only where the best margin reaches it.
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
        prior_levels: tuple[str, ...] = ("s4", "s8", "s16"),
        residual: Literal["off", "prototype", "lda"] = "off",
        lda_shrinkage: float = 3.0,
        lda_scales: tuple[float, ...] = (1.0,),
        lda_smooth: int = 1,
        mask_resize: Literal["bilinear", "area"] = "bilinear",
        backbone_bn: BackboneBN = "per_group",
        memory_classes: tuple[str, ...] = (),
        memory_routing: Literal["name", "support"] = "name",
        memory_tuned: TunedFrom = "off",
        empty_fallback: float = 0.0,
        fallback_gate: float | None = None,
    ) -> None:
        super().__init__()
        channels = int(backbone.out_channels)
        matching = prior == "matching" or residual != "off"
        missing = sorted(set(prior_levels) - set(backbone.levels)) if matching else []
        if missing:
            raise ValueError(f"backbone was built without the prior level(s) {missing}")
        self.backbone = backbone
        self.backbone.frozen_bn = backbone_bn == "frozen"
        self.mpr = MPR(channels, num_state, num_node, normalize=normalize_graph)
        self.mpe = MPE(channels, reduction)
        prior_channels = 4 * len(prior_levels) + 1 if prior == "matching" else 1
        self.ifm = IFM(channels, dropout, prior_channels=prior_channels, residual=residual != "off")
        self.prototype_mode: PrototypeMode = prototype
        self.prior_mode: PriorMode = prior
        self.prior_levels = tuple(prior_levels)
        self.residual = residual
        self.lda_shrinkage = lda_shrinkage
        # the levels the other scales need: the LDA's, and only when the start is the LDA
        self.lda_scales = tuple(lda_scales)
        self.lda_smooth = lda_smooth
        self.scaled_levels = self.prior_levels if residual == "lda" else ()
        self.area = mask_resize == "area"
        self.per_group = backbone_bn == "per_group"
        self.memory: ClassMemory | None = None
        self.memory_routing = memory_routing
        self.empty_fallback = empty_fallback
        self.fallback_gate = fallback_gate
        self.tuned: TunedLevels | None = None
        if memory_classes:
            level_channels = sum(backbone.level_channels[name] for name in self.prior_levels)
            if memory_tuned != "off":
                self.tuned = TunedLevels(backbone, memory_tuned, self.prior_levels[-1])
            tuned_channels = 0 if self.tuned is None else self.tuned.channels
            self.memory = ClassMemory(
                channels + level_channels + tuned_channels + 1,
                tuple(memory_classes),
                2 * level_channels,
            )

    def forward(
        self,
        query_img: torch.Tensor,
        support_imgs: torch.Tensor,
        support_masks: torch.Tensor,
        route: torch.Tensor | None = None,
    ) -> torch.Tensor:
        query, supports = encode_episode(
            self.backbone,
            query_img,
            support_imgs,
            self.per_group,
            self.lda_scales,
            self.scaled_levels,
        )
        size = tuple(query_img.shape[-2:])
        return self.forward_levels(query, supports, support_masks, size, route)

    def image_levels(self, images: torch.Tensor) -> Levels:
        """The levels ``forward_levels`` reads, of N images on their own (eval: each image's
        levels depend on it alone, so ``level_memo`` may compute them once per image)."""
        return levels_at_scales(self.backbone, images, self.lda_scales, self.scaled_levels)

    def forward_levels(
        self,
        query_levels: Levels,
        support_levels: Levels,
        support_masks: torch.Tensor,
        size: tuple[int, int],
        route: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Everything after the pretrained levels; ``size`` is the input's (H, W).

        ``route``: with a class memory, each episode's memory class (``memory.NO_ROUTE``: none;
        ``ClassMemory.indices`` maps class names); in training it also adds the supports to that
        class's prototype. None: nothing is routed, or, with ``memory_routing: support``, the
        supports' descriptor routes. In eval mode with ``empty_fallback``, an episode whose
        mask would be empty gets its fallback region (``fallback.lift_empty``).
        """
        logits, route = self._logits(query_levels, support_levels, support_masks, size, route)
        if self.training or not self.empty_fallback:
            return logits
        start = None if route is None else route < 0  # what a class memory serves keeps its mask
        return lift_empty(logits, support_masks, self.empty_fallback, self.fallback_gate, start)

    def _logits(
        self,
        query_levels: Levels,
        support_levels: Levels,
        support_masks: torch.Tensor,
        size: tuple[int, int],
        route: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``forward_levels`` up to the decision: the head's logits at the input size, and the
        route the class memory took (None: none; routed by the supports, the route found)."""
        query, supports = head_inputs(self.backbone, query_levels, support_levels)
        support, mask = masked_support_mean(supports, support_masks, self.area)
        prototype = support_prototype(support, mask, self.prototype_mode)
        mpr_out = self.mpr(support, query)
        mpe_out = self.mpe(query, prototype)
        head_size = tuple(query.shape[-2:])
        levels = (query_levels, support_levels, support_masks, self.prior_levels, head_size)
        if self.prior_mode == "matching":
            prior = matching_maps(*levels, shrinkage=self.lda_shrinkage, area=self.area)
        else:
            prior = similarity_prior(query, support, prototype, self.prior_mode)
        base = None
        if self.residual == "prototype":
            base = matching_logits(*levels)
        elif self.residual == "lda":
            base = multiscale_lda_logits(
                *levels, scales=self.lda_scales, shrinkage=self.lda_shrinkage
            )
            base = box_smooth(base, self.lda_smooth)
        if self.memory is None:
            return self.ifm(mpr_out, mpe_out, prior, size=size, base=base), None
        x = self.ifm.trunk(mpr_out, mpe_out, prior)
        logits = self.ifm.classifier(x)
        if route is None and self.memory_routing == "support":
            route = self.memory.route(self.descriptor(support_levels, support_masks))
        elif route is not None and self.training:
            self.memory.observe(self.descriptor(support_levels, support_masks), route)
        if route is None or not bool((route >= 0).any()):
            return self.ifm.finish(logits, size, base), route
        features = self._memory_input(x, query_levels, base)
        return self.ifm.finish(logits + self.memory(features, route), size, base), route

    def _memory_input(
        self, trunk: torch.Tensor, query_levels: Levels, base: torch.Tensor | None
    ) -> torch.Tensor:
        """What a class memory's classifiers read: the IFM trunk beside the query's own
        pretrained levels at the head's grid, each part L2-normalised per position, and the
        start's defect-minus-background logit (how sure the start is where it is wrong is
        what a class's correction depends on; 5 supports make the start surer), and with
        ``memory_tuned`` the query's tuned deeper levels after them."""
        size = tuple(trunk.shape[-2:])
        margin = torch.zeros_like(trunk[:, :1]) if base is None else base[:, 1:] - base[:, :1]
        parts = [F.normalize(trunk.float(), dim=1), torch.tanh(margin.float() / MARGIN_SCALE)]
        levels = [query_levels[name] for name in self.prior_levels]
        if self.tuned is not None:
            levels += list(self.tuned(query_levels).values())
        for raw in levels:
            level = raw.float()
            if tuple(level.shape[-2:]) != size:
                level = F.interpolate(level, size=size, mode="bilinear", align_corners=False)
            parts.append(F.normalize(level, dim=1))
        return torch.cat(parts, dim=1).to(trunk.dtype)

    def descriptor(self, support_levels: Levels, support_masks: torch.Tensor) -> torch.Tensor:
        """The supports' routing descriptor (``memory.routing_descriptor``): B×D."""
        return routing_descriptor(support_levels, support_masks, self.prior_levels)
