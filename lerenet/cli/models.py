"""CLI commands on models: gate, promote, rollback, predict, export, reproduce (registered
on the app in ``lerenet.cli.main``). Each parses options, calls one library function, prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lerenet.cli.common import (
    ParamsOpt,
    SetOpt,
    _params,
    _params_with,
    console,
    err_console,
    fail,
    user_errors,
)
from lerenet.config.schema import DataConfig
from lerenet.services.reach import ServiceUnavailable


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
    overrides: SetOpt = None,
) -> None:
    """Decide whether the challenger may be promoted; exit 0 = passed, 1 = failed.

    Floors from params.gate (mIoU, FB-IoU, worst class IoU) and, with a champion, a paired
    bootstrap over the same test episodes (non-inferiority within gate.margin, or
    superiority with gate.require_superiority).
    """
    from lerenet.stages import gate as gate_stage

    cfg = _params_with(params, overrides)
    with user_errors(FileNotFoundError, ValueError, ServiceUnavailable):
        result = gate_stage.run(
            cfg, challenger=challenger, champion=champion, out_dir=out_dir, track=not no_track
        )
    verdict = "[green]PASSED[/green]" if result.passed else "[red]FAILED[/red]"
    console.print(f"gate {verdict} (champion: {result.champion or 'none'})")
    for reason in result.reasons:
        console.print(f"  - {reason}")
    console.print(f"decision: {result.path}")
    raise typer.Exit(0 if result.passed or report_only else 1)


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
    from lerenet.stages import promote as promote_stage
    from lerenet.tracking.registry import PromotionError

    if to not in ("staging", "production"):
        fail("--to must be staging or production")
    cfg = _params(params)
    with user_errors(PromotionError, FileNotFoundError, ServiceUnavailable, code=1):
        result = promote_stage.run(cfg, run_id=run_id, to=to)
    same = "" if result.registered else "; same weights, not registered again"
    was = result.previous_production if result.previous_production else result.previous
    if was == result.version:
        console.print(f"{result.name} v{result.version} was already @{result.alias}{same}")
    else:
        console.print(
            f"{result.name} v{result.version} is now @{result.alias} (was: {was or 'none'}){same}"
        )


def rollback_cmd(
    reason: Annotated[str, typer.Option(help="why (kept in the version's tags)")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Point 'production' back at the previous production version."""
    from lerenet.tracking.registry import PromotionError, rollback
    from lerenet.tracking.runs import connect

    cfg = _params(params)
    with user_errors(PromotionError, ServiceUnavailable, code=1):
        connect(cfg.tracking)  # a server that is down: one sentence, not minutes of retries
        promo = rollback(cfg.tracking.registered_model, reason)
    console.print(f"{promo.name}: production v{promo.previous} → v{promo.version} ({reason})")


def versions_cmd(params: ParamsOpt = Path("params.yaml")) -> None:
    """List the registered versions side by side: aliases, gate, data version, test mIoU."""
    from rich.table import Table

    from lerenet.tracking.runs import connect
    from lerenet.tracking.versions import list_versions

    cfg = _params(params)
    name = cfg.tracking.registered_model
    with user_errors(ServiceUnavailable, code=1):
        connect(cfg.tracking)
        rows = list_versions(name)
    if not rows:
        console.print(f"{name}: no registered version yet (`lerenet promote` registers one)")
        return
    shots = sorted({k for r in rows for k in r.test})
    table = Table(title=f"registered model {name}")
    for column in ("version", "aliases", "gate", "data version", "weights", "created (UTC)"):
        table.add_column(column)
    for key in shots:
        table.add_column(f"test {key} mIoU", justify="right")
    for r in rows:
        scores = [f"{r.test[k]:.3f}" if k in r.test else "-" for k in shots]
        aliases = ", ".join(f"@{a}" for a in r.aliases)
        row = (r.version, aliases, r.gate, r.data_version[:20], r.weights[:12] or "-", r.created)
        table.add_row(*row, *scores)
    console.print(table)
    console.print("`lerenet models diff A B` compares two versions")


def models_group(ctx: typer.Context) -> None:
    """The registered versions: `lerenet models` lists them, `lerenet models diff A B` puts
    two side by side (what they were made from, where it differs, and every score)."""
    if ctx.invoked_subcommand is None:
        versions_cmd(Path("params.yaml"))


