"""A real ``prefect server`` on loopback, a process work pool and a worker for it.

With a ``Login`` the server requires its API auth string (``PREFECT_SERVER_API_AUTH_STRING``)
on every route but the health probes, its events websocket included (Prefect ≥ 3.4 closes a
socket whose first message is not that auth string); clients, the worker and the flow runs
it starts send it as ``PREFECT_API_AUTH_STRING``. The UI asks for it once per browser.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lerenet.stack.credentials import Login
from lerenet.stack.ports import free_port, http_ok, port_free, spawn, stop_group, wait_started

# the results bucket's block type (``pipelines.result_store.CheckedResults``, which reads only
# typed-JSON records); a stack's PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK names a block of it
RESULTS_BLOCK_TYPE = "lerenet-checked-results"


def _prefect() -> str:
    return str(Path(sys.executable).parent / "prefect")


class PrefectServer:
    def __init__(self, state_dir: Path, port: int | None = None, auth: Login | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.auth = auth
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def client_env(self) -> dict[str, str]:
        """What a Prefect client needs: the API URL and, on an authenticated server, its
        auth string."""
        env = {"PREFECT_API_URL": self.api_url}
        if self.auth is not None:
            env["PREFECT_API_AUTH_STRING"] = self.auth.basic
        return env

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PREFECT_HOME": str(self.state_dir / "home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "true",
            **self.client_env(),
        }

    def start(self, timeout: float = 180) -> PrefectServer:
        if not port_free(self.port):
            raise RuntimeError(f"Prefect port {self.port} on 127.0.0.1 is already in use")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = self.env()
        env.pop("PREFECT_API_URL")  # the server itself must not point at an API
        if self.auth is not None:
            env["PREFECT_SERVER_API_AUTH_STRING"] = self.auth.basic
        # the UI calls the API at this URL: left unset it says 127.0.0.1:4200 whatever the
        # port, and shows "Can't connect" (or another server's data) on any other
        env["PREFECT_UI_API_URL"] = self.api_url
        self.process = spawn(
            [_prefect(), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            self.state_dir / "prefect-server.log",
            env=env,
        )
        wait_started(
            self.process,
            lambda: http_ok(f"{self.api_url}/health"),
            timeout,
            f"prefect server at {self.api_url}",
            self.stop,
            log_path=self.state_dir / "prefect-server.log",
        )
        return self

    def start_worker(
        self, pool: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """Create the process work pool if needed and start one worker polling it.

        ``extra_env`` (S3 credentials, MLflow URI) reaches the flow runs the worker starts.
        """
        env = {**self.env(), **(extra_env or {})}
        subprocess.run(
            [_prefect(), "work-pool", "create", pool, "--type", "process", "--overwrite"],
            env=env,
            capture_output=True,
            check=True,
            cwd=cwd,
        )
        self.worker = spawn(
            [_prefect(), "worker", "start", "--pool", pool, "--type", "process"],
            self.state_dir / "prefect-worker.log",
            env=env,
            cwd=cwd,
        )
        return self.worker

    def save_result_storage(self, basepath: str, endpoint_url: str, name: str) -> str:
        """Save the results bucket's storage block (``pipelines.result_store.CheckedResults``:
        it hands Prefect only typed-JSON records, never a pickled one); returns its slug.

        Only the endpoint goes into the block; credentials stay in the workers' environment.
        The block is saved in a child process because this library imports no Prefect.
        """
        code = (
            "from pipelines.result_store import save_results_block; "
            f"print(save_results_block({basepath!r}, {endpoint_url!r}, {name!r}))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], env=self.env(), check=True, capture_output=True, text=True
        )
        return done.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        for proc in (self.worker, self.process):
            if proc is not None and proc.poll() is None:
                stop_group(proc.pid)
        self.worker = self.process = None
