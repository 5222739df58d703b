"""CLI commands of the local service stack (S3, MLflow, Prefect): up, down, status
(registered on the ``stack`` sub-app in ``lerenet.cli.main``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lerenet.cli.common import (
    console,
    err_console,
    user_errors,
)

StackDir = Annotated[Path, typer.Option("--dir", help="state, logs and secrets")]


def stack_up(
    state_dir: StackDir = Path(".stack"),
    backend_uri: Annotated[
        str | None,
        typer.Option(
            envvar="MLFLOW_BACKEND_STORE_URI",
            help="MLflow backend store (default SQLite under --dir; e.g. "
            "postgresql://user:password@host:5432/mlflow, needs lerenet[postgres]). Prefer the "
            "environment variable: a password on the command line is visible to other users.",
            show_envvar=True,
        ),
    ] = None,
    no_prefect: Annotated[
        bool, typer.Option("--no-prefect", help="S3 and MLflow only: no Prefect server, no worker")
    ] = False,
    s3_port: Annotated[int, typer.Option(help="S3 API port (gRPC uses port + 10000)")] = 8333,
    mlflow_port: Annotated[int, typer.Option(help="MLflow server and UI port")] = 5000,
    prefect_port: Annotated[int, typer.Option(help="Prefect server and UI port")] = 4200,
) -> None:
    """Start SeaweedFS S3, an mlflow server and a prefect server + worker on 127.0.0.1.

    Ports are fixed (UI bookmarks survive restarts); pass 0 for any free port. A running stack
    in --dir is left as it is.
    """
    from lerenet.stack.local import StackPorts, up

    with user_errors(
        RuntimeError, TimeoutError, FileNotFoundError, code=1, hint=f" (logs in {state_dir})"
    ):
        state = up(
            state_dir,
            backend_uri=backend_uri,
            with_prefect=not no_prefect,
            ports=StackPorts(s3_port or None, mlflow_port or None, prefect_port or None),
        )
    from lerenet.stack.mlflow_server import redact

    _warn_outdated(state.env, state_dir)
    console.print(
        f"stack up ({', '.join(state.pids)}); MLflow backend store: "
        f"{redact(backend_uri) if backend_uri else 'SQLite under ' + str(state_dir)}.\n"
        f"Use it with:\n  source {state.dir / 'env.sh'}"
    )
    from lerenet.stack.credentials import is_secret

    for key in sorted(state.env):
        if not is_secret(key):
            console.print(f"  {key}={state.env[key]}")
    uis = {
        "MLflow": state.env.get("MLFLOW_TRACKING_URI", ""),
        "Prefect": state.env.get("PREFECT_API_URL", "").removesuffix("/api"),
    }
    for name, url in uis.items():
        if url.startswith("http"):
            console.print(f"{name} UI: {url}")
    console.print(
        f"The UIs ask for a login: MLflow's user and password are in "
        f"{state.dir / 'mlflow-login.json'}, Prefect's auth string (user:password) in "
        f"{state.dir / 'prefect-login.json'} (both owner-only)."
    )


def stack_down(state_dir: StackDir = Path(".stack")) -> None:
    """Stop every service the stack started (data stays under --dir)."""
    from lerenet.stack.local import down

    stopped = down(state_dir)
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def stack_status(state_dir: StackDir = Path(".stack")) -> None:
    """Which services of the stack are healthy (process alive and health endpoint answering);
    exit 1 if any is not."""
    from lerenet.stack.local import status

    states = status(state_dir)
    if not states:
        console.print("stack is not running")
        raise typer.Exit(1)
    import json

    env = json.loads((Path(state_dir) / "state.json").read_text()).get("env", {})
    where = {
        "seaweedfs": env.get("AWS_ENDPOINT_URL_S3", ""),
        "mlflow": env.get("MLFLOW_TRACKING_URI", ""),
        "prefect-server": env.get("PREFECT_API_URL", "").removesuffix("/api"),
    }
    for name, alive in states.items():
        state = f"[green]{'healthy':9s}[/green]" if alive else f"[red]{'down':9s}[/red]"
        console.print(f"{name:15s} {state} {where.get(name, '')}")
    if not all(states.values()):
        err_console.print(f"restart with: lerenet stack down --dir {state_dir} && lerenet stack up")
    _warn_outdated(env, state_dir)
    raise typer.Exit(0 if all(states.values()) else 1)


def _warn_outdated(env: dict[str, str], state_dir: Path) -> None:
    """Say what a running stack started by an older version lacks, and how to renew it."""
    from lerenet.stack.local import outdated

    for line in outdated(env):
        err_console.print(
            f"[yellow]this stack predates this version:[/yellow] {line}; renew it with: "
            f"lerenet stack down --dir {state_dir} && lerenet stack up --dir {state_dir}"
        )


def stack_deploy(
    state_dir: StackDir = Path(".stack"),
    repository: Annotated[
        str | None,
        typer.Option(help="git URL workers clone (default: this clone, file://…)"),
    ] = None,
    branch: Annotated[
        str | None, typer.Option(help="branch workers clone (default: the current one)")
    ] = None,
    gpu_image: Annotated[
        str | None,
        typer.Option(envvar="LERENET_GPU_IMAGE", help="image of the GPU training jobs"),
    ] = None,
    dvc_remote: Annotated[
        str,
        typer.Option(
            help="DVC remote (in the committed .dvc/config) the workers restore data from; "
            "the data version the branch records is pushed there first"
        ),
    ] = "s3",
) -> None:
    """Deploy prefect.yaml on the running stack: onboarding and the nightly retrain, and GPU
    training when the 'lerenet-gpu' work pool exists (else the nightly retrain trains on the
    process worker, and this says how to add the pool). Placeholders are filled: workers clone
    --repository at --branch (default: this clone and its current branch; commit first).
    The data version the branch's data.dvc records is pushed to --dvc-remote (the stack's S3)
    first, and the deployments restore from it; a version no worker could restore is refused
    with how to fix it."""
    from lerenet.stack.deploy import deploy

    with user_errors(RuntimeError, FileNotFoundError, OSError, ValueError, code=1):
        result = deploy(
            state_dir,
            repository=repository,
            branch=branch,
            gpu_image=gpu_image,
            dvc_remote=dvc_remote,
        )
    console.print(
        f"deployed: {', '.join(result.deployed)} (workers clone {result.repository} "
        f"at {result.branch})"
    )
    if result.data_version:
        console.print(
            f"data version {result.data_version} pushed to DVC remote {result.dvc_remote!r}; "
            "the deployments restore it from there"
        )
    else:
        err_console.print(
            f"[yellow]no data.dvc on {result.branch}[/yellow]: the nightly retrain needs a "
            "recorded data version (run the pipeline once, commit data.dvc, deploy again)"
        )
    for name, why in result.skipped.items():
        err_console.print(f"[yellow]not deployed[/yellow] {name}: {why}")
