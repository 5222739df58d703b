"""An anonymous caller on any port of `lerenet stack up` can neither read, write, delete,
register nor run anything (issue #26, items 1 and 2).

The hostile pass ran `id` on the worker through three anonymous Prefect requests, read and
wrote the artifact bucket through MLflow's proxy, deleted a registered model's MLmodel and
moved ``@production``. Here a real stack is started as a user starts it, every listening
socket of every stack process is found (not a list of the ports we think it opens), and each
is sent those requests without credentials, then with a wrong login; the events websocket is
tried without its auth message and with a wrong one. The stack's own login still works.
"""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

MLFLOW_PROBES = [
    # (method, path, body): reads, writes, deletes and registry changes
    ("GET", "/api/2.0/mlflow/experiments/search?max_results=5", None),
    ("GET", "/api/2.0/mlflow/registered-models/search", None),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts", None),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts/probe/secret.txt", None),
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/anon/planted.txt", b"x"),
    ("DELETE", "/api/2.0/mlflow-artifacts/artifacts/probe/secret.txt", None),
    ("POST", "/api/2.0/mlflow/registered-models/create", {"name": "planted"}),
    (
        "POST",
        "/api/2.0/mlflow/registered-models/alias",
        {"name": "lerenet", "alias": "production", "version": "1"},
    ),
    ("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": "0"}),
    ("GET", "/ajax-api/2.0/mlflow/experiments/search?max_results=5", None),  # the UI's reads
]
PREFECT_PROBES = [
    ("POST", "/api/flows/", {"name": "anon"}),
    ("POST", "/api/flows/filter", {}),
    ("POST", "/api/deployments/filter", {}),
    ("POST", "/api/work_pools/filter", {}),
    ("POST", "/api/flow_runs/filter", {}),
    ("POST", "/api/block_documents/filter", {}),
    ("GET", "/api/admin/settings", None),
    ("POST", "/api/variables/", {"name": "anon", "value": "x"}),
]


