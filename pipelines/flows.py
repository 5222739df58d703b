"""Prefect flows: ``retrain`` (scheduled or on demand), ``onboard-class`` and ``train-gpu``.

``onboard-class``: ingest → validate → version data → split (the class novel) → score the
production model and the baseline on the class; nothing trained or registered.

``retrain``: ingest → validate → version data → split → train → evaluate → gate → promote.
Training runs where the GPU is: with ``train_deployment`` set (e.g.
``train-gpu/lerenet-train-gpu``) it is started on that deployment's work pool with
``run_deployment`` and the parent waits for its result; otherwise it runs in-process. The
promote step holds the global concurrency limit ``lerenet-promote`` (one slot) so two
retrains never move registry aliases at the same time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from lerenet.evaluation.outcome import class_table, seen_table, verdict
from lerenet.results import EvaluationReport, TrainSummary
from lerenet.stages.onboard import advice, report_table

if TYPE_CHECKING:
    from lerenet.data.split_result import Split
    from lerenet.evaluation.gate import GateDecision
    from lerenet.tracking.registry import Promotion

from pipelines.outcomes import OnboardResult, RetrainResult
from pipelines.result_store import TypedJSONSerializer
from pipelines.tasks import (
    evaluate_task,
    extra_stages,
    gate_task,
    ingest_task,
    onboard_task,
    outputs_missing,
    params_of,
    promote_task,
    record_task,
    resolve_params,
    restore_task,
    split_task,
    stage_cache_key,
    stage_task,
    train_task,
    validate_task,
    version_task,
    with_overrides,
)

PROMOTE_LIMIT = "lerenet-promote"
RESULTS = TypedJSONSerializer()  # every flow's results, and its tasks', as typed JSON


def ensure_concurrency_limit(name: str = PROMOTE_LIMIT, limit: int = 1) -> None:
    """Create the global concurrency limit if the server does not have it yet."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit)
            )


def _resolved(
    params: dict | None, params_sha256: str | None, params_path: str, overrides: dict | None
) -> dict:
    """The params a flow runs with: those passed by value (checked against their sha256),
    then the deployment's own ``overrides`` (a GPU deployment's ``train.device: cuda``); or
    the file with its overrides, resolved now, once for the whole run."""
    from lerenet.config.schema import params_sha256 as sha_of

    if params is None:
        params = resolve_params(params_path, overrides)
    else:
        got = sha_of(params_of(params))
        if params_sha256 and got != params_sha256:
            raise RuntimeError(
                f"params mismatch: sha256 {got} != {params_sha256} (the caller's resolved "
                "params were changed on the way)"
            )
        params = with_overrides(params, overrides or {})
    get_run_logger().info("params sha256 %s", sha_of(params_of(params)))
    return params


@flow(name="train-gpu", log_prints=True, result_serializer=RESULTS)
def train_gpu(
    params: dict | None = None,
    params_sha256: str | None = None,
    expected_split_sha256: str | None = None,
    pull_data: bool = True,
    params_path: str = "params.yaml",
    overrides: dict | None = None,
    data_version: str | None = None,
    dvc_remote: str | None = None,
) -> TrainSummary:
    """The training deployment for a GPU work pool: fetch data, rebuild the split, train.

    ``params`` come by value from the parent flow with their sha256 (checked here); the
    worker's own params file is read only when none are passed. ``data_version`` (the
    parent's, ``dvc:<md5>.dir``) is pulled from the DVC remote whatever the worker's clone
    records; without it the clone's own ``data.dvc`` is pulled. The split is rebuilt from the
    same manifest and params (deterministic) and must match the parent's split sha256, so the
    worker trains on exactly the episodes the parent evaluates. ``dvc_remote``: the DVC remote
    to pull from (the parent's), else the clone's default.
    """
    from lerenet.lineage.data_versions import checkout_data_version
    from lerenet.lineage.data_versions import pull_data as dvc_pull_data

    params = _resolved(params, params_sha256, params_path, overrides)
    data_root = Path(params_of(params).data.root)
    if pull_data and data_version and data_version.startswith("dvc:"):
        if checkout_data_version(data_version, data_root, remote=dvc_remote):
            get_run_logger().info("pulled data version %s from the DVC remote", data_version)
    elif pull_data and Path(".dvc").is_dir():
        dvc_pull_data(data_root, remote=dvc_remote)
    # a fresh clone has no splits/ even when the shared result store holds a cached split
    # of the same data and params (an earlier worker's): recompute it then, do not skip it
    missing = outputs_missing(params_of(params))["split"]
    split = split_task.with_options(refresh_cache=missing or None)(params)
    if expected_split_sha256 and split.sha256 != expected_split_sha256:
        raise RuntimeError(
            f"split mismatch on the worker: {split.sha256} != "
            f"{expected_split_sha256} (data or params differ from the parent)"
        )
    return train_task(params, split)


