"""Validation speed on defects9 (1,586 pairs): parallel decoding vs one process, same run.

    python bench/validate_speed.py

Ingests ../shared/datasets/defects9 into a scratch folder, then times ``validate_dataset`` with
one worker and with one worker per core (GX suite included). Target: under 30 s on this
machine. Results: bench/results/validate_speed.json and docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFECTS9 = ROOT.parent / "shared" / "datasets" / "defects9"


def main() -> None:
    if not (DEFECTS9 / "manifest.csv").exists():
        sys.exit(f"{DEFECTS9}: not found")
    from lerenet.data.ingest import ingest
    from lerenet.data.suite import SuiteLimits
    from lerenet.data.validate import validate_dataset

    work = Path(tempfile.mkdtemp(prefix="lerenet-vbench-"))
    ingest(str(DEFECTS9), work / "data", show_progress=False)
    # warm-up: the first call pays Great Expectations' import (seconds), not decoding
    validate_dataset(
        work / "data", work / "warmup", SuiteLimits(min_pairs_per_class=6), show_progress=False
    )
    results = {}
    for label, workers in (("1 process", 1), (f"{os.cpu_count()} processes", 0)):
        start = time.perf_counter()
        report = validate_dataset(
            work / "data",
            work / f"report-{workers}",
            SuiteLimits(min_pairs_per_class=6),
            workers=workers,
            show_progress=False,
        )
        results[label] = {
            "seconds": round(time.perf_counter() - start, 2),
            "pairs": report.pairs,
            "passed": report.passed,
        }
        print(label, results[label], flush=True)
    out = Path(__file__).resolve().parent / "results" / "validate_speed.json"
    out.write_text(json.dumps(results, indent=2))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import replace_section

    rows = "\n".join(f"| {k} | {v['pairs']} | {v['seconds']:.1f} s |" for k, v in results.items())
    replace_section(
        "validate_speed",
        "`python bench/validate_speed.py` (defects9, GX suite + "
        "per-file decode checks):\n\n| decoding | pairs | wall time |\n|---|---|---|\n" + rows,
    )


if __name__ == "__main__":
    main()
