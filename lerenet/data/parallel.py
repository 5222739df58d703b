"""Parallel map over files with a progress bar: decoding images is CPU-bound, so processes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

T = TypeVar("T")
R = TypeVar("R")


def worker_count(requested: int = 0) -> int:
    """``requested`` workers, or one per available core when 0."""
    return requested or len(os.sched_getaffinity(0))


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int = 0,
    desc: str = "working",
    show: bool = True,
) -> list[R]:
    """``[fn(x) for x in items]`` in input order, across processes for more than a few items."""
    workers = worker_count(workers)
    progress = Progress(
        TextColumn(desc),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not show,
        transient=True,
    )
    with progress:
        task = progress.add_task(desc, total=len(items))
        if workers == 1 or len(items) < 16:
            out = []
            for item in items:
                out.append(fn(item))
                progress.advance(task)
            return out
        chunk = max(1, len(items) // (workers * 8))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            out = []
            for result in pool.map(fn, items, chunksize=chunk):
                out.append(result)
                progress.advance(task)
            return out
