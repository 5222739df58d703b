"""A real ``mlflow server`` on loopback: SQLite (default) or PostgreSQL backend, artifacts
proxied to S3 (clients need no S3 credentials: the server holds them).

With a ``Login`` it runs MLflow's built-in authentication (``--app-name basic-auth``): every
route but ``/health`` and static files, the artifact proxy included, asks for that user (the
admin; anonymous callers and unknown users get 401, ``default_permission`` is none, and a
route without a permission check is denied: ``MLFLOW_BASIC_AUTH_FAIL_CLOSED``). The user
store is SQLite beside the server's state unless ``auth_database_uri`` names another.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from lerenet.stack.credentials import Login
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
        auth: Login | None = None,
        auth_database_uri: str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.auth = auth
        self.auth_database_uri = auth_database_uri or f"sqlite:///{self.state_dir / 'auth.db'}"
        self.backend_uri = backend_uri or f"sqlite:///{self.state_dir / 'mlflow.db'}"
        self.artifacts_destination = artifacts_destination
        self.s3_env = s3_env
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """What an MLflow client needs: the URI and, on an authenticated server, its login."""
        env = {"MLFLOW_TRACKING_URI": self.uri}
        if self.auth is not None:
            env["MLFLOW_TRACKING_USERNAME"] = self.auth.username
            env["MLFLOW_TRACKING_PASSWORD"] = self.auth.password
        return env

    def _auth_env(self) -> dict[str, str]:
        """The basic-auth app's configuration: an ini without secrets, the password by env."""
        if self.auth is None:
            return {}
        ini = self.state_dir / "basic_auth.ini"
        ini.write_text(
            "[mlflow]\n"
            "default_permission = NO_PERMISSIONS\n"
            f"database_uri = {self.auth_database_uri}\n"
            f"admin_username = {self.auth.username}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        ini.chmod(0o600)
        return {
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.auth.password,
            "MLFLOW_BASIC_AUTH_FAIL_CLOSED": "true",
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),  # the UI forms' CSRF key
        }

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
            *(("--app-name", "basic-auth") if self.auth else ()),
        ]
        _check_backend_driver(self.backend_uri)
        env = {
            **os.environ,
            **self.s3_env,
            # through the environment, not argv: a PostgreSQL password stays out of `ps`
            "MLFLOW_BACKEND_STORE_URI": self.backend_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            # MLflow 3's job runner (GenAI scorers, evaluations, trace rollups) does nothing
            # for lerenet and costs seven huey processes (~250 MB each) and a slower stop
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            **self._auth_env(),
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
            log_path=self.state_dir / "mlflow.log",
        )
        return self

    def stop(self, timeout: float = 15) -> None:
        if self.process is not None:
            stop_group(self.process.pid, timeout)
        self.process = None
        (self.state_dir / "mlflow.pid").unlink(missing_ok=True)
