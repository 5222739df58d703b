"""The production backend option: `lerenet stack up` with MLflow on a real PostgreSQL server.

PostgreSQL is started by the test from the machine's own binaries (``initdb``/``pg_ctl``, e.g.
Debian's ``postgresql`` package); where they are absent the test skips and says so.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lerenet.cli.main import app
from lerenet.stack.ports import free_port
from tests.conftest import tiny_params

pytestmark = [pytest.mark.integration, pytest.mark.slow]
runner = CliRunner()


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture(scope="module")
def postgres_uri() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 with password (SCRAM) authentication."""
    pytest.importorskip("psycopg", reason="lerenet[postgres] (psycopg 3) is not installed")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found on this machine")
    # PostgreSQL refuses to run as root: run it as the `postgres` user in a dir it owns
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="lerenet-pg-"))
    password = secrets.token_urlsafe(16)
    (root / "pw").write_text(password)
    if owner:
        for path in (root, root / "pw"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    data = root / "data"
    run = dict(check=True, capture_output=True, text=True)
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "lerenet", "--auth=scram-sha-256",
         f"--pwfile={root / 'pw'}", "-E", "UTF8"],
        **run,
    )  # fmt: skip
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-l", str(root / "pg.log"), "-w", "-t", "60",
         "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
        **run,
    )  # fmt: skip
    try:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1",
            port=port,
            user="lerenet",
            password=password,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute("CREATE DATABASE mlflow")
        yield f"postgresql://lerenet:{password}@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "stop"], check=False)
        shutil.rmtree(root, ignore_errors=True)


def _query(uri: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(uri) as conn:
        return conn.execute(sql).fetchall()


def _stack_up(state_dir: Path, uri: str) -> dict[str, str]:
    result = runner.invoke(
        app,
        [
            "stack",
            "up",
            "--dir",
            str(state_dir),
            "--no-prefect",
            "--s3-port",
            "0",
            "--mlflow-port",
            "0",
        ],
        env={"MLFLOW_BACKEND_STORE_URI": uri},
    )
    assert result.exit_code == 0, result.output
    from lerenet.stack.local import read_env

    return read_env(state_dir)


def test_stack_with_postgres_backend(
    postgres_uri: str, tiny_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from lerenet.config.schema import load_params
    from lerenet.stack.local import down, status
    from lerenet.stack.mlflow_server import redact
    from lerenet.stages import train as train_stage

    password = postgres_uri.split(":")[2].split("@")[0]
    first = tmp_path / "stack-a"
    env = _stack_up(first, postgres_uri)
    try:
        uri = env["MLFLOW_TRACKING_URI"]
        # the backend password is nowhere a local user could read it: argv, state, env.sh
        pids = status(first)
        assert pids == {"seaweedfs": True, "mlflow": True}
        shown = runner.invoke(app, ["stack", "status", "--dir", str(first)])
        assert shown.exit_code == 0 and uri in shown.output  # where to point the browser
        import json

        mlflow_pid = json.loads((first / "state.json").read_text())["pids"]["mlflow"]
        cmdline = Path(f"/proc/{mlflow_pid}/cmdline").read_bytes().decode()
        assert password not in cmdline
        assert password not in (first / "env.sh").read_text()
        assert password not in (first / "state.json").read_text()
        assert password not in redact(postgres_uri)

        (tiny_project / "params.yaml").write_text(tiny_params(tiny_project, uri))
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(key, env[key])  # the stack's server asks for its login
        trained = train_stage.run(load_params("params.yaml"), show_progress=False)
        assert runner.invoke(app, ["gate"]).exit_code == 0
        assert runner.invoke(app, ["promote"]).exit_code == 0
        assert dict(MlflowClient(uri).get_registered_model("lerenet").aliases) == {"staging": "1"}
        # the registry lives in PostgreSQL, not in a file under the stack dir
        assert _query(postgres_uri, "SELECT name, version FROM model_versions") == [("lerenet", 1)]
        assert _query(postgres_uri, "SELECT alias FROM registered_model_aliases") == [("staging",)]
        # only the server's own user store (basic auth) is a file under the stack dir
        assert [p.name for p in first.rglob("*.db")] == ["auth.db"]
    finally:
        down(first, timeout=3)

    # a new stack (new state dir, new ports) on the same database sees the same registry
    second = tmp_path / "stack-b"
    env = _stack_up(second, postgres_uri)
    try:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(key, env[key])  # that stack's own login
        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        version = client.get_model_version_by_alias("lerenet", "staging")
        assert version.run_id == trained.run_id
        assert client.get_run(trained.run_id).data.metrics  # runs too, not only the registry
    finally:
        down(second, timeout=3)
    assert status(second) == {}
    assert runner.invoke(app, ["stack", "status", "--dir", str(second)]).exit_code == 1
