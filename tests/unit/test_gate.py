"""The gate's decision rules on hand-made per-episode evidence."""

from __future__ import annotations

import numpy as np

from lerenet.config import GateConfig
from lerenet.gate import ShotEvidence, decide

CLASSES = ["A"] * 30 + ["B"] * 30


def evidence(iou: float, seed: int, noise: float = 0.05) -> dict[str, ShotEvidence]:
    """Episodes of 100-pixel unions whose intersection gives about ``iou`` per episode."""
    rng = np.random.default_rng(seed)
    inter = np.clip(rng.normal(iou, noise, len(CLASSES)), 0, 1) * 100
    stats = (
        np.stack(
            [
                inter,
                np.full(len(CLASSES), 100),
                np.full(len(CLASSES), 900),
                np.full(len(CLASSES), 1000),
            ],
            1,
        )
        .round()
        .astype(np.int64)
    )
    return {"1shot": ShotEvidence(stats, list(CLASSES))}


def test_a_challenger_worse_than_the_baseline_fails_even_with_floors_met() -> None:
    cfg = GateConfig(min_miou=0.05, bootstrap=200)
    decision = decide(evidence(0.30, 1), None, cfg, baseline=evidence(0.45, 2))
    assert not decision.passed
    assert any("prototype baseline" in r for r in decision.reasons)
    nums = decision.numbers["1shot"]
    assert nums["baseline_delta"] < 0 and nums["baseline_miou"] > nums["miou"]


def test_a_challenger_clearly_better_than_the_baseline_passes() -> None:
    cfg = GateConfig(min_miou=0.05, bootstrap=200)
    decision = decide(evidence(0.45, 1), None, cfg, baseline=evidence(0.30, 2))
    assert decision.passed, decision.reasons
    assert decision.numbers["1shot"]["baseline_delta_low"] > 0
    assert "better than the prototype baseline" in decision.reasons[-1]
    # the evidence travels with the verdict (version description, MLflow tag, artifact)
    assert "Δ vs baseline" in decision.reasons[-1] and "1shot mIoU" in decision.reasons[-1]


def test_a_tie_with_the_baseline_is_not_enough() -> None:
    """Beating the baseline means a positive lower bound, not a point estimate above it."""
    same = evidence(0.40, 1)
    decision = decide(same, None, GateConfig(bootstrap=200), baseline=same)
    assert not decision.passed


def test_margin_and_missing_evidence() -> None:
    better = evidence(0.45, 1)
    base = evidence(0.40, 2)
    assert decide(better, None, GateConfig(bootstrap=200), baseline=base).passed
    strict = GateConfig(bootstrap=200, baseline_margin=0.2)
    assert not decide(better, None, strict, baseline=base).passed
    missing = decide(better, None, GateConfig(bootstrap=200), baseline=None)
    assert not missing.passed and "no prototype-baseline evidence" in missing.reasons[0]
    off = decide(better, None, GateConfig(bootstrap=200, beat_baseline=False), baseline=None)
    assert off.passed
