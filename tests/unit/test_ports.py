"""Port choice and start-up errors of the local services (lerenet.stack.ports)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lerenet.stack import ports


def test_ports_and_their_grpc_twins_stay_below_the_ephemeral_range(monkeypatch):
    # an outgoing connection may take any port of the ephemeral range between choice and bind
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (32768, 60999))
    chosen = [ports.free_port(also_free=(10000,)) for _ in range(50)]
    assert all(10000 <= p < p + 10000 < 32768 for p in chosen)
    plain = [ports.free_port() for _ in range(50)]
    assert all(10000 <= p < 32768 for p in plain)


def test_a_kernel_that_lends_nearly_every_port_still_gets_a_port(monkeypatch):
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (10500, 65535))
    assert 20000 <= ports.free_port(also_free=(10000,)) < 40000


def test_the_ephemeral_range_is_read_from_the_kernel_or_defaults():
    low, high = ports.ephemeral_range()
    assert 0 < low < high <= 65535


def test_a_service_that_dies_at_start_up_says_why_from_its_log(tmp_path: Path):
    log = tmp_path / "weed.log"
    script = (
        "import sys; print('I1205 10:00:00 starting'); "
        "print('F1205 10:00:01 s3.go:448 s3 failed to listen on grpc port 35607: "
        "bind: address already in use'); print('goroutine 146 [running]:'); sys.exit(1)"
    )
    process = ports.spawn([sys.executable, "-c", script], log)
    process.wait(timeout=30)
    with pytest.raises(RuntimeError) as caught:
        ports.wait_until(
            lambda: False, 30, "test service", alive=lambda: process.poll() is None, log_path=log
        )
    message = str(caught.value)
    assert "exited during start-up" in message
    assert "failed to listen on grpc port 35607" in message
    assert str(log) in message


def test_a_missing_log_leaves_the_plain_message(tmp_path: Path):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    with pytest.raises(RuntimeError, match="exited during start-up") as caught:
        ports.wait_until(
            lambda: False,
            30,
            "x",
            alive=lambda: process.poll() is None,
            log_path=tmp_path / "none.log",
        )
    assert caught.value.args[0].endswith(")")
