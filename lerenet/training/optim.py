"""The optimiser's pieces: parameter groups, the poly schedule and a weight average.

Paper settings (LERENET.md "Training"): the head at ``head_lr_mult``× and the backbone at
``backbone_lr_mult``× the base lr, poly decay of power 0.9.
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def param_groups(
    model: nn.Module, lr: float, head_mult: float, backbone_mult: float, tuned_mult: float
) -> list:
    """Pretrained backbone at backbone_mult×lr; head (and new backbone adapters) at head_mult×;
    the class memory's tuned copy of pretrained stages (``model.tuned``) at tuned_mult×.

    ``backbone_mult`` 0 freezes the pretrained weights outright (no gradient is computed for
    them), which is what makes a step cheap and the feature cache possible; the tuned copy
    starts from those weights, so it gets a backbone's low lr, not the head's.
    """
    groups: dict[str, list] = {"head": [], "backbone": [], "tuned": []}
    for name, param in model.named_parameters():
        pretrained = name.startswith("backbone.") and not name.startswith("backbone.projection")
        if pretrained and backbone_mult == 0:
            param.requires_grad_(False)
        if not param.requires_grad:
            continue
        group = "backbone" if pretrained else "tuned" if name.startswith("tuned.") else "head"
        groups[group].append(param)
    mults = {"head": head_mult, "backbone": backbone_mult, "tuned": tuned_mult}
    return [
        {"params": params, "lr": lr * mults[name], "name": name}
        for name, params in groups.items()
        if params or name == "head"
    ]


def weight_average(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights and buffers, or None (off).

    Validation on few episodes of one class swings by ±0.2 mIoU between rounds at batch 2: the
    raw weights follow the last few episodes' classes. The average is what is validated and
    kept, so the chosen model is a smoothed point of the trajectory, not a lucky one.
    """
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def poly_factor(power: float, steps: int):
    return lambda step: max(0.0, 1.0 - step / steps) ** power


def freeze_agnostic_classifier(model: nn.Module) -> None:
    """Keep the class-agnostic IFM classifier at its start (``train.agnostic_head: false``).

    With a residual start its last layer is zero, so the model's output on classes it did not
    train on stays the training-free start exactly, whatever the trunk and a class memory learn
    (docs/benchmarks.md, "Quality": training that classifier lowered unseen classes on every
    fold). The trunk (MPR, MPE, fusion) still trains, through the class memory.
    """
    for param in model.ifm.classifier.parameters():
        param.requires_grad_(False)
