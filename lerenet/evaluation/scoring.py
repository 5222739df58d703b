"""Evaluation on fixed episode files: per-class IoU, mIoU, FB-IoU with bootstrap intervals.

Used for the validation rounds during training (validation classes only) and for the final
test evaluation (novel classes), on the episode files written by the split stage. Predictions
and labels are compared at the configured input size (``data.image_size``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from lerenet.config.schema import Params
from lerenet.data.episodes import EpisodeDataset
from lerenet.data.split_result import Split
from lerenet.data.splits import Episode
from lerenet.evaluation.inference import inference_context
from lerenet.evaluation.metrics import SegmentationScores, episode_stats, score
from lerenet.evaluation.plots import class_bar_chart, overlay_grid, overlay_row
from lerenet.model.memory import named_route
from lerenet.results import ModelScores, ShotEvidence, ShotScores, shot_key
from lerenet.training.level_memo import LevelMemo, memo_logits

log = logging.getLogger(__name__)


def backbone_norm(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    backbone = model.backbone
    return tuple(backbone.mean), tuple(backbone.std)


def balanced_head(episodes: list[Episode], limit: int) -> list[Episode]:
    """The first ``limit`` episodes taken class by class in turn, in file order.

    Episode files list each class's episodes together, so a plain ``[:limit]`` of a
    validation file with several classes would validate on the first class or two only and
    select checkpoints on them. Round-robin keeps every class (one class: the plain head).
    """
    by_class: dict[str, list[Episode]] = {}
    for episode in episodes:
        by_class.setdefault(episode.cls, []).append(episode)
    queues = list(by_class.values())
    out: list[Episode] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out[:limit]


def episode_dataset(
    params: Params,
    model: nn.Module,
    part: str,
    shots: int,
    fold: int,
    limit: int | None = None,
    split: Split | None = None,
) -> EpisodeDataset:
    """The fixed ``part`` episodes of ``fold`` for ``shots``-shot evaluation: ``val`` and
    ``test`` (novel classes), ``seen_val`` and ``seen_test`` (held-out images of the training
    classes, ``data/holdout.py``). ``split``: the split stage's result (a flow's, in memory);
    None reads it from ``split.out_dir``."""
    split = split or Split.read(Path(params.split.out_dir))
    episodes = split.episodes_of(fold, part, shots)
    episodes = balanced_head(episodes, limit) if limit else episodes
    folds = split.folds
    classes = {"val": folds[fold].val, "test": folds[fold].test}.get(part, folds[fold].train)
    if part.startswith("seen_"):  # only the training classes that have held-out images
        classes = sorted({ep.cls for ep in episodes})
    mean, std = backbone_norm(model)
    return EpisodeDataset(
        Path(params.data.root),
        episodes,
        classes,
        image_size=params.data.image_size,
        mean=mean,
        std=std,
    )


def has_episodes(params: Params, part: str, split: Split | None = None) -> bool:
    """Whether the split has ``part`` episodes for the fold at every evaluated shot count."""
    split = split or Split.read(Path(params.split.out_dir))
    return split.has_episodes(params.train.fold, part, list(params.eval.shots))


@dataclass
class Predictions:
    stats: np.ndarray  # episodes × [I_fg, U_fg, I_bg, U_bg]
    classes: list[str]  # class of each episode
    preds: list[np.ndarray]  # the first few predicted masks, for overlays
    areas: np.ndarray  # predicted defect pixels per episode (0 = nothing found)


def predict_episodes(
    model: nn.Module,
    dataset: EpisodeDataset,
    device: torch.device,
    *,
    batch_size: int = 4,
    keep: int = 8,
    amp: bool = True,
    num_workers: int = 0,
    memo: LevelMemo | None = None,
    reuse_levels: bool = True,
) -> Predictions:
    """Run the model over every episode of ``dataset`` (eval mode, inference mode).

    Each image's backbone levels are computed once (``level_memo``): in a fresh memo unless
    ``memo`` is given, which callers reuse while the backbone cannot change. A model without
    ``image_levels``, or ``reuse_levels=False`` (what benchmarks compare with), runs the whole
    model on every episode.
    """
    was_training = model.training
    model.eval()
    if not (reuse_levels and hasattr(model, "image_levels")):
        memo = None
    elif memo is None:
        memo = LevelMemo()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    stats, kept, areas = [], [], []
    with inference_context(device, amp):
        for first, batch in zip(range(0, len(dataset), batch_size), loader, strict=True):
            inputs = {
                name: batch[name].to(device)
                for name in ("query_img", "support_imgs", "support_masks")
            }
            episodes = dataset.episodes[first : first + batch_size]
            route = named_route(model, [ep.cls for ep in episodes])
            route = None if route is None else route.to(device)
            extra = () if route is None else (route,)
            if memo is None:
                logits = model(
                    inputs["query_img"], inputs["support_imgs"], inputs["support_masks"], *extra
                )
            else:
                paths = [[ep.query, *ep.supports] for ep in episodes]
                logits = memo_logits(model, memo, inputs, paths, route)
            pred = logits.argmax(1).cpu()
            stats.append(episode_stats(pred, batch["query_mask"]))
            areas.append((pred == 1).sum(dim=(1, 2)).numpy())
            kept += [p.numpy() for p in pred[: max(0, keep - len(kept))]]
    model.train(was_training)
    return Predictions(
        np.concatenate(stats) if stats else np.zeros((0, 4), np.int64),
        [ep.cls for ep in dataset.episodes],
        kept,
        np.concatenate(areas) if areas else np.zeros(0, np.int64),
    )


def predict_and_score(
    model: nn.Module,
    dataset: EpisodeDataset,
    params: Params,
    classes: list[str],
    device: torch.device | None = None,
    memo: LevelMemo | None = None,
) -> tuple[Predictions, SegmentationScores]:
    """Predict every episode and score it over ``classes`` with the eval section's bootstrap."""
    device = device or next(model.parameters()).device
    preds = predict_episodes(model, dataset, device, batch_size=4, memo=memo)
    scores = score(
        preds.stats,
        classes,
        preds.classes,
        bootstrap=params.eval.bootstrap,
        seed=params.eval.seed,
    )
    return preds, scores


