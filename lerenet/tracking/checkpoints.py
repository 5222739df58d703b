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
checkpoints and continues that run (``stages.train_stage``; resumed training is bit-identical,
``train.train``).
"""

from __future__ import annotations

import shutil
import tempfile
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


def log_checkpoints(run: Any, step: int, *paths: Path) -> None:
    """Log ``paths`` to the run's checkpoint folder the tags do not name, then tag it and the
    step it holds."""
    if not run.enabled:
        return
    from mlflow import MlflowClient

    current = MlflowClient().get_run(run.run_id).data.tags.get(SLOT_TAG)
    slot = "b" if current == "a" else "a"
    for path in paths:
        run.artifact(path, f"{CHECKPOINTS}/{slot}")
    run.tags({STEP_TAG: str(step), SLOT_TAG: slot})


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
