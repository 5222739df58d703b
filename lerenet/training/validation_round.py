"""A training's validation round: the fold's fixed validation episodes, scored and logged.

Checkpoints are chosen on these rounds (never on test classes); ``train.train`` runs one every
``train.val_every`` steps, and one at step 0 when the model starts as a training-free residual.
A model with a class memory is validated twice: on the validation classes (unseen, as new
classes are) and on held-out images of its training classes (``seen_val``), after its routing
thresholds are calibrated on the same validation data (``calibrate_memory``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lerenet.config.schema import Params
from lerenet.data.episodes import EpisodeDataset
from lerenet.data.split_result import Split
from lerenet.evaluation.inference import inference_context
from lerenet.evaluation.metrics import score
from lerenet.evaluation.plots import overlay_grid, overlay_row
from lerenet.evaluation.scoring import episode_dataset, predict_episodes
from lerenet.tracking.runs import Run
from lerenet.training.level_memo import LevelMemo


def validate_round(
    model: nn.Module,
    params: Params,
    device: torch.device,
    fold: int,
    run: Run | None,
    step: int,
    out_dir: Path,
    memo: LevelMemo | None,
    part: str = "val",
    *,
    split: Split | None = None,
) -> float | None:
    """Validation mIoU of ``model`` on the fold's fixed ``part`` episodes (``val``: validation
    classes; ``seen_val``: held-out images of training classes); None without a file or
    classes. Logs it with overlays of the first episodes to ``run``.
    ``memo``: backbone levels kept across rounds (``level_memo``), None for a fresh one."""
    dataset = validation_episodes(model, params, fold, part, split)
    if dataset is None:
        return None
    preds = predict_episodes(model, dataset, device, batch_size=params.train.batch_size, memo=memo)
    scores = score(preds.stats, sorted(dataset.class_index), preds.classes, bootstrap=10)
    if run is not None:
        prefix = "val" if part == "val" else part.replace("_", "/")
        run.metrics(
            {f"{prefix}/miou": scores.miou.value, f"{prefix}/fbiou": scores.fbiou.value}, step=step
        )
        rows = [
            overlay_row(dataset[i], preds.preds[i], dataset.mean, dataset.std)
            for i in range(min(4, len(preds.preds)))
        ]
        if rows:
            png = overlay_grid(
                rows,
                out_dir / "overlays" / f"{part}_step{step:06d}.png",
                f"validation ({part}), step {step}",
            )
            run.artifact(png, "val_overlays")
    return scores.miou.value


def validation_episodes(
    model: nn.Module, params: Params, fold: int, part: str, split: Split | None = None
) -> EpisodeDataset | None:
    """The ``part`` validation episodes at the training's shot count (capped by
    ``train.val_episodes``), or None without a file or classes."""
    try:
        dataset = episode_dataset(
            params, model, part, params.model.shots, fold, params.train.val_episodes, split
        )
    except FileNotFoundError:
        return None
    return dataset if dataset.class_index else None


def support_descriptors(
    model: nn.Module, dataset: EpisodeDataset, device: torch.device, memo: LevelMemo | None
) -> torch.Tensor:
    """The routing descriptor (``model.memory``) of every episode's supports: N×D."""
    memo = memo if memo is not None else LevelMemo()
    out = []
    was_training = model.training
    model.eval()
    with inference_context(device, amp=False):
        for index, episode in enumerate(dataset.episodes):
            item = dataset[index]
            images = item["support_imgs"].to(device)
            levels = memo.levels(model, list(episode.supports), images)
            levels = {name: value.unsqueeze(0) for name, value in levels.items()}
            out.append(model.descriptor(levels, item["support_masks"][None].to(device)))
    model.train(was_training)
    return torch.cat(out).float().cpu()


def calibrate_memory(
    model: nn.Module,
    params: Params,
    device: torch.device,
    fold: int,
    memo: LevelMemo | None,
    *,
    split: Split | None = None,
) -> None:
    """Set a class memory's routing thresholds (``ClassMemory.calibrate``) from the fold's
    validation episodes: seen-class ones routed to their class, validation-class ones to none."""
    memory = getattr(model, "memory", None)
    if memory is None or getattr(model, "memory_routing", "name") != "support":
        return
    own: dict[int, torch.Tensor] = {}
    seen = validation_episodes(model, params, fold, "seen_val", split)
    if seen is not None:
        cos = memory.similarity(support_descriptors(model, seen, device, memo).to(device)).cpu()
        for c, name in enumerate(memory.classes):
            rows = [i for i, ep in enumerate(seen.episodes) if ep.cls == name]
            own[c] = cos[rows, c] if rows else torch.zeros(0)
    unseen = validation_episodes(model, params, fold, "val", split)
    unseen_cos = None
    if unseen is not None:
        unseen_cos = memory.similarity(
            support_descriptors(model, unseen, device, memo).to(device)
        ).cpu()
    memory.calibrate(own, unseen_cos)


def selection_score(history: list[dict], tolerance: float) -> float | None:
    """What checkpoint selection maximises for the latest round of ``history``.

    Without seen-class validation: the validation-class mIoU (the authors'). With it (a class
    memory): the seen-class validation mIoU, for a round whose validation-class mIoU is not
    below the first round's (the training-free start) by more than ``tolerance`` — a retrain
    may fit its own classes, not at the cost of new ones; -1 for a round that is.
    """
    latest, first = history[-1], history[0]
    seen, val = latest.get("seen_val_miou"), latest.get("val_miou")
    if seen is None:
        return val
    start = first.get("val_miou")
    if val is not None and start is not None and val < start - tolerance:
        return -1.0
    return seen
