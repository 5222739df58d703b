"""A training killed with its disk resumes from the checkpoints stored with its MLflow run."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lerenet.config.schema import load_params, parse_overrides

pytestmark = pytest.mark.slow

# long enough that the kill lands mid-training: a checkpoint every 4 of 48 steps
OVERRIDES = ["train.steps=48", "train.checkpoint_every=4", "train.val_every=24"]


def _kill_after_first_stored_checkpoint(project: Path) -> str:
    """Start `lerenet train` in ``project``, SIGKILL it once its run holds a checkpoint (no
    Ctrl-C handler runs, nothing is saved on the way out); returns the run id."""
    from mlflow import MlflowClient

    from lerenet.tracking.checkpoints import STEP_TAG

    cli = str(Path(sys.executable).parent / "lerenet")
    args = [arg for item in OVERRIDES for arg in ("--set", item)]
    job = subprocess.Popen([cli, "train", *args], cwd=project, stdout=subprocess.DEVNULL)
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and job.poll() is None:
            db = (project / "mlflow.db").exists()
            experiment = client.get_experiment_by_name("lerenet") if db else None
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            if runs and STEP_TAG in runs[0].data.tags:
                job.send_signal(signal.SIGKILL)
                job.wait()
                return runs[0].info.run_id
            time.sleep(0.1)
    finally:
        if job.poll() is None:
            job.kill()
    pytest.fail(f"training ended (rc {job.returncode}) before a checkpoint was stored")


def test_a_killed_training_resumes_from_its_stored_checkpoint(tiny_project: Path) -> None:
    """The rerun of the same training on a machine without the first one's files continues
    the killed run from its last stored checkpoint, not from scratch, and ends with the
    weights of an uninterrupted training."""
    from mlflow import MlflowClient

    from lerenet.stages import train as train_stage
    from lerenet.tracking.checkpoints import RESUMED_TAG, STEP_TAG
    from lerenet.training.loop import train

    killed = _kill_after_first_stored_checkpoint(tiny_project)
    client = MlflowClient(f"sqlite:///{tiny_project}/mlflow.db")
    stored = client.get_run(killed)
    assert stored.info.status == "RUNNING"  # killed: nobody ended it
    stored_step = int(stored.data.tags[STEP_TAG])
    assert 0 < stored_step < 48
    shutil.rmtree(tiny_project / "outputs")  # the worker's disk went with it

    params = load_params(Path("params.yaml"), parse_overrides(OVERRIDES))
    summary = train_stage.run(params, show_progress=False, resume_tracked=True)
    assert summary.run_id == killed and summary.steps == 48
    resumed = client.get_run(killed)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags[RESUMED_TAG] == str(stored_step)
    assert len(client.search_runs([resumed.info.experiment_id])) == 1  # no second run

    full = train(params, out_dir=Path("uninterrupted"), show_progress=False)
    a = torch.load(full.last_path, weights_only=False)["model"]
    b = torch.load(Path(params.train.out_dir) / "last.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # a finished run is not resumed: the next training of the same identity starts afresh
    shutil.rmtree(tiny_project / "outputs")
    again = train_stage.run(params, show_progress=False, resume_tracked=True)
    assert again.run_id != killed
