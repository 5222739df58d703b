"""Where a training loop's time goes: waiting for batches, the step itself, or the rest.

Whether a GPU worker trains at its step's own rate or waits on the input pipeline (issue #13:
end to end should reach 80 % of the step alone) is answered by every training run, not by a
separate benchmark that may not load data the way training does. ``LoopClock`` splits the
loop's wall time into waiting for the next batch, the step (forward, loss, backward, optimizer,
up to reading the loss back, which waits for an accelerator to finish), and the rest
(validation rounds, checkpoints, logging).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass


def eta_text(elapsed: float, done: int, left: int) -> str:
    """``, 2 min 10 s left`` from the pace so far (empty before the first unit of work)."""
    if done <= 0:
        return ""
    seconds = round(elapsed / done * left)
    return f", {seconds // 60} min {seconds % 60:02d} s left" if left else ", done"


def _per(amount: float, seconds: float) -> float:
    """``amount`` / ``seconds``, 0 for a loop that ran no time (an empty or resumed-at-end run)."""
    return amount / seconds if seconds > 0 else 0.0


@dataclass(frozen=True)
class Throughput:
    """Episodes and seconds of one training loop (this process's steps of a resumed run)."""

    episodes: int
    total_s: float
    data_s: float
    step_s: float

    @property
    def episodes_per_s(self) -> float:
        """End to end: every second of the loop counted, validation rounds included."""
        return _per(self.episodes, self.total_s)

    @property
    def step_episodes_per_s(self) -> float:
        """The step alone: what the loop would reach if nothing else took time."""
        return _per(self.episodes, self.step_s)

    @property
    def step_share(self) -> float:
        """End-to-end rate as a share of the step-alone rate (1.0: nothing but steps)."""
        return _per(self.step_s, self.total_s)

    @property
    def data_share(self) -> float:
        """Share of the loop spent waiting for the next batch: the input pipeline's cost."""
        return _per(self.data_s, self.total_s)

    def line(self) -> str:
        """One line for the logs of every driver (a worker's log has no progress bar)."""
        return (
            f"{self.episodes} episodes in {self.total_s:.0f} s: {self.episodes_per_s:.1f}/s end "
            f"to end, {self.step_episodes_per_s:.1f}/s the step alone ({self.step_share:.0%}); "
            f"waiting for data {self.data_share:.0%}"
        )

    def to_dict(self) -> dict[str, float]:
        derived = {
            "episodes_per_s": self.episodes_per_s,
            "step_episodes_per_s": self.step_episodes_per_s,
            "step_share": self.step_share,
            "data_share": self.data_share,
        }
        return asdict(self) | {k: round(v, 4) for k, v in derived.items()}


class LoopClock:
    """Times a training loop: ``for batch in clock.batches(loader)`` and ``with clock.step()``."""

    def __init__(
        self, episodes_per_step: int, now: Callable[[], float] = time.perf_counter
    ) -> None:
        self.episodes_per_step, self.now = episodes_per_step, now
        self.steps, self.data_s, self.step_s = 0, 0.0, 0.0
        self.started = now()

    def batches(self, loader: Iterable) -> Iterator:
        """The loader's batches, timing each wait for the next one."""
        batches = iter(loader)
        while True:
            began = self.now()
            try:
                batch = next(batches)
            except StopIteration:
                return
            self.data_s += self.now() - began
            yield batch

    @contextmanager
    def step(self) -> Iterator[None]:
        """One step; end the block after something that synchronises (``loss.item()``)."""
        began = self.now()
        yield
        self.step_s += self.now() - began
        self.steps += 1

    def result(self) -> Throughput:
        return Throughput(
            episodes=self.steps * self.episodes_per_step,
            total_s=round(self.now() - self.started, 3),
            data_s=round(self.data_s, 3),
            step_s=round(self.step_s, 3),
        )
