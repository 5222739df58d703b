"""The closing summary a user reads: per-class model vs baseline, and the verdict in words."""

from __future__ import annotations

from lerenet.gate import GateDecision
from lerenet.outcome import class_table, verdict
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
