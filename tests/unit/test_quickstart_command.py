"""The README's main command (scripts/quickstart.sh) hands the retrain CLI arguments it
parses: CI does not run the quickstart, and a `--set a b` (one --set for three values) once
reached a user as "unexpected extra argument(s)" after the install."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from lerenet.config.schema import load_params

REPO = Path(__file__).resolve().parents[2]


def _retrain_args() -> list[str]:
    """The arguments scripts/quickstart.sh gives ``lerenet-pipeline retrain``."""
    script = (REPO / "scripts" / "quickstart.sh").read_text().replace("\\\n", " ")
    [line] = [ln for ln in script.splitlines() if "lerenet-pipeline retrain" in ln]
    words = shlex.split(line)
    return [w for w in words[words.index("retrain") + 1 :] if w != "$@"]


def test_the_quickstart_command_parses_and_trains_the_readme_budget() -> None:
    from pipelines.cli import _overrides, app

    command = typer.main.get_command(app).commands["retrain"]
    ctx = command.make_context("retrain", _retrain_args())  # raises on a bad command line
    params = load_params(REPO / "params.yaml", _overrides(ctx.params["overrides"]))
    assert (params.data.image_size, params.train.steps, params.train.val_every) == (128, 300, 100)