def _call(port: int, method: str, path: str, body, login: str | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if isinstance(body, dict):
        request.add_header("Content-Type", "application/json")
    if login is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""
    except OSError:  # refused, reset, TLS-only or gRPC-only port
        return 0, b""


def _listening(pid: int) -> set[int]:
    import psutil

    ports = set()
    parent = psutil.Process(pid)
    for proc in (parent, *parent.children(recursive=True)):
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    assert conn.laddr.ip == "127.0.0.1", (proc.name(), conn.laddr)
                    ports.add(conn.laddr.port)
        except psutil.NoSuchProcess:
            continue
    return ports


async def _websocket(url: str, first: dict | None, subprotocol: bool = True) -> str:
    """What the events websocket does with a client: 'closed' or the first message."""
    import websockets

    try:
        async with websockets.connect(
            url, subprotocols=["prefect"] if subprotocol else None, open_timeout=10
        ) as socket:
            if first is not None:
                await socket.send(json.dumps(first))
            reply = json.loads(await asyncio.wait_for(socket.recv(), timeout=10))
            return reply.get("type", "message")
    except (websockets.exceptions.ConnectionClosed, websockets.exceptions.InvalidStatus):
        return "closed"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    from lerenet.stack.local import down, up

    root = tmp_path_factory.mktemp("stack")
    state = up(root / ".stack", repo=root)
    yield state
    down(root / ".stack", timeout=3)


def test_no_stack_port_answers_an_anonymous_or_wrong_caller(stack) -> None:
    env = stack.env
    mlflow_port = int(env["MLFLOW_TRACKING_URI"].rsplit(":", 1)[1])
    prefect_port = int(env["PREFECT_API_URL"].split(":")[2].split("/")[0])
    ports = {name: _listening(pid) for name, pid in stack.pids.items()}
    assert mlflow_port in ports["mlflow"] and prefect_port in ports["prefect-server"]
    everywhere = sorted(set().union(*ports.values()))
    opened = []
    for port in everywhere:
        for login in (None, "lerenet-admin:wrong", "lerenet:wrong"):
            for method, path, body in MLFLOW_PROBES + PREFECT_PROBES:
                status, _ = _call(port, method, path, body, login)
                if 200 <= status < 300:
                    opened.append((port, login, method, path, status))
    assert not opened, f"answered without valid credentials: {opened}"
    # MLflow's UI asks for the login; Prefect's UI is a static page that asks for the auth
    # string before it calls the API (whose every route was refused above)
    assert _call(mlflow_port, "GET", "/", None)[0] == 401
    # nothing was registered, run or planted by those calls: the stack's own login sees
    admin = f"{env['MLFLOW_TRACKING_USERNAME']}:{env['MLFLOW_TRACKING_PASSWORD']}"
    registry = "/api/2.0/mlflow/registered-models/search"
    status, body = _call(mlflow_port, "GET", registry, None, admin)
    assert status == 200 and b"planted" not in body
    status, body = _call(
        prefect_port, "POST", "/api/flows/filter", {}, env["PREFECT_API_AUTH_STRING"]
    )
    assert status == 200 and b'"anon"' not in body


def test_the_events_websocket_needs_the_auth_string(stack) -> None:
    base = stack.env["PREFECT_API_URL"].replace("http://", "ws://")
    for route in ("/events/in", "/events/out", "/logs/out"):
        url = base + route
        assert asyncio.run(_websocket(url, None, subprotocol=False)) == "closed", route
        assert asyncio.run(_websocket(url, {"type": "auth", "token": None})) == "closed", route
        wrong = {"type": "auth", "token": "lerenet:wrong"}
        assert asyncio.run(_websocket(url, wrong)) == "closed", route
        right = {"type": "auth", "token": stack.env["PREFECT_API_AUTH_STRING"]}
        assert asyncio.run(_websocket(url, right)) == "auth_success", route


def test_logins_are_owner_only_and_out_of_the_state_file(stack) -> None:
    for path in [stack.dir / "env.sh", *stack.dir.glob("*-login.json")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert {p.name for p in stack.dir.glob("*-login.json")} == {
        "mlflow-login.json",
        "prefect-login.json",
    }
    saved = (stack.dir / "state.json").read_text()
    for key in ("MLFLOW_TRACKING_PASSWORD", "PREFECT_API_AUTH_STRING", "AWS_SECRET_ACCESS_KEY"):
        assert stack.env[key] not in saved, key
    ini = Path(stack.dir / "mlflow" / "basic_auth.ini").read_text()
    assert stack.env["MLFLOW_TRACKING_PASSWORD"] not in ini and "NO_PERMISSIONS" in ini


def test_stack_up_prints_where_the_logins_are_not_the_logins(stack) -> None:
    """`stack up` on the running stack starts nothing and prints the clients' environment:
    every variable but the secrets, and where the UIs' logins are kept."""
    from typer.testing import CliRunner

    from lerenet.cli.main import app

    result = CliRunner().invoke(app, ["stack", "up", "--dir", str(stack.dir)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert stack.env["MLFLOW_TRACKING_URI"] in text and "mlflow-login.json" in text
    # the UIs' addresses, on whatever ports the stack chose
    assert f"MLflow UI: {stack.env['MLFLOW_TRACKING_URI']}" in text
    assert f"Prefect UI: {stack.env['PREFECT_API_URL'].removesuffix('/api')}" in text
    for key in ("MLFLOW_TRACKING_PASSWORD", "PREFECT_API_AUTH_STRING", "AWS_SECRET_ACCESS_KEY"):
        assert stack.env[key] not in result.output, key


def test_the_prefect_ui_calls_its_own_servers_api_on_any_port(stack) -> None:
    """With a port other than 4200 the UI used to ask 127.0.0.1:4200/api (issue #27.2)."""
    api = stack.env["PREFECT_API_URL"]
    port = int(api.split(":")[2].split("/")[0])
    status, body = _call(port, "GET", "/ui-settings", None)
    assert status == 200 and json.loads(body)["api_url"] == api


def test_the_tracking_server_runs_no_job_runner(stack) -> None:
    """MLflow 3 starts a GenAI job runner (huey consumers) by default; the stack turns it off:
    nothing of lerenet uses it, and each consumer is a process of ~250 MB."""
    import psutil

    server = psutil.Process(stack.pids["mlflow"])
    commands = [" ".join(p.cmdline()) for p in server.children(recursive=True)]
    assert commands, "the mlflow server has no worker process"
    assert not [c for c in commands if "huey" in c or "_job_runner" in c], commands
