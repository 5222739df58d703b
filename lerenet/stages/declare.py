"""What a stage declares: its modules, the data and params it reads, the outputs it writes.

Each stage module in this package exports its own ``SPEC`` (a ``StageSpec``) beside the
function it runs; ``lerenet.stages.specs`` finds them and renders dvc.yaml and the Prefect
cache keys from them. Paths may name params in braces (``{train.out_dir}/best.pt``), so
outputs follow the params; code dependencies are derived from the entry modules' imports
(``code_deps``), never listed by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from lerenet.config.schema import Params
from lerenet.stages.code_deps import code_deps

TRAIN, EVAL, SPLITS, DATA = "{train.out_dir}", "{eval.out_dir}", "{split.out_dir}", "{data.root}"
VALIDATE_DIR = "outputs/validate"  # the CLI's and the flow's default report folder
VALIDATE_REPORT = f"{VALIDATE_DIR}/report.json"  # what the split follows in dvc.yaml


@dataclass(frozen=True)
class Out:
    """A file or folder a stage writes; ``cache=False`` keeps small reports in git. The path
    may name a params key in braces (``{train.out_dir}/best.pt``): outputs follow the params."""

    path: str
    cache: bool = True


@dataclass(frozen=True)
class StageSpec:
    """A stage as ``dvc repro`` and the Prefect cache keys see it. Each stage module exports
    one as ``SPEC``; ``lerenet.stages.specs`` collects them."""

    name: str
    entry: tuple[str, ...]  # the stage's module(s); its code deps are what they import
    data: tuple[str, ...]  # the data and earlier outputs it reads (``{key}`` from params)
    params: tuple[str, ...]  # params.yaml keys it reads (a section or section.key)
    outs: tuple[Out, ...] = ()
    metrics: tuple[Out, ...] = ()
    plots: tuple[Out, ...] = ()
    note: str = ""  # a comment written above the stage in dvc.yaml
    cmd: str = ""  # the CLI command; empty: ``lerenet stage NAME`` (the stage's ``run``)

    @property
    def command(self) -> str:
        """The command dvc.yaml runs: ``cmd``, else the generic ``lerenet stage NAME``."""
        return self.cmd or f"lerenet stage {self.name}"

    @cached_property
    def code(self) -> tuple[str, ...]:
        """The library's files/folders the stage runs: its entry modules' import closure
        (derived once per declaration: dvc.yaml and every cache key read it)."""
        return code_deps(self.entry)


def resolve(path: str, params: Params) -> str:
    """``path`` with each ``{section.key}`` replaced by that param's value."""
    values = {key: str(value) for key, value in _placeholders(path, params).items()}
    for key, value in values.items():
        path = path.replace("{" + key + "}", value.rstrip("/"))
    return path


def _placeholders(path: str, params: Params) -> dict[str, Any]:
    keys = tuple(re.findall(r"\{([\w.]+)\}", path))
    return params_of(params, keys) if keys else {}


def outputs(stage: StageSpec, params: Params) -> list[Path]:
    """Every file or folder ``stage`` writes, at the paths ``params`` give."""
    return [Path(resolve(o.path, params)) for o in (*stage.outs, *stage.metrics, *stage.plots)]


def params_of(params: Params, keys: tuple[str, ...]) -> dict[str, Any]:
    """The values of dvc-style params keys (``split`` or ``split.shots``) in ``params``."""
    dump = params.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key in keys:
        value: Any = dump
        for part in key.split("."):
            value = value[part]
        out[key] = value
    return out
