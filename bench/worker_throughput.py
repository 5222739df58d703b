"""Training throughput end to end through the GPU worker's entrypoint, services on the same
machine (#13 item 5): episodes/s of the whole training loop against the model step alone.

    python bench/worker_throughput.py --source DIR [--steps 400] [--size 320] [--batch-size 8]

What runs, as in production but on one machine:
1. the stack (``lerenet stack up``): SeaweedFS S3, an MLflow server, a Prefect server and the
   process worker of the ``lerenet-process`` pool, in a scratch directory;
2. the ``lerenet-gpu`` work pool and, polling it, the GPU image's entrypoint: the command that
   ``infra/docker/gpu.Dockerfile``'s CMD and the job templates run,
   ``prefect worker start --pool lerenet-gpu``;
3. ``lerenet stack deploy`` from a scratch git commit of this checkout (with a DVC remote on
   the stack's S3), then the nightly retrain deployment on ``--source``: its flow run ingests,
   validates, versions the data to S3 and splits; the ``lerenet-train-gpu`` flow run on the GPU
   pool clones the commit, pulls that data version from S3 and trains; the parent evaluates,
   gates and registers from MLflow and S3.
The training run's MLflow metrics (``lerenet.training.throughput``) give episodes/s end to end, the
step alone, and waiting for data; #13's target is end to end ≥ 80 % of the step alone.
Results: bench/results/worker_throughput_<cuda|cpu>.json or ``--tag``'s (and $OUT when set).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GPU_ENTRYPOINT = ["prefect", "worker", "start", "--pool", "lerenet-gpu"]
PROJECT_FILES = ("lerenet", "pipelines", "infra", "prefect.yaml", "params.yaml", "pyproject.toml")
THROUGHPUT_METRICS = ("train/step_episodes_per_s", "train/step_share", "train/data_share")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="a dataset folder to ingest")
    parser.add_argument("--steps", type=int, default=400, help="training steps")
    parser.add_argument("--batch-size", type=int, default=8, help="episodes per step")
    parser.add_argument("--size", type=int, default=320, help="input size")
    parser.add_argument("--timeout", type=float, default=540, help="seconds for the retrain")
    parser.add_argument(
        "--device",
        default="cuda",
        help="the GPU deployment's train.device (prefect.yaml: cuda); cpu checks this script "
        "on a machine without a GPU",
    )
    parser.add_argument("--tag", help="results name (default worker_throughput_<cuda|cpu>)")
    parser.add_argument(
        "--set", dest="overrides", nargs="*", default=[], help="more params overrides KEY=VALUE"
    )
    return parser.parse_args()


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(done.stdout + done.stderr)[-2000:]}")


def make_project(work: Path, env: dict[str, str]) -> Path:
    """A git commit of this checkout's code with a DVC remote on the stack's data bucket: what
    the deployments clone (the device machine's copy of the repository has no .git)."""
    project = work / "project"
    project.mkdir()
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, project / name)
    dvc = str(Path(sys.executable).parent / "dvc")
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        [dvc, "init", "-q"],
        [dvc, "remote", "add", "-d", "s3", "s3://lerenet-data/dvc"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "w"],
    ):
        run(cmd, project, env)
    return project


