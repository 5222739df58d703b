"""A run's outcome for people: per-class IoU of the model next to the baseline's, what the
retrain bought on its own classes (held-out IoU before and after training), and one sentence
on which model won and which alias moved (CLI, Prefect artifacts, README run), and the
per-class chart of the model beside its references (``dvc plots``, the MLflow run)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lerenet.evaluation.gate import GateDecision
    from lerenet.results import EvaluationReport
    from lerenet.tracking.registry import Promotion


def class_table(evaluation: EvaluationReport) -> list[dict[str, Any]]:
    """One row per test class (and a last "mean" row): IoU of the model and of the baseline
    for every shot count evaluated; "-" where the baseline was not evaluated."""
    model, base = evaluation.lerenet.shots, evaluation.baseline
    base_shots = base.shots if base else {}
    classes = sorted({c for m in model.values() for c in m.class_iou})
    rows = []
    for cls in [*classes, "mean"]:
        row: dict[str, Any] = {"class": cls}
        for k in model:
            for label, source in (("model", model), ("baseline", base_shots)):
                m = source.get(k)
                value = None if m is None else (m.miou if cls == "mean" else m.class_iou.get(cls))
                row[f"{k} {label}"] = "-" if value is None else f"{value:.3f}"
        rows.append(row)
    return rows


def seen_table(evaluation: EvaluationReport) -> list[dict[str, Any]]:
    """One row per training class with held-out images (and a last "mean" row): its IoU
    before training (the start, step 0 of the same run) and after, per shot count, and the
    change. Empty when the split held nothing out or the start was not evaluated."""
    trained, start = evaluation.seen.get("lerenet"), evaluation.seen.get("start")
    if trained is None or start is None:
        return []
    classes = sorted({c for m in trained.shots.values() for c in m.class_iou})
    rows = []
    for cls in [*classes, "mean"]:
        row: dict[str, Any] = {"class": cls}
        for k, after_scores in trained.shots.items():
            before_scores = start.shots.get(k)
            if before_scores is None:
                continue
            before, after = (
                m.miou if cls == "mean" else m.class_iou.get(cls)
                for m in (before_scores, after_scores)
            )
            row[f"{k} before"] = "-" if before is None else f"{before:.3f}"
            row[f"{k} after"] = "-" if after is None else f"{after:.3f}"
            gain = None if before is None or after is None else after - before
            row[f"{k} Δ"] = "-" if gain is None else f"{gain:+.3f}"
        rows.append(row)
    return rows


def verdict(evaluation: EvaluationReport, gate: GateDecision, promotion: Promotion) -> str:
    """Which model won, in words, with the gate's reasons and where the alias went."""
    model = evaluation.lerenet.shots
    base = evaluation.baseline.shots if evaluation.baseline else {}
    compared = [k for k in model if k in base]
    wins = [k for k in compared if model[k].miou > base[k].miou]
    if not compared:
        race = "No baseline was evaluated."
    elif len(wins) == len(compared):
        race = f"LERENet scored above the prototype baseline at {', '.join(compared)}."
    elif wins:
        race = f"LERENet scored above the baseline at {', '.join(wins)} only."
    else:
        race = "The parameter-free prototype baseline scored higher than LERENet."
    gate_text = "passed" if gate.passed else "failed"
    reasons = "; ".join(gate.reasons)
    same = "" if promotion.registered else " (same weights as that version)"
    return (
        f"{race} Gate {gate_text}: {reasons}. {promotion.name} v{promotion.version} is "
        f"now @{promotion.alias}{same}."
    )


def comparison_charts(report: EvaluationReport, out_dir: Path, fold: int) -> list[Path]:
    """``class_iou_<k>shot.png``: per class, the model, its training-free start and the
    baseline side by side with their intervals (what ``dvc plots`` and the MLflow run show)."""
    from lerenet.evaluation.plots import compare_chart

    models = {"LERENet": report.lerenet, "its start (step 0)": report.start}
    models["prototype baseline"] = report.baseline
    charts = []
    for shot in report.lerenet.shots:
        per_model = {
            label: {
                c: (s.class_iou[c], s.class_iou_low.get(c, 0.0), s.class_iou_high.get(c, 1.0))
                for c in s.class_iou
            }
            for label, scores in models.items()
            if scores is not None and (s := scores.shots.get(shot)) is not None
        }
        title = f"novel classes, {shot}, fold {fold}: model and references"
        charts.append(compare_chart(per_model, out_dir / f"class_iou_{shot}.png", title))
    return charts
