"""Every command's --help, as a user reads it: each option explained, no type placeholders."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from lerenet.cli.main import app as lerenet_app
from pipelines.cli import app as pipeline_app


def _commands(group, path: tuple[str, ...] = ()):
    if hasattr(group, "commands"):  # a group (Typer carries its own copy of click's classes)
        for name, command in group.commands.items():
            yield from _commands(command, (*path, name))
    else:
        yield path, group


COMMANDS = [
    (app, path, command)
    for app in (lerenet_app, pipeline_app)
    for path, command in _commands(typer.main.get_command(app))
]


@pytest.mark.parametrize(
    "app,path,command", COMMANDS, ids=[" ".join(p) or "root" for _, p, _ in COMMANDS]
)
def test_every_option_is_explained_without_type_placeholders(app, path, command) -> None:
    undocumented = [
        p.name
        for p in command.params
        if getattr(p, "param_type_name", "") == "option" and not (p.help or "").strip()
    ]
    assert undocumented == [], f"{' '.join(path)}: options without help"
    shown = CliRunner().invoke(app, [*path, "--help"], terminal_width=100)
    assert shown.exit_code == 0, shown.output
    options = shown.output.split("\nOptions:", 1)[-1]
    # a flag takes no value; a repeatable option shows what one value looks like
    assert "<bool>" not in options and "<list[" not in options, shown.output


def test_the_walk_finds_the_commands_users_run() -> None:
    names = {" ".join(path) for _, path, _ in COMMANDS}
    assert {"train", "predict", "stack deploy", "config show", "retrain"} <= names
