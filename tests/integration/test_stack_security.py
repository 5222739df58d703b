"""Every port the local S3 stack opens refuses anonymous reads and writes (issue #12, item 3).

SeaweedFS's S3 gateway checks credentials, but `weed server` also runs a master, a volume
server and a filer, each with an HTTP and a gRPC port on 127.0.0.1: before the fix the filer's
HTTP port listed, served and accepted bucket contents with plain curl. This test finds every
listening socket of the running server (not a list of the ports we think it opens) and tries,
without credentials: HTTP GET of a stored object and its bucket listing, HTTP PUT and POST of a
new object, a plaintext gRPC (HTTP/2) handshake, and TLS without a client certificate.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BUCKET, KEY = "lerenet-data", "secret/probe.txt"
SECRET = b"defect-data-that-must-not-leak-7f3a"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _http(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        try:
            return error.code, error.read()
        except (OSError, http.client.HTTPException):  # refused, then reset before its body
            return error.code, b""
    except (OSError, http.client.HTTPException):  # refused, reset, TLS-only, gRPC-only port
        return 0, b""


def _plaintext_http2(port: int) -> bytes:
    """What the port answers to a gRPC client without TLS ("" when it hangs up)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(H2_PREFACE)
            return sock.recv(64)
    except OSError:
        return b""


def _tls_without_client_cert(port: int) -> bytes | None:
    """The first bytes a TLS server sends to a client with no certificate; None if refused."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2", "http/1.1"])
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with context.wrap_socket(raw) as sock:
            sock.sendall(H2_PREFACE)
            return sock.recv(64) or None
    except (OSError, ssl.SSLError):
        return None


def _is_http2_settings(data: bytes) -> bool:
    return len(data) >= 9 and data[3] == 0x04  # an HTTP/2 SETTINGS frame: the server spoke gRPC


def test_no_port_serves_or_accepts_data_without_credentials(s3_server) -> None:
    import psutil

    admin = s3_server.client()
    admin.put_object(Bucket=BUCKET, Key=KEY, Body=SECRET)
    process = psutil.Process(s3_server.process.pid)
    listening = [c for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    ports = sorted({c.laddr.port for c in listening})
    assert all(c.laddr.ip == "127.0.0.1" for c in listening), listening
    assert s3_server.s3_port in ports and len(ports) >= 6  # S3 + master, volume, filer (+gRPC)

    leaks, accepted, grpc_open = [], [], []
    for port in ports:
        base = f"http://127.0.0.1:{port}"
        for path in (f"/buckets/{BUCKET}/{KEY}", f"/buckets/{BUCKET}/", f"/{BUCKET}/{KEY}", "/"):
            status, body = _http(base + path)
            if SECRET in body or (status == 200 and b"probe.txt" in body):
                leaks.append((port, path, status))
        for method in ("PUT", "POST"):
            status, _ = _http(f"{base}/buckets/{BUCKET}/anon-{port}.txt", method, b"x")
            if 200 <= status < 300:
                accepted.append((port, method, status))
        if _is_http2_settings(_plaintext_http2(port)):
            grpc_open.append((port, "plaintext"))
        tls_answer = _tls_without_client_cert(port)
        if tls_answer is not None and _is_http2_settings(tls_answer):
            grpc_open.append((port, "tls without client certificate"))
    assert not leaks, f"bucket contents served without credentials: {leaks}"
    assert not accepted, f"writes accepted without credentials: {accepted}"
    assert not grpc_open, f"gRPC served without a client certificate: {grpc_open}"
    # the probes above left nothing behind, and the credentialed path still works
    keys = [o["Key"] for o in admin.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert not [k for k in keys if k.startswith("anon-")]
    assert admin.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == SECRET


def test_master_http_requires_a_client_certificate(s3_server) -> None:
    """The master hands out write tokens at /dir/assign: plain HTTP and TLS without a
    certificate of the stack's CA both fail; the stack's own certificate gets through."""
    import psutil

    process = psutil.Process(s3_server.process.pid)
    ports = {c.laddr.port for c in process.net_connections(kind="inet") if c.status == "LISTEN"}
    tls = s3_server.state_dir / "tls"
    context = ssl.create_default_context(cafile=str(tls / "ca.pem"))
    context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
    masters = []
    for port in sorted(ports):
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}/dir/status", timeout=5, context=context
            ) as response:
                if b"Topology" in response.read():
                    masters.append(port)
        except (OSError, http.client.HTTPException):
            continue
    assert len(masters) == 1, masters
    assert _http(f"http://127.0.0.1:{masters[0]}/dir/assign")[0] in (0, 400)
    assert _tls_without_client_cert(masters[0]) is None
    assert stat.S_IMODE(Path(tls / "key.pem").stat().st_mode) == 0o600


def test_local_sockets_are_owner_only(s3_server) -> None:
    """`weed` also listens on unix sockets under /tmp: only the owner may connect."""
    import psutil

    process = psutil.Process(s3_server.process.pid)
    paths = [c.laddr for c in process.net_connections(kind="unix") if c.laddr]
    assert paths
    for path in paths:
        mode = Path(path).stat().st_mode
        assert stat.S_ISSOCK(mode) and not mode & 0o022, (path, oct(mode))
