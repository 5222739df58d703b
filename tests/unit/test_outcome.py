"""The closing summary a user reads: per-class model vs baseline, and the verdict in words."""

from __future__ import annotations

from lerenet.evaluation.gate import GateDecision
from lerenet.evaluation.outcome import class_table, verdict
from lerenet.results import EvaluationReport, ModelScores, ShotScores
from lerenet.tracking.registry import Promotion


def _scores(label: str, per_shot: dict[str, tuple[float, dict[str, float]]]) -> ModelScores:
    shots = {
        k: ShotScores(miou, miou, miou, 0.5, 0.5, 0.5, 10, classes)
        for k, (miou, classes) in per_shot.items()
    }
    return ModelScores(label, 0, "test", shots)


MODEL = _scores(
    "LERENet", {"1shot": (0.30, {"A": 0.20, "B": 0.40}), "5shot": (0.35, {"A": 0.30, "B": 0.40})}
)
BASE = _scores(
    "baseline", {"1shot": (0.32, {"A": 0.25, "B": 0.39}), "5shot": (0.30, {"A": 0.20, "B": 0.40})}
)
EVALUATION = EvaluationReport("models:/m-1", "sha", "run", MODEL, BASE)


def test_class_table_puts_model_and_baseline_side_by_side() -> None:
    rows = class_table(EVALUATION)
    assert [r["class"] for r in rows] == ["A", "B", "mean"]
    assert rows[0]["1shot model"] == "0.200" and rows[0]["1shot baseline"] == "0.250"
    assert rows[-1]["5shot model"] == "0.350" and rows[-1]["5shot baseline"] == "0.300"
    alone = class_table(EvaluationReport("models:/m-1", "sha", "run", MODEL))
    assert alone[0]["1shot baseline"] == "-"


def test_verdict_says_who_won_why_and_where_the_alias_went() -> None:
    gate = GateDecision(False, ["1shot: not shown better than the baseline"])
    promo = Promotion("lerenet", "3", "staging", None, registered=False)
    text = verdict(EVALUATION, gate, promo)
    assert text.startswith("LERENet scored above the baseline at 5shot only.")
    assert "Gate failed: 1shot: not shown better" in text
    assert text.endswith("lerenet v3 is now @staging (same weights as that version).")
    worse = EvaluationReport("models:/m-1", "sha", "run", MODEL, MODEL)
    assert "baseline scored higher" in verdict(worse, gate, promo)


def test_seen_table_shows_each_training_class_before_and_after_training() -> None:
    """What a retrain bought, per training class, on its held-out images: the start's IoU,
    the trained model's, and the change; and the report survives its JSON round trip."""
    from lerenet.evaluation.outcome import seen_table

    after = _scores("LERENet", {"1shot": (0.50, {"Crack": 0.60, "Pit": 0.40})})
    before = _scores("start", {"1shot": (0.35, {"Crack": 0.30, "Pit": 0.40})})
    report = EvaluationReport(
        "models:/m-1", "sha", "run", MODEL, BASE, before, {"lerenet": after, "start": before}
    )
    rows = seen_table(report)
    assert [r["class"] for r in rows] == ["Crack", "Pit", "mean"]
    assert rows[0] == {
        "class": "Crack",
        "1shot before": "0.300",
        "1shot after": "0.600",
        "1shot Δ": "+0.300",
    }
    assert rows[1]["1shot Δ"] == "+0.000" and rows[2]["1shot Δ"] == "+0.150"
    again = EvaluationReport.from_dict(report.to_dict())
    assert seen_table(again) == rows and again.start == before
    assert seen_table(EVALUATION) == []  # nothing held out: no table, not an empty one


def test_selection_keeps_new_classes_whole_and_picks_on_seen_classes() -> None:
    from lerenet.training.validation_round import selection_score

    start = {"step": 0, "val_miou": 0.40, "seen_val_miou": 0.30}
    assert selection_score([start], 0.01) == 0.30
    better_seen = {"step": 100, "val_miou": 0.395, "seen_val_miou": 0.50}
    assert selection_score([start, better_seen], 0.01) == 0.50
    lost_new = {"step": 200, "val_miou": 0.35, "seen_val_miou": 0.60}
    assert selection_score([start, lost_new], 0.01) == -1.0  # never selected
    no_seen = {"step": 300, "val_miou": 0.45, "seen_val_miou": None}
    assert selection_score([start, no_seen], 0.01) == 0.45  # the authors' rule
