"""The quality benchmark's report: its docs table and a check against #15's target.

    python bench/quality_report.py bench/results/quality.json           # print table and check
    python bench/quality_report.py bench/results/quality.json --docs    # also rewrite the docs

``bench/quality.py`` writes its table with these functions at the end of a run; this script
renders a results file again (the table's format changed, or a run's docs were not kept)
without rerunning hours of training.

#15's target for the default LERENet against the parameter-free baseline on the same episodes:
fold means of mIoU at least the baseline's + 0.05 for 1-shot and for 5-shot, no fold below the
baseline, 5-shot at least 1-shot on every fold, and 3 folds × 3 episode seeds with CIs.

#29's target (what a retrain buys; ``check_retrain_target``), for results that score the
trained model's own training-free start (``start``) and the seen classes' held-out images
(``seen``): seen-class mIoU at least the start's + 0.15 at 1- and 5-shot (fold means, with a
class-level interval above 0); novel-class mIoU not below the start (class-level paired
interval's lower bound ≥ −0.01) and at least the baseline's + 0.05; a trained step served on
every fold; at most 3 % of 1-shot novel episodes with nothing predicted. Class-level intervals:
each (fold, class) is one unit whose Δ is averaged over the episode seeds; the units are
resampled with replacement (percentile bootstrap, 95 %).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# loaded by file path from the tests too: its siblings are importable either way
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Criterion  # noqa: E402
from retrain_report import check_retrain_target, has_start, retrain_table  # noqa: E402

MARGIN = 0.05  # #15: fold means at least the baseline's + 0.05
SHOTS = ("1shot", "5shot")
ARCHS = (("lerenet", "LERENet"), ("prototype", "prototype baseline"))


def fold_line(fold: int, entry: dict) -> str:
    """The progress line printed as each fold of the benchmark finishes."""
    parts = [f"fold {fold}"]
    for arch, _ in ARCHS:
        if arch in entry:
            e = entry[arch]
            parts.append(f"{arch} {e['1shot']['mean']:.3f} / {e['5shot']['mean']:.3f}")
    lerenet = entry.get("lerenet", {})
    if "train_s" in lerenet:
        parts.append(f"(train {lerenet['train_s']:.0f} s, eval {lerenet['eval_s']:.0f} s)")
        parts.append(f"best step {lerenet['best_step']}")
    if lerenet.get("throughput"):
        speed = lerenet["throughput"]
        parts.append(
            f"{speed['episodes_per_s']:.0f} episodes/s end to end, "
            f"{speed['step_episodes_per_s']:.0f} the step alone"
        )
    return "  ".join(parts)


def fold_means(results: dict, arch: str, shots: str) -> dict[str, float]:
    """Each fold's mean mIoU over its episode seeds, for the folds that scored ``arch``."""
    return {
        fold: entry[arch][shots]["mean"]
        for fold, entry in results["folds"].items()
        if arch in entry
    }


def check_target(results: dict, margin: float = MARGIN) -> list[Criterion]:
    """#15's target, clause by clause. Every clause reads the results file alone, so the check
    can be rerun on any run's JSON; a run without baseline rows meets none of the comparisons."""
    criteria = []
    folds = results["folds"]
    scored = [e[a][s] for e in folds.values() for a, _ in ARCHS if a in e for s in SHOTS]
    seeds = {len(cell["seeds"]) for cell in scored}
    with_ci = all("low" in seed and "high" in seed for cell in scored for seed in cell["seeds"])
    criteria.append(
        Criterion(
            "3 folds × 3 episode seeds with CIs",
            len(folds) >= 3 and seeds == {3} and with_ci,
            f"{len(folds)} fold(s), {'/'.join(map(str, sorted(seeds)))} seed(s) each"
            + ("" if with_ci else ", CIs missing"),
        )
    )
    for shots in SHOTS:
        model, base = fold_means(results, "lerenet", shots), fold_means(results, "prototype", shots)
        both = sorted(set(model) & set(base))
        name = f"{shots}: fold mean ≥ baseline + {margin}"
        if not both:
            criteria.append(Criterion(name, False, "no fold scored both"))
            continue
        gain = statistics.mean(model[f] for f in both) - statistics.mean(base[f] for f in both)
        criteria.append(
            Criterion(
                name,
                gain >= margin,
                f"{statistics.mean(model[f] for f in both):.3f} vs "
                f"{statistics.mean(base[f] for f in both):.3f} ({gain:+.3f})",
            )
        )
        below = [f for f in both if model[f] < base[f]]
        criteria.append(
            Criterion(
                f"{shots}: no fold below the baseline",
                not below and len(both) == len(folds),
                " / ".join(f"{model[f] - base[f]:+.3f}" for f in both),
            )
        )
    one, five = fold_means(results, "lerenet", "1shot"), fold_means(results, "lerenet", "5shot")
    gains = {f: five[f] - one[f] for f in one}  # a scored model has both shot counts
    criteria.append(
        Criterion(
            "5-shot ≥ 1-shot on every fold",
            bool(gains) and min(gains.values()) >= 0,
            " / ".join(f"{g:+.3f}" for g in gains.values()),
        )
    )
    return criteria


