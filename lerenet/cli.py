"""The ``lerenet`` command: one Typer app, the only entry point for DVC stages and people.

Each command parses options, calls one library function and prints the result; no stage logic
lives here. Heavy imports (torch, mlflow, great_expectations) happen inside the commands so that
``lerenet --help`` answers in well under a second.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lerenet.config import ConfigError, DataConfig, load_params
from lerenet.offline import apply_offline_env
from lerenet.services import ServiceUnavailable, require_mlflow

app = typer.Typer(
    help="Few-shot surface-defect segmentation with LERENet: data, training, evaluation, "
    "registry. Every command reads params.yaml (override with --params).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
model_app = typer.Typer(help="Inspect the network.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
data_app = typer.Typer(help="Default and example data.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(config_app, name="config")
stack_app = typer.Typer(help="Local service stack: S3, MLflow, Prefect.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(stack_app, name="stack")

apply_offline_env()

console = Console()
err_console = Console(stderr=True)


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
    with user_errors(WeightsError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, info = build_model(cfg.model, load_weights=not random_init)
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


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="folder to write (canonical layout)")] = Path(
        "data-sources/synthetic"
    ),
    per_class: Annotated[int, typer.Option(help="pairs per class")] = 12,
    size: Annotated[int, typer.Option(help="image side in pixels")] = 128,
    seed: Annotated[int, typer.Option(help="generator seed")] = 0,
    classes: Annotated[
        list[str] | None, typer.Option("--class", help="only these classes (repeatable)")
    ] = None,
) -> None:
    """Generate synthetic textured surfaces with defects (classes named Synth_*).

    Deterministic: the same options give byte-identical files. Ingest the folder afterwards
    with `lerenet ingest --source OUT`.
    """
    from lerenet.data.synth import write_synthetic

    with user_errors(ValueError):
        written = write_synthetic(out, per_class=per_class, size=size, seed=seed, classes=classes)
    console.print(f"wrote {len(written)} synthetic pairs to {out}")


@app.command("ingest")
def ingest_cmd(
    source: Annotated[str, typer.Option(help="folder, .zip/.tar.gz archive or s3://bucket/prefix")],
    params: ParamsOpt = Path("params.yaml"),
    layout: Annotated[
        str | None,
        typer.Option(help="canonical | magnetic_tile | sd_saliency | suffix (default: detect)"),
    ] = None,
    class_map: Annotated[
        list[str] | None,
        typer.Option("--class-map", help="SOURCE=TARGET class rename, or @file.json (repeatable)"),
    ] = None,
    class_name: Annotated[
        str | None,
        typer.Option(help="class for a flat 'suffix' folder (letters, digits, _ and -)"),
    ] = None,
    mask_suffix: Annotated[str, typer.Option(help="mask file suffix for 'suffix'")] = "_mask",
    source_name: Annotated[str | None, typer.Option(help="provenance label")] = None,
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint (else env)")] = None,
) -> None:
    """Add a source's image/mask pairs to the dataset (data.root) and its manifest.

    Only adds: pairs already present are skipped (re-ingesting is a no-op); unusable items
    are copied to data/quarantine/ingest/ with reasons; the source is never modified.
    Layouts: canonical images/<Class>/<id>.* + masks/<Class>/<id>.png; magnetic_tile
    MT_<Class>/Imgs/*.jpg + .png; sd_saliency 'Source Images/' + 'Ground truth/';
    suffix <id>.jpg + <id>_mask.png (class = folder name).
    """
    from lerenet.data.ingest import ingest_with_params, parse_class_map
    from lerenet.data.sources import UnsafeArchiveError

    cfg = _params(params)
    with user_errors(FileNotFoundError, ValueError, UnsafeArchiveError):
        report = ingest_with_params(
            source,
            cfg,
            layout=layout,
            class_map=parse_class_map(class_map),
            class_name=class_name,
            mask_suffix=mask_suffix,
            source_name=source_name,
            endpoint_url=endpoint_url,
        )
    console.print(
        f"{source} ({report.layout}): {report.added} added, {report.skipped} already "
        f"present, {report.binarized} grey masks binarised (≥128 → defect), "
        f"{len(report.quarantined)} quarantined"
    )
    if report.new_classes:
        console.print(f"new classes: {', '.join(report.new_classes)}")
    for finding in report.quarantined[:20]:
        err_console.print(f"  [yellow]quarantined[/yellow] {finding.line()}")
    if len(report.quarantined) > 20:
        err_console.print(f"  … see {cfg.data.root}/quarantine/reasons.csv")


@app.command("validate")
def validate_cmd(
    params: ParamsOpt = Path("params.yaml"),
    out_dir: Annotated[Path, typer.Option(help="report folder")] = Path("outputs/validate"),
) -> None:
    """Check every pair and the manifest (Great Expectations); quarantine failures.

    Exit code 1 when a blocking expectation fails (the data cannot be used as a whole);
    failing pairs alone are moved to data/quarantine/validate/ and the run goes on.
    Writes OUT_DIR/report.html and report.json.
    """
    from lerenet.data.validate import validate_with_params

    cfg = _params(params)
    with user_errors(FileNotFoundError):
        report = validate_with_params(cfg, out_dir)
    for finding in report.findings[:20]:
        kind = "not in manifest" if finding.check == "listed_in_manifest" else "quarantined"
        err_console.print(f"  [yellow]{kind}[/yellow] {finding.line()}")
    console.print(
        f"{report.pairs} usable pairs in {len(report.classes)} classes, "
        f"{report.quarantined} quarantined, {report.grey_masks} grey masks; "
        f"report: {out_dir / 'report.html'} ({report.seconds:.1f} s)"
    )
    if not report.passed:
        for line in report.blocking:
            err_console.print(f"[red]blocking:[/red] {line}")
        raise typer.Exit(1)


@app.command("split")
def split_cmd(params: ParamsOpt = Path("params.yaml")) -> None:
    """Write class-disjoint folds and the seeded val/test episode files (split.out_dir)."""
    from lerenet.data.splits import split_dataset

    cfg = _params(params)
    with user_errors(FileNotFoundError, ValueError):
        lineage = split_dataset(Path(cfg.data.root), cfg.split)
    console.print(
        f"split sha256 {lineage['split_sha256']} ({len(lineage['files'])} files in "
        f"{cfg.split.out_dir}); novel classes: {lineage['novel_classes'] or 'none'}"
    )


def _override_opt():
    return typer.Option("--set", "-s", help="override a param: section.key=value (repeatable)")


def _params_with(path: Path, overrides: list[str] | None):
    import yaml

    pairs = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--set {item!r} is not section.key=value")
        pairs[key] = yaml.safe_load(value)
    with user_errors(ConfigError):
        return load_params(path, overrides=pairs)


@app.command("train")
def train_cmd(
    params: ParamsOpt = Path("params.yaml"),
    resume: Annotated[bool, typer.Option(help="continue from train.out_dir/last.pt")] = False,
    no_track: Annotated[bool, typer.Option("--no-track", help="do not log to MLflow")] = False,
    overrides: Annotated[list[str] | None, _override_opt()] = None,
) -> None:
    """Train on the fold's training classes; select the checkpoint on validation classes.

    Logs params, lineage tags, metrics, overlays and the model (pyfunc) to MLflow, and writes
    train.out_dir/{best.pt,last.pt,history.json,train.json}. Ctrl-C saves a resumable
    checkpoint; `--resume` continues with identical results.
    """
    from lerenet.model.weights import WeightsError
    from lerenet.stages import train_stage

    cfg = _params_with(params, overrides)
    try:
        with user_errors(FileNotFoundError, ValueError, WeightsError, RuntimeError):
            summary = train_stage(cfg, params_file=params, resume=resume, track=not no_track)
    except KeyboardInterrupt:
        err_console.print(
            "interrupted: last.pt holds the last finished step; "
            "resume with `lerenet train --resume`"
        )
        raise typer.Exit(130) from None
    val = summary["best_val_miou"]
    console.print(
        f"trained {summary['steps']} steps; best validation mIoU "
        f"{'n/a' if val is None else f'{val:.3f}'} at step {summary['best_step']}; "
        f"model {summary['model_uri'] or summary['best_path']}"
    )


@app.command("evaluate")
def evaluate_cmd(
    params: ParamsOpt = Path("params.yaml"),
    model: Annotated[
        str | None,
        typer.Option(
            help="model file, runs:/ID/model or models:/NAME@ALIAS (default: last trained)"
        ),
    ] = None,
    no_track: Annotated[bool, typer.Option("--no-track", help="do not log to MLflow")] = False,
    overrides: Annotated[list[str] | None, _override_opt()] = None,
) -> None:
    """Evaluate on the fixed test (novel-class) episodes: per-class IoU, mIoU, FB-IoU + CIs."""
    from lerenet.stages import evaluate_stage

    cfg = _params_with(params, overrides)
    with user_errors(FileNotFoundError, ValueError):
        results = evaluate_stage(cfg, model_uri=model, track=not no_track)
    table = Table(title=f"test classes, fold {cfg.train.fold}")
    for col in ("model", "shots", "mIoU [95% CI]", "FB-IoU [95% CI]", "episodes"):
        table.add_column(col)
    for name in ("lerenet", "baseline"):
        for key, m in sorted((results.get(name) or {}).items()):
            if key.endswith("shot"):
                table.add_row(
                    name,
                    key,
                    f"{m['miou']:.3f} [{m['miou_low']:.3f}, {m['miou_high']:.3f}]",
                    f"{m['fbiou']:.3f} [{m['fbiou_low']:.3f}, {m['fbiou_high']:.3f}]",
                    str(m["episodes"]),
                )
    console.print(table)


@app.command("gate")
def gate_cmd(
    params: ParamsOpt = Path("params.yaml"),
    challenger: Annotated[
        str | None, typer.Option(help="model to judge (default: the last trained)")
    ] = None,
    champion: Annotated[
        str | None, typer.Option(help="model to beat (default: models:/NAME@production)")
    ] = None,
    out_dir: Annotated[Path, typer.Option(help="where decision.json goes")] = Path("outputs/gate"),
    no_track: Annotated[bool, typer.Option("--no-track", help="do not use MLflow")] = False,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="exit 0 whatever the decision (dvc stage)")
    ] = False,
) -> None:
    """Decide whether the challenger may be promoted; exit 0 = passed, 1 = failed.

    Floors from params.gate (mIoU, FB-IoU, worst class IoU) and, with a champion, a paired
    bootstrap over the same test episodes (non-inferiority within gate.margin, or
    superiority with gate.require_superiority).
    """
    from lerenet.gate_stage import gate_stage

    cfg = _params(params)
    with user_errors(FileNotFoundError, ValueError, ServiceUnavailable):
        result = gate_stage(
            cfg, challenger=challenger, champion=champion, out_dir=out_dir, track=not no_track
        )
    verdict = "[green]PASSED[/green]" if result["passed"] else "[red]FAILED[/red]"
    console.print(f"gate {verdict} (champion: {result['champion'] or 'none'})")
    for reason in result["reasons"]:
        console.print(f"  - {reason}")
    console.print(f"decision: {result['decision_path']}")
    raise typer.Exit(0 if result["passed"] or report_only else 1)


@app.command("promote")
def promote_cmd(
    params: ParamsOpt = Path("params.yaml"),
    run_id: Annotated[
        str | None, typer.Option(help="training run to register (default: the last trained)")
    ] = None,
    to: Annotated[str, typer.Option(help="staging | production")] = "staging",
) -> None:
    """Register the model as a new version and move an alias to it.

    --to staging (default) registers the last trained run and points 'staging' at it;
    --to production moves 'production' to the staging version (or to a newly registered
    --run-id), only if its gate passed. Aliases move only after the version loads.
    """
    from lerenet.registry import PromotionError
    from lerenet.stages import promote_stage

    if to not in ("staging", "production"):
        fail("--to must be staging or production")
    cfg = _params(params)
    with user_errors(PromotionError, FileNotFoundError, ServiceUnavailable, code=1):
        result = promote_stage(cfg, run_id=run_id, to=to)
    console.print(
        f"{result['name']} v{result['version']} is now @{result['alias']} "
        f"(was: {result.get('previous') or 'none'})"
    )


@app.command("rollback")
def rollback_cmd(
    reason: Annotated[str, typer.Option(help="why (kept in the version's tags)")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Point 'production' back at the previous production version."""
    from lerenet.registry import PromotionError, rollback
    from lerenet.tracking import configure, tracking_uri

    cfg = _params(params)
    with user_errors(PromotionError, ServiceUnavailable, code=1):
        require_mlflow(tracking_uri(cfg.tracking))  # one sentence, not minutes of retries
        configure(cfg.tracking)
        promo = rollback(cfg.tracking.registered_model, reason)
    console.print(f"{promo.name}: production v{promo.previous} → v{promo.version} ({reason})")


@app.command("predict")
def predict_cmd(
    queries: Annotated[list[Path], typer.Argument(help="query images or folders")],
    model: Annotated[str, typer.Option(help="models:/NAME@ALIAS, runs:/… or a model file")] = (
        "models:/lerenet@production"
    ),
    support: Annotated[
        list[str] | None, typer.Option(help="IMAGE:MASK support pair (repeat for K shots)")
    ] = None,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("predictions"),
    threshold: Annotated[float, typer.Option(help="defect probability threshold")] = 0.5,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Segment the support's defect class in query images: <stem>_mask.png + _overlay.png."""
    from lerenet.predict import predict_files
    from lerenet.tracking import configure

    pairs = []
    for item in support or []:
        img, sep, mask = item.partition(":")
        if not sep:
            fail(f"--support {item!r} is not IMAGE:MASK")
        pairs.append((Path(img), Path(mask)))
    if not pairs:
        fail("give at least one --support IMAGE:MASK")
    max_pixels = DataConfig().max_pixels
    if params.exists():
        cfg = _params(params)
        configure(cfg.tracking)
        max_pixels = cfg.data.max_pixels
    with user_errors(FileNotFoundError, ValueError):
        result = predict_files(model, pairs, queries, out, threshold, max_pixels)
    console.print(f"wrote {len(result.written)} masks (+ overlays) to {out}")
    for query, reason in result.skipped:
        err_console.print(f"[yellow]skipped[/yellow] {escape(str(query))}: {escape(reason)}")
    if result.skipped:
        console.print(f"{len(result.skipped)} queries skipped; reasons in {out / 'skipped.csv'}")


@app.command("export")
def export_cmd(
    onnx: Annotated[Path, typer.Option("--onnx", help="output .onnx file")],
    model: Annotated[str, typer.Option(help="model to export")] = "models:/lerenet@production",
    shots: Annotated[int, typer.Option(help="K of the exported graph (fixed shapes)")] = 1,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """ONNX export, checked against onnxruntime; logged to the version's run."""
    from lerenet.stages import export_stage

    result = export_stage(_params(params), model_uri=model, out=onnx, shots=shots)
    console.print(
        f"{onnx}: max |torch − onnxruntime| = {result['max_abs_diff']:.2e} over "
        f"{result['episodes']} episodes ({result['real_episodes']} real)"
    )


@app.command("reproduce")
def reproduce_cmd(
    model: Annotated[str, typer.Argument(help="models:/NAME@ALIAS or models:/NAME/VERSION")],
    params: ParamsOpt = Path("params.yaml"),
    tolerance: Annotated[
        float, typer.Option(help="allowed |recorded − reproduced| (0 = bit-identical)")
    ] = 1e-4,
    force: Annotated[bool, typer.Option(help="retrain even if the data changed")] = False,
) -> None:
    """Retrain a registered model from its lineage; compare metrics; exit 1 if they differ."""
    from lerenet.reproduce import reproduce

    result = reproduce(model, params, tolerance=tolerance, force=force)
    for line in result.param_changes:
        console.print(f"[yellow]params differ[/yellow] (the recorded ones are used): {line}")
    if result.data_changes:
        for line in result.data_changes[:30]:
            err_console.print(f"[red]data differs[/red] {line}")
        if result.restored_data:
            console.print(
                f"retrained on the recorded data version {result.restored_data}, "
                "fetched from the DVC remote (workspace data untouched)"
            )
        elif not force:
            err_console.print(
                "restore the recorded data version first: git checkout <commit> "
                "-- data.dvc && dvc checkout (see the version's lerenet.* tags)"
            )
            raise typer.Exit(1)
    table = Table(title=f"run {result.run_id}: recorded vs reproduced")
    for col in ("metric", "recorded", "reproduced", "|Δ|"):
        table.add_column(col)
    for name, rec, rep in result.rows:
        table.add_row(name, f"{rec:.6f}", f"{rep:.6f}", f"{abs(rec - rep):.2e}")
    console.print(table)
    console.print(f"split sha256 {'matches' if result.split_matches else 'DIFFERS'}")
    identical = all(rec == rep for _, rec, rep in result.rows)
    console.print(
        "metrics bit-identical"
        if identical
        else f"metrics differ by at most {max(abs(a - b) for _, a, b in result.rows):.1e} "
        f"(tolerance {tolerance:g}): near-tie pixels can flip between CPU runs"
    )
    raise typer.Exit(0 if result.matches else 1)


StackDir = Annotated[Path, typer.Option("--dir", help="state, logs and secrets")]


@stack_app.command("up")
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
    no_prefect: Annotated[bool, typer.Option("--no-prefect")] = False,
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

    console.print(
        f"stack up ({', '.join(state.pids)}); MLflow backend store: "
        f"{redact(backend_uri) if backend_uri else 'SQLite under ' + str(state_dir)}.\n"
        f"Use it with:\n  source {state.dir / 'env.sh'}"
    )
    for key in sorted(state.env):
        if "SECRET" not in key:
            console.print(f"  {key}={state.env[key]}")


@stack_app.command("down")
def stack_down(state_dir: StackDir = Path(".stack")) -> None:
    """Stop every service the stack started (data stays under --dir)."""
    from lerenet.stack.local import down

    stopped = down(state_dir)
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@stack_app.command("status")
def stack_status(state_dir: StackDir = Path(".stack")) -> None:
    """Which services of the stack are running; exit 1 if any is down."""
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
        state = f"[green]{'running':8s}[/green]" if alive else f"[red]{'down':8s}[/red]"
        console.print(f"{name:15s} {state} {where.get(name, '')}")
    if not all(states.values()):
        err_console.print(f"restart with: lerenet stack down --dir {state_dir} && lerenet stack up")
    raise typer.Exit(0 if all(states.values()) else 1)


def main() -> None:  # pragma: no cover - console-script shim
    app()
