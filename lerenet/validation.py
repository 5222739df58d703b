"""A training's validation round: the fold's fixed validation episodes, scored and logged.

Checkpoints are chosen on these rounds (never on test classes); ``train.train`` runs one every
``train.val_every`` steps, and one at step 0 when the model starts as a training-free residual.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lerenet.config import Params
from lerenet.evaluate import episode_dataset, predict_episodes
from lerenet.metrics import score
from lerenet.plots import overlay_grid, overlay_row
from lerenet.stage_memo import StageMemo
from lerenet.tracking.runs import Run


def validate_round(
    model: nn.Module,
    params: Params,
    device: torch.device,
    fold: int,
    run: Run | None,
    step: int,
    out_dir: Path,
    memo: StageMemo | None,
) -> float | None:
    """Validation mIoU of ``model`` on the fold's fixed validation episodes (None without a
    validation file or classes); logs it with overlays of the first episodes to ``run``.
    ``memo``: backbone stages kept across rounds (``stage_memo``), None for a fresh one."""
    try:
        dataset = episode_dataset(
            params, model, "val", params.model.shots, fold, limit=params.train.val_episodes
        )
    except FileNotFoundError:
        return None
    if not dataset.class_index:
        return None
    preds = predict_episodes(model, dataset, device, batch_size=params.train.batch_size, memo=memo)
    scores = score(preds.stats, sorted(dataset.class_index), preds.classes, bootstrap=10)
    if run is not None:
        run.metrics({"val/miou": scores.miou.value, "val/fbiou": scores.fbiou.value}, step=step)
        rows = [
            overlay_row(dataset[i], preds.preds[i], dataset.mean, dataset.std)
            for i in range(min(4, len(preds.preds)))
        ]
        if rows:
            png = overlay_grid(
                rows, out_dir / "overlays" / f"val_step{step:06d}.png", f"validation, step {step}"
            )
            run.artifact(png, "val_overlays")
    return scores.miou.value
