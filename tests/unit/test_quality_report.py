"""The quality benchmark's check against #15's target reads what a results file says."""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("quality_report", BENCH / "quality_report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _scored(mious: list[float]) -> dict:
    seeds = [
        {"miou": m, "low": m - 0.03, "high": m + 0.03, "empty_share": 0.0, "fbiou": 0.6}
        for m in mious
    ]
    return {"seeds": seeds, "mean": statistics.mean(mious), "std": statistics.stdev(mious)}


def _results(model: dict[int, tuple[float, float]], base: dict[int, tuple[float, float]]):
    """Three seeds per cell, spread ±0.01 around the given (1-shot, 5-shot) fold means."""
    folds = {}
    for fold, (one, five) in model.items():
        folds[str(fold)] = {
            "classes": {"test": ["A", "B", "C"]},
            "lerenet": {
                "1shot": _scored([one - 0.01, one, one + 0.01]),
                "5shot": _scored([five - 0.01, five, five + 0.01]),
                "best_step": 0,
            },
            "prototype": {
                "1shot": _scored([base[fold][0]] * 3),
                "5shot": _scored([base[fold][1]] * 3),
            },
        }
    return {
        "config": {"size": 320, "steps": 10, "batch_size": 2, "device": "cpu", "tag": "t"},
        "protocol": {"name": "full", "seeds": [0, 1, 2], "episodes": 50},
        "folds": folds,
        "total_s": 60.0,
    }


BASE = {0: (0.25, 0.25), 1: (0.30, 0.38), 2: (0.28, 0.29)}


def test_a_model_clear_of_the_baseline_on_every_fold_meets_every_clause(report) -> None:
    results = _results({0: (0.31, 0.35), 1: (0.36, 0.50), 2: (0.35, 0.40)}, BASE)
    criteria = report.check_target(results)
    assert [c.met for c in criteria] == [True] * len(criteria)
    assert "met: 1shot: fold mean ≥ baseline + 0.05 — 0.340 vs 0.277 (+0.063)" in report.table(
        results
    )


def test_a_fold_below_the_baseline_fails_even_when_the_means_clear_the_margin(report) -> None:
    # fold 1 at 1-shot is 0.02 under its baseline; the other folds carry the mean past +0.05
    results = _results({0: (0.40, 0.45), 1: (0.28, 0.50), 2: (0.42, 0.45)}, BASE)
    failed = {c.name for c in report.check_target(results) if not c.met}
    assert failed == {"1shot: no fold below the baseline"}


def test_five_shot_under_one_shot_and_a_thin_margin_are_each_reported(report) -> None:
    results = _results({0: (0.30, 0.29), 1: (0.34, 0.45), 2: (0.33, 0.40)}, BASE)
    failed = {c.name for c in report.check_target(results) if not c.met}
    assert failed == {"1shot: fold mean ≥ baseline + 0.05", "5-shot ≥ 1-shot on every fold"}


def test_one_fold_or_one_seed_is_not_the_claim(report) -> None:
    results = _results({0: (0.31, 0.35), 1: (0.36, 0.50), 2: (0.35, 0.40)}, BASE)
    del results["folds"]["2"]
    assert not report.check_target(results)[0].met
    results = _results({0: (0.31, 0.35), 1: (0.36, 0.50), 2: (0.35, 0.40)}, BASE)
    for entry in results["folds"].values():
        entry["lerenet"]["1shot"]["seeds"] = entry["lerenet"]["1shot"]["seeds"][:1]
    assert not report.check_target(results)[0].met


def test_a_run_without_baseline_rows_meets_no_comparison(report) -> None:
    results = _results({0: (0.31, 0.35), 1: (0.36, 0.50), 2: (0.35, 0.40)}, BASE)
    for entry in results["folds"].values():
        del entry["prototype"]
    names = {c.name for c in report.check_target(results) if not c.met}
    assert "1shot: fold mean ≥ baseline + 0.05" in names
    assert "5shot: fold mean ≥ baseline + 0.05" in names


def _cells(class_iou: dict[str, float], empty: float = 0.0) -> dict:
    """One model's scores on one part and shot: three seeds with these class IoUs."""
    seeds = [
        {
            "miou": statistics.mean(class_iou.values()),
            "class_iou": dict(class_iou),
            "empty_share": empty,
            "low": 0.0,
            "high": 1.0,
        }
        for _ in range(3)
    ]
    return {"seeds": seeds, "mean": statistics.mean(class_iou.values()), "std": 0.0}


def _retrain_results(seen_gain: float, novel_gain: float, best_step: int = 300) -> dict:
    """Three folds; per fold three novel and four seen classes; the trained model above its
    start by ``seen_gain`` on seen and ``novel_gain`` on novel classes; baseline 0.1 lower."""
    folds = {}
    for fold in range(3):
        novel = {f"N{fold}{i}": 0.30 + 0.02 * i for i in range(3)}
        seen = {f"S{fold}{i}": 0.35 + 0.03 * i for i in range(4)}

        def model(n_gain: float, s_gain: float, novel=novel, seen=seen) -> dict:
            entry = {}
            for shots in ("1shot", "5shot"):
                entry[shots] = _cells({c: v + n_gain for c, v in novel.items()})
            entry["seen"] = {
                shots: _cells({c: v + s_gain for c, v in seen.items()})
                for shots in ("1shot", "5shot")
            }
            return entry

        folds[str(fold)] = {
            "classes": {"test": list(novel)},
            "lerenet": model(novel_gain, seen_gain) | {"best_step": best_step},
            "start": model(0.0, 0.0),
            "prototype": model(-0.1, -0.1),
        }
    return {"protocol": {"name": "full", "seeds": [3, 4, 5], "episodes": 50}, "folds": folds}


def test_the_retrain_target_reads_seen_gains_novel_losses_and_the_served_step(report) -> None:
    import retrain_report

    met = retrain_report.check_retrain_target(_retrain_results(0.2, 0.0))
    assert all(c.met for c in met if not c.name.startswith("stretch")), [
        (c.name, c.detail) for c in met if not c.met
    ]
    small = {
        c.name for c in retrain_report.check_retrain_target(_retrain_results(0.1, 0.0)) if not c.met
    }
    assert {n for n in small if n.startswith("seen")} == {
        "seen 1shot: trained ≥ start + 0.15, class-level interval above 0",
        "seen 5shot: trained ≥ start + 0.15, class-level interval above 0",
    }
    losing = {
        c.name
        for c in retrain_report.check_retrain_target(_retrain_results(0.2, -0.05))
        if not c.met
    }
    assert "novel 1shot: trained not below the start (lower bound ≥ -0.01)" in losing
    start_served = retrain_report.check_retrain_target(_retrain_results(0.2, 0.0, best_step=0))
    assert not next(c for c in start_served if c.name.startswith("the served model")).met
    assert "trained − start" in retrain_report.retrain_table(_retrain_results(0.2, 0.0))


def test_folds_run_one_at_a_time_merge_into_one_results_file(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A claim that does not fit one sitting runs fold by fold (``--folds F --tag <tag>_fF``);
    ``--merge`` joins what is there and names the folds still missing."""
    import argparse
    import json

    monkeypatch.syspath_prepend(str(BENCH))
    import quality_folds

    monkeypatch.setattr(quality_folds, "RESULTS", tmp_path)
    for fold in (0, 2):
        part = {"config": {"folds": [fold]}, "total_s": 100.0 + fold, "folds": {str(fold): {}}}
        (tmp_path / f"claim_f{fold}.json").write_text(json.dumps(part))
    args = argparse.Namespace(
        tag="claim", folds=[0, 1, 2], workers=0, no_docs=True, docs=False, protocol="full"
    )
    quality_folds.merge_folds(args)
    merged = json.loads((tmp_path / "claim.json").read_text())
    assert sorted(merged["folds"]) == ["0", "2"] and merged["total_s"] == 202.0
    assert "folds ['1'] have no results yet" in capsys.readouterr().out
    assert (tmp_path / "claim_f0.json").exists()  # kept: the next sitting merges again


def test_two_runs_compare_paired_per_class_and_other_protocols_are_refused() -> None:
    """``bench/compare_runs.py``: a variant 0.05 above its reference on every seen class and
    equal on novel ones reads as +0.050 with every seen unit up, 0 on novel; runs of different
    protocols (other episodes) are not compared."""
    spec = importlib.util.spec_from_file_location("compare_runs", BENCH / "compare_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    variant, reference = _retrain_results(0.20, 0.0), _retrain_results(0.15, 0.0)
    rows = module.rows(module.merged(variant, reference))
    seen_1 = next(r for r in rows if r.startswith("| seen | 1 |"))
    novel_5 = next(r for r in rows if r.startswith("| novel | 5 |"))
    assert "+0.050 [+0.050, +0.050]" in seen_1 and "12 / 0 of 12" in seen_1
    assert "+0.000" in novel_5 and "0 / 0 of 9" in novel_5
    other = _retrain_results(0.15, 0.0) | {"protocol": {"name": "quick", "seeds": [0]}}
    with pytest.raises(SystemExit, match="different protocols"):
        module.merged(variant, other)


def test_a_fallback_rescore_replaces_only_the_novel_rows_and_says_so(
    tmp_path: Path, monkeypatch
) -> None:
    """``bench/fallback_claim.py --merge``: the re-scored start goes in as the trained model's
    and the start's novel-class results; seen classes and the baseline stay as the claim
    measured them, the claim as it was is kept beside it, and a second merge is refused. Its
    report pairs the two variants per (fold, class)."""
    import json

    monkeypatch.syspath_prepend(str(BENCH))
    import fallback_claim

    claim = _retrain_results(0.2, 0.0)

    def lifted(cell: dict) -> dict:  # every class 0.01 higher
        seeds = [dict(x, class_iou={c: v + 0.01 for c, v in x["class_iou"].items()})
                 for x in cell["seeds"]]  # fmt: skip
        return dict(cell, seeds=seeds, mean=cell["mean"] + 0.01)

    path = tmp_path / "quality.json"
    path.write_text(json.dumps(claim))
    rescored = {"share": 0.25, "folds": {}}
    for fold, entry in claim["folds"].items():
        start = {k: entry["start"][k] for k in ("1shot", "5shot")}
        rescored["folds"][fold] = {
            "none": start,
            "fallback": {k: lifted(v) for k, v in start.items()},
        }
    monkeypatch.setattr(fallback_claim, "OUT", tmp_path / "fallback_claim.json")
    fallback_claim.OUT.write_text(json.dumps(rescored))
    fallback_claim.merge(path)
    merged = json.loads(path.read_text())
    for fold, entry in merged["folds"].items():
        expected = rescored["folds"][fold]["fallback"]["1shot"]
        assert entry["lerenet"]["1shot"] == expected == entry["start"]["1shot"]
        assert entry["lerenet"]["seen"] == claim["folds"][fold]["lerenet"]["seen"]
        assert entry["prototype"] == claim["folds"][fold]["prototype"]
    assert "empty_fallback=0.25" in merged["rescored"]
    assert json.loads((tmp_path / "quality_no_fallback.json").read_text()) == claim
    with pytest.raises(SystemExit, match="re-scored already"):
        fallback_claim.merge(path)
    one_shot = fallback_claim.report(rescored)[2]
    assert "+0.0100" in one_shot and "9 / 0 of 9" in one_shot  # 3 folds × 3 novel classes


def test_the_claim_trains_with_the_budget_params_yaml_ships(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#29: the claim runs the configuration params.yaml ships. Its full protocol's overrides
    may set paths and the device, never a different training budget or model."""
    from lerenet.config.schema import load_params

    monkeypatch.syspath_prepend(str(BENCH))  # its siblings, as when run as a script
    spec = importlib.util.spec_from_file_location("quality_bench", BENCH / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    monkeypatch.setattr(sys, "argv", ["quality.py"])
    args = quality.parse_args()
    args.steps = args.steps or quality.PROTOCOLS[args.protocol]["steps"]  # as main() does
    claim = quality.resolved_params(args, tmp_path / "d", tmp_path / "s", 0, tmp_path / "o")
    shipped = load_params(BENCH.parent / "params.yaml")
    budget = ("steps", "batch_size", "val_every", "val_episodes", "checkpoint_every", "lr")
    assert {k: getattr(claim.train, k) for k in budget} == {
        k: getattr(shipped.train, k) for k in budget
    }
    assert claim.model == shipped.model and claim.data.image_size == shipped.data.image_size
