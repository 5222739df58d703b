"""Onboarding advice reads every shot count and speaks per class (issue #27.6)."""

from __future__ import annotations

from lerenet.stages.onboard import ClassScore, OnboardReport, advice


def _score(model: str, cls: str, shots: int, iou: float, half: float) -> ClassScore:
    return ClassScore(model, cls, shots, iou, iou - half, iou + half, 30)


def test_a_class_worse_at_one_shot_only_is_not_served_as_it_is() -> None:
    report = OnboardReport(
        ["Road_Crack", "Dent"],
        "models:/lerenet@production",
        [
            # Road_Crack: 1-shot intervals apart, 5-shot overlapping (the hostile pass's case)
            _score("production", "Road_Crack", 1, 0.105, 0.01),
            _score("baseline", "Road_Crack", 1, 0.138, 0.01),
            _score("production", "Road_Crack", 5, 0.099, 0.03),
            _score("baseline", "Road_Crack", 5, 0.123, 0.03),
            # Dent: production above the baseline at both
            _score("production", "Dent", 1, 0.40, 0.05),
            _score("baseline", "Dent", 1, 0.30, 0.05),
            _score("production", "Dent", 5, 0.45, 0.05),
            _score("baseline", "Dent", 5, 0.35, 0.05),
        ],
    )
    said = advice(report)
    assert "Road_Crack: the production model is worse than the baseline at 1-shot" in said
    assert "Dent: the production model serves it as it is" in said
    assert "Road_Crack: the production model serves" not in said


def test_below_at_every_shot_with_overlapping_intervals_says_so() -> None:
    report = OnboardReport(
        ["Scratch"],
        "models:/lerenet@production",
        [
            _score("production", "Scratch", 1, 0.20, 0.05),
            _score("baseline", "Scratch", 1, 0.22, 0.05),
            _score("production", "Scratch", 5, 0.25, 0.05),
            _score("baseline", "Scratch", 5, 0.27, 0.05),
        ],
    )
    assert "below the baseline at every shot count" in advice(report)
