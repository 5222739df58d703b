"""The promotion gate: does the challenger deserve to replace the champion?

All models are scored on the *same* fixed test episodes. The challenger passes when, for every
evaluated shot count, (1) it meets the absolute floors of ``params.gate`` (mIoU, FB-IoU, lowest
per-class IoU: sanity checks only), (2) a paired bootstrap over episodes (resampled within
class, identically for both models) shows it better than the parameter-free prototype baseline:
the one-sided 95% lower bound of Δ mIoU = challenger − baseline above ``baseline_margin``
(``beat_baseline``; a model that loses to matching pretrained features without any training is
no product), and (3) with a champion, the same bootstrap puts the lower bound of Δ mIoU =
challenger − champion above −margin (non-inferiority) or above 0 (``require_superiority``).
A challenger that fails only gets ``@staging``; the reasons say which test failed and by how
much.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lerenet.config.schema import GateConfig
from lerenet.evaluation.metrics import score, stratified_resamples
from lerenet.results import ShotEvidence


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    numbers: dict = field(default_factory=dict)
    champion: str | None = None
    challenger: str | None = None
    path: str | None = None  # where the gate stage wrote it (decision.json)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=float)


def _miou(stats: np.ndarray, class_idx: np.ndarray, n: int) -> float:
    inter = np.bincount(class_idx, weights=stats[:, 0], minlength=n)
    union = np.bincount(class_idx, weights=stats[:, 1], minlength=n)
    return float(np.where(union > 0, inter / np.maximum(union, 1), 0.0).mean())


def paired_delta(
    challenger: ShotEvidence,
    champion: ShotEvidence,
    *,
    bootstrap: int,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Δ mIoU point estimate and its one-sided 95% lower / upper bounds (paired bootstrap)."""
    if challenger.classes != champion.classes:
        raise ValueError("challenger and champion were not scored on the same episodes")
    names = sorted(set(challenger.classes))
    idx = np.array([names.index(c) for c in challenger.classes])
    delta = _miou(challenger.stats, idx, len(names)) - _miou(champion.stats, idx, len(names))
    samples = []
    for pick in stratified_resamples(idx, bootstrap, seed):
        samples.append(
            _miou(challenger.stats[pick], idx[pick], len(names))
            - _miou(champion.stats[pick], idx[pick], len(names))
        )
    low, high = np.percentile(samples, [5, 95])
    return delta, float(low), float(high)


