"""A run's outcome for people: per-class IoU of the model next to the baseline's, and one
sentence on which model won and which alias moved (CLI, Prefect artifacts, README run)."""

from __future__ import annotations

from typing import Any


def _shots(evaluation: dict) -> list[str]:
    from lerenet.metrics import shot_sections

    return list(shot_sections(evaluation.get("lerenet")))


def class_table(evaluation: dict) -> list[dict[str, Any]]:
    """One row per test class (and a last "mean" row): IoU of the model and of the baseline
    for every shot count evaluated; "-" where the baseline was not evaluated."""
    model, base = evaluation.get("lerenet") or {}, evaluation.get("baseline") or {}
    shots = _shots(evaluation)
    classes = sorted({c for k in shots for c in model[k]["class_iou"]})
    rows = []
    for cls in [*classes, "mean"]:
        row: dict[str, Any] = {"class": cls}
        for k in shots:
            for label, source in (("model", model), ("baseline", base)):
                m = source.get(k)
                value = (
                    None if m is None else (m["miou"] if cls == "mean" else m["class_iou"].get(cls))
                )
                row[f"{k} {label}"] = "-" if value is None else f"{value:.3f}"
        rows.append(row)
    return rows


def verdict(evaluation: dict, gate: dict, promotion: dict) -> str:
    """Which model won, in words, with the gate's reasons and where the alias went."""
    model, base = evaluation.get("lerenet") or {}, evaluation.get("baseline") or {}
    wins = [k for k in _shots(evaluation) if k in base and model[k]["miou"] > base[k]["miou"]]
    compared = [k for k in _shots(evaluation) if k in base]
    if not compared:
        race = "No baseline was evaluated."
    elif len(wins) == len(compared):
        race = f"LERENet scored above the prototype baseline at {', '.join(compared)}."
    elif wins:
        race = f"LERENet scored above the baseline at {', '.join(wins)} only."
    else:
        race = "The parameter-free prototype baseline scored higher than LERENet."
    gate_text = "passed" if gate["passed"] else "failed"
    reasons = "; ".join(gate.get("reasons", []))
    same = "" if promotion.get("registered", True) else " (same weights as that version)"
    return (
        f"{race} Gate {gate_text}: {reasons}. {promotion['name']} v{promotion['version']} is "
        f"now @{promotion['alias']}{same}."
    )
