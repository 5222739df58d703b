"""Evaluation speed: each image's backbone levels once (``lerenet.training.level_memo``) vs the
whole model on every episode, on the quality benchmark's episodes, in the same run.

    python bench/eval_speed.py [--size 320] [--episodes 10] [--fold 0]

The quality benchmark scores a model on 3 episode seeds × 1- and 5-shot episode files of one
fold's test classes; the same images come back in many episodes. This times that pattern both
ways for the default LERENet (untrained: its start, which is what selection keeps, docs
"Quality") and the prototype baseline, and checks that both ways predict the same pixels.
Results: bench/results/eval_speed.json and the table in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# the benchmark whose episodes and memo this times
from quality import MEMO_BYTES, seed_episodes, write_seed_splits

ROOT = Path(__file__).resolve().parents[1]
DEFECTS9 = ROOT.parent / "shared" / "datasets" / "defects9"
RESULTS = ROOT / "bench" / "results"
SEEDS = (0, 1, 2)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFECTS9, help="a canonical dataset")
    parser.add_argument("--size", type=int, default=320, help="input size (the benchmark's)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per class and seed")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite the docs table")
    return parser.parse_args()


def score_both_ways(model, params, work: Path, fold: int) -> dict:
    """Predict every (seed, shots) episode file whole and through one memo; time both."""
    import numpy as np
    import torch

    from lerenet.evaluation.scoring import predict_episodes
    from lerenet.training.level_memo import LevelMemo

    cpu = torch.device("cpu")
    files = [seed_episodes(model, params, work, seed, k, fold) for seed in SEEDS for k in (1, 5)]
    began = time.perf_counter()
    whole = [predict_episodes(model, ds, cpu, batch_size=8, reuse_levels=False) for ds in files]
    whole_s = time.perf_counter() - began
    memo = LevelMemo(MEMO_BYTES)
    began = time.perf_counter()
    memoised = [predict_episodes(model, ds, cpu, batch_size=8, memo=memo) for ds in files]
    memo_s = time.perf_counter() - began
    same = all(np.array_equal(a.stats, b.stats) for a, b in zip(whole, memoised, strict=True))
    reads = sum(1 + len(ep.supports) for ds in files for ep in ds.episodes)
    return {
        "episodes": sum(len(ds) for ds in files),
        "image_reads": reads,
        "images_computed": memo.misses,
        "memo_mb": round(memo.nbytes / 2**20),
        "whole_s": round(whole_s, 1),
        "memo_s": round(memo_s, 1),
        "speedup": round(whole_s / memo_s, 2),
        "same_predictions": same,
    }


def table(results: dict) -> str:
    cfg = results["config"]
    lines = [
        f"`python bench/eval_speed.py --size {cfg['size']} --episodes {cfg['episodes']} "
        f"--fold {cfg['fold']}` — {results['device_name']}; defects9 fold {cfg['fold']}'s test "
        f"classes, {cfg['episodes']} episodes per class × 3 episode seeds × 1- and 5-shot "
        "files, as `bench/quality.py` scores them; *whole*: the model on every episode; "
        "*memo*: each image's backbone levels once over all six files. same: every episode's "
        "pixel counts equal.",
        "",
        "| model | episodes | image reads | images computed | whole | memo | speed-up "
        "| memo MB | same |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        lines.append(
            f"| {name} | {r['episodes']} | {r['image_reads']} | {r['images_computed']} "
            f"| {r['whole_s']} s | {r['memo_s']} s | **{r['speedup']}×** | {r['memo_mb']} "
            f"| {'yes' if r['same_predictions'] else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    if not (args.data / "manifest.csv").exists():
        sys.exit(f"{args.data}: no canonical dataset (defects9 lives in ../shared/datasets)")
    import torch

    from lerenet.config.schema import load_params
    from lerenet.data.ingest import ingest
    from lerenet.data.manifest import read_manifest
    from lerenet.model.build import build_baseline, build_model

    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="lerenet-evalspeed-"))
    ingest(str(args.data), work / "data", show_progress=False)
    pairs = read_manifest(work / "data")
    overrides = {"data.root": str(work / "data"), "data.image_size": args.size}
    params = load_params(args.params, overrides)
    write_seed_splits(pairs, work, SEEDS, args.episodes, params.split.val_classes)
    model, _ = build_model(params.model)
    results = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "device_name": f"CPU, {torch.get_num_threads()} threads",
        "models": {},
    }
    for name, net in (
        ("LERENet (default)", model),
        ("prototype baseline", build_baseline(params.model)),
    ):
        results["models"][name] = r = score_both_ways(net, params, work, args.fold)
        print(f"{name}: {r}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eval_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_docs:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _report import replace_section

        replace_section("eval_speed", table(results))
    print(table(results))


if __name__ == "__main__":
    main()
