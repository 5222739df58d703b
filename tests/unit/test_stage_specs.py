"""dvc.yaml and the Prefect cache keys come from one declaration per stage."""

from __future__ import annotations

from pathlib import Path

import yaml

from lerenet.config.schema import load_params
from lerenet.stages.specs import REPO, STAGES, cache_key, render_dvc_yaml


def test_dvc_yaml_is_the_rendered_declarations() -> None:
    on_disk = (REPO / "dvc.yaml").read_text()
    assert on_disk == render_dvc_yaml(), (
        "dvc.yaml differs from lerenet/stages/specs.py: "
        "run `python -m lerenet.stages.specs --write`"
    )
    stages = yaml.safe_load(on_disk)["stages"]
    for stage in STAGES:
        declared = stages[stage.name]
        assert declared["deps"] == [*stage.data, *stage.code]
        assert declared["params"] == list(stage.params)


def test_declared_code_exists_and_the_stage_modules_are_declared() -> None:
    for stage in STAGES:
        for path in stage.code:
            assert (REPO / path).exists(), f"{stage.name}: {path} does not exist"
    train = next(s for s in STAGES if s.name == "train")
    # the code train() runs, which the hand-written dvc.yaml had left out
    for module in (
        "lerenet/stages/train.py",
        "lerenet/training/checkpoint.py",
        "lerenet/data/splits.py",
    ):
        assert module in train.code


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
