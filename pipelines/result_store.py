"""Where the flows' results persist, and how they are read back: typed JSON only, never pickle.

Prefect reads a persisted result with the serializer its own record names, and checks a cache
key by reading the record, so a record written into the results bucket with Prefect's default
(cloudpickle), or with its JSON serializer (whose record names the decoder function to call),
runs code in the flow run that reads it. Two parts close that:

- ``TypedJSONSerializer`` (type ``lerenet-json``; every flow of ``pipelines.flows`` names it,
  and its tasks inherit it) writes results with ``lerenet.services.typed_json``: dataclasses
  of this project, rebuilt only from ``lerenet`` and ``pipelines`` classes.
- ``CheckedResults``, the results bucket's storage block (``lerenet-checked-results``), hands
  Prefect no record that another serializer wrote: such a record raises ``UntrustedResult``
  before Prefect parses it, so a cache check finds nothing and the task runs again,
  overwriting it, and a direct read fails, naming the path. Bare result bytes (how a flow's
  own return value is stored) are decoded with the serializer Prefect's API recorded for
  that flow run: ``lerenet-json``.

Importing this module registers both with Prefect; ``pipelines.flows`` imports it, so every
process that runs a flow of this project has them.
"""

from __future__ import annotations

import json
from typing import Any

from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.filesystems import RemoteFileSystem
from prefect.serializers import Serializer
from pydantic import Field

from lerenet.services import typed_json
from lerenet.stack.prefect_server import RESULTS_BLOCK_TYPE

SERIALIZER = "lerenet-json"
PACKAGES = ("lerenet", "pipelines")  # the only packages a stored result may name classes of


class UntrustedResult(RuntimeError):
    """A persisted result that was not written by ``TypedJSONSerializer``: refused unread."""


class TypedJSONSerializer(Serializer):
    """Results as typed JSON (``lerenet.services.typed_json``); no field configures the
    decoding, so a stored record's metadata cannot widen what it rebuilds."""

    type: str = Field(default=SERIALIZER, frozen=True)

    def dumps(self, obj: Any) -> bytes:
        return typed_json.dumps(obj)

    def loads(self, blob: bytes) -> Any:
        return typed_json.loads(blob, packages=PACKAGES)


def require_typed_record(content: bytes, path: str) -> bytes:
    """What Prefect may parse of ``content`` read at ``path``; raises ``UntrustedResult``
    before anything in it is decoded when it is a result record another serializer wrote.

    A record (a JSON object with ``metadata``) names its own serializer, so it must name
    ``lerenet-json``, and it goes on re-serialised from what was checked (a duplicated key
    cannot show the check one serializer and Prefect another). Anything else is a bare
    result, which Prefect decodes with the serializer of the metadata it already holds (a
    flow's result: the state Prefect's API keeps; else the reading store's own): that is
    ``TypedJSONSerializer`` for every flow of this project, which rebuilds no other code.
    """
    try:
        parsed = json.loads(content)
    except ValueError:
        return content
    if not (isinstance(parsed, dict) and "metadata" in parsed):
        return content
    metadata = parsed["metadata"] if isinstance(parsed["metadata"], dict) else {}
    serializer = metadata.get("serializer")
    kind = serializer.get("type") if isinstance(serializer, dict) else serializer
    if kind != SERIALIZER:
        raise UntrustedResult(
            f"{path}: written with serializer {kind!r}; only {SERIALIZER!r} records are read "
            "(a pickled or decoder-naming record would run code when read)"
        )
    return json.dumps(parsed).encode()


class CheckedResults(RemoteFileSystem):
    """The results bucket (any fsspec URL, ``s3://…`` on the stack), read only through
    ``require_typed_record``; writing is RemoteFileSystem's own."""

    _block_type_name = "Lerenet Checked Results"
    _block_type_slug = RESULTS_BLOCK_TYPE

    async def aread_path(self, path: str) -> bytes:
        return require_typed_record(await super().aread_path(path), path)

    @async_dispatch(aread_path)
    def read_path(self, path: str) -> bytes:
        return require_typed_record(super().read_path(path, _sync=True), path)


def save_results_block(
    basepath: str, endpoint_url: str | None = None, name: str = "lerenet-results"
) -> str:
    """Save the results bucket's ``CheckedResults`` block on the Prefect server the
    environment points at; returns the slug for ``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK``.
    Only the endpoint goes into the block; credentials stay in the workers' environment."""
    settings = {"client_kwargs": {"endpoint_url": endpoint_url}} if endpoint_url else {}
    CheckedResults(basepath=basepath, settings=settings).save(name, overwrite=True)
    return f"{CheckedResults.get_block_type_slug()}/{name}"


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.result_store",
        description="Save the block that stores flow results as typed JSON and refuses any "
        "other record (what `lerenet stack up` does for its own bucket); prints the slug to "
        "set as PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK on every worker, beside "
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT=true.",
    )
    parser.add_argument("basepath", help="where results go, e.g. s3://lerenet-results/prefect")
    parser.add_argument("--endpoint-url", help="an S3-compatible endpoint (omit for AWS)")
    parser.add_argument("--name", default="lerenet-results", help="the block's name")
    args = parser.parse_args(argv)
    print(save_results_block(args.basepath, args.endpoint_url, args.name))


if __name__ == "__main__":
    main()
