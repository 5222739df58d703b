"""bench/quality.py's folds apart: each in its own process at once (``--fold-jobs``), or one
at a time across sittings and merged afterwards (``--merge``), into one results file and table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from quality_report import write_docs

RESULTS = Path(__file__).resolve().parent / "results"
SCRIPT = Path(__file__).resolve().with_name("quality.py")


def run_fold_jobs(args: argparse.Namespace) -> None:
    """One ``quality.py --folds F`` process per fold, then one results file and table.

    The folds are independent (own split of classes, own training, own episodes), so they
    give the same numbers in parallel as in sequence; ``--workers`` is split between them.
    """
    import os
    import signal
    import subprocess

    started = time.perf_counter()
    argv = [a for a in sys.argv[1:] if a not in ("--fold-jobs", "--docs")]
    workers = max(1, args.workers // len(args.folds)) if args.workers else 0
    # each process's torch would otherwise start one thread per core: N folds × all cores
    # oversubscribe the CPU (on a 16-core GPU machine three folds did not finish one fold in
    # the 9 minutes one fold alone needs 2.4 of)
    threads = str(max(1, (os.cpu_count() or 1) // len(args.folds)))
    env = os.environ | {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    jobs = {
        fold: subprocess.Popen(
            [
                *(sys.executable, SCRIPT, *argv, "--folds", str(fold), "--no-docs"),
                *("--tag", f"{args.tag}_f{fold}", "--workers", str(workers)),
            ],
            env=env,
        )
        for fold in args.folds
    }
    # a time limit's SIGTERM ends the folds too, instead of leaving them holding the
    # caller's pipes open
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        failed = [fold for fold, job in jobs.items() if job.wait() != 0]
    finally:
        for job in jobs.values():
            if job.poll() is None:
                job.terminate()
    merge_folds(args, round(time.perf_counter() - started, 1))
    for fold in args.folds:  # merged: the per-fold files of one sitting are not kept
        (RESULTS / f"{args.tag}_f{fold}.json").unlink(missing_ok=True)
    if failed:
        sys.exit(f"fold(s) {failed} failed; their rows are missing")


def merge_folds(args: argparse.Namespace, total_s: float | None = None) -> None:
    """``<tag>_f<F>.json`` of ``--folds`` → ``<tag>.json`` (and the docs' table): the folds of
    ``--fold-jobs``, or folds run one at a time (``--folds F --tag <tag>_fF``) on a machine
    where the whole claim does not fit in one sitting, then ``--merge``. The fold files are
    kept; ``total_s`` is the folds' own times summed when not given."""
    parts = [
        json.loads((RESULTS / f"{args.tag}_f{fold}.json").read_text())
        for fold in args.folds
        if (RESULTS / f"{args.tag}_f{fold}.json").exists()
    ]
    if not parts:
        sys.exit(f"no fold results bench/results/{args.tag}_f*.json for folds {args.folds}")
    total = total_s if total_s is not None else round(sum(p["total_s"] for p in parts), 1)
    merged = parts[0] | {"folds": {}, "total_s": total}
    merged["config"] = merged["config"] | {"folds": args.folds, "workers": args.workers}
    for part in parts:
        merged["folds"] |= part["folds"]
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(merged, indent=2))
    if wants_docs(args):
        write_docs(args.tag, merged)
    missing = sorted(set(map(str, args.folds)) - set(map(str, merged["folds"])))
    print(f"total {merged['total_s'] / 60:.1f} min; wrote bench/results/{args.tag}.json")
    if missing:
        print(f"folds {missing} have no results yet: their rows are missing")


def wants_docs(args: argparse.Namespace) -> bool:
    """The table goes into the docs for ``--docs`` and every full-protocol run, never with
    ``--no-docs`` (fold processes of ``--fold-jobs``: their parent writes the merged table)."""
    return not args.no_docs and (args.docs or args.protocol == "full")
