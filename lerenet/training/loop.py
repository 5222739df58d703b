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

import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from lerenet.config.schema import Params
from lerenet.data.split_result import Split
from lerenet.training.batches import training_batches
from lerenet.training.checkpoint import save_model_file
from lerenet.training.session import BEST, TrainingSession, TrainResult
from lerenet.training.throughput import LoopClock

log = logging.getLogger(__name__)


def save_baseline(params: Params, out_dir: Path) -> Path:
    """Write the parameter-free prototype baseline (``model.arch: prototype`` on the same
    backbone and levels) as a model file, for evaluation next to the trained model.

    Nothing is trained: the baseline is the pretrained backbone's features matched to the
    support prototypes, the reference a trained head has to beat.
    """
    from lerenet.model.build import build_baseline

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


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn(
            "{task.completed}/{task.total} loss {task.fields[loss]:.3f} lr {task.fields[lr]:.2e} "
            "{task.fields[eps]:.1f} eps/s"
        ),
        TimeRemainingColumn(),
        disable=not show,
    )


def train(
    params: Params,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    run=None,
    show_progress: bool = True,
    stop_after: int | None = None,
    split: Split | None = None,
) -> TrainResult:
    """Train per ``params``; write last.pt (resumable), best.pt (model file), history.json.

    ``stop_after`` ends this call after that many steps with a resumable checkpoint (for
    preemptible workers and for the resume test); ``resume`` continues from ``last.pt``.
    ``split``: the split stage's result (a flow passes it in memory); None reads split.out_dir.
    """
    t = TrainingSession(params, Path(out_dir or params.train.out_dir), run, stop_after, split)
    tcfg = t.tcfg
    if resume:
        t.restore()
    start, end = t.start, t.end
    loader = training_batches(t.params, t.model, t.sampler, start, end, t.device, show_progress)
    log_every = max(1, tcfg.steps // 200)
    step, interrupted, progress = start, False, _progress(show_progress)
    t.started = time.perf_counter()
    t.model.train()
    t.opening_rounds()
    stop, clock = threading.Event(), LoopClock(tcfg.batch_size)
    try:
        with deferred_interrupt(stop), progress:
            lr = t.scheduler.get_last_lr()[0]
            bar = progress.add_task(
                "train", total=tcfg.steps, completed=start, loss=math.nan, lr=lr, eps=0.0
            )
            for batch in clock.batches(loader):
                with clock.step():
                    loss = t.optimise(batch)
                step += 1
                lr = t.optimizer.param_groups[0]["lr"]
                eps = (step - start) * tcfg.batch_size / (time.perf_counter() - t.started)
                progress.update(bar, completed=step, loss=loss, lr=lr, eps=eps)
                if run is not None and (step % log_every == 0 or step == tcfg.steps):
                    run.metrics(  # not waiting for the tracking server: 33 ms a call
                        {"train/loss": loss, "train/lr": lr, "train/episodes_per_s": eps},
                        step=step,
                        wait=False,
                    )
                if step % tcfg.val_every == 0 or step == tcfg.steps:
                    t.val_round(step, loss)
                saved = step % tcfg.checkpoint_every == 0 or step == end
                if saved:
                    t.save_last(step)
                if stop.is_set():  # Ctrl-C: this step is complete; save here and stop
                    interrupted = True
                    if not saved:
                        t.save_last(step)
                    break
                if tcfg.patience and t.selection.flat_rounds >= tcfg.patience:
                    break
    except KeyboardInterrupt:
        # a second Ctrl-C (or one outside the main thread): the step in flight is discarded,
        # last.pt stays at the last step boundary it recorded
        interrupted = True
    except Exception as err:
        t.stop_lost(err, step)
    return t.finish(step, interrupted, clock)
