"""`lerenet models` and `lerenet models diff A B`: the registered versions side by side
(issue #27.7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

mlflow = pytest.importorskip("mlflow")


def test_versions_lists_aliases_gate_data_and_test_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lerenet.cli.main import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    Path("params.yaml").write_text(f"recipe: paper\ntracking:\n  tracking_uri: {uri}\n")
    empty = CliRunner().invoke(app, ["models"])
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
            tags={
                "lerenet.gate": gate,
                "lerenet.data_version": f"dvc:{gate}",
                "lerenet.state_sha256": f"{gate}-weights-digest",
            },
        )
    client.set_registered_model_alias("lerenet", "production", "2")
    client.set_registered_model_alias("lerenet", "staging", "2")
    mlflow.set_tracking_uri(None)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "dvc:" in line]
    assert len(lines) == 2 and "2" in lines[0].split("│")[1]  # newest first
    newest, oldest = (" ".join(line.split()) for line in lines)
    assert "@production, @staging" in newest and "passed" in newest and "0.470" in newest
    assert "@" not in oldest and "failed" in oldest and "0.310" in oldest
    assert "passed-weigh" in newest and "failed-weigh" in oldest  # the weights' digest

    diff = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["models", "diff", "1", "2"])
    assert diff.exit_code == 0, diff.output
    cells = [line.split("│") for line in diff.output.splitlines()]
    rows = {" ".join(c[1].split()): "│".join(c) for c in cells if len(c) > 2}
    assert "failed" in rows["gate"] and "passed" in rows["gate"]
    assert "dvc:failed" in rows["data_version"] and "dvc:passed" in rows["data_version"]
    assert "+0.160" in rows["test/1shot/miou"]  # B − A
    assert "+0.000" in rows["test/1shot/iou/Crack"]
    assert "identical weights" not in diff.output
    same = CliRunner().invoke(app, ["models", "diff", "2", "2"])
    assert "same lineage and params" in same.output and "identical weights" in same.output
    missing = CliRunner().invoke(app, ["models", "diff", "1", "9"])
    assert missing.exit_code == 1 and "lerenet has no version '9'" in missing.output
    assert "Traceback" not in missing.output
