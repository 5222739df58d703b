"""One training run's objects and the named steps of its loop (``loop.train`` drives them).

``TrainingSession`` builds the model, optimiser, schedule, scaler, weight average, sampler and
loss in a fixed order (the RNG streams depend on it), restores a resumable state, runs a
validation round (selection on the validation classes, best.pt), one optimisation step, saves
``last.pt`` and finishes the run (best.pt, history, curve, the training's result).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lerenet.config.schema import Params
from lerenet.data.split_result import Split
from lerenet.evaluation.inference import autocast_dtype
from lerenet.evaluation.plots import training_curve
from lerenet.tracking.checkpoints import CheckpointUploader
from lerenet.tracking.runs import TrackingLost, tracking_lost
from lerenet.training.batches import (
    check_feature_cache,
    episode_sampler,
    frozen_backbone,
    step_logits,
)
from lerenet.training.checkpoint import (
    atomic_save,
    load_training_state,
    rng_state,
    save_model_file,
    seed_everything,
    set_rng_state,
)
from lerenet.training.level_memo import LevelMemo
from lerenet.training.losses import SegmentationLoss, StartAnchor
from lerenet.training.optim import (
    freeze_agnostic_classifier,
    param_groups,
    poly_factor,
    weight_average,
)
from lerenet.training.throughput import LoopClock, Throughput, eta_text
from lerenet.training.validation_round import calibrate_memory, selection_score, validate_round

LAST, BEST, START = "last.pt", "best.pt", "start.pt"

log = logging.getLogger(__name__)


def select_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


@dataclass
class TrainResult:
    out_dir: Path
    best_path: Path
    last_path: Path
    steps_done: int
    best_val_miou: float | None
    best_step: int
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False
    weights_sha256: str = ""
    throughput: Throughput | None = None  # the loop's time: data wait, step, the rest


@dataclass
class _Selection:
    """What model selection has seen so far: every validation round, the best selection
    score and its step, and the rounds since it last improved (``train.patience``)."""

    best: float | None = None
    best_step: int = 0
    history: list[dict] = field(default_factory=list)
    flat_rounds: int = 0


class TrainingSession:
    """One training run: its objects, built in a fixed order (the RNG streams depend on it),
    and the named steps of the loop: restore, validate, optimise, save, finish."""

    def __init__(
        self,
        params: Params,
        out_dir: Path,
        run: object,
        stop_after: int | None,
        split: Split | None = None,
    ) -> None:
        from lerenet.model.build import build_model

        tcfg = params.train
        check_feature_cache(params)
        # the split stage's result: a flow's in memory, else read from split.out_dir
        self.split = split = split or Split.read(Path(params.split.out_dir))
        folds = split.folds
        if tcfg.fold >= len(folds):
            raise ValueError(f"train.fold {tcfg.fold} does not exist ({len(folds)} folds)")
        fold = folds[tcfg.fold]
        if params.model.memory:  # the memory holds the fold's training classes; saved with it
            model_cfg = params.model.model_copy(update={"memory_classes": sorted(fold.train)})
            params = params.model_copy(update={"model": model_cfg})
        self.params, self.tcfg, self.run = params, tcfg, run
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.device = device = select_device(tcfg.device)
        seed_everything(tcfg.seed)
        model, self.weights = build_model(params.model)
        model.to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        if not tcfg.agnostic_head and hasattr(model, "ifm"):
            freeze_agnostic_classifier(model)
        self.model = model
        self.optimizer = torch.optim.SGD(
            param_groups(
                model, tcfg.lr, tcfg.head_lr_mult, tcfg.backbone_lr_mult, tcfg.tuned_lr_mult
            ),
            momentum=tcfg.momentum,
            weight_decay=tcfg.weight_decay,
        )
        self.anchor = StartAnchor(model, tcfg.anchor_weight)  # after param_groups froze some
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, poly_factor(tcfg.poly_power, tcfg.steps)
        )
        self.amp_dtype = autocast_dtype(device) if tcfg.amp else None
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = weight_average(model, tcfg.ema_decay)
        # what is validated and saved as best
        self.kept = self.ema.module if self.ema is not None else model
        self.sampler = episode_sampler(params, fold.train, out_dir, split.held_out)
        self.selection = _Selection()
        self.last_path, self.best_path = out_dir / LAST, out_dir / BEST
        self.start = 0
        self.stop_after = stop_after
        self.uploader = CheckpointUploader(run, out_dir)
        self.criterion = SegmentationLoss(tcfg.foreground_weight, tcfg.dice_weight).to(device)
        # a frozen backbone's levels of the validation images serve every round (level_memo)
        self.val_memo = LevelMemo() if frozen_backbone(params) else None
        self.started = time.perf_counter()

    @property
    def end(self) -> int:
        """The step this call stops at: the schedule's end, or ``stop_after`` steps on."""
        steps = self.tcfg.steps
        return steps if self.stop_after is None else min(steps, self.start + self.stop_after)

    def restore(self) -> None:
        """Continue from ``last.pt``: weights, optimiser, schedule, scaler, average, selection
        and every RNG state, so the resumed run is the uninterrupted one."""
        if not self.last_path.exists():
            raise FileNotFoundError(f"{self.last_path}: nothing to resume; train without --resume")
        state = load_training_state(self.last_path, self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.start = state["step"]
        self.selection = _Selection(
            state["best"], state["best_step"], state["history"], state["flat_rounds"]
        )
        set_rng_state(state["rng"])

    def save_last(self, step: int, upload: bool = True) -> None:
        """``last.pt`` at a step boundary; with the run too, uploaded while training goes on
        (a rerun elsewhere resumes from it)."""
        sel = self.selection
        atomic_save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "step": step,
                "best": sel.best,
                "best_step": sel.best_step,
                "history": sel.history,
                "flat_rounds": sel.flat_rounds,
                "rng": rng_state(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
            },
            self.last_path,
        )
        if upload:
            self.uploader.submit(
                step, self.last_path, *[p for p in (self.best_path,) if p.exists()]
            )

    def stop_lost(self, err: Exception, step: int) -> None:
        """The tracking server went away: keep the step on disk, then one sentence."""
        lost = tracking_lost(self.run, err)
        if lost is None:
            raise err
        self.save_last(step, upload=False)
        raise TrackingLost(
            f"{lost}; last.pt holds step {step}: once the server answers, "
            "`lerenet train --resume` continues from there (the run stays RUNNING until then)"
        ) from None

    def _save_model(self, path: Path, step: int, val: float | None) -> None:
        meta = {"step": step, "val_miou": val, "image_size": self.params.data.image_size}
        save_model_file(self.kept, self.params.model, path, meta)

    def val_round(self, step: int, loss: float | None) -> None:
        """Validate; keep the model as best.pt when the selection score improved."""
        params, tcfg, kept, sel = self.params, self.tcfg, self.kept, self.selection
        args = (params, self.device, tcfg.fold, self.run, step, self.out_dir, self.val_memo)
        calibrate_memory(kept, params, self.device, tcfg.fold, self.val_memo, split=self.split)
        val = validate_round(kept, *args, split=self.split)
        seen = None
        if getattr(kept, "memory", None) is not None:
            seen = validate_round(kept, *args, "seen_val", split=self.split)
        entry = {"step": step, "loss": loss, "val_miou": val, "seen_val_miou": seen}
        if getattr(kept, "memory_routing", None) == "support":
            entry["route_thresholds"] = [round(float(t), 4) for t in kept.memory.threshold]
        sel.history.append(entry)
        val = selection_score(sel.history, tcfg.novel_tolerance)
        if step == 0:  # the training-free start, scored beside the trained model
            self._save_model(self.out_dir / START, 0, val)
        if (val is not None and (sel.best is None or val > sel.best)) or (
            val is None and step == tcfg.steps
        ):
            sel.best, sel.best_step, sel.flat_rounds = val, step, 0
            self._save_model(self.best_path, step, val)
        else:
            sel.flat_rounds += 1
        # progress for drivers without a terminal (Prefect workers, CI logs): one line a round
        log.info(
            "step %d/%d: loss %s, validation mIoU %s (best %s at step %s)%s",
            step,
            tcfg.steps,
            "-" if loss is None else f"{loss:.3f}",
            "-" if val is None else f"{val:.3f}",
            "-" if sel.best is None else f"{sel.best:.3f}",
            sel.best_step,
            eta_text(time.perf_counter() - self.started, step - self.start, self.end - step),
        )

    def opening_rounds(self) -> None:
        """Before the first step: redo a round a lost server cut short, and score the start."""
        start, history, residual = self.start, self.selection.history, self.params.model.residual
        if (
            start
            and start % self.tcfg.val_every == 0
            and (not history or history[-1]["step"] < start)
        ):
            self.val_round(start, None)  # the round a lost tracking server cut short
        if start == 0 and residual != "off":
            # a residual model starts as the parameter-free baseline: that start is a
            # candidate too, so training that only degrades the validation classes keeps it
            self.val_round(0, None)
        if start == 0 and residual == "off":
            # the step-0 model of every training is scored beside the trained one (a residual
            # model's is saved by its step-0 validation round above)
            self._save_model(self.out_dir / START, 0, None)

    def optimise(self, batch: dict) -> float:
        """One SGD step on one batch of episodes; returns its loss."""
        device, amp_dtype = self.device, self.amp_dtype
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            logits = step_logits(self.model, batch, device)
            target = batch["query_mask"].to(device)
            loss = self.criterion(logits.float(), target) + self.anchor()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss.item()  # waits for the accelerator: the step's true end

    def finish(self, step: int, interrupted: bool, clock: LoopClock) -> TrainResult:
        """best.pt even when no round ran, the uploads awaited, history and curve written."""
        sel = self.selection
        if not self.best_path.exists():  # stopped before any validation round
            self._save_model(self.best_path, step, None)
            sel.best_step = step
        try:
            self.uploader.wait()  # the run holds the last checkpoint before anything reads it
        except Exception as err:
            self.stop_lost(err, step)
        throughput = clock.result()
        log.info("training loop: %s", throughput.line())
        (self.out_dir / "history.json").write_text(json.dumps(sel.history, indent=2) + "\n")
        curve = self.out_dir / "curve.png"
        training_curve(sel.history, curve, f"training, fold {self.tcfg.fold}", sel.best_step)
        return TrainResult(
            self.out_dir,
            self.best_path,
            self.last_path,
            step,
            sel.best,
            sel.best_step,
            sel.history,
            interrupted,
            self.weights.sha256 if self.weights else "",
            throughput,
        )
