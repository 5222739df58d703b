"""Expected errors end in one sentence, not a traceback (issue #12, item 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lerenet.cli import app

runner = CliRunner()


def _one_sentence(output: str) -> str:
    assert "Traceback" not in output, output
    return " ".join(output.split())


def test_rollback_on_a_fresh_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(
        f"recipe: paper\ntracking:\n  tracking_uri: sqlite:///{tmp_path}/mlflow.db\n"
    )
    result = runner.invoke(app, ["rollback", "--reason", "drill"])
    assert result.exit_code == 1
    assert "no such registered model, nothing to roll back" in _one_sentence(result.output)


def test_ingest_from_an_unreachable_s3_names_bucket_and_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("lerenet.services.time.sleep", lambda _: None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    Path("params.yaml").write_text("recipe: paper\ndata:\n  root: data\n")
    result = runner.invoke(app, ["ingest", "--source", "s3://lerenet-data/new-class/"])
    assert result.exit_code == 2
    text = _one_sentence(result.output)
    assert "S3 bucket 'lerenet-data' at http://127.0.0.1:9 is unreachable" in text
    assert not Path("data").exists() or not any(Path("data").rglob("*.png"))
