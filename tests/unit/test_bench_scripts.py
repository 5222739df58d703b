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


def _stage(repo: Path, dest: Path, what: str) -> int:
    """One device call's staging: ``bench/gpu_data.sh WHAT`` in a checkout carrying ``.gpudata``."""
    return subprocess.run(
        ["bash", "bench/gpu_data.sh", what],
        cwd=repo,
        env={"PATH": "/usr/bin:/bin", "GPU_DATA": str(dest)},
        capture_output=True,
        text=True,
        timeout=60,
    ).returncode


def test_staging_across_calls_keeps_earlier_parts_and_reports_completion(tmp_path: Path) -> None:
    """Each device call carries one part and re-syncs the checkout, dropping the parts of earlier
    calls; the staged copy outside it must keep them, and say (exit 3) until all are there."""
    repo, dest = tmp_path / "repo", tmp_path / "staged"
    (repo / "bench").mkdir(parents=True)
    shutil.copy(REPO / "bench" / "gpu_data.sh", repo / "bench")
    for part in ("part1", "part2"):  # a call carries one part; the checkout loses the other
        shutil.rmtree(repo / ".gpudata", ignore_errors=True)
        folder = repo / ".gpudata" / "wheels" / part
        folder.mkdir(parents=True)
        (folder / f"{part}.whl").write_text("wheel")
        (folder / "PARTS").write_text("2\n")
        assert _stage(repo, dest, "wheels") == (3 if part == "part1" else 0)
    assert sorted(p.name for p in (dest / "wheels").glob("*/*.whl")) == ["part1.whl", "part2.whl"]
    shutil.rmtree(repo / ".gpudata")
    images = repo / ".gpudata" / "defects9" / "images" / "A"
    images.mkdir(parents=True)
    (images / "1.png").write_text("png")
    assert _stage(repo, dest, "defects9") == 3  # no manifest yet
    (repo / ".gpudata" / "defects9" / "manifest.csv").write_text("image,mask\na,b\nc,d\n")
    assert _stage(repo, dest, "defects9") == 3  # one of two images
    (images / "2.png").write_text("png")
    assert _stage(repo, dest, "defects9") == 0
    assert _stage(repo, dest, "nonsense") == 2


def test_a_later_calls_part_folder_joins_the_tree_it_belongs_to(tmp_path: Path) -> None:
    """The smoke-first staging (call 1: the manifest and most classes, call 2: the rest as
    ``.gpudata/part2/defects9/…``, one carried path): the second call's images must land in the
    staged ``defects9`` tree, and only then is the dataset complete."""
    repo, dest = tmp_path / "repo", tmp_path / "staged"
    (repo / "bench").mkdir(parents=True)
    shutil.copy(REPO / "bench" / "gpu_data.sh", repo / "bench")
    first = repo / ".gpudata" / "defects9"
    (first / "images" / "A").mkdir(parents=True)
    (first / "images" / "A" / "1.png").write_text("png")
    (first / "manifest.csv").write_text("image,mask\na,b\nc,d\n")
    assert _stage(repo, dest, "defects9") == 3  # B is still to come
    shutil.rmtree(repo / ".gpudata")  # the next call's sync drops what it does not carry
    later = repo / ".gpudata" / "part2" / "defects9" / "images" / "B"
    later.mkdir(parents=True)
    (later / "2.png").write_text("png")
    assert _stage(repo, dest, "defects9") == 0
    assert sorted(p.name for p in (dest / "defects9" / "images").glob("*/*.png")) == [
        "1.png",
        "2.png",
    ]