def _seeds_cell(e: dict, shots: str) -> str:
    return " / ".join(
        f"{s['miou']:.3f} [{s['low']:.3f}, {s['high']:.3f}]" for s in e[shots]["seeds"]
    )


def _cells(e: dict, shots: str) -> list[str]:
    mean = e[shots]["mean"]
    spread = f" ± {e[shots]['std']:.3f}" if len(e[shots]["seeds"]) > 1 else ""
    empty = statistics.mean(s["empty_share"] for s in e[shots]["seeds"])
    return [_seeds_cell(e, shots), f"{mean:.3f}{spread}", f"{empty:.0%}"]


def table(results: dict) -> str:
    """The docs table: every seed's mIoU with its bootstrap CI, the fold means, and the check."""
    cfg, proto = results["config"], results["protocol"]
    size = cfg.get("size") or results.get("params", {}).get("data", {}).get("image_size")
    overrides = f" with {', '.join(cfg['overrides'])}" if cfg.get("overrides") else ""
    lines = [
        f"`python bench/quality.py --protocol {proto['name']}"
        + (f" --set {' '.join(cfg['overrides'])}" if cfg.get("overrides") else "")
        + f"` — defects9, EfficientNet-Lite0 (ImageNet, offline), {size}×{size}, "
        f"LERENet from params.yaml{overrides}: {cfg['steps']} steps × {cfg['batch_size']} "
        f"one-shot episodes per fold on {results.get('device_name', cfg['device'])}; prototype "
        "baseline: parameter-free, "
        f"no training. {proto['episodes']} test episodes per novel class × "
        f"{len(proto['seeds'])} episode seed(s); whole run {results['total_s'] / 60:.0f} min. "
        "mIoU: each episode seed with its bootstrap 95% CI, then the mean (± std over seeds); "
        "empty: share of test episodes with no defect pixel predicted; best: the training step "
        "selection kept (0 is the training-free start); fit: LERENet's 1-shot mIoU on episodes "
        "of its own training classes."
        + (f" Re-scored since: {results['rescored']}." if "rescored" in results else ""),
        "",
        "| fold | test classes | model | 1-shot mIoU per seed [CI] | 1-shot mean | empty "
        "| 5-shot mIoU per seed [CI] | 5-shot mean | empty | best | fit |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fold, entry in results["folds"].items():
        for arch, label in ARCHS:
            if arch not in entry:
                continue
            e = entry[arch]
            fit = f"{e['train_fit_miou']:.3f}" if "train_fit_miou" in e else ""
            best = str(e["best_step"]) if "best_step" in e else ""
            lines.append(
                f"| {fold} | {', '.join(entry['classes']['test'])} | {label} | "
                + " | ".join(_cells(e, "1shot") + _cells(e, "5shot"))
                + f" | {best} | {fit} |"
            )
    for arch, label in ARCHS:
        one, five = fold_means(results, arch, "1shot"), fold_means(results, arch, "5shot")
        if one:
            lines.append(
                f"| mean | | {label} | | {statistics.mean(one.values()):.3f} | | "
                f"| {statistics.mean(five.values()):.3f} | | | |"
            )
    command = f"python bench/quality_report.py bench/results/{cfg['tag']}.json"
    lines += ["", f"#15's target (`{command}`):", ""]
    for c in check_target(results):
        lines.append(f"- {'met' if c.met else '**not met**'}: {c.name} — {c.detail}")
    if has_start(results):
        lines += [
            "",
            "What a retrain buys (#29): novel classes and seen classes' held-out "
            "images, for the trained model, its own training-free start and the baseline "
            "on the same episodes.",
            "",
            retrain_table(results),
        ]
    return "\n".join(lines)


def write_docs(tag: str, results: dict) -> None:
    """Replace the docs section ``tag`` with this run's table."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import replace_section

    replace_section(tag, table(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a bench/quality.py results file")
    parser.add_argument("--docs", action="store_true", help="rewrite its docs section too")
    parser.add_argument("--tag", help="the docs section (default: the run's own tag)")
    args = parser.parse_args()
    if not args.results.exists():
        sys.exit(f"{args.results}: no such results file (bench/quality.py writes them)")
    results = json.loads(args.results.read_text())
    print(table(results))
    if args.docs:
        write_docs(args.tag or results["config"]["tag"], results)
    target = check_retrain_target(results) if has_start(results) else check_target(results)
    # the stretch clause is reported, not required
    sys.exit(0 if all(c.met for c in target if not c.name.startswith("stretch")) else 1)


if __name__ == "__main__":
    main()
