"""Typed results passed between stages: what training, evaluation, gate and promotion return.

The stage functions (``lerenet.stages``, ``lerenet.stages.gate``) return these objects; the
Prefect flow passes them from task to task in memory, and the CLI (``dvc repro``) writes them
to files and reads them back to fill the next stage's defaults. One shape per result, so no
reader filters a metrics dict for its per-shot sections by hand, and a remote worker's result
arrives as the same object it left as. The file forms (``train.json``, ``metrics.json``) are
``to_dict()`` and stay what ``dvc metrics show`` and older runs read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lerenet.evaluation.metrics import SegmentationScores


def _known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``data`` that are fields of dataclass ``cls``: a file written by a newer or
    older release may carry keys this one does not know."""
    known = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in known}


@dataclass(frozen=True)
class TrainSummary:
    """What a training produced: its MLflow run, the selected checkpoint and its model."""

    run_id: str | None
    best_path: str
    best_step: int
    best_val_miou: float
    steps: int
    interrupted: bool = False
    weights_sha256: str = ""
    model_uri: str | None = None  # MLflow 3: models:/m-<id>; None when untracked
    baseline_path: str | None = None  # the prototype baseline saved beside it, if any
    start_path: str | None = None  # the training-free start (step 0) saved beside it, if any
    best_sha256: str | None = None  # of best_path's file when logged: local_copy trusts it
    start_uri: str | None = None  # the start as its run stores it (runs:/…/train/start.pt)
    baseline_uri: str | None = None  # the baseline as its run stores it
    throughput: dict[str, float] | None = None  # lerenet.training.throughput.Throughput.to_dict()

    @property
    def challenger(self) -> str:
        """The model to evaluate and gate: the logged model, else the local checkpoint."""
        return self.model_uri or self.best_path

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: Path) -> Path:
        """The file form, ``train.json`` (``read`` restores it)."""
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSummary:
        return cls(**_known_fields(cls, data))

    @classmethod
    def read(cls, path: Path) -> TrainSummary:
        """``train.json`` of a finished training (a clear error when there is none)."""
        if not path.exists():
            raise FileNotFoundError(f"{path}: no training summary; run `lerenet train` first")
        data = json.loads(path.read_text())
        if "best_path" not in data:
            raise FileNotFoundError(
                f"{path}: the training that wrote it did not finish (run {data.get('run_id')}); "
                "rerun `lerenet train --resume`"
            )
        return cls.from_dict(data)


@dataclass(frozen=True)
class ShotScores:
    """One model's scores at one shot count: mIoU and FB-IoU with 95% bootstrap intervals."""

    miou: float
    miou_low: float
    miou_high: float
    fbiou: float
    fbiou_low: float
    fbiou_high: float
    episodes: int
    class_iou: dict[str, float] = field(default_factory=dict)
    class_iou_low: dict[str, float] = field(default_factory=dict)
    class_iou_high: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, scores: SegmentationScores) -> ShotScores:
        """From the bootstrap scores of ``lerenet.evaluation.metrics.score``."""
        per_class = scores.per_class
        return cls(
            scores.miou.value, scores.miou.low, scores.miou.high,
            scores.fbiou.value, scores.fbiou.low, scores.fbiou.high,
            scores.episodes,
            {c: i.value for c, i in per_class.items()},
            {c: i.low for c, i in per_class.items()},
            {c: i.high for c, i in per_class.items()},
        )  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShotScores:
        return cls(**_known_fields(cls, data))


def shot_key(shots: int) -> str:
    """``"5shot"``: the one spelling of a shot count as a key (scores, evidence, metrics)."""
    return f"{shots}shot"


def _is_shot_key(key: str) -> bool:
    return key.endswith("shot") and key[:-4].isdigit()


@dataclass
class ShotEvidence:
    """Per-episode stats of a model on the episodes of one shot count, and each episode's
    class: what the gate's paired comparison resamples (no second prediction)."""

    stats: np.ndarray
    classes: list[str]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, stats=self.stats, classes=np.asarray(self.classes, dtype=str))

    @classmethod
    def load(cls, path: Path) -> ShotEvidence | None:
        if not path.exists():
            return None
        with np.load(path) as data:
            return cls(data["stats"], [str(c) for c in data["classes"]])


def evidence_path(out_dir: Path, key: str) -> Path:
    """``out_dir/evidence_1shot.npz``: where a model's evidence of one shot count is kept."""
    return Path(out_dir) / f"evidence_{key}.npz"


