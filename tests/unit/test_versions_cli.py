"""`lerenet versions`: the registered versions side by side (issue #27.7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

mlflow = pytest.importorskip("mlflow")


def test_versions_lists_aliases_gate_data_and_test_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lerenet.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    Path("params.yaml").write_text(f"recipe: paper\ntracking:\n  tracking_uri: {uri}\n")
    empty = CliRunner().invoke(app, ["versions"])
    assert empty.exit_code == 0 and "no registered version yet" in empty.output
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("versions")
    client = mlflow.MlflowClient(uri)
    client.create_registered_model("lerenet")
    for gate, miou in (("failed", 0.31), ("passed", 0.47)):
        with mlflow.start_run() as run:
            mlflow.log_metrics({"test/1shot/miou": miou, "test/1shot/iou/Crack": 0.9})
        client.create_model_version(
            "lerenet",
            source=f"runs:/{run.info.run_id}/model",
            run_id=run.info.run_id,
            tags={"lerenet.gate": gate, "lerenet.data_version": f"dvc:{gate}"},
        )
    client.set_registered_model_alias("lerenet", "production", "2")
    client.set_registered_model_alias("lerenet", "staging", "2")
    mlflow.set_tracking_uri(None)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["versions"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "dvc:" in line]
    assert len(lines) == 2 and "2" in lines[0].split("│")[1]  # newest first
    newest, oldest = (" ".join(line.split()) for line in lines)
    assert "@production, @staging" in newest and "passed" in newest and "0.470" in newest
    assert "@" not in oldest and "failed" in oldest and "0.310" in oldest
