"""Prefect tasks: one per pipeline stage, each calling the library function of that stage.

Retries with backoff only where failures are transient (S3, MLflow, DVC remote); none for
deterministic compute, where a retry would fail the same way. Ingest is cached on its
source listing; validate and split on the code, data and params their declarations name
(``lerenet.stages.specs``, which dvc.yaml is generated from), so an unchanged data version,
code and params skip them.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from lerenet.config.schema import Params, apply_overrides, load_params
from lerenet.services.storage import file_sha256, json_sha256
from lerenet.stages.declare import VALIDATE_DIR, VALIDATE_REPORT

if TYPE_CHECKING:
    from lerenet.data.ingest import IngestReport
    from lerenet.data.split_result import Split
    from lerenet.data.validate import ValidationReport
    from lerenet.evaluation.gate import GateDecision
    from lerenet.lineage.data_versions import VersionResult
    from lerenet.results import EvaluationReport, TrainSummary
    from lerenet.stages.onboard import OnboardReport
    from lerenet.tracking.registry import Promotion


def retry_worthwhile(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition for I/O tasks: one retry policy per call, not nested ones.

    A ``ServiceUnavailable`` comes from the library's own bounded retries (the service was
    down for all of them), so Prefect retrying on top multiplies the wait; bad input and
    refused promotions fail the same way every time. Everything else (a dropped connection,
    a 5xx in the middle of a transfer) is retried.
    """
    from lerenet.services.reach import ServiceUnavailable
    from lerenet.tracking.registry import PromotionError

    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        try:
            error = state.result(raise_on_failure=False)
        except Exception:  # a result that cannot be read: retry, as Prefect would by default
            return True
    final = (ServiceUnavailable, PromotionError, ValueError, FileNotFoundError, PermissionError)
    return not isinstance(error, final)


IO_RETRIES = {
    "retries": 3,
    "retry_delay_seconds": [2, 10, 30],
    "retry_condition_fn": retry_worthwhile,
}


ParamsValue = dict[str, Any]  # Params.model_dump(mode="json"): what travels between tasks


def resolve_params(params_path: str, overrides: dict[str, Any] | None = None) -> ParamsValue:
    """The params file with its overrides, resolved once per flow run and then passed by value
    to every task and to the training worker: an edit of the file during a long training, or
    another checkout's file on a worker, cannot change what later stages run with."""
    return load_params(params_path, overrides=overrides).model_dump(mode="json")


def params_of(params: ParamsValue) -> Params:
    return Params.model_validate(params)


def with_overrides(params: ParamsValue, overrides: dict[str, Any]) -> ParamsValue:
    """``params`` with dotted ``section.key`` overrides applied (validated again)."""
    raw = copy.deepcopy(params)
    apply_overrides(raw, overrides)
    return Params.model_validate(raw).model_dump(mode="json")


@contextmanager
def library_logs() -> Iterator[None]:
    """Forward the library's INFO logs (``lerenet.*``: validation rounds, feature caching) to
    the task run's log, so a long training shows progress in the Prefect UI and the worker's
    output; the library itself knows nothing of Prefect."""
    run_logger = get_run_logger()

    class _Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            run_logger.log(record.levelno, record.getMessage())

    library, handler = logging.getLogger("lerenet"), _Forward(logging.INFO)
    level, propagate = library.level, library.propagate
    library.setLevel(logging.INFO)
    library.addHandler(handler)
    library.propagate = False  # the run's own log prints it; once is enough
    try:
        yield
    finally:
        library.removeHandler(handler)
        library.setLevel(level)
        library.propagate = propagate


def _file_sha(path: Path) -> str:
    return file_sha256(path, missing="absent")


