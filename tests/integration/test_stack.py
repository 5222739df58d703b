"""The whole local stack for real: `stack up`, a retrain deployment run by a process worker on
the prefect server, results checked in MLflow (REST API) and S3, then `stack down`."""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import prefect.settings  # noqa: F401  # before the tests set PREFECT_API_URL: see below
import pytest

from tests.conftest import DVC, REPO_ROOT, run_ok, tiny_params

# Prefect reads PREFECT_API_URL into its root settings when first imported. Imported first
# inside a test, after that test pointed the variable at its stack, it kept the stopped
# stack's URL for the rest of the pytest process, and a later test's flow failed to reach it.

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# long enough that the kill lands mid-training: a checkpoint every 4 of 48 steps
KILL_OVERRIDES = {"train.steps": 48, "train.checkpoint_every": 4, "train.val_every": 24}


def _processes_of_flow_run(flow_run_id: str) -> list[int]:
    """PIDs whose environment names ``flow_run_id``: the process a Prefect process worker
    started for that flow run (Linux /proc)."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:  # gone, or not ours
                continue
    return pids


def _kill_training_worker(client, tracking_uri: str, parent_id, timeout: float = 600) -> str:
    """Wait until the training deployment's flow run (a child of ``parent_id``) has stored a
    checkpoint with its MLflow run, then SIGKILL that flow run's process, as a preempted GPU
    node would; returns the MLflow run id."""
    import os
    import signal
    import time

    from mlflow import MlflowClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    from lerenet.tracking.checkpoints import STEP_TAG

    mlflow = MlflowClient(tracking_uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        experiment = mlflow.get_experiment_by_name("lerenet")
        runs = mlflow.search_runs([experiment.experiment_id]) if experiment else []
        stored = [r for r in runs if STEP_TAG in r.data.tags and r.info.status == "RUNNING"]
        if stored:
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])
                )
            )
            trains = [c for c in children if c.deployment_id is not None]
            pids = [pid for c in trains for pid in _processes_of_flow_run(str(c.id))]
            assert pids, "the training flow run's process was not found"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            return stored[0].info.run_id
        time.sleep(0.2)
    pytest.fail("no checkpoint was stored by the training worker in time")


def test_stack_runs_retrain_deployment(
    fixture_or_synthetic: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    from lerenet.stack.local import WORK_POOL, down, status, up

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO_ROOT / "prefect.yaml", project / "prefect.yaml")
    for name in ("lerenet", "pipelines", "infra"):
        shutil.copytree(
            REPO_ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    state = up(tmp_path / ".stack", repo=project)
    # idempotent: a second `up` finds the running stack and starts nothing
    assert up(tmp_path / ".stack", repo=project).pids == state.pids
    assert status(tmp_path / ".stack") == dict.fromkeys(state.pids, True)
    (project / "params.yaml").write_text(tiny_params(project, state.env["MLFLOW_TRACKING_URI"]))
    try:
        for key, value in state.env.items():
            monkeypatch.setenv(key, value)
        # DVC set up as the repository ships it: the default remote a folder beside this
        # clone (absent in a worker's), the stack's S3 a second remote whose endpoint the
        # environment gives (the deployments name it: `dvc_remote`)
        shutil.copy(REPO_ROOT / ".dvc" / "config", project / "dvc-config")
        for cmd in (
            ["git", "init", "-q"],
            [*DVC, "init", "-q"],
            ["mv", "dvc-config", ".dvc/config"],
        ):
            run_ok(cmd, project)

        from prefect.deployments import run_deployment
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        from pipelines.flows import retrain, train_gpu

        # Prefect caches its API URL per process: point this block at the stack's server
        api = temporary_settings(
            updates={
                PREFECT_API_URL: state.env["PREFECT_API_URL"],
                PREFECT_API_AUTH_STRING: state.env["PREFECT_API_AUTH_STRING"],
            }
        )
        api.__enter__()
        from prefect.runner.storage import GitRepository

        # the training deployment goes on the same process pool, in place of the GPU pool, as
        # a remote worker: its own clone of the committed code (no data/, no outputs/),
        # sharing only the S3 bucket and the MLflow and Prefect servers with the parent
        run_ok(["git", "add", "-A"], project)
        run_ok(["git", "commit", "-qm", "the code the training worker clones"], project)
        for flow_obj, func, name, source, variables in (
            (retrain, "retrain", "stack-test", str(project), {"working_dir": str(project)}),
            (train_gpu, "train_gpu", "stack-train", GitRepository(url=project.as_uri()), {}),
        ):
            deployment_id = flow_obj.from_source(
                source=source, entrypoint=f"pipelines/flows.py:{func}"
            ).deploy(
                name=name, work_pool_name=WORK_POOL, job_variables=variables, print_next_steps=False
            )
            assert deployment_id
        retrain_parameters = {
            "source": str(fixture_or_synthetic),
            "train_deployment": "train-gpu/stack-train",
            "overrides": KILL_OVERRIDES,
            "dvc_remote": "s3",
        }
        # a training worker killed mid-training (SIGKILL, as a preempted node): the retrain
        # fails before evaluation and nothing reaches the registry
        from prefect.client.orchestration import get_client

        killed_run = run_deployment("retrain/stack-test", timeout=0, parameters=retrain_parameters)
        tracking = state.env["MLFLOW_TRACKING_URI"]
        with get_client(sync_client=True) as client:
            killed = _kill_training_worker(client, tracking, killed_run.id)
            deadline = time.monotonic() + 300
            while not (ended := client.read_flow_run(killed_run.id)).state.is_final():
                assert time.monotonic() < deadline, ended.state
                time.sleep(1)
        assert ended.state.is_failed() or ended.state.is_crashed(), ended.state
        from mlflow import MlflowClient

        assert not MlflowClient(tracking).search_registered_models()  # registry untouched
        # the rerun resumes that MLflow run from its last stored checkpoint, on a worker
        # whose disk held nothing of the first attempt (a fresh clone per flow run)
        run = run_deployment(
            "retrain/stack-test", timeout=900, poll_interval=2, parameters=retrain_parameters
        )
        assert run.state.is_completed(), run.state
        from lerenet.tracking.checkpoints import RESUMED_TAG

        resumed = MlflowClient(tracking).get_run(killed)
        assert resumed.info.status == "FINISHED" and int(resumed.data.tags[RESUMED_TAG]) > 0
        # the worker trained in its clone: the parent evaluated, gated and promoted from what
        # MLflow and S3 hold, with no training output on its own disk
        assert (project / "splits").is_dir() and not (project / "outputs" / "train").exists()

        # training ran as its own flow run of the training deployment, a child of the retrain
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

        with get_client(sync_client=True) as client:
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
                )
            )
            trains = [c for c in children if c.deployment_id is not None]
            assert len(trains) == 1 and trains[0].state.is_completed(), trains
            assert client.read_deployment(trains[0].deployment_id).name == "stack-train"
            # the promotion artifact links to the run and the version in the MLflow UI
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
            )
            promotion = next(a for a in artifacts if a.key == "promotion").data
            assert f"{state.env['MLFLOW_TRACKING_URI']}/#/models/lerenet/versions/" in promotion
            assert f"/runs/{killed}" in promotion

        # MLflow through its REST API (with the stack's login: it refuses anyone else): the
        # model is registered with lineage and an alias
        base = state.env["MLFLOW_TRACKING_URI"]
        login = f"{state.env['MLFLOW_TRACKING_USERNAME']}:{state.env['MLFLOW_TRACKING_PASSWORD']}"

        def rest(path: str):
            import base64

            request = urllib.request.Request(f"{base}{path}")
            request.add_header(
                "Authorization", "Basic " + base64.b64encode(login.encode()).decode()
            )
            return urllib.request.urlopen(request)

        with rest("/api/2.0/mlflow/registered-models/get?name=lerenet") as resp:
            model = json.load(resp)["registered_model"]
        aliases = {a["alias"] for a in model.get("aliases", [])}
        assert "staging" in aliases
        with rest("/api/2.0/mlflow/model-versions/get?name=lerenet&version=1") as resp:
            tags = {t["key"] for t in json.load(resp)["model_version"]["tags"]}
        assert {"lerenet.data_version", "lerenet.split_sha256", "lerenet.gate"} <= tags

        # credentials never reach MLflow params or tags
        with rest("/api/2.0/mlflow/model-versions/get?name=lerenet&version=1") as resp:
            run_id = json.load(resp)["model_version"]["run_id"]
        assert run_id == killed  # the registered model is the resumed training's
        with rest(f"/api/2.0/mlflow/runs/get?run_id={run_id}") as resp:
            run_data = json.dumps(json.load(resp)["run"]["data"])
        assert state.env["AWS_SECRET_ACCESS_KEY"] not in run_data
        assert state.env["AWS_ACCESS_KEY_ID"] not in run_data

        # the data version and the model artifacts are in the S3 bucket
        import boto3

        # explicit keys: boto3's default session caches the first credentials it resolved,
        # and an earlier test in this process (an s3:// model load) resolved the test S3's
        s3 = boto3.client(
            "s3",
            endpoint_url=state.env["AWS_ENDPOINT_URL_S3"],
            aws_access_key_id=state.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=state.env["AWS_SECRET_ACCESS_KEY"],
        )
        assert s3.list_objects_v2(Bucket="lerenet-data", Prefix="dvc/")["KeyCount"] > 10
        assert s3.list_objects_v2(Bucket="lerenet-artifacts", Prefix="mlflow/")["KeyCount"] > 0
        # the flow's task results were persisted to the results bucket by the worker
        results = s3.list_objects_v2(Bucket="lerenet-results", Prefix="prefect/")
        assert results["KeyCount"] > 0
        # ... each typed JSON, none that a reader would unpickle: a task's record names the
        # lerenet-json serializer; a flow's bare return value decodes into the project's types
        # (the training deployment's TrainSummary among them, read back by the parent)
        from lerenet.results import TrainSummary
        from lerenet.services import typed_json
        from pipelines.result_store import PACKAGES

        kinds = []
        for obj in results["Contents"]:
            body = s3.get_object(Bucket="lerenet-results", Key=obj["Key"])["Body"].read()
            stored = json.loads(body)
            if isinstance(stored, dict) and "metadata" in stored:
                assert stored["metadata"]["serializer"]["type"] == "lerenet-json", obj["Key"]
            else:
                kinds.append(type(typed_json.loads(body, PACKAGES)))
        assert TrainSummary in kinds, kinds

        # prefect.yaml as users deploy it (`lerenet stack deploy`): first with no GPU pool ...
        prefect_cli = str(Path(sys.executable).parent / "prefect")
        lerenet_cli = str(Path(sys.executable).parent / "lerenet")
        stack_dir = str(tmp_path / ".stack")
        run_ok(["git", "add", "-A"], project)
        run_ok(["git", "commit", "-qm", "the code workers clone"], project)
        first = run_ok([lerenet_cli, "stack", "deploy", "--dir", stack_dir], project)
        first = " ".join(first.split())
        assert "not deployed lerenet-train-gpu: no work pool 'lerenet-gpu'" in first, first
        assert "pushed to DVC remote 's3'" in first, first
        with get_client(sync_client=True) as client:
            nightly = client.read_deployment_by_name("retrain/lerenet-nightly-retrain")
            assert nightly.parameters["train_deployment"] is None  # trains on the process worker
            onboard = client.read_deployment_by_name("onboard-class/lerenet-onboard-class")
            assert nightly.parameters["dvc_remote"] == onboard.parameters["dvc_remote"] == "s3"
            steps = json.dumps(onboard.pull_steps)
            assert project.as_uri() in steps and "{{ $" not in steps  # no variable left open
        # ... and the nightly retrain it deployed runs green as deployed, as the scheduler
        # would start it: the worker clones the committed code, restores the data version
        # data.dvc records from the stack's S3 (the default remote is not there), trains there
        nightly_run = run_deployment(
            "retrain/lerenet-nightly-retrain", timeout=600, poll_interval=2
        )
        assert nightly_run.state.is_completed(), nightly_run.state
        assert nightly_run.state.result().restored
        # ... then with the GPU pool from the repo's Kubernetes template
        image = "registry.example/lerenet-gpu:abc1234"
        run_ok(
            [prefect_cli, "work-pool", "create", "lerenet-gpu", "--type", "kubernetes",
             "--base-job-template", "infra/k8s/gpu-base-job-template.json"],
            project,
        )  # fmt: skip
        run_ok([lerenet_cli, "stack", "deploy", "--dir", stack_dir, "--gpu-image", image], project)
        with get_client(sync_client=True) as client:
            nightly = client.read_deployment_by_name("retrain/lerenet-nightly-retrain")
            assert nightly.schedules[0].schedule.cron == "0 2 * * *"
            assert nightly.parameters["train_deployment"] == "train-gpu/lerenet-train-gpu"
            assert nightly.work_pool_name == WORK_POOL
            gpu = client.read_deployment_by_name("train-gpu/lerenet-train-gpu")
            assert gpu.work_pool_name == "lerenet-gpu"
            assert gpu.job_variables["image"] == image
            clone = gpu.pull_steps[0]["prefect.deployments.steps.git_clone"]
            assert clone["repository"] == project.as_uri()
            pool = client.read_work_pool("lerenet-gpu")
            container = pool.base_job_template["job_configuration"]["job_manifest"]["spec"][
                "template"
            ]["spec"]["containers"][0]
            assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    finally:
        if "api" in locals():
            api.__exit__(None, None, None)
        pids = dict(state.pids)
        down(tmp_path / ".stack", timeout=3)
    from lerenet.stack.ports import group_alive

    assert [name for name, pid in pids.items() if group_alive(pid)] == []
