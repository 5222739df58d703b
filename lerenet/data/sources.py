"""Materialise an ingestion source as a local folder: a folder, an S3 prefix or an archive.

Archives are extracted member by member after checking that each member's path stays inside
the extraction folder (zip-slip / tar path traversal; ``paths.relative``) and is a plain file;
an unsafe member stops the ingest with its name, before anything is written to the dataset.
The bytes written are counted while extracting, whatever the archive declares: more than
``MAX_MEMBERS`` files, or more than ``max(MIN_BUDGET, MAX_RATIO × the archive's size)`` bytes
(a decompression bomb) stops the ingest, and the temporary folder is removed.
"""

from __future__ import annotations

import contextlib
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from lerenet.data import paths
from lerenet.services.storage import is_s3_uri, s3_client, split_s3_uri

# images and masks barely compress (PNG, JPEG); a ratio of 100 is far beyond any real dataset
MAX_RATIO = 100
MIN_BUDGET = 256 * 1024**2
MAX_MEMBERS = 200_000


class UnsafeArchiveError(ValueError):
    """An archive member that would be written outside the extraction folder, a link, or an
    archive that expands beyond its budget."""


def _check_member(name: str, archive: str) -> PurePosixPath:
    try:
        return paths.relative(name, f"{archive}: member")
    except paths.PathEscape as err:
        raise UnsafeArchiveError(
            f"{err}; it would be written outside the extraction folder (path traversal): "
            "repack the archive with relative paths"
        ) from None


class _Budget:
    """Bytes and files an archive may expand to, counted as they are written."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive.name
        self.left = max(MIN_BUDGET, MAX_RATIO * archive.stat().st_size)
        self.limit = self.left

    def copy(self, src, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                self.left -= len(chunk)
                if self.left < 0:
                    raise UnsafeArchiveError(
                        f"{self.archive}: expands beyond {self.limit / 1024**2:.0f} MiB "
                        f"({MAX_RATIO}× its size, at least {MIN_BUDGET // 1024**2} MiB): refused "
                        "as a decompression bomb; extract it yourself and ingest the folder"
                    )
                dst.write(chunk)


def _count(members: list, archive: str) -> None:
    if len(members) > MAX_MEMBERS:
        raise UnsafeArchiveError(
            f"{archive}: {len(members)} members, more than {MAX_MEMBERS}; split the archive"
        )


def extract_archive(archive: Path, dest: Path) -> None:
    """Safely extract a .zip, .tar, .tar.gz or .tgz archive into ``dest``."""
    name = archive.name.lower()
    budget = _Budget(archive)
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            _count(members, archive.name)
            for member in members:
                _check_member(member.filename, archive.name)
            for member in members:
                with zf.open(member) as src:
                    budget.copy(src, dest / _check_member(member.filename, archive.name))
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            _count(members, archive.name)
            for member in members:
                _check_member(member.name, archive.name)
                if member.issym() or member.islnk() or member.isdev():
                    raise UnsafeArchiveError(
                        f"{archive.name}: member {member.name!r} is a link or device; "
                        "only regular files are accepted"
                    )
            for member in members:
                if member.isfile():
                    with tf.extractfile(member) as src:
                        budget.copy(src, dest / _check_member(member.name, archive.name))
    else:
        raise ValueError(f"{archive}: unsupported archive type (use .zip, .tar.gz or .tar)")


def download_prefix(uri: str, dest: Path, endpoint_url: str | None = None) -> int:
    """Download every object under an ``s3://bucket/prefix`` into ``dest``; returns the count."""
    from lerenet.services.reach import require_s3

    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    require_s3(bucket, endpoint_url)  # retried; names bucket + endpoint when it stays down
    client = s3_client(endpoint_url)
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"][len(prefix) :]
            if not key.strip("/"):
                continue  # the prefix's own folder marker
            rel = _check_member(key, uri)
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
