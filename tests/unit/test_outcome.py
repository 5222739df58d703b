"""The closing summary a user reads: per-class model vs baseline, and the verdict in words."""

from __future__ import annotations

from lerenet.outcome import class_table, verdict

EVALUATION = {
    "lerenet": {
        "1shot": {"miou": 0.30, "class_iou": {"A": 0.20, "B": 0.40}},
        "5shot": {"miou": 0.35, "class_iou": {"A": 0.30, "B": 0.40}},
    },
    "baseline": {
        "1shot": {"miou": 0.32, "class_iou": {"A": 0.25, "B": 0.39}},
        "5shot": {"miou": 0.30, "class_iou": {"A": 0.20, "B": 0.40}},
    },
}


def test_class_table_puts_model_and_baseline_side_by_side() -> None:
    rows = class_table(EVALUATION)
    assert [r["class"] for r in rows] == ["A", "B", "mean"]
    assert rows[0]["1shot model"] == "0.200" and rows[0]["1shot baseline"] == "0.250"
    assert rows[-1]["5shot model"] == "0.350" and rows[-1]["5shot baseline"] == "0.300"
    alone = class_table({"lerenet": EVALUATION["lerenet"]})
    assert alone[0]["1shot baseline"] == "-"


def test_verdict_says_who_won_why_and_where_the_alias_went() -> None:
    gate = {"passed": False, "reasons": ["1shot: not shown better than the baseline"]}
    promo = {"name": "lerenet", "version": "3", "alias": "staging", "registered": False}
    text = verdict(EVALUATION, gate, promo)
    assert text.startswith("LERENet scored above the baseline at 5shot only.")
    assert "Gate failed: 1shot: not shown better" in text
    assert text.endswith("lerenet v3 is now @staging (same weights as that version).")
    worse = {"lerenet": EVALUATION["lerenet"], "baseline": EVALUATION["lerenet"]}
    assert "baseline scored higher" in verdict(worse, gate, promo)
