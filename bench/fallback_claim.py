"""The claim's novel-class part for the empty-mask fallback: re-scored without training.

    python bench/fallback_claim.py --work DIR      # 3 folds, claim episodes (seeds 3-5), ~35 min
    python bench/fallback_claim.py --report        # its table from the results file
    python bench/fallback_claim.py --merge         # write it into bench/results/quality.json

The fallback (``model.empty_fallback``, ``lerenet/model/fallback.py``) acts only where the start
is served: on a new class the served model's output is its training-free start, lifted where
the mask would be empty; on a named training class the class memory's output is untouched. So
the claim's seen-class part (trained, start, baseline) is the same bit for bit with it, and its
novel-class part is the start's logits through the model's own ``lift_empty``, which a freshly
built model gives without training. Per fold, 1- and 5-shot, on the claim's episodes (the full
protocol's seeds 3-5, which no design choice read): the start as the claim scored it
(``none``: reproduces the claim's start, a check of device and episodes) and with the fallback
(``fallback``), each as ``bench/quality.py`` scores a model (mIoU [CI], FB-IoU, per-class IoU,
empty share per seed). Results: bench/results/fallback_claim.json. ``--merge`` puts the
``fallback`` entries in as the trained model's and the start's novel-class results of
bench/results/quality.json (the unmodified claim kept as quality_no_fallback.json) and records
what was re-scored under its ``rescored`` key.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from empty_probe import episode_batches
from quality import (
    DEFECTS9,
    MEMO_BYTES,
    PROTOCOLS,
    RESULTS,
    over_seeds,
    resolved_params,
    seed_episodes,
    seed_scores,
    write_seed_splits,
)

OUT = RESULTS / "fallback_claim.json"
VARIANTS = ("none", "fallback")


def score_fold(params, work: Path, fold: int, seeds, share: float) -> dict:
    """{variant: {"1shot"/"5shot": per-seed entries, mean, std}} for one fold's novel classes."""
    from lerenet.evaluation.metrics import episode_stats, score
    from lerenet.model.build import build_model
    from lerenet.model.fallback import lift_empty
    from lerenet.training.level_memo import LevelMemo, memo_logits

    model, _ = build_model(params.model.model_copy(update={"empty_fallback": 0.0}))
    model.eval()
    memo = LevelMemo(MEMO_BYTES)
    out: dict = {v: {} for v in VARIANTS}
    for shots in (1, 5):
        per_seed: dict = {v: [] for v in VARIANTS}
        for seed in seeds:
            ds = seed_episodes(model, params, work, seed, shots, fold, "test")
            stats: dict = {v: [] for v in VARIANTS}
            empty: dict = {v: [] for v in VARIANTS}
            with torch.inference_mode():
                for _, batch, paths in episode_batches(ds):
                    logits = memo_logits(model, memo, batch, paths).float()
                    lifted = lift_empty(logits, batch["support_masks"], share)
                    for v, out_logits in zip(VARIANTS, (logits, lifted), strict=True):
                        pred = out_logits.argmax(1)
                        stats[v].append(episode_stats(pred, batch["query_mask"]))
                        empty[v].extend((pred.flatten(1).sum(1) == 0).tolist())
            classes, episode_classes = sorted(ds.class_index), [e.cls for e in ds.episodes]
            for v in VARIANTS:
                s = score(
                    np.concatenate(stats[v]), classes, episode_classes, bootstrap=1000, seed=seed
                )
                per_seed[v].append(seed_scores(s, float(np.mean(empty[v]))))
        for v in VARIANTS:
            out[v][f"{shots}shot"] = over_seeds(per_seed[v])
    return out


def run(args: argparse.Namespace) -> dict:
    """Every fold of ``args.folds`` scored and written to ``OUT`` after each (resumable)."""
    from lerenet.data.ingest import ingest
    from lerenet.data.manifest import read_manifest

    torch.set_num_threads(2)
    protocol = PROTOCOLS["full"]
    seeds = protocol["seeds"]
    data = args.work / "data"
    if not (data / "manifest.csv").exists():
        ingest(str(args.data), data, show_progress=False)
    qargs = argparse.Namespace(
        steps=protocol["steps"], batch_size=None, device="cpu", workers=0, size=None, overrides=[],
        params=Path(__file__).resolve().parents[1] / "params.yaml",
    )  # fmt: skip
    split = resolved_params(qargs, data, args.work, 0, args.work).split
    write_seed_splits(read_manifest(data), args.work, seeds, protocol["episodes"], split)
    results = json.loads(OUT.read_text()) if OUT.exists() else {"share": args.share, "folds": {}}
    for fold in args.folds:
        t0 = time.perf_counter()
        params = resolved_params(qargs, data, args.work / f"splits_s{seeds[0]}", fold, args.work)
        results["folds"][str(fold)] = score_fold(params, args.work, fold, seeds, args.share)
        OUT.write_text(json.dumps(results, indent=2))
        print(f"fold {fold}: {time.perf_counter() - t0:.0f} s", flush=True)
    return results


