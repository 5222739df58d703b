"""Services down mid-run: clear errors naming the service, nothing half-promoted."""

from __future__ import annotations

from pathlib import Path

import pytest

from lerenet.config.schema import load_params
from lerenet.services.reach import ServiceUnavailable, require_s3
from tests.conftest import DVC, run_ok, tiny_params

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_mlflow_down_before_promotion_changes_nothing(
    tiny_project: Path, s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from lerenet.stack.mlflow_server import MlflowServer
    from lerenet.stages import promote as promote_stage
    from lerenet.stages import train as train_stage

    state = tmp_path / "mlflow-state"
    server = MlflowServer(
        state, artifacts_destination="s3://lerenet-artifacts/failure", s3_env=s3_server.env()
    ).start()
    (tiny_project / "params.yaml").write_text(tiny_params(tiny_project, server.uri))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)  # for bare MlflowClient()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    params = load_params("params.yaml")
    try:
        train_stage.run(params, params_file=Path("params.yaml"), show_progress=False)
        promote_stage.run(params)
        before = dict(MlflowClient().get_registered_model("lerenet").aliases)
        train_stage.run(params, params_file=Path("params.yaml"), show_progress=False)
        server.stop()  # the tracking server goes down between training and promotion
        with pytest.raises(ServiceUnavailable, match=f"MLflow tracking server at {server.uri}"):
            promote_stage.run(params)
        with pytest.raises(ServiceUnavailable, match="MLflow tracking server"):
            train_stage.run(params, params_file=Path("params.yaml"), show_progress=False)
        # the registry commands say so in one sentence (they printed ~400 traceback lines)
        from typer.testing import CliRunner

        from lerenet.cli.main import app

        for args in (["gate"], ["rollback", "--reason", "outage drill"], ["promote"]):
            out = CliRunner().invoke(app, args)
            assert out.exit_code != 0, (args, out.output)
            assert f"MLflow tracking server at {server.uri}" in " ".join(out.output.split())
            assert "Traceback" not in out.output and len(out.output.splitlines()) <= 4, args
    finally:
        server.stop()
    restarted = MlflowServer(
        state,
        artifacts_destination="s3://lerenet-artifacts/failure",
        s3_env=s3_server.env(),
        port=server.port,
    ).start()
    try:
        assert dict(MlflowClient().get_registered_model("lerenet").aliases) == before
        assert len(MlflowClient().search_model_versions("name='lerenet'")) == 1
    finally:
        restarted.stop()


def test_s3_down_and_wrong_credentials_name_the_bucket(s3_env, monkeypatch) -> None:
    require_s3("lerenet-data")  # up: passes
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(ServiceUnavailable, match="S3 bucket 'lerenet-data' at http://127"):
        require_s3("lerenet-data", attempts=2, delay=0.1)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(ServiceUnavailable, match="127.0.0.1:9"):
        require_s3("lerenet-data", attempts=2, delay=0.1)


def test_dvc_push_and_s3_ingest_failures_name_bucket_and_endpoint(
    s3_env, synthetic_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lerenet.data.ingest import ingest
    from lerenet.lineage.data_versions import version_data

    repo = synthetic_dataset.parent
    for cmd in (
        ["init", "--no-scm", "-q"],
        ["remote", "add", "-d", "store", "s3://lerenet-data/failures"],
        ["remote", "modify", "--local", "store", "endpointurl", s3_env.endpoint],
    ):
        run_ok([*DVC, *cmd], repo)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(ServiceUnavailable, match=f"S3 bucket 'lerenet-data' at {s3_env.endpoint}"):
        version_data(Path("data"), repo=repo)
    # the same S3, unreachable, as the source of an ingest: named before any download
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    monkeypatch.setattr("lerenet.services.reach.time.sleep", lambda _: None)  # skip the backoff
    with pytest.raises(ServiceUnavailable, match="S3 bucket 'lerenet-data' at http://127.0.0.1:9"):
        ingest("s3://lerenet-data/new-class/", repo / "data", workers=1, show_progress=False)


def test_mlflow_dying_mid_training_keeps_the_step_and_resume_finishes_the_run(
    tiny_project: Path, s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server goes away between two validation rounds: training stops at that step with
    one sentence, last.pt holds that step (it used to hold the step before, after 900 lines
    and 10 tracebacks), and once the server is back `--resume` redoes the cut-short round and
    finishes the same run."""
    import torch
    from mlflow import MlflowClient

    import lerenet.training.session
    from lerenet.stack.credentials import kept_login
    from lerenet.stack.mlflow_server import MlflowServer
    from lerenet.stages import train as train_stage
    from lerenet.tracking.runs import TrackingLost

    state = tmp_path / "mlflow-state"

    def server(port: int | None = None) -> MlflowServer:
        return MlflowServer(
            state,
            artifacts_destination="s3://lerenet-artifacts/midrun",
            s3_env=s3_server.env(),
            auth=kept_login(state, "mlflow", "lerenet-admin"),
            port=port,
        ).start()

    first = server()
    (tiny_project / "params.yaml").write_text(tiny_params(tiny_project, first.uri))
    for key, value in first.client_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    params = load_params("params.yaml")
    real_round = lerenet.training.session.validate_round

    def round_that_loses_the_server(model, params, device, fold, run, step, *args, **kwargs):
        if step == 3:
            first.stop()  # idempotent: the seen-class round of step 3 finds it stopped
        return real_round(model, params, device, fold, run, step, *args, **kwargs)

    monkeypatch.setattr(lerenet.training.session, "validate_round", round_that_loses_the_server)
    try:
        with pytest.raises(TrackingLost) as lost:
            train_stage.run(params, params_file=Path("params.yaml"), show_progress=False)
    finally:
        first.stop()
    message = str(lost.value)
    assert f"MLflow tracking server at {first.uri} stopped answering" in message
    assert "last.pt holds step 3" in message and "\n" not in message
    assert torch.load("outputs/train/last.pt", weights_only=True)["step"] == 3
    monkeypatch.setattr(lerenet.training.session, "validate_round", real_round)
    again = server(port=first.port)
    try:
        summary = train_stage.run(
            params, params_file=Path("params.yaml"), resume=True, show_progress=False
        )
        run = MlflowClient().get_run(summary.run_id)
        assert run.info.status == "FINISHED" and summary.steps == 6
        steps = [m.step for m in MlflowClient().get_metric_history(summary.run_id, "val/miou")]
        assert 3 in steps and 6 in steps  # the round the outage cut short was redone
    finally:
        again.stop()
