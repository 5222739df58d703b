"""The GPU scripts' result copying: a lent GPU machine's run is only worth what comes back."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
set -euo pipefail
. bench/gpu_env.sh
(sleep 0.5; echo '{"fold": 0}' > bench/results/run_f0.json; sleep 0.5; \
 echo '{"folds": 3}' > bench/results/run.json) &
copy_out $! "run*.json"
echo finished
"""


def test_copy_out_survives_ticks_before_the_first_result_and_returns_them(tmp_path: Path) -> None:
    """Under ``set -e`` a tick with nothing to copy yet must not end the script: that bug lost
    the results of a whole H100 run (the benchmark ran on, orphaned, and nothing came back)."""
    (tmp_path / "bench" / "results").mkdir(parents=True)
    shutil.copy(REPO / "bench" / "gpu_env.sh", tmp_path / "bench")
    out = tmp_path / "out"
    out.mkdir()
    run = subprocess.run(
        ["bash", "-c", SCRIPT],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "OUT": str(out), "COPY_EVERY": "0.1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "finished" in run.stdout
    assert sorted(p.name for p in out.iterdir()) == ["run.json", "run_f0.json"]
    assert (out / "run.json").read_text().strip() == '{"folds": 3}'
