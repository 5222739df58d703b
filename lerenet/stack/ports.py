"""Free ports, health polling and process-group shutdown shared by the local services."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux's default where
    ``/proc`` does not say)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(start: int = 10000, end: int | None = None, also_free: tuple[int, ...] = ()) -> int:
    """A free port p in [start, end) such that p + offset is free too for each offset.

    SeaweedFS opens a gRPC port at +10000 from each HTTP port, hence ``also_free``. By default
    p and every p + offset lie below the kernel's ephemeral range: a port chosen inside it can
    be taken by any outgoing connection (SeaweedFS's own gRPC clients among them) between the
    choice and the bind, which once made CI's SeaweedFS exit with "address already in use".
    """
    import random

    if end is None:
        end = ephemeral_range()[0] - max(also_free, default=0)
        if end - start < 1000:  # a kernel that lends nearly every port: no safe range
            start, end = 20000, 40000
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(start, end)
        if port_free(port) and all(port_free(port + off) for off in also_free):
            return port
    raise RuntimeError(f"no free port found in {start}-{end}")


def last_error(log_path: Path | None, lines: int = 200) -> str:
    """The last line of a service's log that reports a failure, for the start-up error.

    Matches glog's fatal/error lines (SeaweedFS: ``F1205 …``, ``E1205 …``) and lines that say
    error or fatal (Python tracebacks end with one); empty when there is no log."""
    if log_path is None or not Path(log_path).exists():
        return ""
    tail = Path(log_path).read_text(errors="replace").splitlines()[-lines:]
    for line in reversed(tail):
        if re.match(r"^[FE]\d{4} ", line) or re.search(r"error|fatal", line, re.IGNORECASE):
            return line.strip()
    return tail[-1].strip() if tail else ""


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    alive: Callable[[], bool] = lambda: True,
    log_path: Path | None = None,
) -> None:
    """Poll ``check`` until true; fail early if the process died (quoting its log's last
    error, so that CI output says why), or after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while time.monotonic() < deadline:
        if not alive():
            cause = last_error(log_path)
            where = f"{log_path}" if log_path else "its log"
            raise RuntimeError(
                f"{what} exited during start-up (see {where})" + (f": {cause}" if cause else "")
            )
        try:
            if check():
                return
        except Exception:  # not up yet: connection refused, 503, …
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    raise TimeoutError(f"{what} did not become healthy within {timeout:.0f} s")


def spawn(
    cmd: list[str], log_path: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start a service in its own process group (``stop_group`` then ends it and everything it
    started), its output appended to ``log_path``."""
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )


def http_ok(url: str) -> bool:
    """A health endpoint answered 200 (connection errors propagate: ``wait_until`` retries)."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status == 200


def wait_started(
    process: subprocess.Popen,
    check: Callable[[], bool],
    timeout: float,
    what: str,
    stop: Callable[[], None],
    log_path: Path | None = None,
) -> None:
    """``wait_until`` for a just-spawned service: fail early if its process exits, and ``stop``
    it on any failure so that no half-started service is left behind."""
    try:
        wait_until(check, timeout, what, alive=lambda: process.poll() is None, log_path=log_path)
    except Exception:
        stop()
        raise


def group_alive(pid: int) -> bool:
    """Process group ``pid`` still has a process we may signal."""
    try:
        os.killpg(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _group_gone(pid: int) -> bool:
    """True when no process of group ``pid`` is left (reaping the leader if it is our child)."""
    # a group started by another process (a previous `stack up`) has no child of ours to reap
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def stop_group(pid: int, timeout: float = 15) -> None:
    """SIGTERM a process group, SIGKILL it after ``timeout``; a missing group is fine."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _group_gone(pid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(50):
        if _group_gone(pid):
            return
        time.sleep(0.1)
