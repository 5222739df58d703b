"""The train stage: train LERENet on a fold, track the run in MLflow, write ``train.json``.

``lerenet train`` (and so ``dvc repro``) and the Prefect train task call ``run``; a flow
passes its ``TrainSummary`` on in memory, the CLI's next stage reads it back from the file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lerenet.config.schema import Params
from lerenet.data.split_result import Split
from lerenet.lineage.records import lineage_tags
from lerenet.results import TrainSummary
from lerenet.stages.declare import DATA, SPLITS, TRAIN, Out, StageSpec

log = logging.getLogger(__name__)
TRAIN_SUMMARY = "train.json"


SPEC = StageSpec(
    "train",
    cmd="lerenet train",
    entry=(__name__,),
    data=(SPLITS, DATA),
    params=("recipe", "model", "train", "data.image_size"),
    outs=(
        Out(f"{TRAIN}/best.pt"),
        Out(f"{TRAIN}/start.pt"),
        Out(f"{TRAIN}/last.pt"),
        Out(f"{TRAIN}/baseline"),
        Out(f"{TRAIN}/train.json", cache=False),
    ),
    plots=(Out(f"{TRAIN}/curve.png", cache=False),),
    note="a PNG curve, not a vega spec of history.json: vega needs scripts from a CDN",
)


def run(
    params: Params,
    *,
    params_file: Path | None = None,
    resume: bool = False,
    track: bool = True,
    show_progress: bool = True,
    resume_tracked: bool = False,
    split: Split | None = None,
) -> TrainSummary:
    """Train LERENet (and save the prototype baseline), log run + pyfunc model; write
    train.json.

    ``resume``: continue from ``train.out_dir/last.pt``. ``resume_tracked`` (a worker whose
    disk did not survive): continue the newest unfinished run of this same training from the
    checkpoints stored with it, if there is one (``tracking.checkpoints``); else start afresh.
    ``split``: the split stage's result (a flow's, in memory); None reads ``split.out_dir``.
    """
    from lerenet.tracking.runs import start_run
    from lerenet.training.loop import save_baseline, train
    from lerenet.training.session import START

    out_dir = Path(params.train.out_dir)
    summary_path = out_dir / TRAIN_SUMMARY
    if track:
        from lerenet.services.reach import require_mlflow
        from lerenet.tracking.runs import tracking_uri

        require_mlflow(tracking_uri(params.tracking))  # before hours of training, not after
    split = split or Split.read(Path(params.split.out_dir))
    tags = lineage_tags(params, split_digest=split.sha256)
    tags.update(_class_tags(params, split))
    run_id, resume, resumed_from = _resume_point(params, tags, resume, resume_tracked, track)
    name = run_name("train", params, tags.get("lerenet.data_version", ""))
    with start_run(
        params, run_name=name, tags=tags, enabled=track, run_id=run_id, params_file=params_file
    ) as run:
        if resumed_from is not None:
            from lerenet.tracking.checkpoints import RESUMED_TAG

            run.tags({RESUMED_TAG: str(resumed_from)})
        out_dir.mkdir(parents=True, exist_ok=True)
        if run.enabled:  # a resumed job finds its run again
            summary_path.write_text(json.dumps({"run_id": run.run_id}) + "\n")
        result = train(
            params,
            out_dir=out_dir,
            resume=resume,
            run=run,
            show_progress=show_progress,
            split=split,
        )
        fields = _record_result(run, result)
        if result.interrupted:
            summary_path.write_text(json.dumps(fields, indent=2) + "\n")
            raise KeyboardInterrupt
        if params.train.baseline and params.model.arch != "prototype":
            fields["baseline_path"] = str(save_baseline(params, out_dir / "baseline"))
        if (out_dir / START).exists():
            fields["start_path"] = str(out_dir / START)
        if run.enabled:
            fields.update(_log_trained_model(run, params, result.best_path, out_dir))
            fields.update(_log_companions(run, fields))
        summary = TrainSummary.from_dict(fields)
        summary.write(summary_path)
        if run.enabled:  # the typed summary travels with the run, not only on this disk
            run.artifact(summary_path, "train")
    return summary


def _resume_point(
    params: Params, tags: dict, resume: bool, resume_tracked: bool, track: bool
) -> tuple[str | None, bool, int | None]:
    """(run to continue, resume?, step restored from stored checkpoints): ``resume`` continues
    the run train.json names; ``resume_tracked`` finds this training's newest unfinished run
    on the tracking server and restores its checkpoints (a worker whose disk was lost)."""
    out_dir = Path(params.train.out_dir)
    summary_path = out_dir / TRAIN_SUMMARY
    run_id = None
    if resume and summary_path.exists():
        run_id = json.loads(summary_path.read_text()).get("run_id")
    if not (track and resume_tracked):
        return run_id, resume, None
    from lerenet.tracking.checkpoints import restore_checkpoints, unfinished_run
    from lerenet.tracking.runs import configure

    configure(params.tracking)
    found = unfinished_run(params.tracking.experiment, tags)
    if found is None:
        return run_id, resume, None
    step = restore_checkpoints(found, out_dir)
    log.info("resuming run %s from its stored checkpoint at step %d", found, step)
    return found, True, step


def _record_result(run, result) -> dict:
    """The training's outcome as train.json fields, and on the run: throughput metrics, the
    served checkpoint's step, score and weights digest."""
    fields: dict = {
        "run_id": run.run_id,
        "best_path": str(result.best_path),
        "best_step": result.best_step,
        "best_val_miou": result.best_val_miou,
        "steps": result.steps_done,
        "interrupted": result.interrupted,
        "weights_sha256": result.weights_sha256,
        "throughput": result.throughput.to_dict() if result.throughput else None,
    }
    if result.throughput and result.throughput.episodes:
        speed = result.throughput
        run.metrics(
            {
                "train/step_episodes_per_s": speed.step_episodes_per_s,
                "train/step_share": speed.step_share,
                "train/data_share": speed.data_share,
            }
        )
    run.tags(
        {
            "lerenet.weights_sha256": result.weights_sha256,
            "lerenet.best_step": str(result.best_step),
        }
    )
    if result.best_val_miou is not None:
        # the served checkpoint's score: ``val/miou`` is the last round's, not the served one
        run.metrics({"val/selected_miou": result.best_val_miou}, step=result.best_step)
    return fields


