"""Materialise an ingestion source as a local folder: a folder, an S3 prefix or an archive.

Archives are extracted member by member after checking that each member's resolved path stays
inside the extraction folder (zip-slip / tar path traversal) and is a plain file; an unsafe
member stops the ingest with its name, before anything is written to the dataset.
"""

from __future__ import annotations

import contextlib
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from lerenet.storage import is_s3_uri, s3_client, split_s3_uri


class UnsafeArchiveError(ValueError):
    """An archive member that would be written outside the extraction folder."""


def _check_member(name: str, archive: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or name.startswith(("/", "\\")) or ":" in name:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} would be written outside the extraction folder "
            "(path traversal); repack the archive with relative paths"
        )
    return path


def extract_archive(archive: Path, dest: Path) -> None:
    """Safely extract a .zip, .tar, .tar.gz or .tgz archive into ``dest``."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            for member in members:
                _check_member(member.filename, archive.name)
            for member in members:
                target = dest / _check_member(member.filename, archive.name)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for member in members:
                _check_member(member.name, archive.name)
                if member.issym() or member.islnk() or member.isdev():
                    raise UnsafeArchiveError(
                        f"{archive.name}: member {member.name!r} is a link or device; "
                        "only regular files are accepted"
                    )
            tf.extractall(dest, members=[m for m in members if m.isfile()], filter="data")
    else:
        raise ValueError(f"{archive}: unsupported archive type (use .zip, .tar.gz or .tar)")


def download_prefix(uri: str, dest: Path, endpoint_url: str | None = None) -> int:
    """Download every object under an ``s3://bucket/prefix`` into ``dest``; returns the count."""
    from lerenet.services import require_s3

    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    require_s3(bucket, endpoint_url)  # retried; names bucket + endpoint when it stays down
    client = s3_client(endpoint_url)
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = _check_member(obj["Key"][len(prefix) :], uri)
            if not rel.parts:
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, obj["Key"], str(target))
            count += 1
    if count == 0:
        raise FileNotFoundError(f"{uri}: no objects under this prefix")
    return count


@contextlib.contextmanager
def local_source(source: str, endpoint_url: str | None = None) -> Iterator[Path]:
    """Yield a local folder holding ``source``'s files; temporary copies are removed after."""
    if is_s3_uri(source):
        with tempfile.TemporaryDirectory(prefix="lerenet-s3-") as tmp:
            download_prefix(source, Path(tmp), endpoint_url)
            yield Path(tmp)
        return
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{source}: no such folder, archive or s3:// prefix")
    if path.is_dir():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="lerenet-archive-") as tmp:
        extract_archive(path, Path(tmp))
        entries = [p for p in Path(tmp).iterdir() if not p.name.startswith(".")]
        # an archive holding a single top-level folder is that folder
        yield entries[0] if len(entries) == 1 and entries[0].is_dir() else Path(tmp)
