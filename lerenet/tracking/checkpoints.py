"""Training checkpoints stored with the MLflow run: a training killed on one worker resumes on
another.

A GPU worker is preemptible and its disk goes with it, so ``last.pt`` on that disk cannot be
what a rerun resumes from. Every checkpoint (``last.pt``, and ``best.pt`` as chosen so far) is
logged to the run, in turn to ``checkpoints/a`` and ``checkpoints/b`` (S3 behind a tracking
server), and only then is the run tagged with its step and folder: a worker killed while
uploading leaves the tagged folder whole, and a run keeps two checkpoints, not one per save.
A rerun of the same
training — same params, split, data version and code, as the lineage tags say — that finds no
local checkpoint looks for the newest such run that did not finish, downloads its
checkpoints and continues that run (``lerenet.stages.train.run``; resumed training is bit-identical,
``train.train``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"
STEP_TAG = "lerenet.checkpoint_step"
SLOT_TAG = "lerenet.checkpoint_slot"
RESUMED_TAG = "lerenet.resumed_from_step"
# what makes two trainings the same one: a rerun with other params, data or code starts afresh
IDENTITY = (
    "lerenet.params_sha256",
    "lerenet.split_sha256",
    "lerenet.data_version",
    "lerenet.git_commit",
)


def log_checkpoints(run_id: str, step: int, *paths: Path, tracking_uri: str | None = None) -> None:
    """Log ``paths`` to the run's checkpoint folder the tags do not name, then tag it and the
    step it holds (one request: the two tags never disagree). Through an explicit client and
    run id, so that it works from any thread (MLflow's active run is per thread)."""
    from mlflow import MlflowClient
    from mlflow.entities import RunTag

    client = MlflowClient(tracking_uri)
    current = client.get_run(run_id).data.tags.get(SLOT_TAG)
    slot = "b" if current == "a" else "a"
    for path in paths:
        client.log_artifact(run_id, str(path), f"{CHECKPOINTS}/{slot}")
    client.log_batch(run_id, tags=[RunTag(STEP_TAG, str(step)), RunTag(SLOT_TAG, slot)])


class CheckpointUploader:
    """Stores a training's checkpoints with its run from a background thread.

    Training does not wait on the artifact store (a 5.5 MB checkpoint took 1.45 s through a
    local MLflow server on 2 cores, docs/benchmarks.md). One upload at a time: ``submit``
    first waits for the one before, so a slow store slows training to its pace instead of
    piling up copies. Each upload sends hard links to the files as submitted: ``atomic_save``
    replaces a checkpoint by renaming a new file over it, which leaves a link's file as it
    was, so the step tag always names what was uploaded. An upload's error is raised by the
    next ``submit`` or ``wait``. A disabled run (or None) uploads nothing.
    """

    def __init__(self, run: Any, out_dir: Path) -> None:
        self.run = run if run is not None and run.enabled else None
        self.staging = Path(out_dir) / ".uploading"
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._uri = run.mlflow.get_tracking_uri() if self.run is not None else None

    def submit(self, step: int, *paths: Path) -> None:
        if self.run is None:
            return
        self.wait()
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        links = []
        for path in paths:
            links.append(self.staging / Path(path).name)
            try:
                os.link(path, links[-1])
            except OSError:  # a filesystem without hard links
                shutil.copy2(path, links[-1])
        self._thread = threading.Thread(target=self._upload, args=(step, links), daemon=True)
        self._thread.start()

    def _upload(self, step: int, links: list[Path]) -> None:
        try:
            log_checkpoints(self.run.run_id, step, *links, tracking_uri=self._uri)
        except BaseException as err:  # re-raised in the training's thread by wait()
            self._error = err

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            shutil.rmtree(self.staging, ignore_errors=True)
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def unfinished_run(experiment: str, tags: dict[str, str]) -> str | None:
    """The newest run of ``experiment`` with the training identity of ``tags`` (``IDENTITY``)
    that did not finish and has a checkpoint; None when there is none. Needs the tracking URI
    configured (``runs.configure``)."""
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return None
    clauses = [f"tags.`{key}` = '{tags[key]}'" for key in IDENTITY if tags.get(key)]
    clauses.append(f"tags.`{STEP_TAG}` != ''")
    runs = mlflow.search_runs(
        [found.experiment_id],
        filter_string=" and ".join(clauses),
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    return next((r.info.run_id for r in runs if r.info.status != "FINISHED"), None)


def restore_checkpoints(run_id: str, out_dir: Path) -> int:
    """Download run ``run_id``'s checkpoints into ``out_dir``; returns the step they hold."""
    import mlflow

    tags = mlflow.MlflowClient().get_run(run_id).data.tags
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{CHECKPOINTS}/{tags[SLOT_TAG]}", dst_path=tmp
        )
        for path in Path(local).iterdir():
            shutil.move(str(path), out_dir / path.name)
    return int(tags[STEP_TAG])
