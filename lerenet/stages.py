"""Pipeline stages as plain functions of the params: the one code path behind both drivers.

``lerenet <stage>`` (and so ``dvc repro``) and the Prefect tasks call these functions; each
takes the previous stage's typed result (``lerenet.results``) when its caller has it — a flow
passes them in memory — and otherwise reads it from the file the previous stage wrote, which is
what the CLI does. Each writes its outputs where ``params.yaml`` says. MLflow tracking lives
here, not in the training or evaluation code.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lerenet.config import Params
from lerenet.results import EvaluationReport, ModelScores, TrainSummary
from lerenet.tracking.lineage import lineage_tags, split_sha256

if TYPE_CHECKING:
    from torch import nn

    from lerenet.tracking.registry import Promotion

log = logging.getLogger(__name__)
TRAIN_SUMMARY = "train.json"


def train_stage(
    params: Params,
    *,
    params_file: Path | None = None,
    resume: bool = False,
    track: bool = True,
    show_progress: bool = True,
    resume_tracked: bool = False,
) -> TrainSummary:
    """Train LERENet (and save the prototype baseline), log run + pyfunc model; write
    train.json.

    ``resume``: continue from ``train.out_dir/last.pt``. ``resume_tracked`` (a worker whose
    disk did not survive): continue the newest unfinished run of this same training from the
    checkpoints stored with it, if there is one (``tracking.checkpoints``); else start afresh.
    """
    from lerenet.tracking.pyfunc import log_model
    from lerenet.tracking.runs import start_run
    from lerenet.training.loop import save_baseline, train
    from lerenet.training.session import START

    out_dir = Path(params.train.out_dir)
    summary_path = out_dir / TRAIN_SUMMARY
    run_id = None
    if resume and summary_path.exists():
        run_id = json.loads(summary_path.read_text()).get("run_id")
    if track:
        from lerenet.services import require_mlflow
        from lerenet.tracking.runs import tracking_uri

        require_mlflow(tracking_uri(params.tracking))  # before hours of training, not after
    tags = lineage_tags(params)
    tags.update(_class_tags(params))
    resumed_from = None
    if track and resume_tracked:
        from lerenet.tracking.checkpoints import RESUMED_TAG, restore_checkpoints, unfinished_run
        from lerenet.tracking.runs import configure

        configure(params.tracking)
        found = unfinished_run(params.tracking.experiment, tags)
        if found is not None:
            resumed_from = restore_checkpoints(found, out_dir)
            run_id, resume = found, True
            log.info("resuming run %s from its stored checkpoint at step %d", found, resumed_from)
    name = run_name("train", params, tags.get("lerenet.data_version", ""))
    with start_run(
        params, run_name=name, tags=tags, enabled=track, run_id=run_id, params_file=params_file
    ) as run:
        if resumed_from is not None:
            run.tags({RESUMED_TAG: str(resumed_from)})
        out_dir.mkdir(parents=True, exist_ok=True)
        if run.enabled:  # a resumed job finds its run again
            summary_path.write_text(json.dumps({"run_id": run.run_id}) + "\n")
        result = train(params, out_dir=out_dir, resume=resume, run=run, show_progress=show_progress)
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
        if result.interrupted:
            summary_path.write_text(json.dumps(fields, indent=2) + "\n")
            raise KeyboardInterrupt
        if params.train.baseline and params.model.arch != "prototype":
            fields["baseline_path"] = str(save_baseline(params, out_dir / "baseline"))
        if (out_dir / START).exists():
            fields["start_path"] = str(out_dir / START)
        if run.enabled:
            from lerenet.storage import file_sha256
            from lerenet.training.checkpoint import state_sha256

            fields["best_sha256"] = file_sha256(result.best_path)
            info = log_model(result.best_path, size=params.data.image_size)
            fields["model_uri"] = info.model_uri  # MLflow 3: models:/m-<id>, a LoggedModel
            run.tags(
                {
                    "lerenet.model_uri": info.model_uri,
                    "lerenet.state_sha256": state_sha256(result.best_path),
                }
            )
            run.artifact(out_dir / "history.json", "train")
            run.artifact(out_dir / "curve.png", "train")
            # the manifest of the data trained on: `reproduce` names files that changed since
            run.artifact(Path(params.data.root) / "manifest.csv", "data")
        summary = TrainSummary.from_dict(fields)
        summary_path.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
        if run.enabled:  # the typed summary travels with the run, not only on this disk
            run.artifact(summary_path, "train")
    return summary


def run_name(stage: str, params: Params, data_version: str) -> str:
    """``train-f0-efficientnet_lite0-d1a2b3c4-1126-1437``: stage, fold, backbone, data version
    and UTC time, so runs tell themselves apart in the MLflow runs list."""
    import time

    version = data_version.partition(":")[2][:8] or "nodata"
    stamp = time.strftime("%m%d-%H%M", time.gmtime())
    return f"{stage}-f{params.train.fold}-{params.model.backbone}-{version}-{stamp}"


def _class_tags(params: Params) -> dict[str, str]:
    from lerenet.data.splits import read_folds

    folds_path = Path(params.split.out_dir) / "folds.json"
    if not folds_path.exists():
        return {}
    fold = read_folds(Path(params.split.out_dir))[params.train.fold]
    return {
        "lerenet.classes.train": ", ".join(fold.train),
        "lerenet.classes.val": ", ".join(fold.val),
        "lerenet.classes.test": ", ".join(fold.test),
    }


def local_copy(model_uri: str, train: TrainSummary | None) -> str:
    """``model_uri``, or the local model file it was logged from when that file is still
    byte-identical (sha256 recorded at logging time): the same weights without a round trip
    through the artifact store. A remote worker's paths are not on this machine: the URI."""
    from lerenet.storage import file_sha256

    if train is None or model_uri != train.model_uri or not train.best_sha256:
        return model_uri
    path = Path(train.best_path)
    if path.is_file() and file_sha256(path) == train.best_sha256:
        return str(path)
    return model_uri


