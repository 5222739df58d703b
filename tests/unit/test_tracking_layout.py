"""The MLflow-facing code lives in ``lerenet.tracking``."""

from __future__ import annotations

import ast
from pathlib import Path

import lerenet
from lerenet.stages.code_deps import imported_modules

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


# what the foundation packages may import from the library (docs/architecture.md)
FOUNDATIONS = {
    "results": set(),
    "services": set(),
    "lineage": {"config", "services"},
    "data": {"config", "services"},
    "model": {"config", "services"},
    "config": {"model", "services"},
}


def _library_imports(path: Path) -> set[str]:
    """The top-level ``lerenet`` entries that ``path`` imports at run time, lazily or not
    (an import only for type checking is not a dependency)."""
    name = "lerenet." + ".".join(path.relative_to(LIBRARY).with_suffix("").parts)
    return {m.split(".")[1] for m in imported_modules(path, name) if m.count(".")}


def test_the_foundation_packages_import_nothing_above_them() -> None:
    """Data, model, lineage, config, services and results are what stages, training and
    tracking build on; an import the other way round would make a cycle of layers."""
    wrong = []
    for top, allowed in FOUNDATIONS.items():
        paths = [LIBRARY / f"{top}.py"] if (LIBRARY / f"{top}.py").exists() else []
        paths += sorted((LIBRARY / top).rglob("*.py")) if (LIBRARY / top).is_dir() else []
        assert paths, f"lerenet/{top} is gone: update FOUNDATIONS"
        for path in paths:
            extra = _library_imports(path) - allowed - {top}
            wrong += [f"{path.relative_to(LIBRARY)} imports lerenet.{e}" for e in sorted(extra)]
    assert wrong == []


def test_lerenet_has_at_most_twelve_top_level_entries() -> None:
    entries = [
        p.name
        for p in LIBRARY.iterdir()
        if p.name not in ("__init__.py", "__pycache__")
        and (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
    ]
    assert len(entries) <= 12, sorted(entries)