def report(results: dict) -> list[str]:
    """Per shot count: the fold means without and with the fallback, the Δ paired per (fold,
    class) unit (class IoU averaged over the seeds) with its bootstrap interval, how many
    units move each way, and the empty shares per fold."""
    from retrain_report import class_interval

    lines = [
        "| shots | start (fold means) | with the fallback | Δ [class-level 95 %] | units "
        "up / down | empty: start → with the fallback |",
        "|---|---|---|---|---|---|",
    ]
    for shots in ("1shot", "5shot"):
        units, means, empties = [], {v: [] for v in VARIANTS}, {v: [] for v in VARIANTS}
        for entry in results["folds"].values():
            seeds = {v: entry[v][shots]["seeds"] for v in VARIANTS}
            for cls in seeds["none"][0]["class_iou"]:
                a, b = ([x["class_iou"][cls] for x in seeds[v]] for v in VARIANTS)
                units.append(statistics.mean(b) - statistics.mean(a))
            for v in VARIANTS:
                means[v].append(entry[v][shots]["mean"])
                empties[v].append(statistics.mean(x["empty_share"] for x in seeds[v]))
        low, high = class_interval(units)
        fold = {v: " / ".join(f"{m:.3f}" for m in means[v]) for v in VARIANTS}
        empty = {v: " / ".join(f"{e:.0%}" for e in empties[v]) for v in VARIANTS}
        lines.append(
            f"| {shots[0]} | {fold['none']} → {statistics.mean(means['none']):.3f} | "
            f"{fold['fallback']} → {statistics.mean(means['fallback']):.3f} | "
            f"{statistics.mean(units):+.4f} [{low:+.4f}, {high:+.4f}] | "
            f"{sum(u > 0 for u in units)} / {sum(u < 0 for u in units)} of {len(units)} | "
            f"{empty['none']} → {empty['fallback']} |"
        )
    return lines


def merge(claim_path: Path) -> None:
    """The fallback's novel-class entries into the claim (trained model and start alike: on a
    new class the trained model serves its start), the claim as it was kept beside it."""
    rescored = json.loads(OUT.read_text())
    claim = json.loads(claim_path.read_text())
    if "rescored" in claim:
        raise SystemExit(f"{claim_path} was re-scored already: {claim['rescored']}")
    kept = claim_path.with_name("quality_no_fallback.json")
    shutil.copyfile(claim_path, kept)
    for fold, entry in claim["folds"].items():
        new = rescored["folds"][fold]
        for name in ("lerenet", "start"):
            for shots in ("1shot", "5shot"):
                entry[name][shots] = new["fallback"][shots]
    claim["rescored"] = (
        f"novel-class entries of lerenet and start: model.empty_fallback={rescored['share']} "
        "(bench/fallback_claim.py, CPU, same episodes); seen classes and the baseline as "
        f"trained and scored in the claim; the claim without it: {kept.name}"
    )
    claim_path.write_text(json.dumps(claim, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="working folder (reused when given again)")
    parser.add_argument("--data", type=Path, default=DEFECTS9)
    parser.add_argument("--folds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--share", type=float, default=0.25, help="model.empty_fallback")
    parser.add_argument("--merge", action="store_true", help="write into quality.json")
    parser.add_argument("--report", action="store_true", help="only render the results file")
    args = parser.parse_args()
    if args.report:
        print("\n".join(report(json.loads(OUT.read_text()))))
        return
    if args.merge:
        merge(RESULTS / "quality.json")
        return
    if args.work is None:
        parser.error("--work DIR is needed to score (the claim's data and episodes go there)")
    print("\n".join(report(run(args))))


if __name__ == "__main__":
    main()
