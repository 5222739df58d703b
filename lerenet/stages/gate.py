"""The gate stage: score challenger, champion and baseline on the same episodes, then decide.

The decision rules are in ``gate.py`` (pure functions of per-episode stats); this module finds
the stats — reusing what the evaluate stage saved for the same model and split, predicting
otherwise — and records the decision in ``decision.json`` and on the challenger's MLflow run
(tags ``lerenet.gate`` and ``lerenet.gate_reasons``, ``gate/…`` metrics), from where the
registry copies it onto the model version.
"""

from __future__ import annotations

import json
from pathlib import Path

from lerenet.config.schema import Params
from lerenet.data.split_result import Split
from lerenet.evaluation.gate import GateDecision
from lerenet.results import EvaluationReport, TrainSummary, shot_key
from lerenet.stages.declare import EVAL, Out, StageSpec
from lerenet.stages.train import read_train_summary
from lerenet.tracking.uris import run_of

SPEC = StageSpec(
    "gate",
    cmd="lerenet gate --report-only --out-dir outputs/gate",
    entry=(__name__,),
    data=(f"{EVAL}/metrics.json",),
    params=("gate",),
    outs=(Out("outputs/gate/decision.json", cache=False),),
    metrics=(Out("outputs/gate/summary.json", cache=False),),
)


def _evidence(model, params: Params, split: Split, part: str = "test") -> dict:
    """Per-shot episode stats of ``model`` on the fold's ``part`` episodes (``test``: novel
    classes; ``seen_test``: held-out images of the training classes — none when the split
    held nothing out)."""
    from lerenet.evaluation.scoring import episode_dataset, predict_episodes
    from lerenet.results import ShotEvidence

    device = next(model.parameters()).device
    out = {}
    for k in params.eval.shots:
        try:
            dataset = episode_dataset(params, model, part, k, params.train.fold, split=split)
        except FileNotFoundError:
            if part == "test":
                raise
            continue  # a split written before held-out parts existed
        if not dataset.episodes:
            continue
        preds = predict_episodes(model, dataset, device)
        out[shot_key(k)] = ShotEvidence(preds.stats, preds.classes)
    return out


def _saved_evidence(
    params: Params,
    model_uri: str,
    evaluation: EvaluationReport | None,
    split: Split,
    name: str = "lerenet",
) -> dict | None:
    """The evaluate stage's per-episode stats of ``model_uri`` (``name="lerenet"``) or of the
    baseline scored with it (``name="baseline"``), when that evaluation was of this model on
    the current split for every gated shot count; else None (the gate then predicts itself).

    ``evaluation`` is the report a flow passes in memory; without one (the CLI, ``dvc
    repro``) it is read back from ``eval.out_dir``, where the evaluate stage wrote it."""
    if evaluation is None:
        path = Path(params.eval.out_dir) / "metrics.json"
        evaluation = EvaluationReport.read(path) if path.exists() else None
    if evaluation is None or evaluation.model_uri != model_uri:
        return None
    if not split.sha256 or evaluation.split_sha256 != split.sha256:
        return None
    scored = evaluation.models().get(name)
    keys = [shot_key(k) for k in params.eval.shots]
    if scored is None or any(k not in scored.evidence or k not in scored.shots for k in keys):
        return None
    return {k: scored.evidence[k] for k in keys}


def _baseline_evidence(
    params: Params, challenger: str, evaluation: EvaluationReport | None, split: Split
) -> tuple[dict | None, str]:
    """The parameter-free baseline's per-episode stats on the gated episodes, and where they
    came from: saved by evaluate for this challenger, or rebuilt from the challenger's own
    model configuration (same backbone, pretrained weights and levels) and predicted here."""
    from lerenet.model.build import rebuild_baseline
    from lerenet.tracking.loading import load_torch_model
    from lerenet.training.checkpoint import load_model_file

    saved = _saved_evidence(params, challenger, evaluation, split, "baseline")
    if saved is not None:
        return saved, "saved by evaluate"
    path = Path(challenger)
    meta = load_model_file(path)[1] if path.exists() else load_torch_model(challenger)[1]
    baseline, why_not = rebuild_baseline(meta["model_config"])
    if baseline is None:
        return None, why_not
    return _evidence(baseline.eval(), params, split), "rebuilt from the challenger's configuration"


