"""Model URIs → the MLflow runs and versions behind them, and what is logged back to them.

A stage is handed a model as a URI (``runs:/…``, ``models:/name@alias``, ``models:/m-…``);
lineage, gate evidence and export files belong to the run that logged it, which only the
tracking server knows. The caller configures the tracking URI (``runs.configure``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_of(model_uri: str) -> str | None:
    """The run that logged ``model_uri``: a ``runs:/<id>/<path>`` URI names it; a logged
    model (``models:/m-<id>``, what MLflow 3 returns for a logged model) knows it on the
    tracking server (configured by the caller). Else, or when the server does not know the
    model, None."""
    if model_uri.startswith("runs:/"):
        return model_uri.split("/")[1]
    if not model_uri.startswith("models:/m-"):
        return None
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_logged_model(model_uri.removeprefix("models:/")).source_run_id
    except MlflowException:
        return None


def version_of(uri: str) -> Any | None:
    """The registered ModelVersion ``models:/name@alias`` or ``models:/name/version`` names;
    None for any other URI (a run's, a logged model's, a file)."""
    from mlflow import MlflowClient

    if not uri.startswith("models:/") or uri.startswith("models:/m-"):
        return None
    ref = uri.removeprefix("models:/")
    client = MlflowClient()
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return client.get_model_version_by_alias(name, alias)
    name, version = ref.rsplit("/", 1)
    return client.get_model_version(name, version)


def version_run_id(uri: str) -> tuple[str | None, str | None, str | None]:
    """``models:/name@alias`` or ``models:/name/version`` → (run id, name, version)."""
    mv = version_of(uri)
    if mv is None:
        return None, None, None
    return mv.run_id, mv.name, str(mv.version)


def log_export(model_uri: str, onnx_file: Path, max_abs_diff: float) -> str | None:
    """Log an exported ONNX file to the run of the registered version ``model_uri`` names,
    and tag that version with the export's parity; returns the run id (None, and nothing
    logged, for a URI that names no registered version, such as a local file)."""
    run_id, name, version = version_run_id(model_uri)
    if run_id:
        import mlflow

        with mlflow.start_run(run_id=run_id):
            mlflow.log_artifact(str(onnx_file), artifact_path="onnx")
        mlflow.MlflowClient().set_model_version_tag(
            name, version, "lerenet.onnx_max_abs_diff", f"{max_abs_diff:.3g}"
        )
    return run_id


def ui_links(tracking_uri: str, name: str, version: str, run_id: str | None) -> str:
    """Markdown links to the run and the registered version in the MLflow UI (for a Prefect
    artifact); "" for a tracking store without a UI (SQLite, a file) or an unknown run."""
    if not tracking_uri.startswith(("http://", "https://")):
        return ""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    base = tracking_uri.rstrip("/")
    links = [f"[{name} v{version}]({base}/#/models/{name}/versions/{version})"]
    if run_id:
        try:
            experiment = MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
            links.insert(0, f"[MLflow run]({base}/#/experiments/{experiment}/runs/{run_id})")
        except MlflowException:
            pass
    return " · ".join(links)
