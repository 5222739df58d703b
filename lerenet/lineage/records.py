"""Lineage: what a trained model was made from, as tags every run and model version carries.

git commit (and whether the tree was dirty), the DVC data version (the md5 in ``data.dvc``, or
the manifest's sha256 when data is not DVC-tracked yet), the split sha256, the resolved params
sha256, the backbone weights sha256 and the package lock hash (``constraints.txt``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from lerenet.config.schema import Params, params_sha256
from lerenet.services.storage import file_sha256

LINEAGE_KEYS = (
    "lerenet.git_commit",
    "lerenet.data_version",
    "lerenet.split_sha256",
    "lerenet.params_sha256",
    "lerenet.weights_sha256",
    "lerenet.lock_sha256",
)


def git_commit(repo: Path = Path(".")) -> tuple[str, bool]:
    """(commit sha, dirty) or ("", False) outside a git checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=repo,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        return sha, dirty
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "", False


def data_version(data_root: Path, dvc_file: Path | None = None) -> str:
    """``dvc:<md5>`` from the .dvc file that tracks the data, else ``manifest:<sha256>``."""
    dvc_file = dvc_file or Path(str(data_root).rstrip("/") + ".dvc")
    if dvc_file.exists():
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs", [])
        if outs and outs[0].get("md5"):
            return f"dvc:{outs[0]['md5']}"
    return f"manifest:{file_sha256(Path(data_root) / 'manifest.csv', missing='')}"


def split_sha256(split_dir: Path) -> str:
    path = Path(split_dir) / "lineage.json"
    return json.loads(path.read_text())["split_sha256"] if path.exists() else ""


def lineage_tags(
    params: Params,
    *,
    weights_sha256: str = "",
    repo: Path = Path("."),
    split_digest: str | None = None,
) -> dict:
    """The tags that make a run reproducible. ``split_digest``: the split's sha256 when the
    caller holds the split (a flow's, in memory); None reads it from ``split.out_dir``."""
    commit, dirty = git_commit(repo)
    if split_digest is None:
        split_digest = split_sha256(Path(params.split.out_dir))
    return {
        "lerenet.git_commit": commit,
        "lerenet.git_dirty": str(dirty).lower(),
        "lerenet.data_version": data_version(Path(params.data.root)),
        "lerenet.split_sha256": split_digest,
        "lerenet.params_sha256": params_sha256(params),
        "lerenet.weights_sha256": weights_sha256,
        "lerenet.lock_sha256": file_sha256(repo / "constraints.txt", missing=""),
        "lerenet.fold": str(params.train.fold),
    }
