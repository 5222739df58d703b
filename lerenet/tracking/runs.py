"""MLflow tracking: where runs go, and a thin run handle the stages log through.

Tracking URI: ``tracking.tracking_uri`` in params, else ``$MLFLOW_TRACKING_URI`` (deployment:
what ``lerenet stack up`` prints; the repository's params leave the URI unset), else a SQLite
file ``mlflow.db`` in the working directory (artifacts beside it in ``mlartifacts/``).
Metric and run names are fixed strings so runs line
up in the MLflow UI.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lerenet.config.schema import Params, TrackingConfig, flatten
from lerenet.services.reach import ServiceUnavailable, first_line, mlflow_health

DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(cfg: TrackingConfig) -> str:
    # params first: mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI into the process
    # environment, so an env-first rule would let one run's URI leak into the next
    return cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


# MLflow's HTTP client retries 7 times with backoff factor 2 and a 120 s timeout by default:
# minutes per call against a dead server (a retrain whose tracking server died took 500 s to
# fail). Three retries, 1-2-4 s apart, 30 s timeout; a value the user set wins.
MLFLOW_CLIENT_POLICY = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def configure(cfg: TrackingConfig) -> Any:
    """Point mlflow at the configured server/database and experiment; returns the module."""
    import mlflow

    for key, value in MLFLOW_CLIENT_POLICY.items():
        os.environ.setdefault(key, value)  # MLflow reads its client settings from here

    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:") and mlflow.get_experiment_by_name(cfg.experiment) is None:
        # local default: keep artifacts next to the database, not in a cwd-relative ./mlruns
        db = Path(uri.removeprefix("sqlite:///")).resolve()
        mlflow.create_experiment(
            cfg.experiment, artifact_location=(db.parent / "mlartifacts").as_uri()
        )
    mlflow.set_experiment(cfg.experiment)
    return mlflow


def is_tracked(model_uri: str) -> bool:
    """A model URI only a tracking server resolves (a registry version, a run, a logged model)."""
    return model_uri.startswith(("models:/", "runs:/"))


def connect(cfg: TrackingConfig) -> Any:
    """``configure``, once the tracking server has answered its health check: a server that is
    down is one sentence (``ServiceUnavailable``), not minutes of retries and tracebacks."""
    from lerenet.services.reach import require_mlflow

    require_mlflow(tracking_uri(cfg))
    return configure(cfg)


class TrackingLost(ServiceUnavailable):
    """The tracking server stopped answering while a run was open (the run stays RUNNING
    until a later call reaches the server)."""


def answers(uri: str) -> bool:
    """Whether an ``http(s)://`` tracking server's ``/health`` answers now (one try, 3 s);
    a local store always does."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        mlflow_health(uri, 3)
    except OSError:
        return False
    return True


class Run:
    """An active MLflow run; every method is a no-op when tracking is disabled.

    A call that fails while the server does not answer raises ``TrackingLost`` (one sentence
    naming the server and the run), and every later call raises it again without trying: a
    training stops once, saves, and says so, instead of a traceback per queued metric.
    """

    def __init__(self, mlflow: Any | None, run_id: str | None) -> None:
        self.mlflow, self.run_id = mlflow, run_id
        self.lost: str | None = None

    @property
    def enabled(self) -> bool:
        return self.mlflow is not None

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, an MLflow call of this run, turned into ``TrackingLost``
        when it failed because the server is gone (any other failure keeps its traceback)."""
        if not self.enabled:
            return None
        if self.lost is not None:
            raise TrackingLost(self.lost)
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            self.lost = tracking_lost(self, err)
            if self.lost is None:
                raise
            raise TrackingLost(self.lost) from None

    def metrics(self, values: dict[str, float], step: int | None = None, wait: bool = True) -> None:
        """``wait=False``: queue them (MLflow's asynchronous logging, flushed when the run
        ends) instead of waiting for the server, as a training loop's per-step metrics do."""
        if self.enabled:
            values = {k: float(v) for k, v in values.items()}
            self.call(self.mlflow.log_metrics, values, step=step, synchronous=wait)

    def tags(self, values: dict[str, str]) -> None:
        if self.enabled:
            self.call(self.mlflow.set_tags, values)

    def artifact(self, path: Path, folder: str | None = None) -> None:
        if self.enabled and Path(path).exists():
            self.call(self.mlflow.log_artifact, str(path), artifact_path=folder)

    def figure_png(self, png: Path, name: str) -> None:
        if self.enabled:
            self.call(self.mlflow.log_artifact, str(png), artifact_path=name)

    def text(self, text: str, name: str) -> None:
        if self.enabled:
            self.call(self.mlflow.log_text, text, name)


