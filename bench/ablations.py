"""The diagnosis table: one quick-protocol run of ``bench/quality.py`` per variant, all folds.

    python bench/ablations.py --commands     # print the quality.py command of every variant
    python bench/ablations.py [--only TAG…] --run [quality.py args, e.g. --device cuda]
    python bench/ablations.py                # table from bench/results/q_*.json → docs

Each variant is the project's default configuration (params.yaml) or the authors' faithful one,
changed in one respect; the table puts every fold's mIoU next to the parameter-free baseline's
on the same episodes, with the share of test episodes predicted empty and the model's mIoU on
its own training classes (fit). Variants not run yet are listed as such, never guessed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# the authors' configuration (every key the file leaves out at its paper default; golden-tested)
FAITHFUL = "recipe=paper"
FROZEN = "model.backbone_bn=frozen train.backbone_lr_mult=0"
VARIANTS: list[tuple[str, str, str]] = [
    # (tag, what it tests, quality.py arguments after --protocol quick)
    ("q_faithful", "authors' configuration (BN per group, backbone ×0.1)", f"--set {FAITHFUL}"),
    (
        "q_bn_joint",
        "… BatchNorm over query and supports in one batch",
        f"--set {FAITHFUL} model.backbone_bn=joint",
    ),
    (
        "q_bn_frozen",
        "… BatchNorm frozen (running statistics)",
        f"--set {FAITHFUL} model.backbone_bn=frozen",
    ),
    ("q_backbone_frozen", "… backbone frozen (weights and BN)", f"--set {FAITHFUL} {FROZEN}"),
    ("q_masked_mean", "… masked-mean prototype", f"--set {FAITHFUL} model.prototype=masked_mean"),
    (
        "q_prior_prototype",
        "… prior: cosine to the prototype",
        f"--set {FAITHFUL} model.prior=prototype",
    ),
    (
        "q_prior_matching",
        "… prior: training-free matching, s4+s8+s16",
        f"--set {FAITHFUL} model.prior=matching",
    ),
    (
        "q_fg_weight",
        "… loss: defect pixels weighted ×5",
        f"--set {FAITHFUL} train.foreground_weight=5",
    ),
    ("q_size160", "… image size 160 (paper: 200)", f"--size 160 --set {FAITHFUL}"),
    # rows below up to q_dice_ema ran when checkpoints were chosen on one validation class
    (
        "q_default",
        "default, checkpoints chosen on 1 validation class",
        "--set split.val_classes=1",
    ),
    (
        "q_val2",
        "project default (params.yaml): checkpoints chosen on 2 validation classes",
        "",
    ),
    (
        "q_val3",
        "default, checkpoints chosen on 3 validation classes",
        "--set split.val_classes=3",
    ),
    (
        "q_start",
        "default, head not trained (its training-free residual start)",
        "--steps 1 --set train.head_lr_mult=0",
    ),
    ("q_fg3", "default, defect weight 3", "--set train.foreground_weight=3 split.val_classes=1"),
    (
        "q_lowlr_fg3",
        "default, lr 0.0005 and defect weight 3",
        "--set train.lr=0.0005 train.foreground_weight=3 split.val_classes=1",
    ),
    (
        "q_ema",
        "default, EMA of the weights (decay 0.99) validated and kept",
        "--set train.ema_decay=0.99 split.val_classes=1",
    ),
    (
        "q_dice",
        "default, loss + soft Dice (weight 1)",
        "--set train.dice_weight=1 split.val_classes=1",
    ),
    (
        "q_dice_ema",
        "default, loss + soft Dice, EMA of the weights",
        "--set train.dice_weight=1 train.ema_decay=0.99 split.val_classes=1",
    ),
    ("q_no_synthetic", "default without synthetic classes", "--set train.synthetic_classes=0"),
    ("q_no_residual", "default without the residual start", "--set model.residual=false"),
    ("q_s4_only", "default, matching on stride 4 only", "--set model.prior_levels=[s4]"),
    ("q_default_160", "default at 160×160", "--size 160"),
]


def command(tag: str, args: str) -> str:
    """The row's run: at 200×200 unless the row sets a size (the benchmark's default is 320
    since the multi-scale start, docs/benchmarks.md "Quality" item 14)."""
    size = "" if "--size" in args else "--size 200 "
    return f"python bench/quality.py --protocol quick --tag {tag} {size}{args}".strip()


def row(tag: str, label: str) -> list[str] | None:
    path = RESULTS / f"{tag}.json"
    if not path.exists():
        return None
    res = json.loads(path.read_text())
    folds = [res["folds"][f] for f in sorted(res["folds"])]
    partial = len(folds) < 3  # a run cut short: say which folds the numbers are
    cells = [label + (f" (fold {', '.join(sorted(res['folds']))} only)" if partial else "")]
    for shots in ("1shot", "5shot"):
        model = [f["lerenet"][shots]["mean"] for f in folds]
        base = [f["prototype"][shots]["mean"] for f in folds]
        cells.append(" / ".join(f"{m:.3f}" for m in model) + f" → **{statistics.mean(model):.3f}**")
        cells.append(f"{statistics.mean(model) - statistics.mean(base):+.3f}")
    empty = [f["lerenet"]["1shot"]["seeds"][0]["empty_share"] for f in folds]
    cells.append(" / ".join(f"{e:.0%}" for e in empty))
    cells.append(" / ".join(f"{f['lerenet']['train_fit_miou']:.2f}" for f in folds))
    cells.append(res.get("device_name", res["config"]["device"]))
    return cells


def baseline_row() -> list[str] | None:
    """The baseline on the variant run with the most folds (all runs share the episodes)."""
    paths = [RESULTS / f"{tag}.json" for tag, _, _ in VARIANTS]
    runs = [json.loads(p.read_text()) for p in paths if p.exists()]
    if not runs:
        return None
    res = max(runs, key=lambda r: len(r["folds"]))
    folds = [res["folds"][f]["prototype"] for f in sorted(res["folds"])]
    cells = ["parameter-free prototype baseline (same episodes)"]
    for shots in ("1shot", "5shot"):
        vals = [f[shots]["mean"] for f in folds]
        cells += [" / ".join(f"{v:.3f}" for v in vals) + f" → **{statistics.mean(vals):.3f}**", ""]
    empty = [f["1shot"]["seeds"][0]["empty_share"] for f in folds]
    return cells + [" / ".join(f"{e:.0%}" for e in empty), "", ""]


def table() -> str:
    lines = [
        "Quick protocol (`bench/quality.py --protocol quick`: 600 steps × 2 one-shot episodes, "
        "200×200 unless noted, 30 test episodes per class, episode seed 0), folds 0 / 1 / 2 → "
        "mean. Δ base: mean minus the parameter-free baseline's mean on the same episodes. "
        "empty: 1-shot test episodes with nothing predicted. fit: 1-shot mIoU on the model's "
        "own training classes. Commands: `python bench/ablations.py --commands`. These rows "
        "predate `model.lda_scales` (Quality item 14): add `model.lda_scales=[1.0]` to a "
        "row's `--set` to rerun it as it ran.",
        "",
        "| variant | 1-shot mIoU | Δ base | 5-shot mIoU | Δ base | empty (1-shot) | fit | device |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = baseline_row()
    if base:
        lines.append("| " + " | ".join(base) + " |")
    for tag, label, _ in VARIANTS:
        cells = row(tag, label)
        lines.append("| " + " | ".join(cells or [label, "not run", "", "", "", "", "", ""]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", action="store_true", help="print the commands and exit")
    parser.add_argument(
        "--run",
        nargs=argparse.REMAINDER,
        help="run every variant in order (arguments after --run go to each quality.py call)",
    )
    parser.add_argument("--only", nargs="+", metavar="TAG", help="these variants, in this order")
    args = parser.parse_args()
    chosen = [v for tag in args.only or [] for v in VARIANTS if v[0] == tag] or VARIANTS
    if args.only and len(chosen) != len(args.only):
        parser.error(f"unknown variant in {args.only}; known: {[v[0] for v in VARIANTS]}")
    if args.commands:
        for tag, _, extra in chosen:
            print(command(tag, extra))
        return
    if args.run is not None:
        extra_args = [a for a in args.run if a != "--"]
        for tag, _, extra in chosen:
            cmd = [sys.executable, *shlex.split(command(tag, extra))[1:], *extra_args]
            print("$", shlex.join(cmd), flush=True)
            subprocess.run(cmd, check=False)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import replace_section

    replace_section("ablations", table())
    print(table())


if __name__ == "__main__":
    main()
