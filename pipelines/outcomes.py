"""What the flows return: one typed result per flow, holding each task's typed result.

A deployment's caller (``run_deployment``, the Prefect UI's result view, ``lerenet-pipeline``)
gets these objects back as they left the flow; the CLI prints from their fields, and tests
read them without knowing which task filled what key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lerenet.data.ingest import IngestReport
    from lerenet.data.split_result import Split
    from lerenet.data.validate import ValidationReport
    from lerenet.evaluation.gate import GateDecision
    from lerenet.lineage.data_versions import VersionResult
    from lerenet.results import EvaluationReport, TrainSummary
    from lerenet.stages.onboard import OnboardReport
    from lerenet.tracking.registry import Promotion


@dataclass
class RetrainResult:
    """One ``retrain`` run: the data steps, then train → evaluate → gate → promote."""

    restored: bool  # the recorded data version was pulled into a fresh clone
    validate: ValidationReport
    split: Split
    train: TrainSummary
    evaluate: EvaluationReport
    gate: GateDecision
    promote: Promotion
    ingest: IngestReport | None = None  # when a source was given
    data: VersionResult | None = None  # when the data was versioned
    stages: dict[str, Any] = field(default_factory=dict)  # declared stages run generically
    dvc_lock: str | None = None  # what was recorded in dvc.lock, when it was


@dataclass
class OnboardResult:
    """One ``onboard-class`` run: the new classes' data steps and their scores."""

    restored: bool
    ingest: IngestReport
    new_classes: list[str]
    validate: ValidationReport
    split: Split
    onboard: OnboardReport
    advice: str
    data: VersionResult | None = None