def _log_trained_model(run, params: Params, best_path: Path, out_dir: Path) -> dict:
    """Log the selected checkpoint as the run's model (with its curve, history and the data
    manifest trained on); returns the train.json fields that name it."""
    from lerenet.services.storage import file_sha256
    from lerenet.tracking.pyfunc import log_model
    from lerenet.training.checkpoint import state_sha256

    info = log_model(best_path, size=params.data.image_size)
    run.tags({"lerenet.model_uri": info.model_uri, "lerenet.state_sha256": state_sha256(best_path)})
    run.artifact(out_dir / "history.json", "train")
    run.artifact(out_dir / "curve.png", "train")
    # the manifest of the data trained on: `reproduce` names files that changed since
    run.artifact(Path(params.data.root) / "manifest.csv", "data")
    # MLflow 3: models:/m-<id>, a LoggedModel
    return {"best_sha256": file_sha256(best_path), "model_uri": info.model_uri}


def _log_companions(run, fields: dict) -> dict:
    """Store the start and the baseline with the run, each under its own weights-digest tag,
    so that an evaluation elsewhere (another task, another worker) loads them from the run,
    checked, instead of reading this machine's files; returns their ``runs:/`` URIs."""
    from lerenet.tracking.loading import COMPANIONS
    from lerenet.training.checkpoint import state_sha256

    uris = {}
    for path_field, uri_field, artifact in (
        ("start_path", "start_uri", "train/start.pt"),
        ("baseline_path", "baseline_uri", "train/baseline/best.pt"),
    ):
        path = Path(fields[path_field]) if fields.get(path_field) else None
        if path is None:
            continue
        assert path.name == Path(artifact).name, (path, artifact)  # logged under its own name
        run.artifact(path, str(Path(artifact).parent))
        run.tags({COMPANIONS[artifact]: state_sha256(path)})
        uris[uri_field] = f"runs:/{run.run_id}/{artifact}"
    return uris


def run_name(stage: str, params: Params, data_version: str) -> str:
    """``train-f0-efficientnet_lite0-d1a2b3c4-1126-1437``: stage, fold, backbone, data version
    and UTC time, so runs tell themselves apart in the MLflow runs list."""
    import time

    version = data_version.partition(":")[2][:8] or "nodata"
    stamp = time.strftime("%m%d-%H%M", time.gmtime())
    return f"{stage}-f{params.train.fold}-{params.model.backbone}-{version}-{stamp}"


def _class_tags(params: Params, split: Split) -> dict[str, str]:
    """The fold's train/val/test classes as run tags (none for a fold the split lacks: the
    training then stops with its own error)."""
    if params.train.fold >= len(split.folds):
        return {}
    fold = split.folds[params.train.fold]
    return {
        "lerenet.classes.train": ", ".join(fold.train),
        "lerenet.classes.val": ", ".join(fold.val),
        "lerenet.classes.test": ", ".join(fold.test),
    }


def read_train_summary(params: Params) -> TrainSummary:
    """The last training's summary from ``train.out_dir/train.json`` (the CLI's default)."""
    return TrainSummary.read(Path(params.train.out_dir) / TRAIN_SUMMARY)


def last_training(params: Params) -> TrainSummary | None:
    """The last finished training's summary if ``train.json`` holds one, else None."""
    try:
        return read_train_summary(params)
    except FileNotFoundError:
        return None
