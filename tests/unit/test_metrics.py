"""Metrics equal hand-computed IoU/FB-IoU; intervals contain the point estimate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lerenet.evaluation.metrics import episode_stats, score


def test_episode_stats_by_hand() -> None:
    target = torch.tensor([[[1, 1, 0, 0], [1, 255, 0, 0]]])
    pred = torch.tensor([[[1, 0, 1, 0], [1, 1, 0, 0]]])
    # fg: pred {0,2,4,(5 ignored)} truth {0,1,4} → I = {0,4} = 2, U = {0,1,2,4} = 4
    # bg: pred {1,3,6,7} truth {2,3,6,7} → I = {3,6,7} = 3, U = {1,2,3,6,7} = 5
    assert episode_stats(pred, target).tolist() == [[2, 4, 3, 5]]


def test_class_iou_sums_over_episodes_then_divides() -> None:
    stats = np.array([[1, 2, 5, 6], [3, 4, 5, 6], [0, 10, 9, 9]])
    scores = score(stats, ["a", "b"], ["a", "a", "b"], bootstrap=20)
    assert scores.per_class["a"].value == pytest.approx(4 / 6)  # (1+3)/(2+4), not mean(1/2,3/4)
    assert scores.per_class["b"].value == 0.0
    assert scores.miou.value == pytest.approx((4 / 6 + 0) / 2)
    assert scores.fbiou.value == pytest.approx(0.5 * (4 / 16 + 19 / 21))


def test_bootstrap_interval_contains_point_estimate() -> None:
    rng = np.random.default_rng(0)
    inter = rng.integers(0, 50, 60)
    stats = np.stack([inter, inter + rng.integers(1, 50, 60), inter + 100, inter + 150], 1)
    classes = ["a"] * 20 + ["b"] * 20 + ["c"] * 20
    scores = score(stats, ["a", "b", "c"], classes, bootstrap=300, seed=1)
    for interval in (scores.miou, scores.fbiou, *scores.per_class.values()):
        assert interval.low <= interval.value <= interval.high
        assert interval.high - interval.low > 0  # real variability gives a real interval
    again = score(stats, ["a", "b", "c"], classes, bootstrap=300, seed=1)
    assert again.miou == scores.miou  # seeded
