"""``lerenet stack up | down | status``: the service stack on one machine, without Docker.

SeaweedFS S3 (credentials enforced, buckets created), an ``mlflow server`` (SQLite by default,
PostgreSQL when ``--backend-uri`` is given; artifacts proxied to the bucket; MLflow's basic
authentication) and a ``prefect server`` (its API auth string required) with a process work
pool and a worker. Every login is generated at the first ``up`` (``credentials.py``). State,
logs and secrets live under one directory (``.stack/`` by default; credential files 0600).
``up`` is idempotent
(a running stack is left alone); ``down`` stops every process group it started.
Clients use the stack through the environment variables written to ``<dir>/env.sh``.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from lerenet.stack.credentials import is_secret, kept_login
from lerenet.stack.mlflow_server import MlflowServer
from lerenet.stack.ports import group_alive, http_ok, stop_group
from lerenet.stack.prefect_server import RESULTS_BLOCK_TYPE, PrefectServer
from lerenet.stack.seaweed import S3Credentials, SeaweedS3

BUCKETS = ("lerenet-data", "lerenet-artifacts", "lerenet-results")
WORK_POOL = "lerenet-process"


def outdated(env: dict[str, str]) -> list[str]:
    """What a running stack, started by an older version, still lacks (``up`` leaves a
    running stack as it is): one sentence each, empty when it is current."""
    block = env.get("PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK")
    if block is None or block.startswith(f"{RESULTS_BLOCK_TYPE}/"):
        return []
    return [
        f"its Prefect results block ({block}) reads any serializer a record names, pickle "
        f"included; this version's ({RESULTS_BLOCK_TYPE}) refuses all but typed JSON"
    ]


@dataclass
class StackState:
    dir: Path
    pids: dict[str, int]
    env: dict[str, str]

    def save(self) -> None:
        (self.dir / "state.json").write_text(
            json.dumps(
                {
                    "pids": self.pids,
                    "env": {k: v for k, v in self.env.items() if not is_secret(k)},
                },
                indent=2,
            )
        )
        env_file = self.dir / "env.sh"
        env_file.write_text("".join(f"export {k}={v}\n" for k, v in sorted(self.env.items())))
        env_file.chmod(0o600)


def health_urls(env: dict[str, str]) -> dict[str, str]:
    """Each service's health endpoint, from the stack's (non-secret) client environment."""
    urls = {
        "seaweedfs": f"{env.get('AWS_ENDPOINT_URL_S3', '')}/healthz",
        "mlflow": f"{env.get('MLFLOW_TRACKING_URI', '')}/health",
    }
    if env.get("PREFECT_API_URL"):
        urls["prefect-server"] = f"{env['PREFECT_API_URL']}/health"
    return urls


def _answers(url: str) -> bool:
    try:
        return http_ok(url)
    except OSError:  # refused, reset, timed out
        return False


def status(state_dir: Path) -> dict[str, bool]:
    """Service → healthy: its process group is alive *and* its health endpoint answers 200
    (a pid alone said "running" for a killed SeaweedFS whose process was not yet reaped, and
    says nothing of a server that hangs). The worker has no endpoint: its pid is checked."""
    path = Path(state_dir) / "state.json"
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    urls = health_urls(saved.get("env", {}))
    return {
        name: group_alive(pid) and (name not in urls or _answers(urls[name]))
        for name, pid in saved["pids"].items()
    }


def read_env(state_dir: Path) -> dict[str, str]:
    """The variables ``env.sh`` exports (what clients of the stack need, secrets included)."""
    return dict(
        line.removeprefix("export ").split("=", 1)
        for line in (Path(state_dir) / "env.sh").read_text().splitlines()
        if line
    )


def _credentials(state_dir: Path) -> S3Credentials:
    """From LERENET_S3_ACCESS_KEY/LERENET_S3_SECRET_KEY, else generated once and kept (0600)."""
    key, secret = os.environ.get("LERENET_S3_ACCESS_KEY"), os.environ.get("LERENET_S3_SECRET_KEY")
    if key and secret:
        return S3Credentials(key, secret)
    path = state_dir / "credentials.json"
    if path.exists():
        return S3Credentials(**json.loads(path.read_text()))
    creds = S3Credentials("lerenet-" + secrets.token_hex(4), secrets.token_urlsafe(24))
    path.write_text(json.dumps(creds.__dict__))
    path.chmod(0o600)
    return creds


@dataclass(frozen=True)
class StackPorts:
    """Fixed ports keep bookmarks (the MLflow UI) and clients' env valid across restarts;
    ``None`` picks a free port (tests, several stacks on one machine)."""

    s3: int | None = None
    mlflow: int | None = None
    prefect: int | None = None


def up(
    state_dir: Path,
    *,
    backend_uri: str | None = None,
    with_prefect: bool = True,
    repo: Path = Path("."),
    ports: StackPorts = StackPorts(),
) -> StackState:
    state_dir = Path(state_dir).resolve()
    running = status(state_dir)
    if running and all(running.values()):
        saved = json.loads((state_dir / "state.json").read_text())
        return StackState(state_dir, saved["pids"], read_env(state_dir))
    if running:
        down(state_dir)  # half-dead stack: restart it cleanly
    state_dir.mkdir(parents=True, exist_ok=True)
    started: list = []
    try:
        s3 = SeaweedS3(
            state_dir / "seaweed", _credentials(state_dir), buckets=BUCKETS, s3_port=ports.s3
        ).start()
        started.append(s3)
        mlflow = MlflowServer(
            state_dir / "mlflow",
            backend_uri=backend_uri,
            artifacts_destination=f"s3://{BUCKETS[1]}/mlflow",
            s3_env=s3.env(),
            port=ports.mlflow,
            auth=kept_login(state_dir, "mlflow", "lerenet-admin"),
        ).start()
        started.append(mlflow)
        env = {**s3.env(), **mlflow.client_env()}
        pids = {"seaweedfs": s3.process.pid, "mlflow": mlflow.process.pid}
        if with_prefect:
            prefect = PrefectServer(
                state_dir / "prefect",
                port=ports.prefect,
                auth=kept_login(state_dir, "prefect", "lerenet"),
            ).start()
            started.append(prefect)
            # flow and task results persisted to the results bucket, not the worker's disk
            env["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] = prefect.save_result_storage(
                f"s3://{BUCKETS[2]}/prefect", s3.endpoint, "lerenet-results"
            )
            env["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] = "true"
            worker = prefect.start_worker(WORK_POOL, cwd=repo, extra_env=env)
            pids.update({"prefect-server": prefect.process.pid, "prefect-worker": worker.pid})
            env |= prefect.client_env()
    except Exception:
        for service in reversed(started):
            service.stop()
        raise
    state = StackState(state_dir, pids, env)
    state.save()
    return state


def down(state_dir: Path, timeout: float = 20) -> list[str]:
    """Stop the stack's services, last started first: SIGTERM, then SIGKILL after ``timeout``
    seconds each. A user's stack gets the full grace (SeaweedFS's filer waits 15 s for its
    metadata subscribers before it closes its store); throwaway test stacks pass less."""
    path = Path(state_dir) / "state.json"
    if not path.exists():
        return []
    pids = json.loads(path.read_text())["pids"]
    for name in ("prefect-worker", "prefect-server", "mlflow", "seaweedfs"):
        if name in pids:
            stop_group(pids[name], timeout=timeout)
    path.unlink()
    return list(pids)
