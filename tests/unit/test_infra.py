"""Infra files that CI cannot run (no Docker engine, no cluster): checked for structure."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT


def test_prefect_yaml_declares_the_three_deployments() -> None:
    cfg = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    deps = {d["name"]: d for d in cfg["deployments"]}
    assert set(deps) == {"lerenet-nightly-retrain", "lerenet-onboard-class", "lerenet-train-gpu"}
    assert deps["lerenet-nightly-retrain"]["schedules"][0]["cron"] == "0 2 * * *"
    assert deps["lerenet-train-gpu"]["work_pool"]["name"] == "lerenet-gpu"
    for dep in deps.values():
        module, func = dep["entrypoint"].split(":")
        source = (REPO_ROOT / module).read_text()
        assert f"def {func}(" in source


def test_k8s_template_requests_one_gpu_and_references_secrets() -> None:
    text = (REPO_ROOT / "infra/k8s/gpu-base-job-template.json").read_text()
    tpl = json.loads(text)
    container = tpl["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {ref["secretRef"]["name"] for ref in container["envFrom"]} == {
        "lerenet-s3",
        "lerenet-mlflow",  # URI and login: the server asks every caller for it
        "lerenet-prefect",  # the API auth string
    }
    assert "image" in tpl["variables"]["required"]


def test_ecs_template_requests_a_gpu_and_uses_secret_arns() -> None:
    tpl = json.loads((REPO_ROOT / "infra/ecs/gpu-base-job-template.json").read_text())
    container = tpl["job_configuration"]["task_definition"]["containerDefinitions"][0]
    assert {"type": "GPU", "value": "1"} in container["resourceRequirements"]
    assert all(s["valueFrom"].startswith("{{") for s in container["secrets"])
    names = {s["name"] for s in container["secrets"]}
    assert {"MLFLOW_TRACKING_PASSWORD", "PREFECT_API_AUTH_STRING"} <= names


def test_no_secret_values_inlined() -> None:
    pattern = re.compile(r"(SECRET|PASSWORD)[A-Z_]*\s*[:=]\s*[\"']?[A-Za-z0-9/+]{8,}")
    for path in [
        *(REPO_ROOT / "infra").rglob("*"),
        *(REPO_ROOT / "mlflow").rglob("*"),
        REPO_ROOT / "prefect.yaml",
    ]:
        if path.is_file():
            assert not pattern.search(path.read_text()), path


def test_the_throughput_benchmark_runs_the_gpu_image_entrypoint() -> None:
    """bench/worker_throughput.py measures the worker the GPU image starts, not another one."""
    import importlib.util

    text = (REPO_ROOT / "infra/docker/gpu.Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    spec = importlib.util.spec_from_file_location("wt", REPO_ROOT / "bench/worker_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.GPU_ENTRYPOINT == cmd == ["prefect", "worker", "start", "--pool", "lerenet-gpu"]


def test_dockerfiles_run_as_non_root() -> None:
    for name in ("cpu.Dockerfile", "gpu.Dockerfile"):
        text = (REPO_ROOT / "infra/docker" / name).read_text()
        assert "USER lerenet" in text and "torch==2.13.0" in text


def test_compose_file(tmp_path: Path) -> None:
    compose = REPO_ROOT / "infra/docker/docker-compose.yml"
    cfg = yaml.safe_load(compose.read_text())
    assert {"postgres", "s3", "mlflow", "prefect-server", "prefect-worker"} <= set(cfg["services"])
    # both servers ask for credentials; the worker carries them
    services = cfg["services"]
    assert services["mlflow"]["command"][-2:] == ["--app-name", "basic-auth"]
    assert "PREFECT_SERVER_API_AUTH_STRING" in services["prefect-server"]["environment"]
    worker = services["prefect-worker"]["environment"]
    assert {"PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_PASSWORD"} <= set(worker)
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
        != 0
    ):
        pytest.skip("no docker compose client here; YAML structure checked above")
    env = {
        "POSTGRES_PASSWORD": "x",
        "S3_ACCESS_KEY": "x",
        "S3_SECRET_KEY": "x",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [docker, "compose", "-f", str(compose), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_missing_backend_driver_is_named_before_the_server_starts(tmp_path: Path) -> None:
    from lerenet.stack.mlflow_server import MlflowServer

    server = MlflowServer(
        tmp_path,
        backend_uri="mysql+nosuchdriver://u:p@127.0.0.1/mlflow",
        artifacts_destination="s3://b/m",
        s3_env={},
    )
    with pytest.raises(RuntimeError, match="needs the Python driver 'nosuchdriver'"):
        server.start()
    assert server.process is None  # nothing was started


def test_redact_hides_only_the_password() -> None:
    from lerenet.stack.mlflow_server import redact

    assert redact("postgresql://ml:s3cret@db:5432/mlflow") == "postgresql://ml:***@db:5432/mlflow"
    assert redact("sqlite:///x/mlflow.db") == "sqlite:///x/mlflow.db"


def test_repository_ships_no_run_outputs() -> None:
    """outputs/ and dvc.lock are not git-ignored (DVC experiments commit them in a user's
    project), so a careless `git add -A` here would ship one machine's run; CI catches it."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "outputs", "dvc.lock", "splits", "mlflow.db", "data"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked == []
