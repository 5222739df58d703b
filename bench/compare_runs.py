"""Two ``bench/quality.py`` runs of the same protocol, one variant against a reference.

Design experiments change one params key and rerun the benchmark; both runs score every model on
the same episode files (same folds, seeds and protocol), so their trained models compare per
(fold, class) unit, paired, with the class-level interval the claim uses
(``retrain_report.class_interval``). Usage::

    python bench/compare_runs.py bench/results/dev_tuned.json bench/results/dev_base.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# loaded by file path from the tests too: its siblings are importable either way
sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrain_report import SHOTS, cell, class_interval, class_units, mean_gap  # noqa: E402


def merged(variant: dict, reference: dict) -> dict:
    """One results dict whose folds hold the variant's model as ``variant`` and the
    reference's as ``reference`` (folds both scored), plus both runs' starts."""
    if variant.get("protocol") != reference.get("protocol"):
        raise SystemExit(
            f"different protocols: {variant.get('protocol')} against {reference.get('protocol')}"
        )
    folds = {}
    for fold, entry in variant["folds"].items():
        other = reference["folds"].get(fold)
        if other is None or "lerenet" not in entry or "lerenet" not in other:
            continue
        folds[fold] = {
            "variant": entry["lerenet"],
            "reference": other["lerenet"],
            "start": entry.get("start"),
            "reference_start": other.get("start"),
        }
    if not folds:
        raise SystemExit("the two runs share no fold with a trained model")
    return {"folds": folds}


def start_scores(entry: dict, key: str) -> list[float]:
    """The mIoU per part, shots and seed of a merged fold's start ``key``: equal in both runs
    when they scored the same episodes (the start does not depend on training)."""
    return [
        s["miou"]
        for seen in (False, True)
        for shots in SHOTS
        if (scores := cell(entry, key, shots, seen))
        for s in scores["seeds"]
    ]


def rows(results: dict) -> list[str]:
    """Markdown rows: per part and shots, each model's fold-mean mIoU and the paired Δ."""
    out = [
        "| part | shots | variant | reference | Δ [class-level 95 %] | units up / down |",
        "|---|---|---|---|---|---|",
    ]
    for seen in (True, False):
        for shots in SHOTS:
            units = class_units(results, "variant", "reference", shots, seen)
            if not units:
                continue
            gap = mean_gap(results, "variant", "reference", shots, seen)
            low, high = class_interval(units)
            means = [
                statistics.mean(
                    c["mean"]
                    for e in results["folds"].values()
                    if (c := cell(e, arch, shots, seen))
                )
                for arch in ("variant", "reference")
            ]
            up = sum(u > 0.0005 for u in units)
            down = sum(u < -0.0005 for u in units)
            out.append(
                f"| {'seen' if seen else 'novel'} | {shots[0]} | {means[0]:.3f} | {means[1]:.3f} "
                f"| {gap:+.3f} [{low:+.3f}, {high:+.3f}] | {up} / {down} of {len(units)} |"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", type=Path, help="results of the changed configuration")
    parser.add_argument("reference", type=Path, help="results of the configuration it replaces")
    args = parser.parse_args()
    variant, reference = (json.loads(p.read_text()) for p in (args.variant, args.reference))
    results = merged(variant, reference)
    starts_equal = all(
        start_scores(e, "start") == start_scores(e, "reference_start")
        for e in results["folds"].values()
    )
    print(f"{args.variant.name} against {args.reference.name}, folds {', '.join(results['folds'])}")
    if not starts_equal:
        print(
            "warning: the two runs' starts differ: not the same episodes or start", file=sys.stderr
        )
    print("\n".join(rows(results)))


if __name__ == "__main__":
    main()
