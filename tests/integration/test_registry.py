"""Gate and registry against a real `mlflow server` with artifacts on SeaweedFS S3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lerenet.cli.main import app
from lerenet.config.schema import load_params
from lerenet.lineage.records import LINEAGE_KEYS
from lerenet.results import TrainSummary

pytestmark = [pytest.mark.integration, pytest.mark.slow]
runner = CliRunner()


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def _train(params_path: str = "params.yaml") -> TrainSummary:
    from lerenet.stages import train as train_stage

    params = load_params(params_path)
    summary = train_stage.run(params, params_file=Path(params_path), show_progress=False)
    return summary


def _aliases(name: str = "lerenet") -> dict[str, str]:
    return dict(_client().get_registered_model(name).aliases)


def test_gate_promote_rollback_cycle(tracked_project: Path, s3_server) -> None:
    first = _train()
    # no champion: the floors alone decide (floors 0 in the tiny params → pass, exit 0)
    result = runner.invoke(app, ["gate"])
    assert result.exit_code == 0, result.output
    decision = json.loads(Path("outputs/gate/decision.json").read_text())
    assert decision["passed"] and decision["champion"] is None
    assert _client().get_run(first.run_id).data.tags["lerenet.gate"] == "passed"
    assert runner.invoke(app, ["promote"]).exit_code == 0
    assert _aliases() == {"staging": "1"}
    assert runner.invoke(app, ["promote", "--to", "production"]).exit_code == 0
    assert _aliases() == {"staging": "1", "production": "1"}
    twice = runner.invoke(app, ["promote", "--to", "production"])  # no move: said so
    assert twice.exit_code == 0 and "v1 was already @production" in " ".join(twice.output.split())
    version = _client().get_model_version("lerenet", "1")
    for key in (*LINEAGE_KEYS, "lerenet.gate"):
        assert key in version.tags, key
    assert "test classes: " in version.description and "Gate: passed" in version.description
    # the artifacts went through the server into the S3 bucket
    keys = s3_server.client().list_objects_v2(Bucket="lerenet-artifacts", Prefix="mlflow/")
    assert keys.get("KeyCount", 0) > 0

    # a second model (another seed: other weights), judged against production by a gate it
    # cannot pass (an impossible floor: the tiny models' quality is noise either way)
    Path("seed7.yaml").write_text(
        Path("params.yaml").read_text().replace("train:\n", "train:\n  seed: 7\n")
    )
    second = _train("seed7.yaml")
    Path("strict.yaml").write_text(
        Path("seed7.yaml").read_text().replace("min_miou: 0.0", "min_miou: 1.0")
    )
    strict = runner.invoke(app, ["gate", "--params", "strict.yaml"])
    assert strict.exit_code == 1, strict.output
    assert "below the floor" in " ".join(strict.output.split())
    assert _client().get_run(second.run_id).data.tags["lerenet.gate"] == "failed"
    # a failed gate may reach staging but never production
    assert runner.invoke(app, ["promote"]).exit_code == 0
    refused = runner.invoke(app, ["promote", "--to", "production"])
    assert refused.exit_code == 1 and "did not pass its gate" in refused.output
    assert _aliases() == {"staging": "2", "production": "1"}

    # a lenient gate (any loss allowed, no gain required) passes it; promoting the same
    # weights again registers no v3, v2 now carries the passed gate; production moves;
    # rollback returns to v1 with the reason kept
    Path("lenient.yaml").write_text(
        Path("seed7.yaml")
        .read_text()
        .replace("gate:\n", "gate:\n  margin: 1.0\n  require_gain: false\n")
    )
    assert runner.invoke(app, ["gate", "--params", "lenient.yaml"]).exit_code == 0
    again = runner.invoke(app, ["promote", "--params", "seed7.yaml"])
    assert again.exit_code == 0 and "not registered again" in " ".join(again.output.split())
    assert _client().get_model_version("lerenet", "2").tags["lerenet.gate"] == "passed"
    assert runner.invoke(app, ["promote", "--to", "production"]).exit_code == 0
    assert _aliases()["production"] == "2"
    assert len(_client().search_model_versions("name='lerenet'")) == 2
    back = runner.invoke(app, ["rollback", "--reason", "false rejects on line 4"])
    assert back.exit_code == 0, back.output
    assert _aliases()["production"] == "1"
    tag = json.loads(_client().get_model_version("lerenet", "2").tags["lerenet.rolled_back"])
    assert tag["reason"] == "false rejects on line 4" and tag["to"] == "1"


def test_failure_mid_promotion_leaves_aliases(
    tracked_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lerenet.stages import promote as promote_stage
    from lerenet.tracking import registry

    _train()
    params = load_params("params.yaml")
    promote_stage.run(params)
    before = _aliases()

    def broken(uri: str) -> None:
        raise OSError("artifact store unreachable")

    Path("seed7.yaml").write_text(
        Path("params.yaml").read_text().replace("train:\n", "train:\n  seed: 7\n")
    )
    _train("seed7.yaml")  # other weights: a new version to register (and fail to verify)
    monkeypatch.setattr(registry, "verify_loadable", broken)
    with pytest.raises(registry.PromotionError, match="unchanged"):
        promote_stage.run(params)
    assert _aliases() == before
    newest = max(int(v.version) for v in _client().search_model_versions("name='lerenet'"))
    assert (
        _client()
        .get_model_version("lerenet", str(newest))
        .tags["lerenet.promotion"]
        .startswith("failed")
    )


def test_no_version_is_registered_without_its_model_artifacts(
    tracked_project: Path, s3_server
) -> None:
    """The model's files lost from the artifact store (an outage, a wiped bucket): promote
    refuses in one sentence and the registry gets no version that cannot load."""
    from lerenet.stages import promote as promote_stage

    summary = _train()
    model_id = summary.model_uri.removeprefix("models:/")
    bucket = s3_server.client()
    listing = bucket.list_objects_v2(Bucket="lerenet-artifacts").get("Contents", [])
    doomed = [o["Key"] for o in listing if f"/{model_id}/" in o["Key"]]
    assert any(k.endswith("MLmodel") for k in doomed), doomed
    for key in doomed:
        bucket.delete_object(Bucket="lerenet-artifacts", Key=key)
    result = runner.invoke(app, ["promote"])
    assert result.exit_code == 1, result.output
    assert "nothing registered" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not _client().search_model_versions("name='lerenet'")
    _train()  # the next model, artifacts intact, registers as version 1
    assert promote_stage.run(load_params("params.yaml")).version == "1"


def test_a_retrain_that_reproduces_the_weights_registers_no_second_version(
    tracked_project: Path,
) -> None:
    """Same data, params and seed: training ends on the same weights (CPU is deterministic);
    promoting it moves the alias to the version that holds them, with no new version."""
    first = _train()
    result = runner.invoke(app, ["promote"])
    assert result.exit_code == 0, result.output
    second = _train()
    assert second.run_id != first.run_id
    tags = [_client().get_run(r.run_id).data.tags for r in (first, second)]
    assert tags[0]["lerenet.state_sha256"] == tags[1]["lerenet.state_sha256"]
    again = runner.invoke(app, ["promote"])
    assert again.exit_code == 0, again.output
    assert "not registered again" in " ".join(again.output.split())
    assert [str(v.version) for v in _client().search_model_versions("name='lerenet'")] == ["1"]
    assert _aliases() == {"staging": "1"}


def test_a_model_worse_than_the_baseline_cannot_take_production(tracked_project: Path) -> None:
    """The baseline rule on: the tiny model loses to the parameter-free baseline, so the gate
    fails with that reason (CLI, decision, MLflow run and version), and the model reaches
    @staging only."""
    from lerenet.stages import evaluate as evaluate_stage

    params_path = Path("params.yaml")
    params_path.write_text(params_path.read_text().replace("beat_baseline: false", ""))
    assert load_params(params_path).gate.beat_baseline
    summary = _train()
    evaluate_stage.run(load_params(params_path))
    result = runner.invoke(app, ["gate"])
    assert result.exit_code == 1, result.output
    decision = json.loads(Path("outputs/gate/decision.json").read_text())
    for shot in ("1shot", "5shot"):  # the premise: six steps of training lose to the baseline
        assert decision["numbers"][shot]["baseline_delta"] < 0, decision["numbers"]
    assert "prototype baseline" in result.output
    tags = _client().get_run(summary.run_id).data.tags
    assert tags["lerenet.gate"] == "failed" and "prototype baseline" in tags["lerenet.gate_reasons"]
    assert runner.invoke(app, ["promote"]).exit_code == 0
    refused = runner.invoke(app, ["promote", "--to", "production"])
    assert refused.exit_code == 1 and "did not pass its gate" in refused.output
    assert _aliases() == {"staging": "1"}
    assert "prototype baseline" in _client().get_model_version("lerenet", "1").description


def test_concurrent_promotions_serialise_and_report_the_state_after_the_move(
    tracked_project: Path,
) -> None:
    """Two promotions at once used to both print 'now @staging (was: none)'; each must see
    the other's move: one reports the previous alias, the other the first one's version."""
    from concurrent.futures import ThreadPoolExecutor

    from lerenet.tracking.registry import register

    run_id = _train().run_id
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda _: register(run_id, name="lerenet"), range(2)))
    assert len({p.version for p in done}) == 2
    assert sorted(p.previous is None for p in done) == [False, True]  # one saw the other
    first = next(p for p in done if p.previous is None)
    second = next(p for p in done if p.previous is not None)
    assert second.previous == first.version
    assert str(_client().get_model_version_by_alias("lerenet", "staging").version) == second.version
