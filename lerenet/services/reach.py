"""Reachability of the services a stage needs, with retries and errors that name them.

A stage that needs MLflow or S3 calls ``require_mlflow`` / ``require_s3`` first: transient
outages are retried with backoff; a service that stays down fails the stage *before* it changes
anything, with the service's name and address in the message (not a stack trace from deep
inside a client library). These checks are the only retry policy of their call: the clients
inside them do not retry (urllib has none; the S3 client is made with one attempt).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ServiceUnavailable(RuntimeError):
    """A required service did not answer; the message names it and its address."""


def first_line(err: BaseException, limit: int = 160) -> str:
    """An error as one short line for a one-sentence message: its first line, else its type."""
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:limit]


def mlflow_health(uri: str, timeout: float) -> None:
    """One ``/health`` request to an ``http(s)://`` tracking server; OSError unless it is 200."""
    import urllib.request

    with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as resp:
        if resp.status != 200:
            raise OSError(f"HTTP {resp.status}")


def _retry(check: Callable[[], None], what: str, attempts: int, delay: float) -> None:
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            check()
            return
        except Exception as err:  # connection refused, timeouts, 5xx
            last = err
            if attempt + 1 < attempts:
                time.sleep(delay * 2**attempt)
    raise ServiceUnavailable(f"{what} is unreachable after {attempts} attempts: {last}")


def require_mlflow(uri: str, attempts: int = 3, delay: float = 1.0) -> None:
    """For an ``http(s)://`` tracking URI, its ``/health`` must answer 200."""
    if not uri.startswith(("http://", "https://")):
        return  # a local SQLite/file store has no service to be down

    _retry(lambda: mlflow_health(uri, 5), f"MLflow tracking server at {uri}", attempts, delay)


def require_s3(
    bucket: str, endpoint_url: str | None = None, attempts: int = 3, delay: float = 1.0
) -> None:
    """The bucket must be reachable with the configured credentials."""
    from lerenet.services.storage import s3_client, s3_endpoint

    endpoint = s3_endpoint(endpoint_url) or "AWS S3"
    _retry(
        lambda: s3_client(endpoint_url, attempts=1).head_bucket(Bucket=bucket),
        f"S3 bucket {bucket!r} at {endpoint}",
        attempts,
        delay,
    )
