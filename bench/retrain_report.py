"""#29's check and table: what a retrain buys, from a ``bench/quality.py`` results file.

The results score, per fold, the trained model (``lerenet``), its own training-free start
(``start``, step 0 of the same run) and the baseline (``prototype``), each on novel classes and
on the seen classes' held-out images (``seen``). #29's target: seen-class mIoU at least the
start's + 0.15 at 1- and 5-shot (fold means, with a class-level interval above 0); novel-class
mIoU not below the start (class-level paired interval's lower bound ≥ −0.01) and at least the
baseline's + 0.05; a trained step served on every fold; at most 3 % of 1-shot novel episodes
with nothing predicted. Class-level intervals: each (fold, class) is one unit whose Δ is
averaged over the episode seeds; the units are resampled with replacement (percentile
bootstrap, 95 %).
"""

from __future__ import annotations

import statistics

from _report import Criterion

SHOTS = ("1shot", "5shot")
MARGIN = 0.05  # novel classes: at least the baseline's + 0.05
SEEN_GAIN = 0.15  # seen-class mIoU at least the start's + 0.15
NOVEL_FLOOR = -0.01  # the novel-class interval's lower bound against the start
EMPTY_CAP = 0.03  # share of 1-shot novel episodes with no defect pixel predicted


def has_start(results: dict) -> bool:
    """Whether the run scored the start and the seen classes (#29's protocol)."""
    return any("start" in e for e in results["folds"].values())


def cell(entry: dict, arch: str, shots: str, seen: bool) -> dict | None:
    """One model's scores on a fold: novel classes, or ``seen`` (held-out images)."""
    e = entry.get(arch)
    if e is None:
        return None
    e = e.get("seen") if seen else e
    return None if e is None else e.get(shots)


def class_units(results: dict, arch: str, other: str, shots: str, seen: bool) -> list[float]:
    """Per (fold, class): ``arch`` − ``other`` class IoU, each averaged over episode seeds
    (the same episodes for both: the benchmark scores every model on one episode file)."""
    units = []
    for entry in results["folds"].values():
        a, b = cell(entry, arch, shots, seen), cell(entry, other, shots, seen)
        if a is None or b is None:
            continue
        for name in a["seeds"][0]["class_iou"]:
            deltas = [
                x["class_iou"][name] - y["class_iou"][name]
                for x, y in zip(a["seeds"], b["seeds"], strict=True)
            ]
            units.append(statistics.mean(deltas))
    return units


