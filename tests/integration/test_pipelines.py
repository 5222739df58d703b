"""The two drivers on one config: `dvc repro` and the Prefect `retrain` flow (ephemeral)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from uuid import uuid4

import pytest

from lerenet.data.ingest import ingest
from tests.conftest import DVC, REPO_ROOT, run_ok, tiny_params

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _project(root: Path, synthetic_source: Path) -> Path:
    """A DVC+git project like a user's clone: code, dvc.yaml, params, versioned data."""
    root.mkdir()
    shutil.copytree(
        REPO_ROOT / "lerenet", root / "lerenet", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("dvc.yaml", ".gitignore"):  # the repo's own: DVC must work with them
        shutil.copy(REPO_ROOT / name, root / name)
    (root / "params.yaml").write_text(tiny_params(root))
    run_ok(["git", "init", "-q"], root)
    run_ok([*DVC, "init", "-q"], root)
    run_ok([*DVC, "remote", "add", "-d", "local", str(root.parent / f"{root.name}-remote")], root)
    ingest(str(synthetic_source), root / "data", workers=1, show_progress=False)
    run_ok([*DVC, "add", "data"], root)
    return root


def _metric(root: Path) -> dict:
    return json.loads((root / "outputs/eval/metrics.json").read_text())


def test_dvc_repro_and_prefect_flow_agree(
    synthetic_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dvc_root = _project(tmp_path / "dvc", synthetic_source)
    out = run_ok([*DVC, "repro"], dvc_root)
    for stage in ("validate", "split", "train", "evaluate", "gate"):
        assert f"Running stage '{stage}'" in out
    # long steps tell the user where they are: validation rounds with an ETA, evaluation per shot
    flat = " ".join(out.split())
    assert "validation mIoU" in flat and " left" in flat, out
    assert "LERENet: 5-shot test episodes" in flat and "5-shot mIoU" in flat, out
    shown = run_ok([*DVC, "metrics", "show"], dvc_root)
    assert "1shot.model" in shown and "5shot.baseline" in shown
    assert max(len(line) for line in shown.splitlines()) <= 100, shown  # a terminal's width

    # changing one param re-runs only what depends on it
    params = dvc_root / "params.yaml"
    params.write_text(params.read_text().replace("gate:\n", "gate:\n  margin: 0.05\n"))
    again = run_ok([*DVC, "repro"], dvc_root)
    assert "Running stage 'gate'" in again
    for stage in ("validate", "split", "train", "evaluate"):
        assert f"Running stage '{stage}'" not in again

    # the declared plots render
    run_ok([*DVC, "plots", "show", "-o", "plots"], dvc_root)
    html = (dvc_root / "plots" / "index.html").read_text()
    assert "curve.png" in html and "class_iou_1shot.png" in html
    assert "http://" not in html and "https://" not in html  # renders offline: no CDN scripts

    # an experiment varies a param: only the stages that read it run, its metrics are kept
    run_ok(["git", "add", "-A"], dvc_root)
    run_ok(["git", "commit", "-qm", "baseline run"], dvc_root)
    exp = run_ok([*DVC, "exp", "run", "-n", "margin-02", "-S", "gate.margin=0.2"], dvc_root)
    assert "Running stage 'gate'" in exp and "Running stage 'train'" not in exp
    shown = run_ok([*DVC, "exp", "show", "--csv", "--no-pager"], dvc_root)
    row = next(line for line in shown.splitlines() if line.startswith("margin-02,"))
    assert "0.2" in row.split(",") and "True" in row.split(",")  # the param and gate's result

    # the Prefect flow on the same config and data
    from mlflow import MlflowClient

    from pipelines.flows import retrain

    flow_root = _project(tmp_path / "flow", synthetic_source)
    monkeypatch.chdir(flow_root)
    result = retrain(params_path="params.yaml")
    assert (
        result.split.sha256
        == json.loads((dvc_root / "splits/lineage.json").read_text())["split_sha256"]
    )
    a, b = _metric(dvc_root), _metric(flow_root)
    for name in ("lerenet", "baseline"):
        for k in ("1shot", "5shot"):
            assert a[name][k]["miou"] == b[name][k]["miou"]
            assert a[name][k]["class_iou"] == b[name][k]["class_iou"]
    assert result.data.tracked and result.data.pushed
    assert result.promote.alias == "production"  # tiny floors are 0: the gate passes
    # the flow ran the stages with params.yaml as it is and recorded them in dvc.lock: the
    # other driver finds nothing to do (it reran everything before, #27.3)
    assert result.dvc_lock.startswith("dvc.lock records this run"), result.dvc_lock
    after_flow = run_ok([*DVC, "repro"], flow_root)
    assert "Running stage" not in after_flow, after_flow

    # with the baseline rule on, the six-step model loses to the baseline: @staging only, and
    # the flow's promotion artifact says why
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    ruled_state = retrain(
        params_path="params.yaml", overrides={"gate.beat_baseline": True}, return_state=True
    )
    ruled = ruled_state.result()
    assert not ruled.gate.passed and ruled.promote.alias == "staging"
    assert any("prototype baseline" in r for r in ruled.gate.reasons)
    registry = MlflowClient(f"sqlite:///{flow_root}/mlflow.db")
    aliases = {k: str(v) for k, v in registry.get_registered_model("lerenet").aliases.items()}
    assert aliases["production"] == str(result.promote.version)
    assert aliases["staging"] == str(ruled.promote.version)
    APILogHandler().flush()  # run logs are sent in batches: send what is queued
    with get_client(sync_client=True) as prefect_client:
        artifacts = prefect_client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[ruled_state.state_details.flow_run_id])
            )
        )
        # training reports progress in the run's log (validation rounds), not only at the end
        logs = prefect_client.read_logs(
            log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[ruled_state.state_details.flow_run_id])
            )
        )
    promotion = next(a for a in artifacts if a.key == "promotion")
    assert "@staging" in promotion.data and "prototype baseline" in promotion.data
    assert any("validation mIoU" in log.message and " left" in log.message for log in logs)

    # unchanged data and params: ingest/validate/split come from the cache
    state = retrain(params_path="params.yaml", source=str(synthetic_source), return_state=True)
    assert state.is_completed()
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    states = {r.name.rsplit("-", 1)[0]: r.state.name for r in runs}
    assert states["split"] == "Cached" and states["validate"] == "Cached", states
    assert states["train"] == "Completed"  # training is never cached
    assert state.result().ingest.added == 0  # re-ingesting the same source: a no-op

    # a failing stage leaves the registry as it was
    client = MlflowClient(f"sqlite:///{flow_root}/mlflow.db")
    before = dict(client.get_registered_model("lerenet").aliases)
    params = flow_root / "params.yaml"
    params.write_text(params.read_text().replace("shots: [1, 5]\ntrain:", "shots: [1, 50]\ntrain:"))
    failed = retrain(params_path="params.yaml", return_state=True)
    assert failed.is_failed()
    assert dict(client.get_registered_model("lerenet").aliases) == before
    assert "fewer than 51 usable pairs" in str(failed.result(raise_on_failure=False))
    # the failed validation left its report on the flow run, linking the HTML
    with get_client(sync_client=True) as prefect_client:
        artifacts = prefect_client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[failed.state_details.flow_run_id])
            )
        )
        report = next(a for a in artifacts if a.key == "data-validation")
        assert report.data.startswith("**FAILED**") and "report.html" in report.data
        assert not any(a.key == "promotion" for a in artifacts)
        # promotions are serialised by a one-slot global concurrency limit
        limit = prefect_client.read_global_concurrency_limit_by_name("lerenet-promote")
        assert limit.limit == 1