def class_deltas(
    challenger: ShotEvidence, champion: ShotEvidence, *, bootstrap: int, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """Per class: Δ IoU (challenger − champion) and its one-sided 95% lower / upper bounds,
    from a paired bootstrap over that class's episodes (``paired_delta`` on one class)."""
    if challenger.classes != champion.classes:
        raise ValueError("challenger and champion were not scored on the same episodes")
    out = {}
    for name in sorted(set(challenger.classes)):
        rows = [i for i, c in enumerate(challenger.classes) if c == name]
        out[name] = paired_delta(
            ShotEvidence(challenger.stats[rows], [name] * len(rows)),
            ShotEvidence(champion.stats[rows], [name] * len(rows)),
            bootstrap=bootstrap,
            seed=seed,
        )
    return out


def forgetting_check(
    decision: GateDecision,
    seen: dict[str, ShotEvidence],
    seen_champion: dict[str, ShotEvidence],
    cfg: GateConfig,
) -> bool:
    """The seen-class comparison with the champion: fail ``decision`` for any training class
    whose held-out IoU the challenger is not shown within ``margin`` of (it forgot it).
    Returns whether the challenger was shown better on at least one seen class."""
    gained = False
    for shot, ev in sorted(seen.items()):
        if shot not in seen_champion:
            continue
        deltas = class_deltas(ev, seen_champion[shot], bootstrap=cfg.bootstrap)
        decision.numbers.setdefault(shot, {})["seen_class_delta"] = {
            c: {"delta": d, "low": lo, "high": hi} for c, (d, lo, hi) in deltas.items()
        }
        for name, (delta, low, _) in deltas.items():
            gained = gained or low > 0
            if low <= -cfg.margin:
                decision.passed = False
                decision.reasons.append(
                    f"{shot}: seen class {name}: Δ IoU vs the champion {delta:+.3f} (95% lower "
                    f"bound {low:+.3f}) on its held-out images: the challenger forgets it"
                )
    return gained


def _floors(decision: GateDecision, shot: str, ev: ShotEvidence, cfg: GateConfig) -> dict:
    """The challenger's own numbers at one shot count; fail ``decision`` below a floor."""
    s = score(ev.stats, sorted(set(ev.classes)), ev.classes, bootstrap=cfg.bootstrap)
    worst_cls, worst = min(((c, i.value) for c, i in s.per_class.items()), key=lambda t: t[1])
    for label, value, floor in (
        ("mIoU", s.miou.value, cfg.min_miou),
        ("FB-IoU", s.fbiou.value, cfg.min_fbiou),
        (f"IoU of {worst_cls}", worst, cfg.min_class_iou),
    ):
        if value < floor:
            decision.passed = False
            decision.reasons.append(f"{shot}: {label} {value:.3f} is below the floor {floor:.3f}")
    return {
        "miou": s.miou.value,
        "fbiou": s.fbiou.value,
        "worst_class": worst_cls,
        "worst_class_iou": worst,
    }


def _compare(
    decision: GateDecision,
    nums: dict,
    shot: str,
    ev: ShotEvidence,
    reference: ShotEvidence,
    bootstrap: int,
    *,
    keys: tuple[str, str, str, str],
    bound: float,
    failing: Callable[[float, float], str],
) -> float:
    """The one paired comparison (against the baseline or the champion): Δ mIoU with its
    bounds recorded in ``nums`` under ``keys`` (reference mIoU, Δ, low, high); ``decision``
    fails with ``failing(Δ, low)`` unless the lower bound is above ``bound``. Returns it."""
    delta, low, high = paired_delta(ev, reference, bootstrap=bootstrap)
    ref, d, lo, hi = keys
    nums.update({ref: nums["miou"] - delta, d: delta, lo: low, hi: high})
    if low <= bound:
        decision.passed = False
        decision.reasons.append(f"{shot}: {failing(delta, low)}")
    return low


def decide(
    challenger: dict[str, ShotEvidence],
    champion: dict[str, ShotEvidence] | None,
    cfg: GateConfig,
    *,
    baseline: dict[str, ShotEvidence] | None = None,
    challenger_uri: str = "",
    champion_uri: str | None = None,
    seen: dict[str, ShotEvidence] | None = None,
    seen_champion: dict[str, ShotEvidence] | None = None,
) -> GateDecision:
    """Apply floors and the paired comparisons for every shot count (keys like ``1shot``).

    ``seen``/``seen_champion``: both models on held-out images of the training classes
    (``seen_test`` episodes). With a champion the challenger must not lose on novel classes
    nor on any seen class (``forgetting_check``), and, with ``gate.require_gain``, be shown
    better on at least one: novel classes at some shot count, or one seen class."""
    decision = GateDecision(True, challenger=challenger_uri, champion=champion_uri)
    if cfg.beat_baseline and baseline is None:
        decision.passed = False
        decision.reasons.append(
            "no prototype-baseline evidence on these episodes, so the challenger is not "
            "shown to beat it (gate.beat_baseline)"
        )
    gained = False  # shown better than the champion somewhere
    want = (
        "better than"
        if cfg.require_superiority
        else f"not worse by more than {cfg.margin:.3f} than"
    )
    for shot, ev in sorted(challenger.items()):
        nums = _floors(decision, shot, ev, cfg)
        if cfg.beat_baseline and baseline is not None and shot in baseline:
            _compare(
                decision, nums, shot, ev, baseline[shot], cfg.bootstrap,
                keys=("baseline_miou", "baseline_delta", "baseline_delta_low",
                      "baseline_delta_high"),
                bound=cfg.baseline_margin,
                failing=lambda d, lo: (
                    f"Δ mIoU vs the prototype baseline {d:+.3f} (95% lower bound {lo:+.3f}, "
                    f"needs > {cfg.baseline_margin:+.3f}): not shown better than the "
                    "parameter-free baseline"
                ),
            )  # fmt: skip
        if champion is not None and shot in champion:
            low = _compare(
                decision, nums, shot, ev, champion[shot], cfg.bootstrap,
                keys=("champion_miou", "delta_miou", "delta_low", "delta_high"),
                bound=0.0 if cfg.require_superiority else -cfg.margin,
                failing=lambda d, lo: (
                    f"Δ mIoU {d:+.3f} (95% lower bound {lo:+.3f}) does not show the "
                    f"challenger {want} the champion"
                ),
            )  # fmt: skip
            gained = gained or low > 0
        decision.numbers[shot] = nums
    if champion is not None and seen and seen_champion:
        gained = forgetting_check(decision, seen, seen_champion, cfg) or gained
    if champion is not None and cfg.require_gain and not gained:
        decision.passed = False
        decision.reasons.append(
            "not shown better than the champion anywhere: neither on the novel classes nor on "
            "any seen class's held-out images (95% lower bound of Δ above 0; gate.require_gain)"
        )
    if decision.passed:
        decision.reasons.append(
            "all floors met"
            + (", better than the prototype baseline" if cfg.beat_baseline else "")
            + ("" if champion is None else " and the champion comparison passed")
            + ("" if champion is not None else "; no champion to compare")
            + "".join(f"; {evidence_text(shot, nums)}" for shot, nums in decision.numbers.items())
        )
    return decision


def evidence_text(shot: str, nums: dict) -> str:
    """One shot's numbers in words: mIoU and each paired Δ with its 95% interval."""
    text = f"{shot} mIoU {nums['miou']:.3f}"
    for label, key in (("baseline", "baseline_delta"), ("champion", "delta_miou")):
        if key in nums:
            low = nums[f"{key}_low" if key == "baseline_delta" else "delta_low"]
            high = nums[f"{key}_high" if key == "baseline_delta" else "delta_high"]
            text += f", Δ vs {label} {nums[key]:+.3f} [{low:+.3f}, {high:+.3f}]"
    return text


def write_decision(decision: GateDecision, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(decision.to_json() + "\n")
    return path
