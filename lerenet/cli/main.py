"""The ``lerenet`` command: one Typer app, the only entry point for DVC stages and people.

Each command parses options, calls one library function and prints the result; no stage logic
lives here. Heavy imports (torch, mlflow, great_expectations) happen inside the commands so that
``lerenet --help`` answers in well under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lerenet.cli import models as cli_models
from lerenet.cli import stack as cli_stack
from lerenet.cli.common import (
    ParamsOpt,
    SetOpt,
    _params,
    _params_with,
    console,
    err_console,
    new_app,
    print_rows,
    user_errors,
)
from lerenet.services.offline import apply_offline_env

app = new_app(
    "Few-shot surface-defect segmentation with LERENet: data, training, evaluation, "
    "registry. Every command reads params.yaml (override with --params)."
)
model_app = new_app("Inspect the network.")
config_app = new_app("Inspect the configuration.")
data_app = new_app("Default and example data.")
app.add_typer(model_app, name="model")
app.add_typer(config_app, name="config")
stack_app = new_app("Local service stack: S3, MLflow, Prefect.")
app.add_typer(data_app, name="data")
app.add_typer(stack_app, name="stack")

apply_offline_env()


@app.callback()
def _progress_logs(
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="no progress lines (validation, evaluation)")
    ] = False,
) -> None:
    """Progress lines of long steps (validation rounds with ETA, evaluation per shot) go to
    stderr, next to the progress bars; the library only logs them."""
    if quiet:
        return
    import logging

    from rich.logging import RichHandler

    library = logging.getLogger("lerenet")
    if not any(isinstance(h, RichHandler) for h in library.handlers):
        handler = RichHandler(console=err_console, show_path=False, show_level=False)
        library.addHandler(handler)
    library.setLevel(logging.INFO)


@config_app.command("show")
def config_show(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Print the resolved configuration (all defaults filled in) and its sha256."""
    import yaml

    from lerenet.config.schema import params_sha256

    cfg = _params_with(params, overrides)
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

    from lerenet.model.build import build_model
    from lerenet.model.complexity import model_summary
    from lerenet.model.weights import WeightsError

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
        list[str] | None,
        typer.Option("--class", metavar="NAME", help="only these classes (repeatable)"),
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
        typer.Option(
            "--class-map",
            metavar="SOURCE=TARGET",
            help="class rename, or @file.json of them (repeatable)",
        ),
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
    from lerenet.data.ingest import parse_class_map
    from lerenet.data.sources import UnsafeArchiveError
    from lerenet.services.reach import ServiceUnavailable
    from lerenet.stages import ingest

    cfg = _params(params)
    with user_errors(FileNotFoundError, ValueError, UnsafeArchiveError, ServiceUnavailable):
        report = ingest.run(
            cfg,
            source,
            layout=layout,
            class_map=parse_class_map(class_map),
            class_name=class_name,
            mask_suffix=mask_suffix,
            source_name=source_name,
            endpoint_url=endpoint_url,
        )
    console.print(
        f"{source} ({report.layout}): {report.added} added, {report.skipped} already "
        f"present, {report.binarized} non-0/255 masks binarised (imageio's mask rule), "
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
    overrides: SetOpt = None,
) -> None:
    """Check every pair and the manifest (Great Expectations); quarantine failures.

    Exit code 1 when a blocking expectation fails (the data cannot be used as a whole);
    failing pairs alone are moved to data/quarantine/validate/ and the run goes on.
    Writes OUT_DIR/report.html and report.json.
    """
    from lerenet.stages import validate

    cfg = _params_with(params, overrides)
    with user_errors(FileNotFoundError, ValueError):
        report = validate.run(cfg, out_dir)
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