def test_onboard_class_scores_production_and_baseline_and_registers_nothing(
    synthetic_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few-shot onboarding: with a model in production, a new class is ingested, split as a
    novel class and scored (production and baseline, 1- and 5-shot, with CIs) in the flow's
    result and in MLflow; no training run, no new registry version."""
    from mlflow import MlflowClient

    from lerenet.config.schema import load_params
    from lerenet.data.splits import split_dataset
    from lerenet.stages import evaluate as evaluate_stage
    from lerenet.stages import gate as gate_stage
    from lerenet.stages import promote as promote_stage
    from lerenet.stages import train as train_stage
    from pipelines.flows import onboard_class

    known = tmp_path / "known"
    shutil.copytree(synthetic_source, known, ignore=shutil.ignore_patterns("*Synth_Stain*"))
    new = tmp_path / "new_defect" / "Dent"
    new.mkdir(parents=True)
    for img in sorted((synthetic_source / "images" / "Synth_Stain").glob("*.png")):
        shutil.copy(img, new / img.name)
        shutil.copy(
            synthetic_source / "masks" / "Synth_Stain" / img.name, new / f"{img.stem}_mask.png"
        )
    root = tmp_path / "project"
    root.mkdir()
    (root / "params.yaml").write_text(tiny_params(root))
    monkeypatch.chdir(root)
    ingest(str(known), Path("data"), workers=1, show_progress=False)
    params = load_params("params.yaml")
    split_dataset(Path(params.data.root), params.split)
    trained = train_stage.run(params, params_file=Path("params.yaml"), show_progress=False)
    evaluate_stage.run(params)
    for shot in ("1shot", "5shot"):  # model, start and baseline in one chart (`dvc plots`)
        chart = Path(params.eval.out_dir) / f"class_iou_{shot}.png"
        assert chart.read_bytes().startswith(b"\x89PNG")
    assert gate_stage.run(params).passed  # the tiny params' gate has no baseline rule
    promote_stage.run(params, run_id=trained.run_id, to="production")
    # the same model again, now against itself in production: the gate says so
    again = gate_stage.run(params)
    assert any("weights are identical to the champion's" in r for r in again.reasons)
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    runs_before = len(client.search_runs(client.get_experiment_by_name("lerenet").experiment_id))

    result = onboard_class(str(tmp_path / "new_defect"), class_name="Dent", layout="suffix")
    assert result.new_classes == ["Dent"]
    folds = json.loads(Path("splits/folds.json").read_text())
    assert all("Dent" in f["test"] and "Dent" not in f["train"] + f["val"] for f in folds)
    report = result.onboard
    assert report.model_uri == "models:/lerenet@production"
    cells = {(s.model, s.cls, s.shots) for s in report.scores}
    assert cells == {(m, "Dent", k) for m in ("production", "baseline") for k in (1, 5)}
    for s in report.scores:
        assert 0.0 <= s.low <= s.iou <= s.high <= 1.0 and s.episodes > 0
    # nothing trained, nothing registered; one run holding the numbers
    assert len(client.search_model_versions("name='lerenet'")) == 1
    experiment = client.get_experiment_by_name("lerenet").experiment_id
    runs = client.search_runs(experiment)
    assert len(runs) == runs_before + 1
    logged = client.get_run(report.run_id)
    assert logged.info.run_name == "onboard-Dent"
    assert "onboard/baseline/Dent/5shot/iou" in logged.data.metrics
    assert "onboard/production/Dent/1shot/iou" in logged.data.metrics
    # one sentence for the class, from its every shot count (tests/unit/test_onboard_advice.py)
    assert result.advice.startswith("Dent: the production model ")
    # the same source onboarded again: said, not silently rescored
    again = onboard_class(str(tmp_path / "new_defect"), class_name="Dent", layout="suffix")
    assert again.advice.startswith("All ")
    first = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(logged.info.start_time / 1000))
    assert f"(onboarded first on {first})" in again.advice  # when: the first onboarding


def test_the_training_worker_runs_the_params_it_is_given_not_its_own_file(
    tiny_project: Path,
) -> None:
    """Params travel by value with their sha256: a worker whose checkout has another
    params.yaml trains with the parent's, and params changed on the way are refused."""
    from lerenet.config.schema import Params, params_sha256
    from pipelines.flows import train_gpu
    from pipelines.tasks import resolve_params

    given = resolve_params("params.yaml", {"train.steps": 2})
    sha = params_sha256(Params.model_validate(given))
    params = Path("params.yaml")
    params.write_text(params.read_text().replace("steps: 6", "steps: 4"))  # the worker's file
    refused = train_gpu(params=given, params_sha256="0" * 64, pull_data=False, return_state=True)
    assert refused.is_failed()
    assert "params mismatch" in str(refused.result(raise_on_failure=False))
    trained = train_gpu(params=given, params_sha256=sha, pull_data=False)
    assert trained.steps == 2
    from mlflow import MlflowClient

    run = MlflowClient(given["tracking"]["tracking_uri"]).get_run(trained.run_id)
    assert run.data.params["train.steps"] == "2"


def test_a_training_worker_that_dies_fails_the_retrain_and_registers_nothing(
    tiny_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The training deployment's flow run ends Crashed (its worker was killed): the retrain
    fails right there, naming the deployment and the state, before evaluation, gate or
    promotion, so the registry is untouched."""
    import prefect.deployments
    from mlflow import MlflowClient
    from prefect.client.schemas.objects import FlowRun
    from prefect.states import Crashed

    from pipelines.flows import retrain

    asked: list[dict] = []

    def killed_worker(name: str, parameters: dict, **_: object) -> FlowRun:
        asked.append(parameters)
        return FlowRun(flow_id=uuid4(), name="killed", state=Crashed(message="worker killed"))

    monkeypatch.setattr(prefect.deployments, "run_deployment", killed_worker)
    state = retrain(train_deployment="train-gpu/lerenet-train-gpu", return_state=True)
    assert state.is_failed()
    error = str(state.result(raise_on_failure=False))
    assert "train-gpu/lerenet-train-gpu" in error and "Crashed" in error
    assert asked and asked[0]["data_version"].startswith(("dvc:", "manifest:"))
    uri = asked[0]["params"]["tracking"]["tracking_uri"]
    assert MlflowClient(uri).search_registered_models() == []
    assert not Path("outputs/eval").exists()  # nothing after training ran