def set_train_device(device: str) -> None:
    """Point the deployed GPU training at ``device`` (its prefect.yaml overrides say cuda)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    from lerenet.stack.deploy import TRAIN_GPU

    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(f"train-gpu/{TRAIN_GPU}")
        overrides = {**found.parameters.get("overrides", {}), "train.device": device}
        client.update_deployment(
            found.id, DeploymentUpdate(parameters={**found.parameters, "overrides": overrides})
        )


def training_metrics(tracking_uri: str, experiment: str) -> dict:
    """The throughput metrics and device of the newest run that logged them."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise RuntimeError(f"no MLflow experiment {experiment!r}: nothing was tracked")
    runs = client.search_runs(
        [found.experiment_id],
        filter_string="metrics.`train/step_share` >= 0",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise RuntimeError("no training run logged train/step_share")
    data = runs[0].data
    return {
        "run_id": runs[0].info.run_id,
        "metrics": {k: data.metrics[k] for k in THROUGHPUT_METRICS if k in data.metrics},
        "device": data.params.get("train.device"),
    }


def main() -> None:
    args = parse_args()
    if not args.source.is_dir():
        sys.exit(f"{args.source}: no such dataset folder")
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from lerenet.config.schema import load_params, parse_overrides
    from lerenet.stack.deploy import GPU_POOL, NIGHTLY, deploy
    from lerenet.stack.local import down, up

    work = Path(tempfile.mkdtemp(prefix="lerenet-worker-"))
    overrides = {
        "data.image_size": args.size,
        "train.steps": args.steps,
        "train.batch_size": args.batch_size,
        "train.val_every": max(1, args.steps // 4),
        "train.checkpoint_every": max(1, args.steps // 4),
    } | parse_overrides(args.overrides)
    state = up(work / ".stack", repo=work)
    env = os.environ | state.env
    bindir = Path(sys.executable).parent
    worker = None
    started = time.perf_counter()
    try:
        project = make_project(work, env)
        run(
            [str(bindir / "prefect"), "work-pool", "create", GPU_POOL, "--type", "process"],
            work,
            env,
        )
        home = work / "gpu-worker"
        home.mkdir()
        worker = subprocess.Popen(  # the image's CMD, verbatim, from the venv of this Python
            [str(bindir / GPU_ENTRYPOINT[0]), *GPU_ENTRYPOINT[1:]],
            cwd=home,
            env=env,
            stdout=(work / "gpu-worker.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deployed = deploy(work / ".stack", repo=project)
        print(f"deployed {deployed.deployed}", flush=True)
        with temporary_settings(updates={PREFECT_API_URL: state.env["PREFECT_API_URL"]}):
            if args.device != "cuda":
                set_train_device(args.device)
            flow_run = run_deployment(
                f"retrain/{NIGHTLY}",
                timeout=args.timeout,
                poll_interval=5,
                parameters={"source": str(args.source.resolve()), "overrides": overrides},
            )
        if not flow_run.state.is_completed():
            tail = (work / "gpu-worker.log").read_text()[-3000:]
            raise RuntimeError(f"retrain ended {flow_run.state.type}: {tail}")
        wall = time.perf_counter() - started
        params = load_params(project / "params.yaml", overrides)
        found = training_metrics(state.env["MLFLOW_TRACKING_URI"], params.tracking.experiment)
    finally:
        if worker is not None:
            os.killpg(worker.pid, 15)
        down(work / ".stack")
    write_result(args, overrides, wall, found)


def write_result(args, overrides: dict, wall: float, found: dict) -> None:
    """The measured throughput as bench/results/<tag>.json (and into $OUT on a device)."""
    import torch

    m = found["metrics"]
    result = {
        "device_name": torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"CPU, {torch.get_num_threads()} threads",
        "command": " ".join(["python", "bench/worker_throughput.py", *sys.argv[1:]]),
        "overrides": overrides,
        "retrain_wall_s": round(wall, 1),
        "mlflow_run": found["run_id"],
        "train_device": found["device"],
        "step_episodes_per_s": m.get("train/step_episodes_per_s"),
        "end_to_end_episodes_per_s": m["train/step_episodes_per_s"] * m["train/step_share"],
        "end_to_end_share": m.get("train/step_share"),
        "data_wait_share": m.get("train/data_share"),
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    tag = args.tag or f"worker_throughput_{'cuda' if torch.cuda.is_available() else 'cpu'}"
    out = RESULTS / f"{tag}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    if os.environ.get("OUT"):
        shutil.copy(out, os.environ["OUT"])


if __name__ == "__main__":
    main()
