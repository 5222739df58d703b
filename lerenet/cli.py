"""The ``lerenet`` command: one Typer app, the only entry point for DVC stages and people.

Each command parses options, calls one library function and prints the result; no stage logic
lives here. Heavy imports (torch, mlflow, great_expectations) happen inside the commands so that
``lerenet --help`` answers in well under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lerenet.config import ConfigError, load_params

app = typer.Typer(
    help="Few-shot surface-defect segmentation with LERENet: data, training, evaluation, "
    "registry. Every command reads params.yaml (override with --params).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
model_app = typer.Typer(help="Inspect the network.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(config_app, name="config")

console = Console()
err_console = Console(stderr=True)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file", show_default=True)]


def _params(path: Path):
    try:
        return load_params(path)
    except ConfigError as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err


@config_app.command("show")
def config_show(params: ParamsOpt = Path("params.yaml")) -> None:
    """Print the resolved configuration (all defaults filled in) and its sha256."""
    import yaml

    from lerenet.config import params_sha256

    cfg = _params(params)
    console.print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    console.print(f"# params sha256: {params_sha256(cfg)}")


@model_app.command("summary")
def model_summary_cmd(
    params: ParamsOpt = Path("params.yaml"),
    size: Annotated[int, typer.Option(help="input height = width in pixels")] = 200,
    shots: Annotated[int, typer.Option(help="support images per episode (K)")] = 1,
    batch: Annotated[int, typer.Option(help="episodes per batch (B)")] = 1,
    random_init: Annotated[
        bool, typer.Option("--random-init", help="skip loading weights (counts only)")
    ] = False,
) -> None:
    """Parameters and forward GFLOPs per module (backbone, MPR, MPE, IFM) for one batch."""
    import warnings

    from lerenet.model import build_model
    from lerenet.model.weights import WeightsError
    from lerenet.summary import model_summary

    cfg = _params(params)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, info = build_model(cfg.model, load_weights=not random_init)
    except WeightsError as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    rows = model_summary(model, batch=batch, shots=shots, size=size)
    table = Table(
        title=f"{cfg.model.arch} / {cfg.model.backbone}: B={batch} K={shots} {size}×{size}"
    )
    for col in ("module", "params", "trainable", "GFLOPs"):
        table.add_column(col, justify="left" if col == "module" else "right")
    for row in rows:
        table.add_row(row.name, f"{row.params:,}", f"{row.trainable:,}", f"{row.flops / 1e9:.3f}")
    console.print(table)
    if info is not None and info.sha256:
        console.print(f"backbone weights: {info.uri} ({info.format}, sha256 {info.sha256[:12]}…)")


def main() -> None:  # pragma: no cover - console-script shim
    app()
