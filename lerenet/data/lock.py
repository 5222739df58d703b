"""One writer at a time per data root: ingest, validate and split read the manifest, change
files and write the manifest back; two at once would each write their own view and lose the
other's rows (two ingests both reported "24 added"; the manifest listed 24 of 48 pairs).

The lock file sits beside the root, not in it, so DVC never versions it. A second writer waits
(and says so) rather than failing: scheduled flows and a person at a terminal may overlap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)


def lock_path(root: Path) -> Path:
    root = Path(root).resolve()
    return root.parent / f".{root.name}.lock"


@contextmanager
def writer_lock(root: Path, timeout: float = -1) -> Iterator[None]:
    """Hold the data root's writer lock; wait for another writer (``timeout`` < 0: forever)."""
    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("%s: another ingest/validate/split is writing it; waiting", root)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise TimeoutError(
                f"{root}: another writer held the data root for {timeout:.0f} s ({path})"
            ) from None
    try:
        yield
    finally:
        lock.release()
