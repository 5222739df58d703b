"""Small modules with one job: none over 400 lines, no function over 80 (issue #28)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    p for folder in ("lerenet", "pipelines", "bench") for p in (REPO / folder).rglob("*.py")
)


def test_no_module_is_over_four_hundred_lines() -> None:
    long = {
        p.relative_to(REPO).as_posix(): n
        for p in SOURCES
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}


def test_no_function_is_over_eighty_lines() -> None:
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines})")
    assert long == []
