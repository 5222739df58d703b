"""What an episode gets when its mask would be empty: a small region where the defect most
likely is, sized by the supports (``model.empty_fallback``; off unless set).

Few-shot evaluation shows the model a query that holds the defect, and on new classes the
served start leaves 8-14 % of 1-shot masks empty (docs/benchmarks.md, "Quality", items 21, 22
and 23). An empty mask hides where the model's evidence was strongest: on the design episodes
the query's highest-margin pixels touched the defect in 70-78 % of the empty 1-shot episodes.
The fallback lifts the ``k`` highest-margin pixels just above the decision threshold, ``k`` =
``share`` × the supports' mean defect share × the query's pixels (the foreground-share prior
of RePRI, used here only to size the region). Only episodes whose mask is otherwise empty
change; with ``gate``, only those whose best pixel's margin reaches it, so that a query far
from the supports (one without the defect) can stay empty.

It acts on the logits of an eval-mode forward, so evaluation, the gate, ``lerenet predict``,
the served pyfunc's probabilities and an ONNX export all see the same masks; training never
sees it. The model applies it where the start is served (an episode no class memory serves):
a named training class's mask is its trained classifier's decision, selected on that class's
own validation images, and stays as trained. A lifted pixel's defect probability is 0.5 plus
a hair (``LIFT``), so a line that thresholds the probability above one half still reads the
mask the argmax alone would give.
"""

from __future__ import annotations

import torch

from lerenet.config.labels import IGNORE

LIFT = 1e-3  # how far above the background logit a lifted pixel's defect logit goes


def support_defect_share(support_masks: torch.Tensor) -> torch.Tensor:
    """B×K×H×W support masks (0/1, 255 ignored) → B: the mean over shots of each mask's
    defect share of its labelled pixels."""
    labelled = (support_masks != IGNORE).flatten(2).sum(2).clamp_min(1)
    return ((support_masks == 1).flatten(2).sum(2) / labelled).float().mean(1)


def lift_empty(
    logits: torch.Tensor,
    support_masks: torch.Tensor,
    share: float,
    gate: float | None = None,
    eligible: torch.Tensor | None = None,
) -> torch.Tensor:
    """``logits`` B×2×H×W (background, defect) with, in each episode whose argmax mask is
    empty (and whose highest margin reaches ``gate``, when given; and that ``eligible``, a B
    bool, allows, when given), the ``k`` pixels of highest defect margin lifted to win by
    ``LIFT``; every other episode is returned unchanged. Returns fp32 logits (a lift of 1e-3
    does not survive bf16 rounding).

    Tensor operations only, so an ONNX export (a trace) keeps the fallback for whichever
    episode turns out empty: the ``k`` best pixels are those whose rank by margin is below
    ``k`` (exactly ``k``, ties broken by the sort)."""
    logits = logits.float()
    margin = (logits[:, 1] - logits[:, 0]).flatten(1)  # B×P
    best = margin.max(1).values
    empty = best <= 0  # argmax picks the background on a tie
    if gate is not None:
        empty &= best >= gate
    if eligible is not None:
        empty &= eligible.to(empty.device)
    if not torch.jit.is_tracing() and not bool(empty.any()):
        return logits
    pixels = margin.shape[1]
    k = (share * support_defect_share(support_masks) * pixels).round().clamp(1, pixels)
    rank = margin.argsort(1, descending=True).argsort(1)  # 0: the highest margin
    top = (rank < k[:, None]) & empty[:, None]
    background = logits[:, 0].flatten(1)
    defect = torch.where(top, background + LIFT, logits[:, 1].flatten(1))
    return torch.stack([logits[:, 0], defect.view_as(logits[:, 1])], dim=1)
