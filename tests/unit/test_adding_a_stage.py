"""Adding a stage between split and train is one new module (plus, when it has settings, the
params schema, its test and the regenerated dvc.yaml): shown here on a copy of the library."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from lerenet.stages.specs import REPO

AUDIT = '''
"""An example stage: counts the split's test episodes per fold into a report."""

from __future__ import annotations

import json
from pathlib import Path

from lerenet.config.schema import Params
from lerenet.data.splits import read_folds
from lerenet.stages.declare import SPLITS, Out, StageSpec

SPEC = StageSpec(
    "audit",
    entry=(__name__,),
    data=(SPLITS,),
    params=("split.seed",),
    outs=(Out("outputs/audit/report.json", cache=False),),
)


def run(params: Params) -> dict:
    folds = read_folds(Path(params.split.out_dir))
    report = {"folds": len(folds), "test_classes": sorted(c for f in folds for c in f.test)}
    out = Path("outputs/audit/report.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report))
    return report
'''


def _python(code: str, cwd: Path, env: dict) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_new_stage_module_is_declared_run_by_the_cli_and_scheduled_by_the_flow(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(
        REPO / "lerenet", copy / "lerenet", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "params.yaml", copy / "params.yaml")
    (copy / "lerenet" / "stages" / "audit.py").write_text(AUDIT)  # the one file added
    (copy / "splits").mkdir()
    folds = [{"train": ["a", "b"], "val": ["c"], "test": ["d"]}]
    (copy / "splits" / "folds.json").write_text(json.dumps(folds))
    # the copy's library first; pipelines/ from the repository imports it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy), str(REPO)])}

    stages = yaml.safe_load(_python("from lerenet.stages.specs import render_dvc_yaml\n"
                                     "print(render_dvc_yaml())", copy, env))["stages"]  # fmt: skip
    audit = stages["audit"]
    assert audit["cmd"] == "lerenet stage audit"
    assert "lerenet/stages/audit.py" in audit["deps"] and "splits" in audit["deps"]
    assert "lerenet/data/splits.py" in audit["deps"]  # derived from its imports
    assert audit["params"] == ["split.seed"]
    order = list(stages)
    assert order.index("split") < order.index("audit")  # it reads what split writes

    out = _python("from lerenet.cli.main import app\n"
                  "app(['stage', 'audit'], standalone_mode=False)", copy, env)  # fmt: skip
    assert "audit:" in out
    assert json.loads((copy / "outputs" / "audit" / "report.json").read_text()) == {
        "folds": 1,
        "test_classes": ["d"],
    }
    scheduled = _python(
        "from pipelines.tasks import extra_stages\nprint(extra_stages())", copy, env
    )
    assert scheduled.strip() == "['audit']"  # retrain runs it after split, by stage_task


def test_an_unknown_stage_is_one_sentence(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lerenet.cli.main import app

    result = CliRunner().invoke(app, ["stage", "nope", "--params", str(REPO / "params.yaml")])
    assert result.exit_code == 2
    assert "no stage 'nope'" in result.output and "train" in result.output
