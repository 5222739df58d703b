"""The version stage: the data folder tracked with DVC (``data.dvc``) and pushed to a remote,
so every run names the data version it used (``lerenet/lineage/data_versions.py``)."""

from __future__ import annotations

from pathlib import Path

from lerenet.config.schema import Params
from lerenet.lineage.data_versions import VersionResult


def run(params: Params, *, push: bool = True, remote: str | None = None) -> VersionResult:
    """``dvc add`` the data root and (``push``) push it to ``remote`` (None: the default)."""
    from lerenet.lineage.data_versions import version_data

    return version_data(Path(params.data.root), push=push, remote=remote)
