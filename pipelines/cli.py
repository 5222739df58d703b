"""``lerenet-pipeline``: run the Prefect flows from a shell (the Prefect driver's front door).

Prefect is ephemeral unless ``PREFECT_API_URL`` points at a server (``lerenet stack up``
prints it). The library CLI (``lerenet``) stays free of Prefect; this is its orchestration twin.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from pipelines.outcomes import RetrainResult

from lerenet.cli.common import ParamsOpt, SetOpt, console, fail, new_app, print_rows
from lerenet.services.offline import apply_offline_env

apply_offline_env()

app = new_app("Run lerenet's Prefect flows (retrain, onboard-class).")
DvcRemoteOpt = Annotated[
    str | None,
    typer.Option(
        metavar="NAME",
        help="DVC remote to restore the recorded data from and push new data to (default: "
        "the repository's default remote; a deployment's is the stack's S3, `s3`)",
    ),
]


def _start_prefect_while_importing() -> None:
    """Start Prefect's ephemeral API server (when no ``PREFECT_API_URL`` is set) in a thread
    while this one imports the stage libraries; both take seconds and neither needs the other.

    Measured by ``bench/orchestration.py``: this hides most of the server's start-up behind the
    torch/MLflow/Great Expectations imports the stages pay anyway. Any start-up error is left
    for the flow to raise: it starts the same singleton server itself when it finds none.
    """
    import threading

    from prefect.settings import PREFECT_API_URL

    thread = None
    if not PREFECT_API_URL.value():

        def start() -> None:
            from prefect.server.api.server import SubprocessASGIServer

            try:
                SubprocessASGIServer().start()
            except Exception:  # the flow retries the start and reports the error
                return

        thread = threading.Thread(target=start, name="prefect-ephemeral-start", daemon=True)
        thread.start()
    import great_expectations  # noqa: F401
    import mlflow  # noqa: F401
    import torch  # noqa: F401

    import lerenet.stages.evaluate  # noqa: F401
    import lerenet.stages.train  # noqa: F401
    import lerenet.training.loop  # noqa: F401

    if thread is not None:
        thread.join()


def _preflight(
    params: Path, overrides: dict, source: str | None = None, class_name: str | None = None
) -> None:
    """The inputs a flow would reject minutes later, after a Prefect server started and a task
    failed with a traceback: rejected now, in one sentence (exit 2)."""
    from lerenet.config.schema import ConfigError, load_params
    from lerenet.data.manifest import check_class_name
    from lerenet.services.storage import is_s3_uri

    try:
        load_params(params, overrides)
        if class_name is not None:
            check_class_name(class_name, "--class-name")
    except (ConfigError, ValueError) as err:
        fail(str(err), 2)
    if source is not None and not is_s3_uri(source) and not Path(source).exists():
        fail(f"--source {source}: no such folder or archive (or give an s3:// prefix)", 2)


def _run_flow(flow, **kwargs):
    """The flow's result; an expected failure of one of its stages (bad data, a service down,
    a refused promotion) as one sentence, exit 1: Prefect's logs keep the detail."""
    try:
        return flow(**kwargs)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        fail(f"{type(err).__name__}: {err}", 1)


def _overrides(items: list[str] | None) -> dict:
    from lerenet.config.schema import ConfigError, parse_overrides

    try:
        return parse_overrides(items)
    except ConfigError as err:
        raise typer.BadParameter(str(err)) from None


@app.command()
def retrain(
    source: Annotated[str | None, typer.Option(help="new data to ingest first (optional)")] = None,
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    train_deployment: Annotated[
        str | None, typer.Option(help="run training on this deployment (GPU pool)")
    ] = None,
    no_production: Annotated[
        bool, typer.Option("--no-production", help="stop at @staging even if the gate passes")
    ] = False,
    dvc_remote: DvcRemoteOpt = None,
) -> None:
    """ingest → validate → version → split → train → evaluate → gate → promote."""
    from pipelines.flows import retrain as retrain_flow

    sets = _overrides(overrides)
    _preflight(params, sets, source)
    _start_prefect_while_importing()
    result = _run_flow(
        retrain_flow,
        source=source,
        params_path=str(params),
        overrides=sets,
        train_deployment=train_deployment,
        promote_production=not no_production,
        dvc_remote=dvc_remote,
    )
    _print_outcome(result)


@app.command("onboard-class")
def onboard_class(
    source: Annotated[str, typer.Option(help="folder, archive or s3:// prefix of the class")],
    class_name: Annotated[str | None, typer.Option(help="class name for a flat folder")] = None,
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
    layout: Annotated[str | None, typer.Option(help="source layout (default: detect)")] = None,
    version: Annotated[bool, typer.Option(help="dvc add + push the new data version")] = True,
    dvc_remote: DvcRemoteOpt = None,
) -> None:
    """Add a new defect class the few-shot way: ingest, validate, version, split it as a novel
    class, and score the production model and the baseline on it (1- and 5-shot IoU with 95%
    CIs). Nothing is trained or registered; `retrain` is the explicit next step if needed."""

    from lerenet.stages.onboard import report_table
    from pipelines.flows import onboard_class as onboard_flow

    sets = _overrides(overrides)
    _preflight(params, sets, source, class_name)
    _start_prefect_while_importing()
    result = _run_flow(
        onboard_flow,
        source=source,
        class_name=class_name,
        params_path=str(params),
        overrides=sets,
        layout=layout,
        version=version,
        dvc_remote=dvc_remote,
    )
    report = result.onboard
    print_rows(report_table(report), f"new class: {', '.join(result.new_classes)}")
    console.print(f"model: {report.model_uri or 'none in production'}; nothing registered")
    console.print(result.advice)


def _print_outcome(result: RetrainResult) -> None:
    """Per-class IoU of the model next to the baseline's, then the verdict in words."""

    from lerenet.evaluation.outcome import class_table, seen_table, verdict

    titles = {
        "test classes (IoU)": class_table(result.evaluate),
        "training classes, held-out images (IoU before → after training)": seen_table(
            result.evaluate
        ),
    }
    for title, rows in titles.items():
        print_rows(rows, title)
    console.print(verdict(result.evaluate, result.gate, result.promote))
    from lerenet.lineage.data_versions import pending_commit

    pending = pending_commit()
    if pending:
        console.print(
            f"to keep this run's data version and results with the code: git add "
            f"{' '.join(pending)} && git commit (a deployment restores what the committed "
            "data.dvc records)"
        )


if __name__ == "__main__":  # pragma: no cover
    app()