def evaluate_model(
    model: nn.Module,
    params: Params,
    *,
    out_dir: Path,
    fold: int | None = None,
    shots: list[int] | None = None,
    part: str = "test",
    device: torch.device | None = None,
    run=None,
    label: str = "model",
    prefix: str = "",
    split: Split | None = None,
) -> ModelScores:
    """Evaluate on the fixed ``part`` episodes; write scores.json, charts, overlays; log them
    (metric names ``{prefix}{part}/{k}shot/…``: ``start/`` for a training's start).
    ``split``: the split's result in memory (a flow's); None reads it from split.out_dir."""
    device = device or next(model.parameters()).device
    fold = params.train.fold if fold is None else fold
    split = split or Split.read(Path(params.split.out_dir))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shot_scores: dict[str, ShotScores] = {}
    evidence: dict[str, ShotEvidence] = {}
    memo = LevelMemo()  # one model, unchanged: its levels of an image serve every shot count
    for k in shots or params.eval.shots:
        dataset = episode_dataset(params, model, part, k, fold, split=split)
        started = time.perf_counter()
        log.info("%s: %d-shot %s episodes (%d)…", label, k, part, len(dataset))
        classes = sorted(dataset.class_index)
        preds, scores = predict_and_score(model, dataset, params, classes, device, memo)
        shot_scores[shot_key(k)] = ShotScores.of(scores)
        log.info(
            "%s: %d-shot mIoU %.3f [%.3f, %.3f] (%.0f s)",
            label,
            k,
            scores.miou.value,
            scores.miou.low,
            scores.miou.high,
            time.perf_counter() - started,
        )
        evidence[shot_key(k)] = ShotEvidence(preds.stats, preds.classes)  # for the paired gate
        chart = class_bar_chart(
            {c: (i.value, i.low, i.high) for c, i in scores.per_class.items()},
            out_dir / f"class_iou_{k}shot.png",
            f"{label}: {part} {k}-shot, fold {fold}",
        )
        mean, std = dataset.mean, dataset.std
        rows = [
            overlay_row(dataset[i], preds.preds[i], mean, std)
            for i in range(min(6, len(preds.preds)))
        ]
        grid = overlay_grid(rows, out_dir / f"overlays_{k}shot.png") if rows else None
        if run is not None:
            run.metrics(
                {
                    f"{prefix}{part}/{k}shot/miou": scores.miou.value,
                    f"{prefix}{part}/{k}shot/miou_low": scores.miou.low,
                    f"{prefix}{part}/{k}shot/miou_high": scores.miou.high,
                    f"{prefix}{part}/{k}shot/fbiou": scores.fbiou.value,
                    **{
                        f"{prefix}{part}/{k}shot/iou/{c}": i.value
                        for c, i in scores.per_class.items()
                    },
                }
            )
            run.artifact(chart, f"eval/{prefix}{part}")
            if grid is not None:
                run.artifact(grid, f"eval/{prefix}{part}")
    result = ModelScores(label, fold, part, shot_scores, evidence)
    path = result.write(out_dir)
    if run is not None:
        run.artifact(path, f"eval/{prefix}{part}")
    return result


def retrain_scores(
    params: Params,
    model: nn.Module,
    start_source: str | None,
    out_dir: Path,
    run=None,
    split: Split | None = None,
) -> tuple[ModelScores | None, dict[str, ModelScores]]:
    """What the retrain bought: the training's own start (step 0, ``start_source`` — its file
    or its run's copy — when it saved one) on the novel-class test episodes, and the model and
    that start on the held-out images of the training classes (``seen_test``; none when the
    split held nothing out)."""
    from lerenet.tracking.loading import available, load_torch_model

    split = split or Split.read(Path(params.split.out_dir))
    start_model = None
    if available(start_source):
        start_model = load_torch_model(start_source)[0]
    start = None
    if start_model is not None:
        start = evaluate_model(
            start_model,
            params,
            out_dir=out_dir / "start",
            run=run,
            label="start",
            prefix="start/",
            split=split,
        )
    seen: dict[str, ModelScores] = {}
    if has_episodes(params, "seen_test", split):
        seen["lerenet"] = evaluate_model(
            model,
            params,
            out_dir=out_dir / "seen",
            part="seen_test",
            run=run,
            label="LERENet",
            split=split,
        )
        if start_model is not None:
            seen["start"] = evaluate_model(
                start_model,
                params,
                out_dir=out_dir / "seen_start",
                part="seen_test",
                run=run,
                label="start",
                prefix="start/",
                split=split,
            )
    return start, seen