def _metrics_table(evaluation: EvaluationReport) -> list[dict]:
    rows = []
    for name, scores in evaluation.models().items():
        for shot, m in scores.shots.items():
            rows.append(
                {
                    "model": name,
                    "shots": shot,
                    "mIoU": round(m.miou, 4),
                    "mIoU 95% CI": f"[{m.miou_low:.3f}, {m.miou_high:.3f}]",
                    "FB-IoU": round(m.fbiou, 4),
                    "episodes": m.episodes,
                }
            )
    return rows


def _summary(result: TrainSummary | dict) -> TrainSummary:
    """A training deployment's result as the typed summary (a worker on an older release of
    this code returns the dict form)."""
    return result if isinstance(result, TrainSummary) else TrainSummary.from_dict(result)


@flow(name="retrain", log_prints=True, result_serializer=RESULTS)
def retrain(
    source: str | None = None,
    params_path: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    train_deployment: str | None = None,
    promote_production: bool = True,
    version: bool = True,
    ingest_options: dict | None = None,
    dvc_remote: str | None = None,
) -> RetrainResult:
    """Retrain LERENet end to end and promote the result if it passes the gate.

    The params file is read once, here; every task and the training worker get the resolved
    params by value (the worker checks their sha256). ``dvc_remote``: the DVC remote data is
    restored from and pushed to (a deployment's: the stack's S3, set by ``lerenet stack
    deploy``); None: the repository's default remote."""

    logger = get_run_logger()
    params = _resolved(None, None, params_path, overrides)
    restored = restore_task(params, required=not source, remote=dvc_remote)
    ingest = ingest_task(params, source, **(ingest_options or {})) if source else None
    missing = outputs_missing(params_of(params))
    validate = validate_task.with_options(refresh_cache=missing["validate"] or None)(params)
    data = version_task(params, remote=dvc_remote) if version else None
    split = split_task.with_options(refresh_cache=missing["split"] or None)(params, validate)
    stages = {
        name: stage_task.with_options(  # declared stages without a task of their own
            name=name, cache_key_fn=stage_cache_key(name), refresh_cache=missing[name] or None
        )(name, params)
        for name in extra_stages()
    }
    if train_deployment:
        train = _train_remotely(train_deployment, params, split, dvc_remote)
    else:
        train = train_task(params, split)
    # the split, the training's summary and the evaluation travel in memory, not via files
    evaluation = evaluate_task(params, train, split)
    gate = gate_task(params, train, evaluation, split)
    # the stages ran here with params.yaml as it is: what `dvc repro` would have made
    dvc_lock = record_task() if not overrides and not train_deployment else None
    from prefect.concurrency.sync import concurrency

    ensure_concurrency_limit()
    with concurrency(PROMOTE_LIMIT, occupy=1, strict=True):
        promo = promote_task(params, train, evaluation, promote_production and gate.passed)
    _report_artifacts(params, train, evaluation, gate, promo)
    result = RetrainResult(
        restored, validate, split, train, evaluation, gate, promo, ingest, data, stages, dvc_lock
    )
    logger.info("%s v%s → @%s", promo.name, promo.version, promo.alias)
    return result