def read_train_summary(params: Params) -> TrainSummary:
    """The last training's summary from ``train.out_dir/train.json`` (the CLI's default)."""
    return TrainSummary.read(Path(params.train.out_dir) / TRAIN_SUMMARY)


def last_training(params: Params) -> TrainSummary | None:
    """The last finished training's summary if ``train.json`` holds one, else None."""
    try:
        return read_train_summary(params)
    except FileNotFoundError:
        return None


def evaluate_stage(
    params: Params,
    *,
    train: TrainSummary | None = None,
    model_uri: str | None = None,
    track: bool = True,
    out_dir: Path | None = None,
) -> EvaluationReport:
    """Test-class evaluation of a model and, beside it, of the prototype baseline.

    The model is ``model_uri``, else ``train``'s, else the last training's (train.json).
    ``train`` (the training that produced the model, in memory from a flow) names the run to
    log into and the baseline it saved; for another model there is neither, and the run is
    asked of the tracking server. Writes ``metrics.json`` (``EvaluationReport.to_dict``).
    """
    from lerenet.evaluate import evaluate_model, retrain_scores
    from lerenet.tracking.loading import load_torch_model
    from lerenet.tracking.runs import connect, is_tracked, start_run
    from lerenet.tracking.uris import run_of

    out_dir = Path(out_dir or params.eval.out_dir)
    if model_uri is None:
        train = train or read_train_summary(params)
        model_uri = train.challenger
    if train is not None and model_uri not in (train.model_uri, train.best_path):
        train = None  # another model than that training's: no baseline, no run to join
    if track or is_tracked(model_uri):
        connect(params.tracking)  # run_of and a models:/ URI ask the tracking server
    run_id = (train.run_id if train else None) or (run_of(model_uri) if track else None)
    source = local_copy(model_uri, train)
    model, meta = load_torch_model(source)
    # the training ran here when its own model file was read (or it was never logged): only
    # then is its saved baseline this training's, not a leftover of another one at that path
    trained_here = train is not None and (source != model_uri or train.model_uri is None)
    with start_run(
        params,
        run_name=f"evaluate-f{params.train.fold}",
        enabled=track,
        run_id=run_id,
        tags=None if run_id else lineage_tags(params),
    ) as run:
        scores = evaluate_model(
            model, params, out_dir=out_dir / "lerenet", run=run, label="LERENet"
        )
        base = _baseline_for(params, train if trained_here else None, meta)
        base_scores = None
        if base is not None:
            base_scores = evaluate_model(
                base, params, out_dir=out_dir / "baseline", label="prototype baseline"
            )
            if run.enabled:
                run.metrics(
                    {f"baseline/test/{k}/miou": v.miou for k, v in base_scores.shots.items()}
                )
        start_path = train.start_path if train is not None and trained_here else None
        start, seen = retrain_scores(params, model, start_path, out_dir, run)
        report = EvaluationReport(
            model_uri,
            split_sha256(Path(params.split.out_dir)),
            run.run_id,
            scores,
            base_scores,
            start,
            seen,
        )
        from lerenet.outcome import comparison_charts

        charts = comparison_charts(report, out_dir, params.train.fold)
        for chart in charts if run.enabled else []:
            run.artifact(chart, "eval/compare")
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.to_dict(), indent=2, sort_keys=True)
    (out_dir / "metrics.json").write_text(text + "\n")
    (out_dir / "summary.json").write_text(json.dumps(metrics_summary(report), indent=2) + "\n")
    return report


