"""Few-shot segmentation metrics: per-class IoU, mIoU, FB-IoU and bootstrap intervals.

Protocol (HSNet/PFENet, LERENET.md "Evaluation"): for each novel class, foreground
intersection and union are *summed over all its episodes* and IoU = ΣI / ΣU; mIoU is the mean
over classes. FB-IoU is the mean of the foreground and background IoU, each summed over all
episodes. Pixels labelled 255 are ignored. Confidence intervals: percentile bootstrap over
episodes, resampled within each class so every class keeps its episode count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lerenet.config.labels import IGNORE


def episode_stats(pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Per-episode [I_fg, U_fg, I_bg, U_bg] for B×H×W 0/1 predictions and targets → B×4."""
    valid = target != IGNORE
    p, t = (pred == 1) & valid, (target == 1) & valid
    pb, tb = (pred == 0) & valid, (target == 0) & valid
    stats = torch.stack(
        [(p & t).sum((1, 2)), (p | t).sum((1, 2)), (pb & tb).sum((1, 2)), (pb | tb).sum((1, 2))],
        dim=1,
    )
    return stats.cpu().numpy().astype(np.int64)


def class_ious(
    stats: np.ndarray, class_idx: np.ndarray, n_classes: int
) -> tuple[np.ndarray, float]:
    """Per-class foreground IoU (intersections and unions summed over a class's episodes, as
    PFENet and HSNet score) and the FB-IoU of all episodes, from ``episode_stats`` rows."""
    inter = np.bincount(class_idx, weights=stats[:, 0], minlength=n_classes)
    union = np.bincount(class_idx, weights=stats[:, 1], minlength=n_classes)
    per_class = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    totals = stats.sum(0)
    fb = 0.5 * (totals[0] / max(totals[1], 1) + totals[2] / max(totals[3], 1))
    return per_class, float(fb)


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high}


@dataclass(frozen=True)
class SegmentationScores:
    miou: Interval
    fbiou: Interval
    per_class: dict[str, Interval]
    episodes: int


def stratified_resamples(class_idx: np.ndarray, count: int, seed: int):
    """``count`` bootstrap resamples of episode indices, each class resampled within itself
    (so every resample keeps the per-class episode counts the mIoU averages over). The one
    resampling scheme of the scores' intervals and of the gate's paired deltas."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(class_idx == i) for i in np.unique(class_idx)]
    for _ in range(count):
        yield np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])


def score(
    stats: np.ndarray,
    classes: list[str],
    episode_classes: list[str],
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> SegmentationScores:
    """Point estimates and (1-alpha) percentile-bootstrap intervals."""
    index = {c: i for i, c in enumerate(classes)}
    class_idx = np.array([index[c] for c in episode_classes], dtype=np.int64)
    per_class, fb = class_ious(stats, class_idx, len(classes))
    miou = float(per_class.mean())

    boot_m, boot_fb, boot_pc = [], [], []
    for picks in stratified_resamples(class_idx, bootstrap, seed):
        pc, f = class_ious(stats[picks], class_idx[picks], len(classes))
        boot_m.append(pc.mean())
        boot_fb.append(f)
        boot_pc.append(pc)
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    lo_m, hi_m = np.percentile(boot_m, q)
    lo_f, hi_f = np.percentile(boot_fb, q)
    pc_lo, pc_hi = np.percentile(np.array(boot_pc), q, axis=0)
    return SegmentationScores(
        miou=Interval(miou, float(lo_m), float(hi_m)),
        fbiou=Interval(fb, float(lo_f), float(hi_f)),
        per_class={
            c: Interval(float(per_class[i]), float(pc_lo[i]), float(pc_hi[i]))
            for i, c in enumerate(classes)
        },
        episodes=len(episode_classes),
    )