def _train_remotely(
    deployment: str, params: dict, split: Split, dvc_remote: str | None
) -> TrainSummary:
    """Run the training deployment (a GPU worker) with the params by value, their sha256, the
    split and data version it must reproduce, and wait for its TrainSummary."""
    from prefect.deployments import run_deployment

    from lerenet.config.schema import params_sha256
    from lerenet.lineage.records import data_version

    run = run_deployment(
        deployment,
        parameters={
            "params": params,
            "params_sha256": params_sha256(params_of(params)),
            "expected_split_sha256": split.sha256,
            "data_version": data_version(params_of(params).data.root),
            "dvc_remote": dvc_remote,
        },
        timeout=None,
    )
    if not run.state or not run.state.is_completed():
        raise RuntimeError(
            f"training deployment {deployment} ended "
            f"{run.state.name if run.state else 'without state'}"
        )
    return _summary(run.state.result())


def _report_artifacts(
    params: dict,
    train: TrainSummary,
    evaluation: EvaluationReport,
    gate: GateDecision,
    promo: Promotion,
) -> None:
    """The run's Prefect artifacts: test metrics, per-class IoU against the baseline, what the
    retrain bought on the training classes' held-out images, and the verdict with UI links."""
    from lerenet.tracking.runs import tracking_uri
    from lerenet.tracking.uris import ui_links

    rows = _metrics_table(evaluation)
    if rows:
        create_table_artifact(rows, key="test-metrics", description="novel-class test episodes")
    create_table_artifact(class_table(evaluation), key="class-iou", description="model vs baseline")
    bought = seen_table(evaluation)
    if bought:
        create_table_artifact(
            bought,
            key="seen-class-iou",
            description="training classes' held-out images: IoU before (start) and after training",
        )
    links = ui_links(
        tracking_uri(params_of(params).tracking), promo.name, promo.version, train.run_id
    )
    create_markdown_artifact(
        verdict(evaluation, gate, promo) + (f"\n\n{links}" if links else ""), key="promotion"
    )


@flow(name="onboard-class", log_prints=True, result_serializer=RESULTS)
def onboard_class(
    source: str,
    class_name: str | None = None,
    params_path: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    layout: str | None = None,
    version: bool = True,
    dvc_remote: str | None = None,
) -> OnboardResult:
    """Add a new defect class the few-shot way: ingest, validate and version it, split it as a
    novel class, then score the production model and the baseline on it, 1- and 5-shot.

    Nothing is trained and nothing is registered: a few-shot model serves a new class from its
    supports. Retraining with the class among the training classes is the separate ``retrain``
    flow (advised in the result when production is worse than the baseline on the class).
    ``dvc_remote``: as for ``retrain``.
    """
    logger = get_run_logger()
    params = _resolved(None, None, params_path, overrides)
    restored = restore_task(params, remote=dvc_remote)
    ingest = ingest_task(params, source, layout=layout, class_name=class_name)
    new = ingest.new_classes or ([class_name] if class_name else [])
    if not new:
        raise ValueError(f"{source} added no new class (already in the dataset?)")
    merged = with_overrides(params, {"split.novel_classes": new})
    validate = validate_task.with_options(refresh_cache=True)(merged)
    data = version_task(merged, remote=dvc_remote) if version else None
    split = split_task.with_options(refresh_cache=True)(merged, validate)
    report = onboard_task(merged, new, split)
    create_table_artifact(
        report_table(report),
        key="onboarded-class",
        description=f"{', '.join(new)} with {report.model_uri or 'no production model'}",
    )
    said = advice(report)
    if not ingest.added and ingest.skipped:  # the same source onboarded before
        when = f" on {report.onboarded_before}" if report.onboarded_before else " before"
        said = (
            f"All {ingest.skipped} pairs of {source} were already in the dataset "
            f"(onboarded first{when}): nothing was added, the scores are of the class as it "
            "was. " + said
        )
    elif report.onboarded_before:
        said = (
            f"{', '.join(new)} was onboarded before, first on {report.onboarded_before}; the "
            "new pairs joined it. " + said
        )
    result = OnboardResult(restored, ingest, new, validate, split, report, said, data)
    logger.info("%s", result.advice)
    return result
