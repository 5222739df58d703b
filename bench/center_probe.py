"""The start's discriminant on features centred per image: a design probe, refuted.

    python bench/center_probe.py --folds 0     # design episodes (quick protocol, seed 0)
    python bench/center_probe.py --report      # the tables from bench/results/center_probe.json

*Hypothesis* (#29 items 2 and 5): a surface defect is an anomaly against its own image's
background, and a support's and a query's backgrounds differ (lighting, texture), which the
support LDA (``priors.support_lda``) reads as evidence. Centring every image's LDA features on
that image's own mean (or median) before the fit and its application removes the difference,
so fewer 1-shot masks come out empty and held-out seen-class images score higher. Variants of
the start (no training: on a new class the served output is the start), each on the same
novel-class (``test``) and seen-class (``seen_test``) episodes:

- ``none``: the served start;
- ``mean`` / ``median``: each image's pixel features minus their mean / median over the image;
- ``mean_renorm``: ``mean``, then each pixel L2-normalised again.

The model has no option for it: the probe swaps ``priors._pixels`` (the LDA's feature map)
for a centring wrapper while it scores. Design protocol only (quick, episode seed 0).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from empty_probe import episode_batches, probe_parser, run_design_probe, summary
from quality import MEMO_BYTES

import lerenet.model.priors as priors

VARIANTS = ("none", "mean", "median", "mean_renorm")
PARTS = ("test", "seen_test")


def centred(pixels, variant: dict):
    """``priors._pixels`` with each image's features centred as ``variant["name"]`` says."""

    def wrapped(levels_maps, names, size):
        x = pixels(levels_maps, names, size)  # …×D×h×w
        name = variant["name"]
        if name in ("mean", "mean_renorm"):
            x = x - x.mean((-2, -1), keepdim=True)
        elif name == "median":
            x = x - x.flatten(-2).median(-1).values[..., None, None]
        return F.normalize(x, dim=-3, eps=1e-7) if name == "mean_renorm" else x

    return wrapped


def probe_fold(params, work, fold: int, seed: int) -> dict:
    """Per part and shot count: per variant the per-episode stats and empty flags."""
    from lerenet.evaluation.metrics import episode_stats
    from lerenet.evaluation.scoring import episode_dataset
    from lerenet.model.build import build_model
    from lerenet.training.level_memo import LevelMemo, memo_logits

    model, _ = build_model(params.model)
    model.eval()
    memo = LevelMemo(MEMO_BYTES)
    split = params.split.model_copy(update={"out_dir": str(work / f"splits_s{seed}")})
    params = params.model_copy(update={"split": split})
    variant = {"name": "none"}
    original = priors._pixels
    priors._pixels = centred(original, variant)
    out: dict = {}
    try:
        for part in PARTS:
            for shots in (1, 5):
                ds = episode_dataset(params, model, part, shots, fold)
                rows: dict = {v: [] for v in VARIANTS}
                empty: dict = {v: [] for v in VARIANTS}
                with torch.inference_mode():
                    for _, batch, paths in episode_batches(ds):
                        for name in VARIANTS:
                            variant["name"] = name
                            pred = memo_logits(model, memo, batch, paths).float().argmax(1)
                            rows[name].append(episode_stats(pred, batch["query_mask"]))
                            empty[name].extend((pred.flatten(1).sum(1) == 0).tolist())
                out[f"{part}:{shots}shot"] = {
                    "classes": [ep.cls for ep in ds.episodes],
                    "stats": {k: np.concatenate(r).tolist() for k, r in rows.items()},
                    "empty": empty,
                }
    finally:
        priors._pixels = original
    return out


def main() -> None:
    args = probe_parser(__doc__).parse_args()
    results = run_design_probe(
        args, "center_probe", lambda p, f, work, seed, _: probe_fold(p, work, f, seed)
    )
    for part in PARTS:
        by_fold = {
            fold: {k.split(":")[1]: v for k, v in r.items() if k.startswith(f"{part}:")}
            for fold, r in results.items()
        }
        print(f"\n{part}\n" + "\n".join(summary(by_fold)))


if __name__ == "__main__":
    main()