def run(
    params: Params,
    *,
    challenger: str | None = None,
    champion: str | None = None,
    train: TrainSummary | None = None,
    evaluation: EvaluationReport | None = None,
    split: Split | None = None,
    out_dir: Path = Path("outputs/gate"),
    track: bool = True,
) -> GateDecision:
    """Score challenger and champion on the same test episodes; decide; log the decision.

    The challenger is ``challenger``, else ``train``'s model, else the last training's
    (train.json); ``train`` also names the run the decision is logged to (otherwise the
    tracking server is asked which run logged the challenger). ``evaluation`` (a flow's, in
    memory) supplies the challenger's and the baseline's per-episode stats when it scored the
    same model on the same split; ``split`` (a flow's, in memory) is the split gated on, else
    the one in ``split.out_dir``."""
    from lerenet.evaluation.gate import decide, write_decision
    from lerenet.tracking.loading import load_torch_model
    from lerenet.tracking.registry import champion_of
    from lerenet.tracking.runs import connect
    from lerenet.training.checkpoint import identical_weights

    if challenger is None:
        train = train or read_train_summary(params)
        challenger = train.challenger
    if track:
        connect(params.tracking)  # a server that is down: one sentence, not minutes of retries
    # untracked (no registry to ask): only an explicitly given champion is compared against
    if track:
        champion = champion_of(params.tracking.registered_model, champion)
    champ_model = None
    if champion is not None:
        champ_model, _ = load_torch_model(champion)
    split = split or Split.read(Path(params.split.out_dir))
    evidence = _saved_evidence(params, challenger, evaluation, split)
    challenger_model = None
    if evidence is None:
        challenger_model = load_torch_model(challenger)[0]
        evidence = _evidence(challenger_model, params, split)
    seen = seen_champion = None
    if champ_model is not None:  # the forgetting check: both on the seen classes' held-out images
        challenger_model = challenger_model or load_torch_model(challenger)[0]
        seen = _evidence(challenger_model, params, split, "seen_test")
        seen_champion = _evidence(champ_model, params, split, "seen_test")
    baseline, baseline_source = (
        _baseline_evidence(params, challenger, evaluation, split)
        if params.gate.beat_baseline
        else (None, "")
    )
    decision = decide(
        evidence,
        _evidence(champ_model, params, split) if champ_model is not None else None,
        params.gate,
        baseline=baseline,
        challenger_uri=challenger,
        champion_uri=champion,
        seen=seen,
        seen_champion=seen_champion,
    )
    if baseline is None and params.gate.beat_baseline:
        decision.reasons.append(baseline_source)
    if champ_model is not None and identical_weights(challenger_model, champ_model):
        decision.reasons.append(
            f"the challenger's weights are identical to the champion's ({champion}): the "
            "comparison cannot tell them apart"
        )
    path = write_decision(decision, Path(out_dir) / "decision.json")
    # dvc metrics/exp show read this one: the verdict, not decision.json's nested numbers
    (Path(out_dir) / "summary.json").write_text(json.dumps({"passed": decision.passed}) + "\n")
    if track:
        _log_decision(params, decision, path, _challenger_run(challenger, train))
    decision.path = str(path)
    return decision


def _challenger_run(challenger: str, train: TrainSummary | None) -> str | None:
    """The run to log the decision to: the training's, else the one that logged the model
    (a flow's or a remote training's challenger), asked of the tracking server."""
    if train is not None and challenger == train.challenger:
        return train.run_id
    return run_of(challenger)


def _log_decision(params: Params, decision: GateDecision, path: Path, run_id: str | None) -> None:
    """Tags, ``gate/…`` metrics and decision.json on the challenger's run, from where the
    registry copies the verdict onto the model version (the MLflow UI shows why a model stayed
    at @staging)."""
    from lerenet.tracking.runs import start_run

    if not run_id:
        return
    with start_run(params, run_name="gate", run_id=run_id) as run:
        run.tags(
            {
                "lerenet.gate": "passed" if decision.passed else "failed",
                "lerenet.gate_champion": decision.champion or "none",
                "lerenet.gate_reasons": "; ".join(decision.reasons)[:4000],
            }
        )
        run.metrics(
            {
                f"gate/{shot}/{k}": v
                for shot, nums in decision.numbers.items()
                for k, v in nums.items()
                if isinstance(v, float)
            }
        )
        run.artifact(path, "gate")
