"""Few-shot onboarding: how well the served model segments a new defect class, without training.

The point of a few-shot model is that a new class needs labelled supports, not a retrain. Once
the class is ingested and split as a novel class (it is then a test class of every fold and a
training class of none), ``onboard_report`` runs the production model and the parameter-free
prototype baseline on that class's fixed test episodes, 1- and 5-shot, and reports each one's
IoU with its bootstrap 95% interval. Nothing is trained and nothing is registered; the numbers
go to one MLflow run so they can be compared with later onboardings and retrains.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lerenet.config.schema import Params
from lerenet.data.split_result import Split


@dataclass(frozen=True)
class ClassScore:
    """IoU of one model on one class at one shot count, with its 95% bootstrap interval."""

    model: str  # "production" | "baseline"
    cls: str
    shots: int
    iou: float
    low: float
    high: float
    episodes: int


@dataclass
class OnboardReport:
    classes: list[str]
    model_uri: str | None  # None: no production model yet, baseline only
    scores: list[ClassScore] = field(default_factory=list)
    run_id: str | None = None
    # when these classes were onboarded before (the first earlier onboarding run, UTC), if ever
    onboarded_before: str | None = None

    def score(self, model: str, cls: str, shots: int) -> ClassScore | None:
        return next(
            (s for s in self.scores if (s.model, s.cls, s.shots) == (model, cls, shots)), None
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OnboardReport:
        """The report back from its JSON form (a Prefect task result, a stored file)."""
        scores = [ClassScore(**s) for s in data["scores"]]
        return cls(
            list(data["classes"]),
            data["model_uri"],
            scores,
            data.get("run_id"),
            data.get("onboarded_before"),
        )


def _class_scores(
    model, params: Params, label: str, classes: list[str], split: Split
) -> list[ClassScore]:
    """Per-class IoU over the new classes' test episodes of the configured fold."""
    from lerenet.evaluation.scoring import episode_dataset, predict_and_score

    out: list[ClassScore] = []
    for shots in params.eval.shots:
        dataset = episode_dataset(params, model, "test", shots, params.train.fold, split=split)
        dataset.episodes = [e for e in dataset.episodes if e.cls in classes]
        if not dataset.episodes:
            raise ValueError(
                f"no {shots}-shot test episodes of {', '.join(classes)}: split with "
                "split.novel_classes set to the new classes (the onboard-class flow does)"
            )
        present = sorted({e.cls for e in dataset.episodes})
        preds, scores = predict_and_score(model, dataset, params, present)
        for cls, interval in sorted(scores.per_class.items()):
            count = sum(1 for c in preds.classes if c == cls)
            out.append(
                ClassScore(label, cls, shots, interval.value, interval.low, interval.high, count)
            )
    return out


def onboard_report(
    params: Params, classes: list[str], *, track: bool = True, split: Split | None = None
) -> OnboardReport:
    """Score the production model (if any) and the baseline on ``classes``; log one run.
    ``split``: the split the class was made novel in (a flow's, in memory); None reads
    ``split.out_dir``."""
    from lerenet.model.build import build_baseline
    from lerenet.tracking.loading import load_torch_model
    from lerenet.tracking.registry import production_uri
    from lerenet.tracking.runs import configure, first_onboarding, start_run

    configure(params.tracking)
    uri = production_uri(params.tracking.registered_model)
    split = split or Split.read(Path(params.split.out_dir))  # after the tracking server answered
    report = OnboardReport(sorted(classes), uri)
    if track:
        report.onboarded_before = first_onboarding(params.tracking.experiment, report.classes)
    if uri is not None:
        model, _ = load_torch_model(uri)
        report.scores += _class_scores(model, params, "production", report.classes, split)
    baseline = build_baseline(params.model)
    report.scores += _class_scores(baseline.eval(), params, "baseline", report.classes, split)
    name = f"onboard-{'+'.join(report.classes)}"
    with start_run(params, run_name=name, enabled=track, tags=_tags(report)) as run:
        run.metrics(
            {
                f"onboard/{s.model}/{s.cls}/{s.shots}shot/{key}": getattr(s, key)
                for s in report.scores
                for key in ("iou", "low", "high")
            }
        )
        report.run_id = run.run_id
    return report


def _tags(report: OnboardReport) -> dict[str, str]:
    return {
        "lerenet.stage": "onboard",
        "lerenet.onboard_classes": ",".join(report.classes),
        "lerenet.onboard_model": report.model_uri or "none (baseline only)",
    }


def report_table(report: OnboardReport) -> list[dict[str, Any]]:
    """Rows for the CLI, the Prefect artifact and the README: class × shots, model vs baseline."""
    rows = []
    for cls in report.classes:
        for shots in sorted({s.shots for s in report.scores}):
            base = report.score("baseline", cls, shots)
            prod = report.score("production", cls, shots)
            rows.append(
                {
                    "class": cls,
                    "shots": shots,
                    "production IoU [95% CI]": _cell(prod),
                    "baseline IoU [95% CI]": _cell(base),
                    "episodes": (prod or base).episodes if (prod or base) else 0,
                }
            )
    return rows


def _cell(s: ClassScore | None) -> str:
    return "-" if s is None else f"{s.iou:.3f} [{s.low:.3f}, {s.high:.3f}]"


def advice(report: OnboardReport) -> str:
    """What to do next, in words: one sentence per new class, from every shot count (a class
    whose 1-shot intervals are apart is not served "as it is" because its 5-shot ones overlap)."""
    if report.model_uri is None:
        return (
            "No production model yet: these are the baseline's numbers. Train and promote a "
            "model (`lerenet-pipeline retrain`), then onboard again."
        )
    lines = [_class_advice(report, cls) for cls in report.classes]
    return " ".join(lines) + " Nothing was trained or registered."


def _class_advice(report: OnboardReport, cls: str) -> str:
    pairs = [
        (k, p, b)
        for k in sorted({s.shots for s in report.scores})
        if (p := report.score("production", cls, k)) and (b := report.score("baseline", cls, k))
    ]
    apart = [f"{k}-shot" for k, p, b in pairs if p.high < b.low]
    if apart:
        return (
            f"{cls}: the production model is worse than the baseline at {', '.join(apart)} "
            "(95% intervals apart): retrain with the class's labelled images "
            "(`lerenet-pipeline retrain --source …`; the gate compares the new model with "
            "production and the baseline), or add supports that look like the queries."
        )
    if pairs and all(p.iou < b.iou for _, p, b in pairs):
        return (
            f"{cls}: the production model is below the baseline at every shot count (the "
            "intervals overlap, so it may be chance): label more images, then retrain if it "
            "stays below."
        )
    return f"{cls}: the production model serves it as it is; use it with 5 supports."
