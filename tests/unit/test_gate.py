"""The gate's decision rules on hand-made per-episode evidence."""

from __future__ import annotations

import numpy as np

from lerenet.config.schema import GateConfig
from lerenet.evaluation.gate import decide
from lerenet.results import ShotEvidence

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


def seen_evidence(ious: dict[str, float], seed: int) -> dict[str, ShotEvidence]:
    """Held-out seen-class episodes (30 a class) whose IoU is about ``ious[class]``."""
    rng = np.random.default_rng(seed)
    classes = [c for c in sorted(ious) for _ in range(30)]
    inter = np.clip([rng.normal(ious[c], 0.03) for c in classes], 0, 1) * 100
    n = len(classes)
    stats = np.stack([inter, np.full(n, 100), np.full(n, 900), np.full(n, 1000)], 1)
    return {"1shot": ShotEvidence(stats.round().astype(np.int64), classes)}


def test_a_challenger_that_forgets_a_seen_class_stays_at_staging() -> None:
    """Better on novel classes and on one seen class, but a seen class's held-out IoU drops:
    the forgetting check names that class and the challenger fails."""
    cfg = GateConfig(bootstrap=200, beat_baseline=False)
    decision = decide(
        evidence(0.45, 1),
        evidence(0.40, 2),
        cfg,
        seen=seen_evidence({"Kept": 0.70, "Forgotten": 0.30}, 3),
        seen_champion=seen_evidence({"Kept": 0.50, "Forgotten": 0.60}, 4),
    )
    assert not decision.passed
    assert any("seen class Forgotten" in r and "forgets" in r for r in decision.reasons)
    assert not any("seen class Kept" in r for r in decision.reasons)
    deltas = decision.numbers["1shot"]["seen_class_delta"]
    assert deltas["Forgotten"]["delta"] < -0.2 and deltas["Kept"]["low"] > 0


def test_a_challenger_better_on_a_seen_class_and_equal_elsewhere_passes() -> None:
    cfg = GateConfig(bootstrap=200, beat_baseline=False)
    same_novel = evidence(0.40, 1)
    decision = decide(
        same_novel,
        same_novel,
        cfg,
        seen=seen_evidence({"A": 0.70, "B": 0.50}, 3),
        seen_champion=seen_evidence({"A": 0.50, "B": 0.50}, 3),
    )
    assert decision.passed, decision.reasons


def test_a_challenger_losing_on_novel_classes_fails_despite_seen_gains() -> None:
    cfg = GateConfig(bootstrap=200, beat_baseline=False)
    decision = decide(
        evidence(0.30, 1),
        evidence(0.45, 2),
        cfg,
        seen=seen_evidence({"A": 0.80}, 3),
        seen_champion=seen_evidence({"A": 0.50}, 4),
    )
    assert not decision.passed
    assert any("champion" in r and "1shot: Δ mIoU" in r for r in decision.reasons)


def test_a_challenger_equal_everywhere_is_not_promoted() -> None:
    """Not worse is not enough to replace production (gate.require_gain): identical evidence
    shows no gain anywhere."""
    same = evidence(0.40, 1)
    seen = seen_evidence({"A": 0.6}, 3)
    decision = decide(
        same, same, GateConfig(bootstrap=200, beat_baseline=False), seen=seen, seen_champion=seen
    )
    assert not decision.passed
    assert any("not shown better than the champion anywhere" in r for r in decision.reasons)
    relaxed = GateConfig(bootstrap=200, beat_baseline=False, require_gain=False)
    assert decide(same, same, relaxed, seen=seen, seen_champion=seen).passed


def test_the_gate_takes_the_evaluations_evidence_in_memory(tmp_path, monkeypatch) -> None:
    """In a flow the gate gets the evaluation report itself: its per-episode stats are used
    without any metrics.json on disk, and only for the model and split it scored."""
    from dataclasses import replace

    from lerenet.config.schema import Params
    from lerenet.data.split_result import Split
    from lerenet.results import EvaluationReport, ModelScores
    from lerenet.stages.gate import _saved_evidence

    monkeypatch.chdir(tmp_path)  # no split on disk: the split, too, comes in memory
    params = Params.model_validate({"eval": {"shots": [1], "out_dir": str(tmp_path / "none")}})
    shot = {"miou": 0.5, "miou_low": 0.4, "miou_high": 0.6, "fbiou": 0.7, "fbiou_low": 0.6}
    shot |= {"fbiou_high": 0.8, "episodes": 9}
    scores = replace(ModelScores.from_dict({"1shot": shot}), evidence=evidence(0.5, seed=1))
    report = EvaluationReport("models:/m-1", "s1", "r1", scores)
    split = Split("s1", ())
    got = _saved_evidence(params, "models:/m-1", report, split)
    assert got is not None and got["1shot"] is scores.evidence["1shot"]
    assert not (tmp_path / "none").exists()  # nothing was read from (or written to) disk
    assert _saved_evidence(params, "models:/m-2", report, split) is None  # another model
    stale = replace(report, split_sha256="old")
    assert _saved_evidence(params, "models:/m-1", stale, split) is None
    assert _saved_evidence(params, "models:/m-1", None, split) is None  # no report, no file
