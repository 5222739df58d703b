"""The MLflow-facing code lives in ``lerenet.tracking``."""

from __future__ import annotations

import ast
from pathlib import Path

import lerenet

LIBRARY = Path(lerenet.__file__).parent


def test_only_the_tracking_package_imports_mlflow() -> None:
    """Stages, onboarding and predict reach MLflow through ``lerenet.tracking`` only, so
    what talks to the tracking server and the registry is in one place."""
    outside = []
    for path in sorted(LIBRARY.rglob("*.py")):
        if "tracking" in path.relative_to(LIBRARY).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name == "mlflow" or name.startswith("mlflow.") for name in names):
                outside.append(f"{path.relative_to(LIBRARY)}:{node.lineno}")
    assert outside == [], f"mlflow imported outside lerenet/tracking: {outside}"
