"""After a run, the CLI names what to commit: the run's data.dvc, dvc.lock and outputs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lerenet.lineage.data_versions import pending_commit


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_pending_commit_names_what_a_run_changed_and_nothing_else(tmp_path: Path) -> None:
    assert pending_commit(tmp_path) == []  # not a git clone: nothing to say
    _git("init", "-q", cwd=tmp_path)
    _git("config", "user.email", "t@example.com", cwd=tmp_path)
    _git("config", "user.name", "t", cwd=tmp_path)
    (tmp_path / "data.dvc").write_text("outs:\n- md5: 1.dir\n")
    (tmp_path / "notes.txt").write_text("mine")
    _git("add", "-A", cwd=tmp_path)
    _git("commit", "-qm", "start", cwd=tmp_path)
    assert pending_commit(tmp_path) == []  # committed: clean
    (tmp_path / "data.dvc").write_text("outs:\n- md5: 2.dir\n")  # a new data version
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    (tmp_path / "outputs" / "eval").mkdir(parents=True)
    (tmp_path / "outputs" / "eval" / "summary.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("changed, but not by a run")
    assert pending_commit(tmp_path) == ["data.dvc", "dvc.lock", "outputs"]
