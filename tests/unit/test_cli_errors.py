"""Expected errors end in one sentence, not a traceback (issue #12, item 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lerenet.cli.main import app

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
    monkeypatch.setattr("lerenet.services.reach.time.sleep", lambda _: None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    Path("params.yaml").write_text("recipe: paper\ndata:\n  root: data\n")
    result = runner.invoke(app, ["ingest", "--source", "s3://lerenet-data/new-class/"])
    assert result.exit_code == 2
    text = _one_sentence(result.output)
    assert "S3 bucket 'lerenet-data' at http://127.0.0.1:9 is unreachable" in text
    assert not Path("data").exists() or not any(Path("data").rglob("*.png"))


@pytest.mark.parametrize(
    ("write", "argv", "said"),
    [
        (lambda: Path("p").mkdir(), ["config", "show", "--params", "p"], "a folder, not a params"),
        (
            lambda: Path("p").write_bytes(b"data:\n  root: \xff\xfe\n"),
            ["config", "show", "--params", "p"],
            "p: not UTF-8 text",
        ),
        (
            lambda: Path("p").write_text("? [a, b]\n: 1\n"),
            ["config", "show", "--params", "p"],
            "a key that is not a plain name",
        ),
        (
            lambda: Path("p").write_text("data:\n  max_pixels: -5\n"),
            ["config", "show", "--params", "p"],
            "data.max_pixels: Input should be greater than 0",
        ),
        (
            lambda: Path("params.yaml").write_text("recipe: paper\ntrain:\n  steps: 3\n"),
            ["train", "--set", "train.steps.x=1"],
            "train.steps is a value (",
        ),
        (
            lambda: Path("params.yaml").write_text("recipe: paper\n"),
            ["train", "--set", "train.steps=[x"],
            "the value is not YAML",
        ),
    ],
    ids=[
        "folder",
        "not-utf8",
        "unhashable-key",
        "negative-max-pixels",
        "set-below-a-value",
        "set-not-yaml",
    ],
)
def test_a_bad_params_file_or_override_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write, argv: list[str], said: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write()
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert said in _one_sentence(result.output)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "not a readable checkpoint"),
        (None, "not a lerenet training checkpoint (no model, optimizer"),
        (b"PK\x03\x04 cut short", "not a readable checkpoint"),
    ],
    ids=["empty", "empty-dict", "truncated-zip"],
)
def test_resume_from_a_broken_last_pt_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes | None, said: str
) -> None:
    import torch

    from lerenet.training.checkpoint import CheckpointError, load_training_state

    path = tmp_path / "last.pt"
    if content is None:
        torch.save({}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as refused:
        load_training_state(path)
    assert said in str(refused.value) and "\n" not in str(refused.value)


def test_a_manifest_missing_a_column_is_one_sentence_in_validate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text("recipe: paper\ndata:\n  root: data\n")
    Path("data").mkdir()
    Path("data/manifest.csv").write_text("image,mask,class\nimages/A/a.png,masks/A/a.png,A\n")
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 2
    assert "data/manifest.csv: missing columns" in _one_sentence(result.output)


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--model", "models:/lerenet@production"],
        ["export", "--onnx", "x.onnx"],
        ["predict", "q.png", "--support", "q.png:q.png"],
    ],
    ids=["evaluate", "export", "predict"],
)
def test_a_tracking_server_that_is_down_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("lerenet.services.reach.time.sleep", lambda _: None)
    Path("params.yaml").write_text(
        "recipe: paper\ntracking:\n  tracking_uri: http://127.0.0.1:9\n"  # nothing listens
    )
    result = runner.invoke(app, argv)
    assert result.exit_code in (1, 2)
    text = _one_sentence(result.output)
    assert "MLflow tracking server at http://127.0.0.1:9 is unreachable" in text
