"""Checkpoints go to the MLflow run from a background thread: training does not wait for the
artifact store, and what the run's tags name is always the checkpoint as it was submitted."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

import lerenet.tracking.checkpoints as checkpoints
from lerenet.tracking.checkpoints import SLOT_TAG, STEP_TAG, CheckpointUploader, restore_checkpoints
from lerenet.tracking.runs import Run
from lerenet.training.checkpoint import atomic_save

pytestmark = pytest.mark.slow  # an MLflow SQLite store: its schema takes seconds to create


@pytest.fixture
def tracked(tmp_path: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = mlflow.create_experiment("uploads", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment) as active:
        yield Run(mlflow, active.info.run_id)
    mlflow.set_tracking_uri(None)


def test_an_upload_sends_the_checkpoint_as_submitted_not_as_replaced_since(
    tracked: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    upload = checkpoints.log_checkpoints

    def slow_store(*args, **kwargs) -> None:  # the store answers only after training moved on
        release.wait(30)
        upload(*args, **kwargs)

    monkeypatch.setattr(checkpoints, "log_checkpoints", slow_store)
    out = tmp_path / "train"
    last = out / "last.pt"
    uploader = CheckpointUploader(tracked, out)
    atomic_save({"step": 100}, last)
    uploader.submit(100, last)
    atomic_save({"step": 200}, last)  # the next save replaces the file before the upload ran
    release.set()
    uploader.submit(200, last)
    uploader.wait()
    tags = tracked.mlflow.MlflowClient().get_run(tracked.run_id).data.tags
    assert tags[STEP_TAG] == "200" and tags[SLOT_TAG] == "b"
    assert restore_checkpoints(tracked.run_id, tmp_path / "restored") == 200
    assert torch.load(tmp_path / "restored" / "last.pt")["step"] == 200
    first = tracked.mlflow.artifacts.download_artifacts(
        run_id=tracked.run_id, artifact_path="checkpoints/a/last.pt", dst_path=str(tmp_path / "a")
    )
    assert torch.load(first)["step"] == 100  # slot a: step 100's file, though replaced since
    assert not (out / ".uploading").exists()  # the links are gone once uploaded


def test_an_upload_error_reaches_the_training_thread(tracked: Run, tmp_path: Path) -> None:
    out = tmp_path / "train"
    atomic_save({"step": 1}, out / "last.pt")
    broken = Run(tracked.mlflow, "0" * 32)  # no such run
    uploader = CheckpointUploader(broken, out)
    uploader.submit(1, out / "last.pt")
    with pytest.raises(Exception, match="0{32}|not found|RESOURCE_DOES_NOT_EXIST"):
        uploader.wait()
    uploader.wait()  # raised once, not again


def test_without_a_run_nothing_is_uploaded(tmp_path: Path) -> None:
    uploader = CheckpointUploader(None, tmp_path)
    uploader.submit(1, tmp_path / "missing.pt")  # not even read
    uploader.wait()
    assert not (tmp_path / ".uploading").exists()