@app.command("stage")
def stage_cmd(
    name: Annotated[str, typer.Argument(help="a declared stage (lerenet/stages/*.py with a SPEC)")],
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Run one declared stage by name: its module's ``run(params)``, as dvc.yaml's ``cmd`` for
    a stage that declares no command of its own (a stage added by one module)."""
    from lerenet.stages.specs import stage_module

    cfg = _params_with(params, overrides)
    with user_errors(KeyError):
        module = stage_module(name)
    with user_errors(FileNotFoundError, ValueError):
        result = module.run(cfg)
    console.print(f"{name}: {result}")


@app.command("split")
def split_cmd(params: ParamsOpt = Path("params.yaml"), overrides: SetOpt = None) -> None:
    """Write class-disjoint folds and the seeded val/test episode files (split.out_dir)."""
    from lerenet.stages import split

    cfg = _params_with(params, overrides)
    with user_errors(FileNotFoundError, ValueError):
        result = split.run(cfg)
    console.print(
        f"split sha256 {result.sha256} ({len(result.folds)} folds, {len(result.episodes)} "
        f"episode lists in {cfg.split.out_dir}); novel classes: "
        f"{', '.join(result.novel_classes) or 'none'}"
    )


@app.command("train")
def train_cmd(
    params: ParamsOpt = Path("params.yaml"),
    resume: Annotated[
        bool,
        typer.Option(
            help="continue from train.out_dir/last.pt, or, when there is none, from the "
            "checkpoints stored with an unfinished MLflow run of this same training"
        ),
    ] = False,
    no_track: Annotated[bool, typer.Option("--no-track", help="do not log to MLflow")] = False,
    overrides: SetOpt = None,
) -> None:
    """Train on the fold's training classes; select the checkpoint on validation classes.

    Logs params, lineage tags, metrics, overlays and the model (pyfunc) to MLflow, and writes
    train.out_dir/{best.pt,last.pt,history.json,train.json}. Ctrl-C saves a resumable
    checkpoint; `--resume` continues with identical results.
    """
    from lerenet.model.weights import WeightsError
    from lerenet.stages import train as train_stage
    from lerenet.training.session import LAST

    cfg = _params_with(params, overrides)
    try:
        with user_errors(FileNotFoundError, ValueError, WeightsError, RuntimeError):
            summary = train_stage.run(
                cfg,
                params_file=params,
                resume=resume,
                track=not no_track,
                resume_tracked=resume and not (Path(cfg.train.out_dir) / LAST).exists(),
            )
    except KeyboardInterrupt:
        err_console.print(
            "interrupted: last.pt holds the last finished step; "
            "resume with `lerenet train --resume`"
        )
        raise typer.Exit(130) from None
    val = summary.best_val_miou
    console.print(
        f"trained {summary.steps} steps; best validation mIoU "
        f"{'n/a' if val is None else f'{val:.3f}'} at step {summary.best_step}; "
        f"model {summary.challenger}"
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
    overrides: SetOpt = None,
) -> None:
    """Evaluate on the fixed test (novel-class) episodes: per-class IoU, mIoU, FB-IoU + CIs."""
    from lerenet.services.reach import ServiceUnavailable
    from lerenet.stages import evaluate as evaluate_stage
    from lerenet.stages.train import last_training

    cfg = _params_with(params, overrides)
    with user_errors(FileNotFoundError, ValueError, ServiceUnavailable):
        # the last training (train.json), whose run and saved baseline go with its model
        report = evaluate_stage.run(
            cfg, train=last_training(cfg), model_uri=model, track=not no_track
        )
    table = Table(title=f"test classes, fold {cfg.train.fold}")
    for col in ("model", "shots", "mIoU [95% CI]", "FB-IoU [95% CI]", "episodes"):
        table.add_column(col)
    for name, scores in report.models().items():
        for key, m in scores.shots.items():
            table.add_row(
                name,
                key,
                f"{m.miou:.3f} [{m.miou_low:.3f}, {m.miou_high:.3f}]",
                f"{m.fbiou:.3f} [{m.fbiou_low:.3f}, {m.fbiou_high:.3f}]",
                str(m.episodes),
            )
    if report.start is not None:
        for key, m in report.start.shots.items():
            table.add_row(
                "start (step 0)",
                key,
                f"{m.miou:.3f} [{m.miou_low:.3f}, {m.miou_high:.3f}]",
                f"{m.fbiou:.3f}",
                str(m.episodes),
            )
    console.print(table)
    from lerenet.evaluation.outcome import seen_table

    print_rows(
        seen_table(report), "training classes, held-out images (IoU before → after training)"
    )


# commands defined in their own modules (small modules, one job each)
app.command("gate")(cli_models.gate_cmd)
app.command("promote")(cli_models.promote_cmd)
app.command("rollback")(cli_models.rollback_cmd)
models_app = new_app(
    "The registered versions: list them (aliases, gate, data, weights, scores) and compare two.",
    no_args_is_help=False,
    invoke_without_command=True,
)
models_app.callback()(cli_models.models_group)
models_app.command("list")(cli_models.versions_cmd)
models_app.command("diff")(cli_models.models_diff_cmd)
app.add_typer(models_app, name="models")
app.command("versions", hidden=True)(cli_models.versions_cmd)  # the earlier name
app.command("predict")(cli_models.predict_cmd)
app.command("export")(cli_models.export_cmd)
app.command("reproduce")(cli_models.reproduce_cmd)
stack_app.command("up")(cli_stack.stack_up)
stack_app.command("down")(cli_stack.stack_down)
stack_app.command("status")(cli_stack.stack_status)
stack_app.command("deploy")(cli_stack.stack_deploy)


def main() -> None:  # pragma: no cover - console-script shim
    app()