def models_diff_cmd(
    a: Annotated[str, typer.Argument(metavar="A", help="a version number (the older)")],
    b: Annotated[str, typer.Argument(metavar="B", help="another version number")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Two registered versions side by side: lineage and params where they differ, then every
    test and seen-class score of either with B − A."""
    from rich.table import Table

    from lerenet.tracking.runs import connect
    from lerenet.tracking.versions import diff_versions

    cfg = _params(params)
    name = cfg.tracking.registered_model
    with user_errors(ServiceUnavailable, LookupError, code=1):
        connect(cfg.tracking)
        diff = diff_versions(name, a, b)
    made = Table(title=f"{name} v{a} vs v{b}: what they were made from (only what differs)")
    for column in ("", f"v{a}", f"v{b}"):
        made.add_column(column)
    for key, va, vb in diff.lineage + [(f"param {k}", x, y) for k, x, y in diff.params]:
        made.add_row(key.removeprefix("lerenet."), va or "-", vb or "-")
    if made.row_count:
        console.print(made)
    else:
        console.print(f"v{a} and v{b} were made from the same lineage and params")
    if diff.same_weights:
        console.print(f"v{a} and v{b} hold identical weights (same lerenet.state_sha256)")
    scores = Table(title="scores (test: novel classes; seen_test: held-out images)")
    for column in ("metric", f"v{a}", f"v{b}", "B − A"):
        scores.add_column(column, justify="left" if column == "metric" else "right")
    for key, va, vb in diff.metrics:
        delta = f"{vb - va:+.3f}" if va is not None and vb is not None else ""
        shown = [f"{v:.3f}" if v is not None else "-" for v in (va, vb)]
        scores.add_row(key, *shown, delta)
    console.print(scores)


def predict_cmd(
    queries: Annotated[list[Path], typer.Argument(metavar="QUERY", help="query images or folders")],
    model: Annotated[str, typer.Option(help="models:/NAME@ALIAS, runs:/… or a model file")] = (
        "models:/lerenet@production"
    ),
    support: Annotated[
        list[str] | None,
        typer.Option(metavar="IMAGE:MASK", help="support pair (repeat for K shots)"),
    ] = None,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("predictions"),
    threshold: Annotated[float, typer.Option(help="defect probability threshold")] = 0.5,
    params: ParamsOpt = Path("params.yaml"),
    class_name: Annotated[
        str | None,
        typer.Option(
            "--class",
            help="the supports' defect class, if the model was trained on it: what it learned "
            "for that class is applied (without: the training-free start)",
        ),
    ] = None,
) -> None:
    """Segment the support's defect class in query images: <stem>_mask.png + _overlay.png."""
    from lerenet.stages.predict import MAX_SUPPORTS, predict_files
    from lerenet.tracking.runs import connect, is_tracked

    pairs = []
    for item in support or []:
        img, sep, mask = item.partition(":")
        if not sep:
            fail(f"--support {item!r} is not IMAGE:MASK")
        pairs.append((Path(img), Path(mask)))
    if not pairs:
        fail("give at least one --support IMAGE:MASK")
    if len(pairs) > MAX_SUPPORTS:  # before the model is fetched
        fail(f"{len(pairs)} --support pairs given: give 1 to {MAX_SUPPORTS}")
    max_pixels = DataConfig().max_pixels
    if params.exists():
        cfg = _params(params)
        max_pixels = cfg.data.max_pixels
        if is_tracked(model):
            with user_errors(ServiceUnavailable, code=1):
                connect(cfg.tracking)
    with user_errors(FileNotFoundError, ValueError):
        result = predict_files(model, pairs, queries, out, threshold, max_pixels, class_name)
    for item in result.found:
        if item.empty:
            err_console.print(
                f"[yellow]no defect found[/yellow] in {escape(str(item.query))} (highest defect "
                f"probability {_below(item.max_probability, threshold)}, threshold {threshold:g})"
            )
        else:
            console.print(f"{escape(str(item.query))}: defect on {item.defect_share:.1%}")
    empty = sum(f.empty for f in result.found)
    console.print(
        f"wrote {len(result.found)} masks (+ overlays, found.csv) to {out}; "
        f"{len(result.found) - empty} with a defect, {empty} empty"
    )
    if empty:
        more = (
            f", more of them (up to {MAX_SUPPORTS}; {len(pairs)} given)"
            if len(pairs) < MAX_SUPPORTS
            else ""
        )
        console.print(
            "an empty mask means no pixel reached the threshold: if the defect is there, use "
            f"supports that look like the query{more}, or a lower --threshold"
        )
    for query, reason in result.skipped:
        err_console.print(f"[yellow]skipped[/yellow] {escape(str(query))}: {escape(reason)}")
    if result.skipped:
        console.print(f"{len(result.skipped)} queries skipped; reasons in {out / 'skipped.csv'}")


def _below(probability: float, threshold: float) -> str:
    """``probability`` with enough digits to show it is under ``threshold`` (0.495 is not
    "0.50, threshold 0.50")."""
    for digits in range(2, 7):
        text = f"{probability:.{digits}f}"
        if float(text) < threshold:
            return text
    return f"{probability:.6g}"


def export_cmd(
    onnx: Annotated[Path, typer.Option("--onnx", help="output .onnx file")],
    model: Annotated[str, typer.Option(help="model to export")] = "models:/lerenet@production",
    shots: Annotated[int, typer.Option(help="K of the exported graph (fixed shapes)")] = 1,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """ONNX export, checked against onnxruntime; logged to the version's run."""
    from lerenet.stages import export as export_stage

    with user_errors(FileNotFoundError, ValueError, ServiceUnavailable):
        result = export_stage.run(_params(params), model_uri=model, out=onnx, shots=shots)
    console.print(
        f"{onnx}: max |torch − onnxruntime| = {result.max_abs_diff:.2e} over "
        f"{result.episodes} episodes ({result.real_episodes} real)"
    )


def reproduce_cmd(
    model: Annotated[str, typer.Argument(help="models:/NAME@ALIAS or models:/NAME/VERSION")],
    params: ParamsOpt = Path("params.yaml"),
    tolerance: Annotated[
        float, typer.Option(help="allowed |recorded − reproduced| (0 = bit-identical)")
    ] = 1e-4,
    force: Annotated[bool, typer.Option(help="retrain even if the data changed")] = False,
) -> None:
    """Retrain a registered model from its lineage; compare metrics; exit 1 if they differ."""
    from lerenet.stages.reproduce import reproduce

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
