"""Training: episodic SGD on the training classes, model selection on validation classes only.

Paper settings by default (LERENET.md "Training"): SGD momentum 0.9, weight decay 1e-4, base lr
with poly decay (power 0.9), the head at ``head_lr_mult``× and the backbone at
``backbone_lr_mult``× the base lr, batches of episodes, cross-entropy ignoring 255.

Reproducibility: every training step's episodes and augmentations are seeded by (seed, step),
and checkpoints carry the optimizer, scheduler, step and all RNG states, so a run interrupted
and resumed on CPU ends with the same weights as one that was not (tested). The test (novel)
classes are never read here; the best checkpoint is chosen by validation-class mIoU.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from lerenet.config import Params
from lerenet.data.splits import read_folds
from lerenet.evaluate import backbone_norm
from lerenet.inference import autocast_dtype
from lerenet.plots import training_curve
from lerenet.tracking.checkpoints import CheckpointUploader
from lerenet.tracking.runs import TrackingLost, tracking_lost
from lerenet.training.batches import (
    check_feature_cache,
    episode_sampler,
    frozen_backbone,
    step_logits,
    training_batches,
)
from lerenet.training.checkpoint import (
    atomic_save,
    load_training_state,
    rng_state,
    save_model_file,
    seed_everything,
    set_rng_state,
)
from lerenet.training.losses import SegmentationLoss, StartAnchor
from lerenet.training.optim import (
    freeze_agnostic_classifier,
    param_groups,
    poly_factor,
    weight_average,
)
from lerenet.training.stage_memo import StageMemo
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


def save_baseline(params: Params, out_dir: Path) -> Path:
    """Write the parameter-free prototype baseline (``model.arch: prototype`` on the same
    backbone and stages) as a model file, for evaluation next to the trained model.

    Nothing is trained: the baseline is the pretrained backbone's features matched to the
    support prototypes, the reference a trained head has to beat.
    """
    from lerenet.model import build_baseline

    model = build_baseline(params.model)
    path = Path(out_dir) / BEST
    meta = {"step": 0, "val_miou": None, "image_size": params.data.image_size}
    save_model_file(model, params.model.model_copy(update={"arch": "prototype"}), path, meta)
    return path


@contextmanager
def deferred_interrupt(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C sets ``stop``: the step in flight finishes and training saves at that step
    boundary, so ``--resume`` is bit-identical (an interrupt in the middle of a step would
    save BatchNorm statistics and RNG states of a half-done step). A second Ctrl-C raises."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log.warning("interrupted: finishing this step, then saving (Ctrl-C again to abort)")

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def train(
    params: Params,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    run=None,
    show_progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train per ``params``; write last.pt (resumable), best.pt (model file), history.json.

    ``stop_after`` ends this call after that many steps with a resumable checkpoint (for
    preemptible workers and for the resume test); ``resume`` continues from ``last.pt``.
    """
    from lerenet.model import build_model

    tcfg = params.train
    check_feature_cache(params)
    folds = read_folds(Path(params.split.out_dir))
    if tcfg.fold >= len(folds):
        raise ValueError(f"train.fold {tcfg.fold} does not exist ({len(folds)} folds)")
    fold = folds[tcfg.fold]
    if params.model.memory:  # the memory holds the fold's training classes; saved with it
        model_cfg = params.model.model_copy(update={"memory_classes": sorted(fold.train)})
        params = params.model_copy(update={"model": model_cfg})
    out_dir = Path(out_dir or tcfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = select_device(tcfg.device)
    seed_everything(tcfg.seed)
    model, weights = build_model(params.model)
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if not tcfg.agnostic_head and hasattr(model, "ifm"):
        freeze_agnostic_classifier(model)
    optimizer = torch.optim.SGD(
        param_groups(model, tcfg.lr, tcfg.head_lr_mult, tcfg.backbone_lr_mult),
        momentum=tcfg.momentum,
        weight_decay=tcfg.weight_decay,
    )
    anchor = StartAnchor(model, tcfg.anchor_weight)  # after param_groups froze what stays
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, poly_factor(tcfg.poly_power, tcfg.steps)
    )
    amp_dtype = autocast_dtype(device) if tcfg.amp else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ema = weight_average(model, tcfg.ema_decay)
    kept = ema.module if ema is not None else model  # what is validated and saved as best

    sampler = episode_sampler(params, fold.train, out_dir)
    start, best, best_step, history, flat_rounds = 0, None, 0, [], 0
    last_path, best_path = out_dir / LAST, out_dir / BEST
    if resume:
        if not last_path.exists():
            raise FileNotFoundError(f"{last_path}: nothing to resume; train without --resume")
        state = load_training_state(last_path, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start, best, best_step = state["step"], state["best"], state["best_step"]
        history, flat_rounds = state["history"], state["flat_rounds"]
        set_rng_state(state["rng"])

    uploader = CheckpointUploader(run, out_dir)

    def save_last(step: int, upload: bool = True) -> None:
        atomic_save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "step": step,
                "best": best,
                "best_step": best_step,
                "history": history,
                "flat_rounds": flat_rounds,
                "rng": rng_state(),
                "ema": ema.state_dict() if ema is not None else None,
            },
            last_path,
        )
        # with the run too, uploaded while training goes on: a rerun elsewhere resumes from it
        if upload:
            uploader.submit(step, last_path, *[p for p in (best_path,) if p.exists()])

    def stop_lost(err: Exception, step: int) -> None:
        """The tracking server went away: keep the step on disk, then one sentence."""
        lost = tracking_lost(run, err)
        if lost is None:
            raise err
        save_last(step, upload=False)
        raise TrackingLost(
            f"{lost}; last.pt holds step {step}: once the server answers, "
            "`lerenet train --resume` continues from there (the run stays RUNNING until then)"
        ) from None

    mean, std = backbone_norm(model)
    end = tcfg.steps if stop_after is None else min(tcfg.steps, start + stop_after)
    loader = training_batches(params, model, sampler, start, end, device, show_progress)
    criterion = SegmentationLoss(tcfg.foreground_weight, tcfg.dice_weight).to(device)
    log_every = max(1, tcfg.steps // 200)
    step, interrupted, started = start, False, time.perf_counter()
    progress = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn(
            "{task.completed}/{task.total} loss {task.fields[loss]:.3f} lr {task.fields[lr]:.2e} "
            "{task.fields[eps]:.1f} eps/s"
        ),
        TimeRemainingColumn(),
        disable=not show_progress,
    )

    # a frozen backbone's stages of the validation images serve every round (``stage_memo``)
    val_memo = StageMemo() if frozen_backbone(params) else None

    def val_round(step: int, loss: float | None) -> None:
        """Validate; keep the model as best.pt when the selection score improved."""
        nonlocal best, best_step, flat_rounds
        calibrate_memory(kept, params, device, tcfg.fold, val_memo)
        val = validate_round(kept, params, device, tcfg.fold, run, step, out_dir, val_memo)
        seen = None
        if getattr(kept, "memory", None) is not None:
            seen = validate_round(
                kept, params, device, tcfg.fold, run, step, out_dir, val_memo, "seen_val"
            )
        entry = {"step": step, "loss": loss, "val_miou": val, "seen_val_miou": seen}
        if getattr(kept, "memory_routing", None) == "support":
            entry["route_thresholds"] = [round(float(t), 4) for t in kept.memory.threshold]
        history.append(entry)
        val = selection_score(history, tcfg.novel_tolerance)
        if step == 0:  # the training-free start, scored beside the trained model
            meta = {"step": 0, "val_miou": val, "image_size": params.data.image_size}
            save_model_file(kept, params.model, out_dir / START, meta)
        if (val is not None and (best is None or val > best)) or (
            val is None and step == tcfg.steps
        ):
            best, best_step, flat_rounds = val, step, 0
            meta = {"step": step, "val_miou": val, "image_size": params.data.image_size}
            save_model_file(kept, params.model, best_path, meta)
        else:
            flat_rounds += 1
        # progress for drivers without a terminal (Prefect workers, CI logs): one line a round
        log.info(
            "step %d/%d: loss %s, validation mIoU %s (best %s at step %s)%s",
            step,
            tcfg.steps,
            "-" if loss is None else f"{loss:.3f}",
            "-" if val is None else f"{val:.3f}",
            "-" if best is None else f"{best:.3f}",
            best_step,
            eta_text(time.perf_counter() - started, step - start, end - step),
        )

    model.train()
    if start and start % tcfg.val_every == 0 and (not history or history[-1]["step"] < start):
        val_round(start, None)  # the round a lost tracking server cut short (``stop_lost``)
    if start == 0 and params.model.residual != "off":
        # a residual model starts as the parameter-free baseline: that start is a candidate
        # too, so training that only degrades the validation classes keeps it
        val_round(0, None)
    if start == 0 and params.model.residual == "off":
        # the step-0 model of every training is scored beside the trained one (a residual
        # model's is saved by its step-0 validation round above)
        meta = {"step": 0, "val_miou": None, "image_size": params.data.image_size}
        save_model_file(kept, params.model, out_dir / START, meta)
    stop = threading.Event()
    clock = LoopClock(tcfg.batch_size)
    try:
        with deferred_interrupt(stop), progress:
            bar = progress.add_task(
                "train",
                total=tcfg.steps,
                completed=start,
                loss=math.nan,
                lr=scheduler.get_last_lr()[0],
                eps=0.0,
            )
            for batch in clock.batches(loader):
                with clock.step():
                    with torch.autocast(
                        device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
                    ):
                        logits = step_logits(model, batch, device)
                        loss = criterion(logits.float(), batch["query_mask"].to(device)) + anchor()
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    if ema is not None:
                        ema.update_parameters(model)
                    loss_value = loss.item()  # waits for the accelerator: the step's true end
                step += 1
                lr = optimizer.param_groups[0]["lr"]
                eps = (step - start) * tcfg.batch_size / (time.perf_counter() - started)
                progress.update(bar, completed=step, loss=loss_value, lr=lr, eps=eps)
                if run is not None and (step % log_every == 0 or step == tcfg.steps):
                    run.metrics(  # not waiting for the tracking server: 33 ms a call
                        {"train/loss": loss_value, "train/lr": lr, "train/episodes_per_s": eps},
                        step=step,
                        wait=False,
                    )
                if step % tcfg.val_every == 0 or step == tcfg.steps:
                    val_round(step, loss_value)
                saved = step % tcfg.checkpoint_every == 0 or step == end
                if saved:
                    save_last(step)
                if stop.is_set():  # Ctrl-C: this step is complete; save here and stop
                    interrupted = True
                    if not saved:
                        save_last(step)
                    break
                if tcfg.patience and flat_rounds >= tcfg.patience:
                    break
    except KeyboardInterrupt:
        # a second Ctrl-C (or one outside the main thread): the step in flight is discarded,
        # last.pt stays at the last step boundary it recorded
        interrupted = True
    except Exception as err:
        stop_lost(err, step)
    if not best_path.exists():  # stopped before any validation round
        save_model_file(
            kept,
            params.model,
            best_path,
            {"step": step, "val_miou": None, "image_size": params.data.image_size},
        )
        best_step = step
    try:
        uploader.wait()  # the run holds the last checkpoint before anything reads it
    except Exception as err:
        stop_lost(err, step)
    throughput = clock.result()
    log.info("training loop: %s", throughput.line())
    (out_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    training_curve(history, out_dir / "curve.png", f"training, fold {tcfg.fold}", best_step)
    return TrainResult(
        out_dir,
        best_path,
        last_path,
        step,
        best,
        best_step,
        history,
        interrupted,
        weights.sha256 if weights else "",
        throughput,
    )