def class_interval(units: list[float], draws: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean over class units."""
    import numpy as np

    if not units:
        return float("nan"), float("nan")
    values = np.asarray(units)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (draws, len(values)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def mean_gap(results: dict, arch: str, other: str, shots: str, seen: bool) -> float | None:
    """Mean over folds of (``arch`` − ``other``) fold-mean mIoU (folds scoring both)."""
    gaps = [
        a["mean"] - b["mean"]
        for entry in results["folds"].values()
        if (a := cell(entry, arch, shots, seen)) and (b := cell(entry, other, shots, seen))
    ]
    return statistics.mean(gaps) if gaps else None


def paired(
    results: dict, arch: str, other: str, shots: str, seen: bool
) -> tuple[float | None, float, float]:
    """``mean_gap`` and its class-level interval: (Δ, low, high)."""
    low, high = class_interval(class_units(results, arch, other, shots, seen))
    return mean_gap(results, arch, other, shots, seen), low, high


def interval_text(gap: float | None, low: float, high: float, missing: str) -> str:
    return missing if gap is None else f"{gap:+.3f} [{low:+.3f}, {high:+.3f}]"


def check_retrain_target(results: dict) -> list[Criterion]:
    """#29's target, clause by clause (see the module docstring)."""
    criteria = []
    folds = results["folds"]
    seeds = {
        len(c["seeds"])
        for e in folds.values()
        for a in ("lerenet", "start", "prototype")
        for s in SHOTS
        for seen in (False, True)
        if (c := cell(e, a, s, seen))
    }
    fresh = results.get("protocol", {}).get("name") == "full"
    criteria.append(
        Criterion(
            "3 folds × 3 fresh episode seeds, start and seen classes scored",
            len(folds) >= 3 and seeds == {3} and fresh,
            f"{len(folds)} fold(s), {'/'.join(map(str, sorted(seeds))) or 0} seed(s), "
            f"protocol {results.get('protocol', {}).get('name')}",
        )
    )
    for shots in SHOTS:
        gap, low, high = paired(results, "lerenet", "start", shots, True)
        criteria.append(
            Criterion(
                f"seen {shots}: trained ≥ start + {SEEN_GAIN}, class-level interval above 0",
                gap is not None and gap >= SEEN_GAIN and low > 0,
                interval_text(gap, low, high, "no seen-class scores"),
            )
        )
    for shots in SHOTS:
        gap, low, high = paired(results, "lerenet", "start", shots, False)
        criteria.append(
            Criterion(
                f"novel {shots}: trained not below the start (lower bound ≥ {NOVEL_FLOOR})",
                gap is not None and low >= NOVEL_FLOOR,
                interval_text(gap, low, high, "no start scores"),
            )
        )
        base = mean_gap(results, "lerenet", "prototype", shots, False)
        criteria.append(
            Criterion(
                f"novel {shots}: trained ≥ baseline + {MARGIN}",
                base is not None and base >= MARGIN,
                "no baseline scores" if base is None else f"{base:+.3f}",
            )
        )
    steps = [e.get("lerenet", {}).get("best_step") for e in folds.values()]
    criteria.append(
        Criterion(
            "the served model is trained (selected step > 0 on every fold)",
            bool(steps) and all(s is not None and s > 0 for s in steps),
            " / ".join(str(s) for s in steps),
        )
    )
    empties = [
        statistics.mean(x["empty_share"] for x in c["seeds"])
        for e in folds.values()
        if (c := cell(e, "lerenet", "1shot", False))
    ]
    criteria.append(
        Criterion(
            f"1-shot novel episodes with nothing predicted ≤ {EMPTY_CAP:.0%}",
            bool(empties) and max(empties) <= EMPTY_CAP,
            " / ".join(f"{x:.0%}" for x in empties),
        )
    )
    stretch = mean_gap(results, "lerenet", "start", "5shot", False)
    criteria.append(
        Criterion(
            "stretch: novel 5-shot ≥ start + 0.03",
            stretch is not None and stretch >= 0.03,
            "no start scores" if stretch is None else f"{stretch:+.3f}",
        )
    )
    return criteria


def retrain_table(results: dict) -> str:
    """#29's table: trained, start and baseline on novel and seen classes per fold, the
    paired class-level Δs, per-class Δs, and the clause-by-clause check."""
    lines = [
        "| fold | model | novel 1-shot | novel 5-shot | seen 1-shot | seen 5-shot "
        "| empty (1-shot novel) | best step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = (("lerenet", "LERENet, trained"), ("start", "its start (step 0)"))
    for fold, entry in results["folds"].items():
        for arch, label in (*names, ("prototype", "prototype baseline")):
            if arch not in entry:
                continue
            cells = []
            for seen in (False, True):
                for shots in SHOTS:
                    c = cell(entry, arch, shots, seen)
                    cells.append("" if c is None else f"{c['mean']:.3f}")
            novel = cell(entry, arch, "1shot", False)
            empty = statistics.mean(x["empty_share"] for x in novel["seeds"]) if novel else 0
            best = entry[arch].get("best_step", "")
            lines.append(
                f"| {fold} | {label} | " + " | ".join(cells) + f" | {empty:.0%} | {best} |"
            )
    lines += [
        "",
        "| Δ (class-level 95 % interval) | novel 1-shot | novel 5-shot | seen 1-shot "
        "| seen 5-shot |",
        "|---|---|---|---|---|",
    ]
    for arch, other, label in (
        ("lerenet", "start", "trained − start"),
        ("lerenet", "prototype", "trained − baseline"),
        ("start", "prototype", "start − baseline"),
    ):
        cells = []
        for seen in (False, True):
            for shots in SHOTS:
                cells.append(interval_text(*paired(results, arch, other, shots, seen), ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Per class, trained − start, mean over seeds (fold: Δ):", ""]
    for seen, part in ((True, "seen"), (False, "novel")):
        for shots in SHOTS:
            per = []
            for fold, entry in results["folds"].items():
                a, b = cell(entry, "lerenet", shots, seen), cell(entry, "start", shots, seen)
                if a is None or b is None:
                    continue
                for name in a["seeds"][0]["class_iou"]:
                    d = statistics.mean(
                        x["class_iou"][name] - y["class_iou"][name]
                        for x, y in zip(a["seeds"], b["seeds"], strict=True)
                    )
                    per.append(f"{name} (f{fold}) {d:+.3f}")
            if per:
                lines.append(f"- {part} {shots}: " + ", ".join(per))
    routing = [
        f"fold {f}: "
        + ", ".join(f"{k} {v:.0%}" for k, v in e["lerenet"]["routing"].items() if v is not None)
        for f, e in results["folds"].items()
        if e.get("lerenet", {}).get("routing")
    ]
    if routing:
        lines += ["", "Class-memory routing (seed 1 of the protocol): " + "; ".join(routing)]
    lines += ["", "#29's target:", ""]
    for c in check_retrain_target(results):
        lines.append(f"- {'met' if c.met else '**not met**'}: {c.name} — {c.detail}")
    return "\n".join(lines)
