"""Data versioning with DVC: ``dvc add data`` and ``dvc push``, called by the pipeline.

Runs DVC as a subprocess of the same environment (``python -m dvc``) so the version used is the
project's pinned one. Outside a DVC repository (no ``.dvc/``) versioning is skipped with a
clear message, so library users who do not use DVC are not forced to.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lerenet.lineage import data_version


@dataclass(frozen=True)
class VersionResult:
    data_version: str
    tracked: bool
    pushed: bool
    message: str


def _dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def version_data(
    data_root: Path, repo: Path = Path("."), push: bool = True, remote: str | None = None
) -> VersionResult:
    """Track ``data_root`` with DVC (writes ``<data_root>.dvc``) and push it to the remote."""
    repo = Path(repo)
    if not (repo / ".dvc").is_dir():
        return VersionResult(
            data_version(data_root),
            False,
            False,
            "not a DVC repository (no .dvc/): data not versioned",
        )
    added = _dvc("add", str(data_root), cwd=repo)
    if added.returncode != 0:
        raise RuntimeError(f"dvc add {data_root} failed:\n{added.stderr.strip()}")
    pushed, message = False, "tracked"
    if push:
        args = ["push", f"{data_root}.dvc"] + (["-r", remote] if remote else [])
        result = _dvc(*args, cwd=repo)
        if result.returncode != 0:
            raise RuntimeError(
                f"dvc push failed (remote {remote or 'default'}): {result.stderr.strip()[-2000:]}"
            )
        pushed, message = True, "tracked and pushed"
    return VersionResult(data_version(data_root), True, pushed, message)
