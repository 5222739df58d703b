"""S3 access shared by weight loading, ingestion and the registry (boto3, any endpoint).

The endpoint comes from the argument, else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (boto3
reads these too), so the same code talks to SeaweedFS on loopback and to AWS S3. Path-style
addressing because SeaweedFS and most on-premise S3 servers need it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any


def is_s3_uri(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` → (``bucket``, ``some/key``)."""
    if not is_s3_uri(uri):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"s3 URI has no bucket: {uri!r}")
    return bucket, key


def s3_endpoint(endpoint_url: str | None = None) -> str | None:
    """The endpoint every S3 call here uses: the argument, else ``AWS_ENDPOINT_URL_S3``, else
    ``AWS_ENDPOINT_URL``; None means AWS S3 itself."""
    return (
        endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )


def s3_client(endpoint_url: str | None = None, *, attempts: int = 5) -> Any:
    """A boto3 S3 client; credentials come from the usual AWS chain.

    ``attempts`` is botocore's own retry policy (standard mode, backoff), right for transfers;
    a caller that retries itself (``require_s3``) passes 1, so the policies do not multiply.
    """
    import boto3
    from botocore.config import Config

    endpoint = s3_endpoint(endpoint_url)
    # a fresh session: the default one caches credentials at first use, so rotated keys
    # (or a fixed wrong secret) would otherwise be ignored for the life of the process
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(
            retries={"max_attempts": attempts, "mode": "standard"},
            s3={"addressing_style": "path"},
            connect_timeout=10,
        ),
    )


def cache_dir() -> Path:
    """Where downloaded objects are kept (``LERENET_CACHE`` or ``~/.cache/lerenet``)."""
    return Path(os.environ.get("LERENET_CACHE", Path.home() / ".cache" / "lerenet"))


def download(uri: str, dest: Path | None = None, endpoint_url: str | None = None) -> Path:
    """Download an S3 object atomically (temp file + rename) and return its local path."""
    bucket, key = split_s3_uri(uri)
    dest = dest or cache_dir() / "s3" / bucket / key
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
        tmp_path = Path(tmp.name)
    try:
        s3_client(endpoint_url).download_file(bucket, key, str(tmp_path))
        tmp_path.replace(dest)
    except Exception as err:
        raise _named_error(err, uri, endpoint_url) from err
    finally:
        tmp_path.unlink(missing_ok=True)
    return dest


def _named_error(err: Exception, uri: str, endpoint_url: str | None) -> Exception:
    """boto's errors say "An error occurred (404) when calling the HeadObject operation";
    users need the object and the endpoint, and a type they can act on."""
    from botocore.exceptions import ClientError

    endpoint = s3_endpoint(endpoint_url) or "AWS S3"
    if isinstance(err, ClientError):
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NoSuchBucket"):
            return FileNotFoundError(f"{uri}: no such object at {endpoint}")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return PermissionError(f"{uri}: access denied at {endpoint} (check the credentials)")
    return OSError(f"{uri}: download from {endpoint} failed: {err}")


def json_sha256(value: Any) -> str:
    """sha256 of ``value`` as canonical JSON (sorted keys; other objects as ``str``): the one
    digest of structured values (resolved params, stage cache keys, folder listings)."""
    import json

    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 20, *, missing: str | None = None) -> str:
    """Streaming sha256 of a file (weights can be hundreds of MB); ``missing`` is returned for
    a file that does not exist when given (cache keys, lineage), else that raises."""
    if missing is not None and not Path(path).exists():
        return missing
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
