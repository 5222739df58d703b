"""Pure ``nn.Module``s of LERENet and its baseline; no training or logging code here."""

from __future__ import annotations

from torch import nn

from lerenet.config.schema import ModelConfig
from lerenet.model.backbones import build_backbone
from lerenet.model.baseline import PrototypeBaseline
from lerenet.model.lerenet import LERENet
from lerenet.model.weights import WeightsError, WeightsInfo, load_backbone_weights


def build_model(
    cfg: ModelConfig, *, load_weights: bool = True, full_depth: bool = False
) -> tuple[nn.Module, WeightsInfo | None]:
    """Build the configured network; load backbone weights unless ``load_weights`` is False.

    ``load_weights=False`` is for restoring a whole trained checkpoint, whose state dict
    overrides the backbone anyway.
    """
    matching = cfg.arch == "prototype" or cfg.prior == "matching" or cfg.residual != "off"
    backbone = build_backbone(
        cfg.backbone,
        deep_stem=cfg.deep_stem,
        feature_channels=cfg.feature_channels,
        full_depth=full_depth,
        levels=tuple(cfg.prior_levels) if matching else (),
    )
    info = (
        load_backbone_weights(backbone, cfg.weights, cfg.weights_format) if load_weights else None
    )
    if cfg.arch == "prototype":
        return PrototypeBaseline(backbone, tuple(cfg.prior_levels)), info
    model = LERENet(
        backbone,
        num_state=cfg.num_state,
        num_node=cfg.num_node,
        reduction=cfg.reduction,
        prototype=cfg.prototype,
        prior=cfg.prior,
        normalize_graph=cfg.normalize_graph,
        dropout=cfg.dropout,
        prior_levels=tuple(cfg.prior_levels),
        residual=cfg.residual,
        lda_shrinkage=cfg.lda_shrinkage,
        lda_scales=tuple(cfg.lda_scales),
        lda_smooth=cfg.lda_smooth,
        mask_resize=cfg.mask_resize,
        backbone_bn=cfg.backbone_bn,
        memory_classes=tuple(cfg.memory_classes) if cfg.memory else (),
        memory_routing=cfg.memory_routing,
        memory_tuned=cfg.memory_tuned,
        empty_fallback=cfg.empty_fallback,
        fallback_gate=cfg.fallback_gate,
    )
    return model, info


def build_baseline(cfg: ModelConfig) -> nn.Module:
    """The parameter-free prototype baseline on ``cfg``'s backbone, weights and levels: the
    reference a model of that configuration has to beat. It has nothing trained, so it is
    rebuilt wherever it is needed (evaluation, gate) instead of travelling as a file."""
    model, _ = build_model(cfg.model_copy(update={"arch": "prototype"}))
    return model


def rebuild_baseline(model_config: dict) -> tuple[nn.Module | None, str]:
    """The baseline of a saved model's configuration (its ``model_config`` metadata), or None
    and why not: its backbone weights cannot be loaded here."""
    try:
        return build_baseline(ModelConfig.model_validate(model_config)), ""
    except WeightsError as err:
        return None, f"cannot rebuild the baseline: {err}"


__all__ = [
    "LERENet",
    "PrototypeBaseline",
    "WeightsInfo",
    "build_backbone",
    "build_baseline",
    "build_model",
    "load_backbone_weights",
    "rebuild_baseline",
]