@dataclass(frozen=True)
class ModelScores:
    """A model's scores on one fold's episodes of one part, per shot count in shot order.

    ``evidence`` (per shot key) travels in memory with the scores; the file form keeps it
    beside metrics.json (``write``/``read``), never inside it."""

    label: str
    fold: int
    part: str
    shots: dict[str, ShotScores]  # "1shot", "5shot", …
    evidence: dict[str, ShotEvidence] = field(default_factory=dict, compare=False, repr=False)

    def write(self, out_dir: Path) -> Path:
        """One model's file form, ``scores.json`` (``to_dict``): not metrics.json, which is
        always an ``EvaluationReport`` (one shape per file name)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "scores.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    def write_evidence(self, out_dir: Path) -> None:
        for key, ev in self.evidence.items():
            ev.save(evidence_path(out_dir, key))

    def with_evidence(self, out_dir: Path) -> ModelScores:
        """These scores with the evidence saved under ``out_dir`` (the shots that have it)."""
        found = {k: ShotEvidence.load(evidence_path(out_dir, k)) for k in self.shots}
        return replace(self, evidence={k: v for k, v in found.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """The metrics.json section: fold, part, model and one key per shot count."""
        out: dict[str, Any] = {"fold": self.fold, "part": self.part, "model": self.label}
        out.update({k: asdict(v) for k, v in self.shots.items()})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelScores:
        shots = {
            k: ShotScores.from_dict(v)
            for k, v in data.items()
            if _is_shot_key(k) and isinstance(v, dict) and "miou" in v
        }
        ordered = dict(sorted(shots.items(), key=lambda item: int(item[0][:-4])))
        return cls(
            str(data.get("model", "model")), int(data.get("fold", 0)), str(data.get("part", "")),
            ordered,
        )  # fmt: skip


@dataclass(frozen=True)
class EvaluationReport:
    """Test-class evaluation of a model, with the prototype baseline on the same episodes."""

    model_uri: str
    split_sha256: str
    run_id: str | None
    lerenet: ModelScores
    baseline: ModelScores | None = None
    # the training's own training-free start (step 0) on the same test episodes, and each
    # model on the held-out images of the training classes ("seen_test"): what a retrain buys
    start: ModelScores | None = None
    seen: dict[str, ModelScores] = field(default_factory=dict)

    def models(self) -> dict[str, ModelScores]:
        """``{"lerenet": …, "baseline": …}`` (the baseline when it was evaluated)."""
        out = {"lerenet": self.lerenet}
        if self.baseline is not None:
            out["baseline"] = self.baseline
        return out

    def to_dict(self) -> dict[str, Any]:
        """metrics.json's shape: one section per model beside the URI, split and run."""
        out: dict[str, Any] = {
            "model_uri": self.model_uri,
            "split_sha256": self.split_sha256,
            "run_id": self.run_id,
        }
        out.update({name: scores.to_dict() for name, scores in self.models().items()})
        if self.start is not None:
            out["start"] = self.start.to_dict()
        if self.seen:
            out["seen"] = {name: scores.to_dict() for name, scores in self.seen.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationReport:
        base = data.get("baseline")
        return cls(
            str(data.get("model_uri", "")),
            str(data.get("split_sha256", "")),
            data.get("run_id"),
            ModelScores.from_dict(data.get("lerenet") or {}),
            ModelScores.from_dict(base) if base else None,
            ModelScores.from_dict(data["start"]) if data.get("start") else None,
            {name: ModelScores.from_dict(v) for name, v in (data.get("seen") or {}).items()},
        )

    def write(self, out_dir: Path) -> Path:
        """The file form: ``metrics.json`` (``to_dict``) and, per model, its per-episode
        evidence in ``out_dir/<model>/evidence_<k>shot.npz``; ``read`` restores both."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "metrics.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        for name, scores in self.models().items():
            scores.write_evidence(out_dir / name)
        return path

    @classmethod
    def read(cls, path: Path) -> EvaluationReport:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no evaluation; run `lerenet evaluate` first")
        report = cls.from_dict(json.loads(path.read_text()))
        base = report.baseline
        return replace(
            report,
            lerenet=report.lerenet.with_evidence(path.parent / "lerenet"),
            baseline=base.with_evidence(path.parent / "baseline") if base else None,
        )
