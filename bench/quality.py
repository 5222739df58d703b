"""LERENet vs the prototype baseline on real defects (../shared/datasets/defects9).

    python bench/quality.py [--steps 600] [--size 160] [--episodes 50] [--folds 0 1 2]

Three class-disjoint folds (seeded, 3 test classes + 1 validation class each), the offline
ImageNet-pretrained EfficientNet-Lite0 backbone, one model per fold and architecture trained
with 1-shot episodes (checkpoint chosen on the validation class only), evaluated 1-shot and
5-shot on the fold's novel classes over three episode seeds. Reports per fold and mean:
mIoU with its bootstrap 95% CI (first seed) and mean ± std over the seeds.
Budget (2 CPU cores): see the table header; results in bench/results/quality.json and
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFECTS9 = ROOT.parent / "shared" / "datasets" / "defects9"
RESULTS = Path(__file__).resolve().parent / "results"
EPISODE_SEEDS = (0, 1, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--episodes", type=int, default=50, help="test episodes per class")
    parser.add_argument("--folds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--data", type=Path, default=DEFECTS9)
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="*",
        default=[],
        help="LERENet overrides: model keys (prototype=masked_mean) or section.key "
        "(train.foreground_weight=5)",
    )
    parser.add_argument("--archs", nargs="*", default=["lerenet", "prototype"])
    parser.add_argument("--tag", default="quality", help="results name and docs section")
    args = parser.parse_args()
    if not (args.data / "manifest.csv").exists():
        sys.exit(f"{args.data}: defects9 not found (it lives in ../shared/datasets)")

    import torch

    from lerenet.config import Params
    from lerenet.data.ingest import ingest
    from lerenet.data.manifest import classes_of, read_manifest
    from lerenet.data.splits import assign_folds, write_split
    from lerenet.evaluate import episode_dataset, predict_episodes
    from lerenet.metrics import score
    from lerenet.train import train

    torch.set_num_threads(2)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lerenet-quality-"))
    data = work / "data"
    ingest(str(args.data), data, show_progress=False)
    pairs = read_manifest(data)
    folds = assign_folds(classes_of(pairs), seed=0, num_folds=3, val_classes=1)
    for seed in EPISODE_SEEDS:
        write_split(
            pairs, work / f"splits_s{seed}", folds, shots=[1, 5], per_class=args.episodes, seed=seed
        )
    results = {"config": vars(args) | {"data": str(args.data)}, "folds": {}}
    for fold in args.folds:
        results["folds"][fold] = {"classes": folds[fold].__dict__}
        for arch in args.archs:
            extra: dict[str, dict] = {"model": {}, "train": {}, "data": {}}
            for kv in args.overrides if arch == "lerenet" else []:
                key, value = kv.split("=", 1)
                section, _, name = key.rpartition(".")
                extra[section or "model"][name] = value
            params = Params.model_validate(
                {
                    "model": {
                        "arch": arch,
                        "backbone": "efficientnet_lite0",
                        "weights": "package",
                        "feature_channels": 128,
                        **extra["model"],
                    },
                    "data": {"root": str(data), "image_size": args.size, **extra["data"]},
                    "split": {"out_dir": str(work / "splits_s0"), "episodes_per_class": 20},
                    "train": {
                        "fold": fold,
                        "steps": args.steps,
                        "val_every": args.steps // 4,
                        "checkpoint_every": args.steps,
                        "lr": 0.002,
                        "val_episodes": 60,
                        "out_dir": str(work / f"train_f{fold}_{arch}"),
                        "baseline": False,
                        **extra["train"],
                    },
                }
            )
            t0 = time.perf_counter()
            res = train(params, show_progress=False)
            train_s = time.perf_counter() - t0
            from lerenet.checkpoint import load_model_file

            model, _ = load_model_file(res.best_path)
            entry = {
                "train_s": round(train_s, 1),
                "best_step": res.best_step,
                "best_val_miou": res.best_val_miou,
            }
            for shots in (1, 5):
                per_seed = []
                for seed in EPISODE_SEEDS:
                    p = params.model_copy(
                        update={
                            "split": params.split.model_copy(
                                update={"out_dir": str(work / f"splits_s{seed}")}
                            )
                        }
                    )
                    ds = episode_dataset(p, model, "test", shots, fold)
                    preds = predict_episodes(model, ds, torch.device("cpu"), batch_size=8)
                    s = score(
                        preds.stats,
                        sorted(ds.class_index),
                        preds.classes,
                        bootstrap=1000,
                        seed=seed,
                    )
                    per_seed.append(
                        {
                            "miou": s.miou.value,
                            "low": s.miou.low,
                            "high": s.miou.high,
                            "fbiou": s.fbiou.value,
                            "class_iou": {c: i.value for c, i in s.per_class.items()},
                        }
                    )
                mious = [x["miou"] for x in per_seed]
                entry[f"{shots}shot"] = {
                    "seeds": per_seed,
                    "mean": statistics.mean(mious),
                    "std": statistics.stdev(mious),
                }
            results["folds"][fold][arch] = entry
            print(
                f"fold {fold} {arch:9s} train {train_s:.0f}s  1-shot "
                f"{entry['1shot']['mean']:.3f}±{entry['1shot']['std']:.3f}  5-shot "
                f"{entry['5shot']['mean']:.3f}±{entry['5shot']['std']:.3f}",
                flush=True,
            )
    results["total_s"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(results, indent=2))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import replace_section

    replace_section(args.tag, table(results))
    print(f"total {results['total_s']:.0f} s; wrote bench/results/{args.tag}.json")


def table(results: dict) -> str:
    cfg = results["config"]
    lines = [
        f"defects9, EfficientNet-Lite0 (ImageNet, offline), {cfg['size']}×{cfg['size']}, "
        + (f"LERENet with {', '.join(cfg['overrides'])}, " if cfg.get("overrides") else "")
        + f"{cfg['steps']} training steps of 2 one-shot episodes per model, {cfg['episodes']} test "
        f"episodes per novel class × 3 episode seeds; whole run {results['total_s'] / 60:.0f} "
        "min on 2 CPU cores. mIoU: first seed with bootstrap 95% CI, then mean ± std over "
        "the three seeds.",
        "",
        "| fold | test classes | model | 1-shot mIoU [CI] | 1-shot mean±std | 5-shot mIoU [CI] "
        "| 5-shot mean±std |",
        "|---|---|---|---|---|---|---|",
    ]
    means = {}
    for fold, entry in results["folds"].items():
        for arch, label in (("lerenet", "LERENet"), ("prototype", "prototype baseline")):
            if arch not in entry:
                continue
            e = entry[arch]
            cells = []
            for shots in ("1shot", "5shot"):
                first = e[shots]["seeds"][0]
                cells += [
                    f"{first['miou']:.3f} [{first['low']:.3f}, {first['high']:.3f}]",
                    f"{e[shots]['mean']:.3f} ± {e[shots]['std']:.3f}",
                ]
                means.setdefault((arch, shots), []).append(e[shots]["mean"])
            lines.append(
                f"| {fold} | {', '.join(entry['classes']['test'])} | {label} | "
                + " | ".join(cells)
                + " |"
            )
    for arch, label in (("lerenet", "LERENet"), ("prototype", "prototype baseline")):
        if (arch, "1shot") not in means:
            continue
        lines.append(
            f"| mean | | {label} | | {statistics.mean(means[(arch, '1shot')]):.3f} | "
            f"| {statistics.mean(means[(arch, '5shot')]):.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
