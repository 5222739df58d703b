"""One retry policy per call (issue #12, item 7): a dead service is tried a bounded number of
times by exactly one layer, not Prefect × the library × the client library."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from lerenet.services.reach import ServiceUnavailable, require_mlflow, require_s3


@pytest.fixture
def hanging_up_server() -> Iterator[tuple[int, list[int]]]:
    """A TCP port that accepts connections and closes them unanswered, counting them."""
    hits: list[int] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            hits.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], hits
    done.set()
    thread.join()
    server.close()


def test_require_s3_is_the_only_retry_layer(
    hanging_up_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, hits = hanging_up_server
    monkeypatch.setattr("lerenet.services.reach.time.sleep", lambda _: None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with pytest.raises(ServiceUnavailable, match=f"S3 bucket 'b' at http://127.0.0.1:{port}"):
        require_s3("b", endpoint_url=f"http://127.0.0.1:{port}", attempts=3)
    # botocore sends at most 2 requests per call with its retries off (measured: 2 for
    # head_bucket); with its default 5 attempts inside each of ours, this was 3 × 6 = 18
    assert 3 <= len(hits) <= 6


def test_require_mlflow_is_the_only_retry_layer(
    hanging_up_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, hits = hanging_up_server
    monkeypatch.setattr("lerenet.services.reach.time.sleep", lambda _: None)
    with pytest.raises(
        ServiceUnavailable, match=f"MLflow tracking server at http://127.0.0.1:{port}"
    ):
        require_mlflow(f"http://127.0.0.1:{port}", attempts=2)
    assert len(hits) == 2


def test_mlflow_client_policy_is_bounded_and_user_settings_win(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lerenet.config.schema import TrackingConfig
    from lerenet.tracking.runs import MLFLOW_CLIENT_POLICY, configure

    for key in MLFLOW_CLIENT_POLICY:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    configure(TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db"))
    import os

    assert int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 3  # MLflow's default: 7
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "5"  # the user's value is kept


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ConnectionResetError("reset mid-transfer"), True),
        (OSError("503 from the remote"), True),
        (ServiceUnavailable("MLflow tracking server at http://x is unreachable"), False),
        (ValueError("bad params"), False),
        (FileNotFoundError("no train.json"), False),
    ],
)
def test_prefect_retries_only_what_a_retry_can_fix(error: Exception, retried: bool) -> None:
    from prefect.states import Failed

    from lerenet.tracking.registry import PromotionError
    from pipelines.tasks import IO_RETRIES, retry_worthwhile

    assert IO_RETRIES["retry_condition_fn"] is retry_worthwhile
    assert retry_worthwhile(None, None, Failed(data=error)) is retried
    assert not retry_worthwhile(None, None, Failed(data=PromotionError("refused")))
