"""A real ``mlflow server`` on loopback: SQLite (default) or PostgreSQL backend, artifacts
proxied to S3 (clients need no S3 credentials: the server holds them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lerenet.stack.ports import free_port, http_ok, port_free, spawn, stop_group, wait_started

# SQLAlchemy 2.1's default DBAPI module per dialect (``postgresql://`` means psycopg 3)
_DRIVERS = {"postgresql": "psycopg", "mysql": "mysqldb", "mssql": "pyodbc"}


def _check_backend_driver(backend_uri: str) -> None:
    """Fail before start-up, with the fix, when the backend's database driver is missing.

    Without this the server dies in its log with a SQLAlchemy traceback and the caller sees
    only "exited during start-up".
    """
    import importlib.util

    scheme = backend_uri.split(":", 1)[0]
    dialect, _, driver = scheme.partition("+")
    module = driver or _DRIVERS.get(dialect)
    if module and importlib.util.find_spec(module) is None:
        extra = " (pip install 'lerenet[postgres]')" if dialect == "postgresql" else ""
        raise RuntimeError(
            f"the MLflow backend {dialect}:// needs the Python driver '{module}', which is "
            f"not installed{extra}"
        )


def redact(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for logs and messages)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class MlflowServer:
    def __init__(
        self,
        state_dir: Path,
        *,
        artifacts_destination: str,
        s3_env: dict[str, str],
        backend_uri: str | None = None,
        port: int | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.backend_uri = backend_uri or f"sqlite:///{self.state_dir / 'mlflow.db'}"
        self.artifacts_destination = artifacts_destination
        self.s3_env = s3_env
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> MlflowServer:
        if not port_free(self.port):
            raise RuntimeError(f"MLflow port {self.port} on 127.0.0.1 is already in use")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        mlflow_bin = Path(sys.executable).parent / "mlflow"
        cmd = [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--artifacts-destination",
            self.artifacts_destination,
            "--workers",
            "1",
        ]
        _check_backend_driver(self.backend_uri)
        env = {
            **os.environ,
            **self.s3_env,
            # through the environment, not argv: a PostgreSQL password stays out of `ps`
            "MLFLOW_BACKEND_STORE_URI": self.backend_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        self.process = spawn(cmd, self.state_dir / "mlflow.log", env=env)
        (self.state_dir / "mlflow.pid").write_text(str(self.process.pid))
        wait_started(
            self.process,
            lambda: http_ok(f"{self.uri}/health"),
            timeout,
            f"mlflow server at {self.uri}",
            self.stop,
        )
        return self

    def stop(self, timeout: float = 15) -> None:
        if self.process is not None:
            stop_group(self.process.pid, timeout)
        self.process = None
        (self.state_dir / "mlflow.pid").unlink(missing_ok=True)
