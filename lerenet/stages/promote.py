"""The promote stage: register a trained run's model and move ``@staging`` (or ``@production``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lerenet.config.schema import Params
from lerenet.results import EvaluationReport, ModelScores
from lerenet.stages.train import read_train_summary

if TYPE_CHECKING:
    from lerenet.tracking.registry import Promotion


def run(
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
