"""dvc.yaml and the Prefect cache keys come from one declaration per stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lerenet.config.schema import load_params
from lerenet.stages.code_deps import closure, inert
from lerenet.stages.declare import outputs
from lerenet.stages.specs import REPO, STAGES, cache_key, render_dvc_yaml, spec


def test_dvc_yaml_is_the_rendered_declarations() -> None:
    on_disk = (REPO / "dvc.yaml").read_text()
    assert on_disk == render_dvc_yaml(), (
        "dvc.yaml differs from lerenet/stages/specs.py: "
        "run `python -m lerenet.stages.specs --write`"
    )
    stages = yaml.safe_load(on_disk)["stages"]
    for stage in STAGES:
        declared = stages[stage.name]
        assert declared["deps"][len(stage.data) :] == list(stage.code)
        assert declared["params"] == list(stage.params)


def _covered(path: str, declared: tuple[str, ...]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in declared)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_module_a_stage_loads_is_declared(stage) -> None:
    """Import the stage's modules in a fresh interpreter: every ``lerenet`` file it loaded is
    in the stage's code deps (so dvc and Prefect re-run it when that file changes)."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {list(stage.entry)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()"
        " if n.split('.')[0] == 'lerenet' and getattr(m, '__file__', None))))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = [Path(f).resolve().relative_to(REPO).as_posix() for f in json.loads(out.stdout)]
    declaring = {"lerenet/stages/declare.py", "lerenet/stages/code_deps.py"}
    missing = [
        f
        for f in loaded
        if not _covered(f, stage.code) and not inert(REPO / f) and f not in declaring
    ]
    assert missing == [], f"{stage.name} loads undeclared code: {missing}"
    for path in stage.code:
        assert (REPO / path).exists(), f"{stage.name}: {path} does not exist"


def test_code_deps_follow_lazy_imports_and_skip_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "lerenet"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("X = 1\n")
    (pkg / "entry.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from lerenet import typing_only\n"
        "def f():\n    from lerenet.sub.lazy import g\n"
    )
    (pkg / "sub" / "lazy.py").write_text("from . import rel\n")
    (pkg / "sub" / "rel.py").write_text("")
    (pkg / "typing_only.py").write_text("")
    found = {p.relative_to(tmp_path).as_posix() for p in closure(("lerenet.entry",), pkg)}
    assert found == {
        "lerenet/__init__.py",
        "lerenet/entry.py",
        "lerenet/sub/__init__.py",  # importing lerenet.sub.lazy runs the package first
        "lerenet/sub/lazy.py",  # imported inside a function
        "lerenet/sub/rel.py",  # a relative import
    }


def test_outputs_follow_the_params(tmp_path: Path) -> None:
    params = _params(tmp_path, "train:\n  out_dir: elsewhere/train\neval:\n  out_dir: ev\n")
    stages = yaml.safe_load(render_dvc_yaml(params=params))["stages"]
    assert "elsewhere/train/best.pt" in stages["train"]["outs"]
    assert "elsewhere/train/best.pt" in stages["evaluate"]["deps"]
    assert {"ev/metrics.json": {"cache": False}} in stages["evaluate"]["outs"]
    assert Path("elsewhere/train/train.json") in outputs(spec("train"), params)


def _params(tmp_path: Path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return load_params(path)


def test_cache_key_follows_declared_params_data_and_code(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.csv").write_text("image,mask,class\n")
    base = f"data:\n  root: {data}\nsplit:\n  seed: 0\n  out_dir: {tmp_path / 'splits'}\n"
    params = _params(tmp_path, base)
    key = cache_key("split", params)
    assert cache_key("split", params) == key  # stable
    # a key the split stage reads changes it; one it does not read leaves it
    assert cache_key("split", _params(tmp_path, base.replace("seed: 0", "seed: 1"))) != key
    assert cache_key("split", _params(tmp_path, base + "eval:\n  bootstrap: 50\n")) == key
    assert cache_key("validate", _params(tmp_path, base + "eval:\n  shots: [1]\n")) != cache_key(
        "validate", params
    )
    # the data, through its manifest
    (data / "manifest.csv").write_text("image,mask,class\na,b,c\n")
    assert cache_key("split", params) != key
    # the code: a changed stage module is a new key (the validate key once hashed no code)
    code = tmp_path / "repo"
    (code / "lerenet" / "data").mkdir(parents=True)
    (code / "lerenet" / "data" / "splits.py").write_text("A = 1\n")
    monkeypatch.setattr("lerenet.stages.specs.REPO", code)
    before = cache_key("split", params)
    (code / "lerenet" / "data" / "splits.py").write_text("A = 2\n")
    assert cache_key("split", params) != before


def test_a_flow_gives_the_validation_in_memory_not_its_file(tmp_path: Path, monkeypatch) -> None:
    """The split follows validate's report.json in dvc.yaml; in a flow the validate task's
    result stands in for it: the key follows that result and never reads the file."""
    from lerenet.data.validate import ValidationReport
    from lerenet.stages.declare import VALIDATE_REPORT

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.csv").write_text("image,mask,class\n")
    params = _params(tmp_path, f"data:\n  root: {data}\nsplit:\n  out_dir: {tmp_path / 's'}\n")
    assert VALIDATE_REPORT in spec("split").data
    passed = ValidationReport(str(data), pairs=6, classes={"a": 6}, seconds=1.0)
    same = ValidationReport(str(data), pairs=6, classes={"a": 6}, seconds=9.0)
    fewer = ValidationReport(str(data), pairs=5, classes={"a": 5}, quarantined=1)
    assert passed.digest() == same.digest()  # how long it took is not what the split follows
    key = cache_key("split", params, given={VALIDATE_REPORT: passed.digest()})
    assert cache_key("split", params, given={VALIDATE_REPORT: fewer.digest()}) != key
    report = tmp_path / VALIDATE_REPORT
    report.parent.mkdir(parents=True)
    report.write_text('{"pairs": 1}')
    assert cache_key("split", params, given={VALIDATE_REPORT: passed.digest()}) == key
    assert cache_key("split", params) != cache_key("split", params, given={VALIDATE_REPORT: "x"})
