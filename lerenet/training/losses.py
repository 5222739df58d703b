"""Training losses over {background, defect} logits, ignoring label 255.

The paper trains with cross-entropy alone. Defects cover a few percent of a surface image, and
cross-entropy rewards a head that says "background" whenever it is unsure: on novel classes the
trained head then predicts nothing in a third of the 1-shot episodes (docs/benchmarks.md).
Two measured, opt-in remedies: weighting defect pixels, and adding a soft Dice term, which
scores each episode's defect region by overlap, whatever its size.
"""

from __future__ import annotations

import torch
from torch import nn

from lerenet.config.labels import IGNORE


def soft_dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 − Dice of the defect probability and the defect mask, per episode, averaged.

    Pixels labelled 255 count for neither; ``eps`` keeps an all-background episode (no defect
    in the query) finite and rewards predicting nothing there.
    """
    valid = (target != IGNORE).float()
    prob = logits.float().softmax(1)[:, 1] * valid
    truth = (target == 1).float()
    inter = (prob * truth).flatten(1).sum(1)
    total = prob.flatten(1).sum(1) + truth.flatten(1).sum(1)
    return (1 - (2 * inter + eps) / (total + eps)).mean()


class SegmentationLoss(nn.Module):
    """Cross-entropy (defect pixels weighted by ``foreground_weight``) + ``dice_weight`` × soft
    Dice. ``SegmentationLoss()`` is the paper's loss."""

    def __init__(self, foreground_weight: float = 1.0, dice_weight: float = 0.0) -> None:
        super().__init__()
        weight = None if foreground_weight == 1.0 else torch.tensor([1.0, foreground_weight])
        self.cross_entropy = nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE)
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.cross_entropy(logits, target)
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice(logits, target)
        return loss


class StartAnchor:
    """``weight`` × the squared distance of the trainable weights from where they started.

    A residual head starts at the training-free logits and every trained variant measured so
    far drifted from that start towards its training classes (docs/benchmarks.md,
    "Quality"). Weight decay pulls towards zero, which for the randomly initialised layers is
    not the start; this term pulls towards the start itself (L2-SP, Li et al. 2018), so what
    the head learns stays a small correction. ``weight`` 0 adds nothing (the paper's loss).
    """

    def __init__(self, model: nn.Module, weight: float) -> None:
        self.weight = weight
        self.params = [p for p in model.parameters() if p.requires_grad] if weight else []
        self.start = [p.detach().clone() for p in self.params]

    def __call__(self) -> torch.Tensor | float:
        if not self.weight:
            return 0.0
        total = sum((p - s).pow(2).sum() for p, s in zip(self.params, self.start, strict=True))
        return self.weight * total