def _baseline_for(params: Params, train: TrainSummary | None, meta: dict) -> nn.Module | None:
    """The prototype baseline to score beside the model: the one its training (``train``, a
    training that ran on this machine) saved, else rebuilt from the model's configuration (a
    model trained elsewhere, a remote worker); None when ``train.baseline`` is off, the model
    is the baseline, or its backbone weights cannot be loaded here (said in the log)."""
    from lerenet.model import rebuild_baseline
    from lerenet.tracking.loading import load_torch_model

    if train is not None and train.baseline_path and Path(train.baseline_path).exists():
        return load_torch_model(train.baseline_path)[0]
    config = meta.get("model_config") or params.model.model_dump()
    if not params.train.baseline or config.get("arch") == "prototype":
        return None
    baseline, why_not = rebuild_baseline(config)
    if baseline is None:
        log.warning("prototype baseline not evaluated: %s", why_not)
    return baseline


def metrics_summary(report: EvaluationReport) -> dict:
    """``{"1shot": {"model": mIoU, "baseline": mIoU}, …}``: the few numbers ``dvc metrics
    show`` and ``dvc exp show`` should put side by side within 100 columns (metrics.json
    keeps everything)."""
    summary: dict = {}
    for name, key in (("lerenet", "model"), ("baseline", "baseline")):
        scores = report.models().get(name)
        for shot, m in (scores.shots if scores else {}).items():
            summary.setdefault(shot, {})[key] = round(m.miou, 4)
    return summary


def promote_stage(
    params: Params,
    *,
    run_id: str | None = None,
    to: str = "staging",
    evaluation: EvaluationReport | None = None,
) -> Promotion:
    """Register the trained run's model and move ``staging`` (or ``production``) to it.

    ``run_id`` defaults to the last training's; ``evaluation`` (the model's test scores, for
    the version's description) to ``eval.out_dir/metrics.json`` when that evaluated this run.
    ``to="production"`` without a run moves production to the version at ``@staging``.
    """
    from lerenet.tracking.registry import promote_to_production, register
    from lerenet.tracking.runs import connect

    connect(params.tracking)  # fail before registering anything
    name = params.tracking.registered_model
    if to == "production" and run_id is None:
        return promote_to_production(name)
    run_id = run_id or read_train_summary(params).run_id
    if evaluation is None:
        path = Path(params.eval.out_dir) / "metrics.json"
        evaluation = EvaluationReport.read(path) if path.exists() else None
    scores = _scores_of_run(evaluation, run_id)
    promo = register(run_id, name=name, alias="staging", metrics=scores)
    if to == "production":
        prod = promote_to_production(name, promo.version)
        promo = replace(promo, alias="production", previous_production=prod.previous)
    return promo


def _scores_of_run(evaluation: EvaluationReport | None, run_id: str) -> ModelScores | None:
    """The model's scores when ``evaluation`` was of this run's model (an evaluation that
    names no run is taken to be: files written before runs were recorded in them)."""
    if evaluation is None or evaluation.run_id not in (None, run_id):
        return None
    return evaluation.lerenet


def export_stage(params: Params, *, model_uri: str, out: Path, shots: int = 1) -> dict:
    """Export ``model_uri`` to ONNX, check parity with onnxruntime on random and real test
    episodes, and log the file to the version's run (tagging the version with the parity)."""
    from lerenet.evaluate import episode_dataset
    from lerenet.export import export_onnx, parity
    from lerenet.summary import dummy_episode
    from lerenet.tracking.loading import load_torch_model
    from lerenet.tracking.runs import connect
    from lerenet.tracking.uris import log_export

    connect(params.tracking)
    model, meta = load_torch_model(model_uri)
    size = int(meta.get("image_size") or params.data.image_size)
    export_onnx(model, out, size, shots=shots)
    episodes = [dummy_episode(1, shots, size, seed=s) for s in range(2)]
    real = 0
    try:
        dataset = episode_dataset(params, model, "test", shots, params.train.fold, limit=4)
        if dataset.image_size == size:
            for i in range(len(dataset)):
                item = dataset[i]
                episodes.append(
                    (
                        item["query_img"][None],
                        item["support_imgs"][None],
                        item["support_masks"][None],
                    )
                )
                real += 1
    except FileNotFoundError:
        pass  # no split here: random episodes only
    worst = parity(model, out, episodes)
    run_id = log_export(model_uri, out, worst)
    return {
        "path": str(out),
        "max_abs_diff": worst,
        "episodes": len(episodes),
        "real_episodes": real,
        "run_id": run_id,
    }
