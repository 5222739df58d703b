"""The evaluate stage: score a trained model, its training-free start and the baseline on the
split's fixed episodes (novel and seen classes) and record the report.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from lerenet.config.schema import Params
from lerenet.data.split_result import Split
from lerenet.lineage.records import lineage_tags
from lerenet.results import EvaluationReport, TrainSummary
from lerenet.stages.declare import EVAL, SPLITS, TRAIN, Out, StageSpec
from lerenet.stages.train import read_train_summary

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


SPEC = StageSpec(
    "evaluate",
    cmd="lerenet evaluate",
    entry=(__name__,),
    data=(f"{TRAIN}/best.pt", f"{TRAIN}/start.pt", f"{TRAIN}/train.json", SPLITS),
    params=("eval",),
    outs=(Out(f"{EVAL}/metrics.json", cache=False),),
    metrics=(Out(f"{EVAL}/summary.json", cache=False),),
    plots=(
        # per class: the model, its start and the baseline side by side, with intervals
        Out(f"{EVAL}/class_iou_1shot.png", cache=False),
        Out(f"{EVAL}/class_iou_5shot.png", cache=False),
        Out(f"{EVAL}/lerenet/overlays_1shot.png", cache=False),
    ),
    note="summary.json: 1/5-shot mIoU of model and baseline, readable at 100 columns",
)


def local_copy(model_uri: str, train: TrainSummary | None) -> str:
    """``model_uri``, or the local model file it was logged from when that file is still
    byte-identical (sha256 recorded at logging time): the same weights without a round trip
    through the artifact store. A remote worker's paths are not on this machine: the URI."""
    from lerenet.services.storage import file_sha256

    if train is None or model_uri != train.model_uri or not train.best_sha256:
        return model_uri
    path = Path(train.best_path)
    if path.is_file() and file_sha256(path) == train.best_sha256:
        return str(path)
    return model_uri


def run(
    params: Params,
    *,
    train: TrainSummary | None = None,
    model_uri: str | None = None,
    track: bool = True,
    out_dir: Path | None = None,
    split: Split | None = None,
    from_store: bool = False,
) -> EvaluationReport:
    """Test-class evaluation of a model and, beside it, of the prototype baseline.

    The model is ``model_uri``, else ``train``'s, else the last training's (train.json).
    ``train`` (the training that produced the model, in memory from a flow) names the run to
    log into and the baseline it saved; for another model there is neither, and the run is
    asked of the tracking server. Writes ``metrics.json`` (``EvaluationReport.write``).
    ``split``: the split stage's result (a flow's, in memory); None reads ``split.out_dir``.
    ``from_store`` (a flow): the model, its start and its baseline come from the training's
    run in the artifact store (checked against their digest tags), never from the files the
    train task left on disk, which another worker does not have.
    """
    from lerenet.evaluation.scoring import evaluate_model, retrain_scores
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
    source = model_uri if from_store else local_copy(model_uri, train)
    model, meta = load_torch_model(source)
    split = split or Split.read(Path(params.split.out_dir))  # after the service checks
    start_source, baseline_source = companions(train, source, model_uri, from_store)
    with start_run(
        params,
        run_name=f"evaluate-f{params.train.fold}",
        enabled=track,
        run_id=run_id,
        tags=None if run_id else lineage_tags(params, split_digest=split.sha256),
    ) as run:
        scores = evaluate_model(
            model, params, out_dir=out_dir / "lerenet", run=run, label="LERENet", split=split
        )
        base = _baseline_for(params, baseline_source, meta)
        base_scores = None
        if base is not None:
            base_scores = evaluate_model(
                base, params, out_dir=out_dir / "baseline", label="prototype baseline", split=split
            )
            if run.enabled:
                run.metrics(
                    {f"baseline/test/{k}/miou": v.miou for k, v in base_scores.shots.items()}
                )
        start, seen = retrain_scores(params, model, start_source, out_dir, run, split)
        report = EvaluationReport(
            model_uri,
            split.sha256,
            run.run_id,
            scores,
            base_scores,
            start,
            seen,
        )
        from lerenet.evaluation.outcome import comparison_charts

        charts = comparison_charts(report, out_dir, params.train.fold)
        for chart in charts if run.enabled else []:
            run.artifact(chart, "eval/compare")
    report.write(out_dir)  # metrics.json and the evidence the gate's CLI run reads back
    (out_dir / "summary.json").write_text(json.dumps(metrics_summary(report), indent=2) + "\n")
    return report


def companions(
    train: TrainSummary | None, source: str, model_uri: str, from_store: bool
) -> tuple[str | None, str | None]:
    """Where the model's own start and baseline are: its run's stored copies (``from_store``),
    else the files its training saved when the model itself was read from that training's
    file (or never logged) — only then are they this training's, not leftovers of another at
    those paths; else none (the baseline is then rebuilt, the start not scored)."""
    if train is None:
        return None, None
    if from_store:
        return train.start_uri, train.baseline_uri
    if source != model_uri or train.model_uri is None:
        return train.start_path, train.baseline_path
    return None, None


def _baseline_for(params: Params, source: str | None, meta: dict) -> nn.Module | None:
    """The prototype baseline to score beside the model: the one its training saved
    (``source``, a file or its run's copy), else rebuilt from the model's configuration (a
    model trained elsewhere); None when ``train.baseline`` is off, the model is the baseline,
    or its backbone weights cannot be loaded here (said in the log)."""
    from lerenet.model.build import rebuild_baseline
    from lerenet.tracking.loading import available, load_torch_model

    if available(source):
        return load_torch_model(source)[0]
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