def tracking_lost(run: Run | None, err: BaseException) -> str | None:
    """One sentence when ``err`` came from ``run``'s tracking server being gone (it does not
    answer its health check now), else None: the error is something else, with its traceback."""
    if isinstance(err, TrackingLost):
        return str(err)
    if run is None or not run.enabled:
        return None
    uri = run.mlflow.get_tracking_uri()
    if answers(uri):
        return None
    return (
        f"MLflow tracking server at {uri} stopped answering during run {run.run_id} "
        f"({first_line(err)})"
    )


class _QueuedFailures(logging.Filter):
    """MLflow's asynchronous logging (per-step metrics) reports a failed batch in its own
    thread, once per batch: the first failure while the server is gone marks the run lost
    (its next call raises ``TrackingLost``) and the repeats are not printed."""

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run

    def filter(self, record: logging.LogRecord) -> bool:
        if self.run.lost is None and record.levelno >= logging.ERROR:
            self.run.lost = tracking_lost(self.run, RuntimeError(record.getMessage()))
            return True
        return self.run.lost is None


def _end_lost_run(mlflow: Any) -> None:
    """Close a run whose server went away: one quiet try to mark it FAILED (it succeeds when
    the server is back), else leave it RUNNING for ``--resume`` to continue."""
    quiet = [logging.getLogger(n) for n in ("urllib3", "mlflow")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        mlflow.end_run("FAILED")
    except Exception:  # still gone: nothing to mark
        from mlflow.tracking import fluent

        fluent._active_run_stack.get().clear()  # no API forgets a run without the server
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def start_run(
    params: Params,
    *,
    run_name: str,
    tags: dict[str, str] | None = None,
    enabled: bool = True,
    run_id: str | None = None,
    params_file: Path | None = None,
) -> Iterator[Run]:
    """Start (or resume, by ``run_id``) a run with flattened params, tags and the params file."""
    if not enabled:
        yield Run(None, None)
        return
    mlflow = configure(params.tracking)
    active = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name)
    run = Run(mlflow, active.info.run_id)
    queue_log = logging.getLogger("mlflow.utils.async_logging.async_logging_queue")
    queued_failures = _QueuedFailures(run)
    queue_log.addFilter(queued_failures)
    try:
        if run_id is None:
            mlflow.log_params(flatten(params))
            if params_file is not None and Path(params_file).exists():
                mlflow.log_artifact(str(params_file), artifact_path="config")
            lock = Path("dvc.lock")
            if lock.exists():
                mlflow.log_artifact(str(lock), artifact_path="config")
            import yaml

            with tempfile.TemporaryDirectory() as tmp:
                resolved = Path(tmp) / "params.resolved.yaml"
                resolved.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
                mlflow.log_artifact(str(resolved), artifact_path="config")
        if tags:
            mlflow.set_tags(tags)
        yield run
    except TrackingLost:
        _end_lost_run(mlflow)
        raise
    except BaseException:
        mlflow.end_run("FAILED")  # what MLflow's own context manager does on an error
        raise
    else:
        mlflow.end_run()
    finally:
        queue_log.removeFilter(queued_failures)


def first_onboarding(experiment: str, classes: list[str]) -> str | None:
    """When an earlier onboarding run (``lerenet.stage`` onboard) scored any of ``classes``:
    the first one's start, UTC to the minute; None if never (a repeated onboarding says it)."""
    import time

    from mlflow import MlflowClient

    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        "tags.`lerenet.stage` = 'onboard'",
        order_by=["attributes.start_time ASC"],
    )
    for run in runs:
        if set(run.data.tags.get("lerenet.onboard_classes", "").split(",")) & set(classes):
            return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(run.info.start_time / 1000))
    return None


@dataclass(frozen=True)
class RecordedRun:
    """What a training run recorded that reproducing it needs: its resolved params and data
    manifest (downloaded), its tags (data version, split digest) and its metrics."""

    run_id: str
    params_yaml: Path
    manifest: Path
    tags: dict[str, str]
    metrics: dict[str, float]


def recorded_run(run_id: str, dest: Path) -> RecordedRun:
    """Download run ``run_id``'s params and manifest into ``dest`` and read its tags and
    metrics, so ``lerenet reproduce`` needs no MLflow client of its own."""
    import mlflow

    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    return RecordedRun(
        run_id,
        Path(client.download_artifacts(run_id, "config/params.resolved.yaml", str(dest))),
        Path(client.download_artifacts(run_id, "data/manifest.csv", str(dest))),
        dict(run.data.tags),
        dict(run.data.metrics),
    )
