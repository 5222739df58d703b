"""Shared fixtures for all test tiers. Environment first: offline, no telemetry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

for _key, _value in {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DVC_NO_ANALYTICS": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "GX_ANALYTICS_ENABLED": "false",
}.items():
    os.environ.setdefault(_key, _value)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def fixture_dataset() -> Path:
    """The 9-class × 6-pair real fixture from ../shared (skipped in a bare clone)."""
    path = SHARED_DATASETS / "fixture"
    if not (path / "manifest.csv").exists():
        pytest.skip(
            f"real fixture dataset not found at {path} (../shared is absent in a bare "
            "clone); synthetic-data tests still run"
        )
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Downloads go to a per-session temp cache, never the user's ~/.cache."""
    monkeypatch.setenv("LERENET_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