def _source_fingerprint(source: str) -> str:
    path = Path(source)
    if path.is_dir():
        return json_sha256(
            [
                (p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                for p in sorted(path.rglob("*"))
                if p.is_file()
            ]
        )
    if path.is_file():
        return _file_sha(path)
    return source  # s3:// prefixes: not cached by content (always re-listed; ingest is a no-op)


def _ingest_key(context, args: dict) -> str | None:
    if str(args["source"]).startswith("s3://"):
        return None
    p = params_of(args["params"])
    return json_sha256(
        [
            "ingest",
            _source_fingerprint(args["source"]),
            args.get("layout"),
            args.get("class_map"),
            args.get("class_name"),
            _file_sha(Path(p.data.root) / "manifest.csv"),
        ]
    )


def stage_cache_key(name: str, in_memory: dict[str, str] | None = None):
    """A Prefect cache key function for stage ``name``, from its declaration
    (``lerenet.stages.specs``: the code, data and params dvc.yaml lists for it).

    ``in_memory``: task argument → the data dependency it stands for (an earlier task's result
    with a ``digest()``); when the flow passes it, its digest is hashed instead of reading the
    file that task wrote."""

    def key(context, args: dict) -> str:
        from lerenet.stages.specs import cache_key

        given = {
            dep: args[arg].digest()
            for arg, dep in (in_memory or {}).items()
            if args.get(arg) is not None
        }
        return cache_key(name, params_of(args["params"]), given=given)

    return key


def outputs_missing(params: Params) -> dict[str, bool]:
    """Cache keys hash inputs only; a stage whose declared outputs were deleted must run again
    anyway (the outputs are the ones dvc.yaml lists, at the paths the params give)."""
    from lerenet.stages.declare import outputs
    from lerenet.stages.specs import STAGES

    return {s.name: not all(p.exists() for p in outputs(s, params)) for s in STAGES}


@task(name="ingest", cache_key_fn=_ingest_key, persist_result=True, **IO_RETRIES)
def ingest_task(
    params: ParamsValue,
    source: str,
    layout: str | None = None,
    class_map: dict | None = None,
    class_name: str | None = None,
) -> IngestReport:
    from lerenet.stages import ingest

    return ingest.run(
        params_of(params),
        source,
        layout=layout,
        class_map=class_map,
        class_name=class_name,
        show_progress=False,
    )


@task(name="restore data version", **IO_RETRIES)
def restore_task(params: ParamsValue, required: bool = False, remote: str | None = None) -> bool:
    """The data version data.dvc records, pulled into a fresh clone before anything is added
    (from DVC remote ``remote``, else the default one); ``required`` (no new source to
    ingest): fails here, saying why, when none could be had."""
    from lerenet.lineage.data_versions import require_recorded_data, restore_recorded_data

    root = Path(params_of(params).data.root)
    pulled = restore_recorded_data(root, remote=remote)
    if pulled:
        get_run_logger().info(
            "pulled the recorded data version from DVC remote %s (a fresh clone had no data)",
            remote or "(default)",
        )
    if required:
        require_recorded_data(root, remote=remote)
    return pulled


@task(name="record in dvc.lock")
def record_task() -> str:
    """The flow's stage outputs into dvc.lock (``versioning.record_pipeline``)."""
    from lerenet.lineage.data_versions import record_pipeline

    said = record_pipeline()
    get_run_logger().info("%s", said)
    return said


class DataValidationError(RuntimeError):
    """Blocking expectations failed: the flow stops here."""


@task(name="validate", cache_key_fn=stage_cache_key("validate"), persist_result=True)
def validate_task(params: ParamsValue) -> ValidationReport:
    from lerenet.stages import validate

    out_dir = Path(VALIDATE_DIR)
    report = validate.run(params_of(params), out_dir, show_progress=False)
    html = (out_dir / "report.html").resolve()
    lines = [
        f"**{'PASSED' if report.passed else 'FAILED'}**: {report.pairs} usable pairs, "
        f"{len(report.classes)} classes, {report.quarantined} quarantined.",
        # a path, not a file:// link: a browser does not open one from the UI, and a
        # deployment's working folder (a fresh clone) is removed after the run
        f"HTML report (every expectation): `{html}` on the machine that ran the flow; "
        "`lerenet validate` writes it again from the same data version",
        "",
    ]
    lines += [f"- blocking: {b}" for b in report.blocking]
    lines += [f"- quarantined `{f.file}`: {f.check}, {f.reason}" for f in report.findings[:50]]
    create_markdown_artifact(
        "\n".join(lines), key="data-validation", description="Great Expectations + per-file checks"
    )
    if not report.passed:
        raise DataValidationError("; ".join(report.blocking) + f" (report: {html})")
    return report


@task(name="version data (dvc add + push)", **IO_RETRIES)
def version_task(
    params: ParamsValue, push: bool = True, remote: str | None = None
) -> VersionResult:
    from lerenet.stages import version

    return version.run(params_of(params), push=push, remote=remote)


BUILT_IN = ("validate", "split", "train", "evaluate", "gate")  # the flows call these by name


def extra_stages() -> list[str]:
    """The declared stages the flows have no task of their own for (a stage added by one
    module in lerenet/stages/): ``retrain`` runs them after split, through ``stage_task``."""
    from lerenet.stages.specs import STAGES

    return [s.name for s in STAGES if s.name not in BUILT_IN]


@task(name="stage", persist_result=True)
def stage_task(name: str, params: ParamsValue) -> Any:
    """A declared stage by name: its module's ``run(params)``, the same call ``lerenet stage
    NAME`` makes; its result travels to the flow in memory."""
    from lerenet.stages.specs import stage_module

    return stage_module(name).run(params_of(params))


@task(
    name="split",
    # the validate task's result stands in for the report file dvc.yaml has the split follow
    cache_key_fn=stage_cache_key("split", in_memory={"validation": VALIDATE_REPORT}),
    persist_result=True,
)
def split_task(params: ParamsValue, validation: ValidationReport | None = None) -> Split:
    """The split of the validated data; ``validation`` (the validate task's result, which
    the split follows) only enters the cache key."""
    from lerenet.stages import split

    return split.run(params_of(params))


@task(name="train", retries=0)
def train_task(params: ParamsValue, split: Split | None = None) -> TrainSummary:
    from lerenet.stages import train as train_stage

    with library_logs():
        # the resolved params are logged with the run (config/params.resolved.yaml); no file
        # path travels, so a worker's own checkout cannot stand in for the parent's params
        # a rerun after a killed worker continues from the checkpoints stored with the run
        return train_stage.run(
            params_of(params), show_progress=False, resume_tracked=True, split=split
        )


@task(name="evaluate", retries=0)
def evaluate_task(
    params: ParamsValue, train: TrainSummary, split: Split | None = None
) -> EvaluationReport:
    """Evaluate the training's model (``train.model_uri``, in MLflow) beside its start and its
    baseline, all three loaded from the training's run: the summary comes in memory and no
    file the train task wrote is read (on a remote worker those are not on this machine)."""
    from lerenet.stages import evaluate as evaluate_stage

    with library_logs():
        # from the run's stored models: the train task's files may be on another worker
        return evaluate_stage.run(
            params_of(params), train=train, model_uri=train.challenger, split=split, from_store=True
        )


@task(name="gate", retries=0)
def gate_task(
    params: ParamsValue,
    train: TrainSummary,
    evaluation: EvaluationReport,
    split: Split | None = None,
) -> GateDecision:
    """Gate the training's model against production and the baseline; logged to its run.
    The evaluation's per-episode stats come in memory, not from the files it wrote."""
    from lerenet.stages import gate as gate_stage

    return gate_stage.run(
        params_of(params),
        challenger=train.challenger,
        train=train,
        evaluation=evaluation,
        split=split,
    )


@task(name="promote", **IO_RETRIES)
def promote_task(
    params: ParamsValue, train: TrainSummary, evaluation: EvaluationReport, production: bool
) -> Promotion:
    from lerenet.stages import promote as promote_stage

    return promote_stage.run(
        params_of(params),
        run_id=train.run_id,
        to="production" if production else "staging",
        evaluation=evaluation,
    )


@task(name="onboard: score production and baseline on the new class", **IO_RETRIES)
def onboard_task(
    params: ParamsValue, classes: list[str], split: Split | None = None
) -> OnboardReport:
    from lerenet.stages.onboard import onboard_report

    with library_logs():
        return onboard_report(params_of(params), classes, split=split)
