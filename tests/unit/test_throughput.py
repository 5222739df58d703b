"""LoopClock: how a training loop's time splits into waiting for data, the step and the rest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lerenet.training.throughput import LoopClock


class FakeTime:
    """A clock the test advances: the split is checked without measuring real time."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_loop_splits_into_data_wait_step_and_the_rest() -> None:
    now = FakeTime()

    def loader() -> Iterator[int]:
        for i in range(4):
            now.t += 2.0  # each batch takes 2 s to arrive
            yield i

    clock = LoopClock(episodes_per_step=8, now=now)
    seen = []
    for batch in clock.batches(loader()):
        with clock.step():
            now.t += 3.0  # the step itself
        seen.append(batch)
        now.t += 0.5  # validation, checkpoints, logging
    result = clock.result()
    assert seen == [0, 1, 2, 3]
    assert (result.episodes, result.data_s, result.step_s, result.total_s) == (32, 8.0, 12.0, 22.0)
    assert result.episodes_per_s == pytest.approx(32 / 22)
    assert result.step_episodes_per_s == pytest.approx(32 / 12)
    assert result.step_share == pytest.approx(12 / 22)
    assert result.data_share == pytest.approx(8 / 22)
    assert result.to_dict()["step_share"] == round(12 / 22, 4)
    assert "1.5/s end to end, 2.7/s the step alone (55%); waiting for data 36%" in result.line()


def test_a_step_that_raises_is_not_counted_and_an_empty_loop_reports_zero() -> None:
    now = FakeTime()
    clock = LoopClock(episodes_per_step=2, now=now)
    with pytest.raises(RuntimeError), clock.step():
        now.t += 1.0
        raise RuntimeError("out of memory")
    result = clock.result()
    assert result.episodes == 0 and result.step_s == 0.0
    assert result.episodes_per_s == result.step_episodes_per_s == result.step_share == 0.0
