"""Typed stage results: their file forms are what dvc and earlier runs read, and read back."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lerenet.results import EvaluationReport, ModelScores, ShotEvidence, TrainSummary


def _shot(miou: float) -> dict:
    return {
        "miou": miou, "miou_low": miou - 0.1, "miou_high": miou + 0.1,
        "fbiou": 0.6, "fbiou_low": 0.5, "fbiou_high": 0.7, "episodes": 20,
        "class_iou": {"A": miou}, "class_iou_low": {"A": 0.0}, "class_iou_high": {"A": 1.0},
    }  # fmt: skip


def test_model_scores_keep_the_shot_sections_in_shot_order_and_ignore_the_rest() -> None:
    section = {
        "fold": 1, "part": "test", "model": "LERENet",
        "10shot": _shot(0.3), "5shot": _shot(0.2), "1shot": _shot(0.1),
        "gate_shot": {"no": "miou"}, "xshot": _shot(0.9),
    }  # fmt: skip
    scores = ModelScores.from_dict(section)
    assert list(scores.shots) == ["1shot", "5shot", "10shot"]
    assert scores.shots["5shot"].miou == 0.2 and (scores.label, scores.fold) == ("LERENet", 1)
    again = scores.to_dict()
    assert set(again) == {"fold", "part", "model", "1shot", "5shot", "10shot"}
    assert again["10shot"] == _shot(0.3)  # metrics.json's section, unchanged in shape


def test_an_evaluation_report_round_trips_through_metrics_json(tmp_path: Path) -> None:
    model = ModelScores.from_dict({"model": "LERENet", "1shot": _shot(0.4)})
    base = ModelScores.from_dict({"model": "prototype baseline", "1shot": _shot(0.3)})
    report = EvaluationReport("models:/m-1", "abc", "run1", model, base)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(report.to_dict()))
    assert EvaluationReport.read(path) == report
    assert list(report.models()) == ["lerenet", "baseline"]
    alone = EvaluationReport("models:/m-1", "abc", None, model)
    assert "baseline" not in alone.to_dict() and list(alone.models()) == ["lerenet"]
    with pytest.raises(FileNotFoundError, match="lerenet evaluate"):
        EvaluationReport.read(tmp_path / "missing.json")


def test_a_train_summary_reads_back_and_refuses_an_unfinished_training(tmp_path: Path) -> None:
    summary = TrainSummary("r1", "out/best.pt", 300, 0.42, 300, model_uri="models:/m-9")
    path = tmp_path / "train.json"
    path.write_text(json.dumps({**summary.to_dict(), "written_by": "a newer release"}))
    assert TrainSummary.read(path) == summary and summary.challenger == "models:/m-9"
    untracked = TrainSummary(None, "out/best.pt", 0, 0.1, 10)
    assert untracked.challenger == "out/best.pt"
    path.write_text(json.dumps({"run_id": "r2"}))  # what a training writes while it runs
    with pytest.raises(FileNotFoundError, match="did not finish"):
        TrainSummary.read(path)


def test_a_report_carries_its_evidence_in_memory_and_through_its_files(tmp_path: Path) -> None:
    """The gate takes per-episode stats from the report a flow hands it; the CLI's gate reads
    the same stats back from what ``write`` left (and none from a report without them)."""
    stats = np.arange(12, dtype=np.int64).reshape(3, 4)
    model = replace(
        ModelScores.from_dict({"model": "LERENet", "1shot": _shot(0.4)}),
        evidence={"1shot": ShotEvidence(stats, ["A", "A", "B"])},
    )
    report = EvaluationReport("models:/m-1", "abc", "run1", model)
    assert "evidence" not in json.dumps(report.to_dict())  # metrics.json keeps its shape
    back = EvaluationReport.read(report.write(tmp_path))
    assert back == report
    assert np.array_equal(back.lerenet.evidence["1shot"].stats, stats)
    assert back.lerenet.evidence["1shot"].classes == ["A", "A", "B"]
    (tmp_path / "lerenet" / "evidence_1shot.npz").unlink()
    assert EvaluationReport.read(tmp_path / "metrics.json").lerenet.evidence == {}


def test_one_shape_per_file_name(tmp_path: Path) -> None:
    """A model's own scores go to scores.json; metrics.json is always an evaluation report."""
    scores = ModelScores.from_dict({"model": "LERENet", "1shot": _shot(0.4)})
    path = scores.write(tmp_path / "lerenet")
    assert path.name == "scores.json"
    assert ModelScores.from_dict(json.loads(path.read_text())) == scores
    report_path = EvaluationReport("m", "s", None, scores).write(tmp_path)
    assert report_path.name == "metrics.json"
    assert set(json.loads(report_path.read_text())) >= {"model_uri", "split_sha256", "lerenet"}
