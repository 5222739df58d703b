"""What every CLI command shares: consoles, one-line errors, the params options."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from lerenet.config.schema import ConfigError, load_params, parse_overrides

# soft wrap: a long line is the terminal's to wrap; Rich's own wrapping (at 80 columns when
# the output is not a terminal) split paths and commands in two
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def new_app(help: str, **settings: object) -> typer.Typer:
    """A command group as every lerenet command has it: click's plain help (Typer's rich
    panels printed ``<bool>`` beside every flag), help when called bare, no local variables
    in a traceback (they may hold credentials)."""
    defaults: dict = {
        "no_args_is_help": True,
        "rich_markup_mode": None,
        "pretty_exceptions_show_locals": False,
    }
    return typer.Typer(help=help, **(defaults | settings))


def fail(message: str, code: int = 2) -> NoReturn:
    """One red line on stderr and exit ``code`` (2: bad input, 1: a check said no)."""
    err_console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors(*kinds: type[Exception], code: int = 2, hint: str = "") -> Iterator[None]:
    """The errors a command expects (bad input, a missing file, a refused promotion) become
    one line and an exit code; any other exception keeps its traceback, because it is a bug."""
    try:
        yield
    except kinds as err:
        err_console.print(f"[red]error:[/red] {escape(str(err))}{escape(hint)}")
        raise typer.Exit(code) from err


ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file", show_default=True)]


def _params(path: Path):
    with user_errors(ConfigError):
        return load_params(path)


SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="SECTION.KEY=VALUE",
        help="override a param of the params file (repeatable)",
    ),
]


def _params_with(path: Path, overrides: list[str] | None):
    with user_errors(ConfigError):
        return load_params(path, overrides=parse_overrides(overrides))


def print_rows(rows: list[dict], title: str, *, label: str = "class") -> None:
    """Print ``rows`` (dicts with the same keys, as ``lerenet.evaluation.outcome`` and the
    onboarding report make them) as one table: the ``label`` column left, numbers right;
    nothing when there are no rows."""
    from rich.table import Table

    if not rows:
        return
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column, justify="left" if column == label else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
