"""Seen classes: a discriminant fitted in closed form to a class's training images, against
the episode's own start.

    python bench/class_lda_probe.py        # design episodes (quick protocol, seed 0), 3 folds

#29 asks a retrain for +0.15 mIoU over the start on held-out images of the classes it trained
on; the class memory's learned classifier gives +0.149 / +0.074 at 1- / 5-shot (the claim,
docs/benchmarks.md item 22). *Hypothesis:* most of that comes from seeing many labelled
images of the class, not from gradient steps: the start's own support LDA, fitted to
``--images`` training images of the class at once (a "class LDA": the start with K = 24
instead of 1 or 5), gains as much or more, without training. Variants per seen-class
held-out episode:

- ``none``: the served start (the episode's K supports);
- ``class``: the class LDA alone (the episode's supports unused);
- ``sum``: start + class LDA (their logits added).

Design protocol only (quick, episode seed 0); the claim's seeds are never read. Results:
bench/results/class_lda_probe.json, a table as bench/empty_probe.py's (``--report``).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from empty_probe import probe_parser, run_design_probe, summary
from quality import MEMO_BYTES


def class_support(model, params, split_dir: Path, cls: str, count: int, pairs) -> tuple:
    """``count`` training-part images of ``cls`` (seeded sample; never a held-out one) as one
    support set: their levels {name: 1×N×C×h×w} and masks 1×N×H×W."""
    from lerenet.data.episodes import load_pair
    from lerenet.data.holdout import read_held_out
    from lerenet.data.transforms import build_transform
    from lerenet.evaluation.scoring import backbone_norm

    held_out = read_held_out(split_dir)
    train = sorted(p.image for p in pairs if p.cls == cls and p.image not in held_out)
    chosen = random.Random(f"{cls}:{params.split.seed}").sample(train, min(count, len(train)))
    mean, std = backbone_norm(model)
    transform = build_transform(params.data.image_size, False)
    loaded = [load_pair(Path(params.data.root), rel, transform, mean, std) for rel in chosen]
    images = torch.stack([img for img, _ in loaded])
    with torch.inference_mode():
        levels = model.image_levels(images)
    return {k: v.unsqueeze(0) for k, v in levels.items()}, torch.stack([m for _, m in loaded])[None]


def probe_fold(params, work: Path, fold: int, seed: int, count: int, pairs) -> dict:
    """Per shot count and variant: per-episode stats and empty flags of the seen-class
    held-out episodes (the format of bench/empty_probe.py)."""
    from lerenet.evaluation.metrics import episode_stats
    from lerenet.evaluation.scoring import episode_dataset
    from lerenet.model.build import build_model
    from lerenet.training.level_memo import LevelMemo, memo_logits

    model, _ = build_model(params.model)
    model.eval()
    memo = LevelMemo(MEMO_BYTES)
    split_dir = work / f"splits_s{seed}"
    params = params.model_copy(
        update={"split": params.split.model_copy(update={"out_dir": str(split_dir)})}
    )
    supports: dict[str, tuple] = {}
    keys = ("query_img", "support_imgs", "support_masks", "query_mask")
    out: dict = {}
    for shots in (1, 5):
        ds = episode_dataset(params, model, "seen_test", shots, fold)
        rows: dict[str, list] = {}
        empty: dict[str, list] = {}
        with torch.inference_mode():
            for i, ep in enumerate(ds.episodes):
                item = ds[i]
                batch = {k: item[k][None] for k in keys}
                start = memo_logits(model, memo, batch, [[ep.query, *ep.supports]]).float()
                if ep.cls not in supports:
                    supports[ep.cls] = class_support(model, params, split_dir, ep.cls, count, pairs)
                query_levels = memo.levels(model, [ep.query], batch["query_img"])
                size = tuple(batch["query_img"].shape[-2:])
                # the model itself with the class's images as supports: on a class it holds no
                # memory for, its output is the start, here with K = ``count``
                cls = model.forward_levels(query_levels, *supports[ep.cls], size).float()
                for name, logits in (("none", start), ("class", cls), ("sum", start + cls)):
                    pred = logits.argmax(1)
                    rows.setdefault(name, []).append(episode_stats(pred, batch["query_mask"]))
                    empty.setdefault(name, []).extend((pred.flatten(1).sum(1) == 0).tolist())
        out[f"{shots}shot"] = {
            "classes": [ep.cls for ep in ds.episodes],
            "stats": {name: np.concatenate(v).tolist() for name, v in rows.items()},
            "empty": empty,
        }
    return out


def main() -> None:
    parser = probe_parser(__doc__)
    parser.add_argument("--images", type=int, default=24, help="training images per class LDA")
    args = parser.parse_args()
    results = run_design_probe(
        args,
        "class_lda_probe",
        lambda p, f, work, seed, pairs: probe_fold(p, work, f, seed, args.images, pairs),
    )
    print("\n".join(summary(results)))


if __name__ == "__main__":
    main()
