"""LERENet vs its own start and the parameter-free baseline on real defects (defects9).

    python bench/quality.py                      # the claim: fresh seeds 3-5, ~2.5 h, 2 cores
    python bench/quality.py --protocol quick     # design: episode seed 0, fewer episodes
    python bench/quality.py --protocol quick --size 128 --tag quick_memory_128   # cheaper still
    python bench/quality.py --folds 0 --tag quality_f0 --no-docs   # one fold of the claim …
    python bench/quality.py --merge                                # … and the folds merged

Three class-disjoint folds (seeded: 3 test classes, ``split.val_classes`` validation classes
and the rest for training, each), one LERENet per fold trained with the project's own
``train()`` from the given params file (default: the repository's params.yaml, what a user
gets) plus ``--set`` overrides; the checkpoint is chosen on validation data only. Per fold, the
trained model, its training-free start (step 0 of the same run) and the baseline are scored on
the same fixed episodes, 1-shot and 5-shot, per episode seed: on novel classes and on the
held-out images of the training classes (``seen``; ``lerenet/data/holdout.py``): mIoU with
its bootstrap 95% CI, per-class IoU and the share of episodes where nothing was predicted.
Results: bench/results/<tag>.json and a table in docs/benchmarks.md between
``<!-- <tag>:begin/end -->``, checked against #15's and #29's targets
(bench/quality_report.py and bench/retrain_report.py, which also render a results file again).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

# the script's own folder is on the path, as for eval_speed.py's ``from quality import``
from quality_folds import merge_folds, run_fold_jobs, wants_docs
from quality_report import fold_line, write_docs

ROOT = Path(__file__).resolve().parents[1]
DEFECTS9 = ROOT.parent / "shared" / "datasets" / "defects9"
RESULTS = Path(__file__).resolve().parent / "results"
# a fold's test images at 320×320 with four scales (3.5 MB each) fit: each image's levels once
MEMO_BYTES = 4 * 1024**3
PROTOCOLS = {
    # episode seeds, test episodes per class, training steps. Design and claim are kept
    # apart: every ablation and design choice reads the quick protocol's seed 0; the claim
    # (full) runs once on seeds 3-5, which no design choice was compared on (seeds 0-2 were
    # the earlier claim's, and seed 0's first 30 episodes the earlier ablations').
    # "steps": None: the params file's own budget (steps, batch, validation rounds), because
    # the claim runs what params.yaml ships (#29)
    "full": {"seeds": (3, 4, 5), "episodes": 50, "steps": None},
    "quick": {"seeds": (0,), "episodes": 30, "steps": 600},
}
PARTS = {"test": "novel classes", "seen_test": "held-out images of the training classes"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="full")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument(
        "--steps",
        type=int,
        help="training steps, validation every fifth (default: the quick protocol's 600; the "
        "full protocol trains with the params file's budget)",
    )
    parser.add_argument(
        "--batch-size", type=int, help="episodes per step (default: the params file's)"
    )
    parser.add_argument(
        "--size",
        type=int,
        help="image size (default: the params file's data.image_size, what a user gets)",
    )
    parser.add_argument("--folds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--data", type=Path, default=DEFECTS9)
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="*",
        default=[],
        help="section.key=value overrides of the params file (model.prior=positional)",
    )
    parser.add_argument("--workers", type=int, default=0, help="data loading processes")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline rows")
    parser.add_argument(
        "--docs",
        action="store_true",
        help="write the table into docs/benchmarks.md (always for the full protocol; quick "
        "runs feed bench/ablations.py instead)",
    )
    parser.add_argument("--tag", default="quality", help="results name and docs section")
    parser.add_argument(
        "--work",
        type=Path,
        help="working folder (default: a new temporary one); given again after a run was cut "
        "short, it reuses its params snapshot, data and episodes and resumes each fold's "
        "training from its last.pt (bit-identical on CPU: tests/integration/"
        "test_train_evaluate.py)",
    )
    parser.add_argument("--no-docs", action="store_true", help="never touch the docs")
    parser.add_argument(
        "--fold-jobs",
        action="store_true",
        help="run each fold in its own process at once and merge their results (a machine "
        "with many cores and one GPU: the folds' CPU-bound data work overlaps)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="run nothing: merge bench/results/<tag>_f<F>.json of --folds (folds run one at a "
        "time with --folds F --tag <tag>_fF) into <tag>.json and the docs",
    )
    return parser.parse_args()


def resolved_params(args: argparse.Namespace, data: Path, splits: Path, fold: int, out: Path):
    """The params file with the benchmark's data, split, budget and ``--set`` overrides."""
    from lerenet.config.schema import load_params, parse_overrides

    overrides = {
        "data.root": str(data),
        "split.out_dir": str(splits),
        "train.fold": fold,
        "train.out_dir": str(out),
        "train.device": args.device,
        "train.num_workers": args.workers,
        "train.baseline": False,
        "train.patience": None,
    }
    if args.steps:  # the quick protocol's budget or --steps; else the params file's
        overrides |= {
            "train.steps": args.steps,
            "train.val_every": max(1, args.steps // 5),
            # last.pt at every validation round: ``--work`` resumes a fold cut short from there
            "train.checkpoint_every": max(1, args.steps // 5),
            "train.val_episodes": 60,
        }
    if args.batch_size:
        overrides["train.batch_size"] = args.batch_size
    if args.size:
        overrides["data.image_size"] = args.size
    overrides |= parse_overrides(args.overrides)
    return load_params(args.params, overrides)


def write_seed_splits(pairs, work: Path, seeds, per_class: int, split) -> list:
    """The protocol's fixed episodes: the seeded class-disjoint folds and, per episode seed, a
    1- and 5-shot episode file of every fold under ``work/splits_s<seed>`` (novel-class
    ``test`` and seen-class ``seen_test`` episodes). Returns the folds. The test classes depend
    on the seed and the fold count only; the validation classes (``split.val_classes``) come
    from the rest. The image-level held-out parts (``split.holdout_share``) are seeded by
    ``split.seed``, not by the episode seed: every episode seed holds out the same images, the
    ones training never reads."""
    from lerenet.data.manifest import classes_of
    from lerenet.data.splits import assign_folds, write_split

    folds = assign_folds(classes_of(pairs), seed=0, num_folds=3, val_classes=split.val_classes)
    holdout = (split.holdout_share, split.seen_val_share)
    for seed in seeds:
        write_split(
            pairs,
            work / f"splits_s{seed}",
            folds,
            shots=[1, 5],
            per_class=per_class,
            seed=seed,
            holdout=holdout,
            holdout_seed=split.seed,
        )
    return folds


def seed_episodes(model, params, work: Path, seed: int, shots: int, fold: int, part: str = "test"):
    """The ``part`` episodes of ``fold`` for ``shots``-shot scoring, from episode seed ``seed``'s
    split (``write_seed_splits``)."""
    from lerenet.evaluation.scoring import episode_dataset

    split = params.split.model_copy(update={"out_dir": str(work / f"splits_s{seed}")})
    return episode_dataset(params.model_copy(update={"split": split}), model, part, shots, fold)


def score_model(model, params, work: Path, fold: int, seeds, part: str = "test", memo=None) -> dict:
    """mIoU [CI], FB-IoU, per-class IoU and the empty-prediction share, per shot and seed.
    ``memo``: backbone levels shared across calls (models on one frozen backbone object)."""
    import torch

    from lerenet.evaluation.metrics import score
    from lerenet.evaluation.scoring import predict_episodes
    from lerenet.training.level_memo import LevelMemo

    device = torch.device(params.train.device)
    workers = params.train.num_workers
    memo = memo if memo is not None else LevelMemo(MEMO_BYTES)  # each image's levels once
    entry: dict = {}
    for shots in (1, 5):
        per_seed = []
        for seed in seeds:
            ds = seed_episodes(model, params, work, seed, shots, fold, part)
            preds = predict_episodes(
                model, ds, device, batch_size=8, num_workers=workers, memo=memo
            )
            s = score(preds.stats, sorted(ds.class_index), preds.classes, bootstrap=1000, seed=seed)
            per_seed.append(seed_scores(s, float((preds.areas == 0).mean())))
        entry[f"{shots}shot"] = over_seeds(per_seed)
    return entry


def seed_scores(s, empty_share: float) -> dict:
    """One episode seed's ``metrics.score`` result as the results file keeps it."""
    return {
        "miou": s.miou.value,
        "low": s.miou.low,
        "high": s.miou.high,
        "fbiou": s.fbiou.value,
        "class_iou": {c: i.value for c, i in s.per_class.items()},
        "empty_share": empty_share,
    }


def over_seeds(per_seed: list[dict]) -> dict:
    """A shot count's entry: every seed's scores, their mean mIoU and its spread."""
    mious = [x["miou"] for x in per_seed]
    return {
        "seeds": per_seed,
        "mean": statistics.mean(mious),
        "std": statistics.stdev(mious) if len(mious) > 1 else 0.0,
    }


def score_fold(params, work: Path, fold: int, seeds, res, args) -> dict:
    """The trained model, its own training-free start (step 0 of the same run, ``start.pt``)
    and the baseline, each on the novel-class and the seen-class episodes of every seed."""
    import torch

    from lerenet.training.checkpoint import load_model_file
    from lerenet.training.level_memo import LevelMemo
    from lerenet.training.loop import save_baseline
    from lerenet.training.session import START

    model, _ = load_model_file(res.best_path, params.train.device)
    models = {"lerenet": model}
    start_path = res.best_path.parent / START
    if start_path.exists():
        start, _ = load_model_file(start_path, params.train.device)
        same = all(
            torch.equal(a, b)
            for a, b in zip(
                start.backbone.state_dict().values(),
                model.backbone.state_dict().values(),
                strict=True,
            )
        )
        if same:  # a frozen backbone: one object, so one memo serves both models
            start.backbone = model.backbone
        models["start"] = start
    if not args.no_baseline:
        models["prototype"], _ = load_model_file(
            save_baseline(params, res.best_path.parent / "baseline"), args.device
        )
    out: dict = {}
    memos: dict[int, LevelMemo] = {}
    for name, net in models.items():
        memo = memos.setdefault(id(net.backbone), LevelMemo(MEMO_BYTES))
        out[name] = score_model(net, params, work, fold, seeds, "test", memo)
        out[name]["seen"] = score_model(net, params, work, fold, seeds, "seen_test", memo)
    if getattr(model, "memory_routing", None) == "support":
        out["lerenet"]["routing"] = routing_shares(model, params, work, fold, seeds[0], memos)
    return out


def routing_shares(model, params, work: Path, fold: int, seed: int, memos: dict) -> dict:
    """How a class memory routed the test episodes of one seed: the share of seen-class
    episodes routed to their own class, and of novel-class episodes routed to any class."""
    import torch

    from lerenet.training.validation_round import support_descriptors

    device = torch.device(params.train.device)
    memo = memos.get(id(model.backbone))
    shares: dict = {}
    for shots in (1, 5):
        for part, key in (("seen_test", "seen_own"), ("test", "novel_any")):
            ds = seed_episodes(model, params, work, seed, shots, fold, part)
            route = model.memory.route(support_descriptors(model, ds, device, memo).to(device))
            if part == "test":
                hit = (route >= 0).float()
            else:
                own = torch.tensor([model.memory.classes.index(e.cls) for e in ds.episodes])
                hit = (route.cpu() == own).float()
            shares[f"{shots}shot_{key}"] = float(hit.mean()) if len(hit) else None
    return shares


def main() -> None:
    args = parse_args()
    if args.merge:
        merge_folds(args)
        return
    if args.fold_jobs and len(args.folds) > 1:
        run_fold_jobs(args)
        return
    protocol = PROTOCOLS[args.protocol]
    args.steps = args.steps or protocol["steps"]
    if not (args.data / "manifest.csv").exists():
        sys.exit(f"{args.data}: defects9 not found (it lives in ../shared/datasets)")

    import torch

    from lerenet.data.ingest import ingest
    from lerenet.data.manifest import read_manifest
    from lerenet.training.loop import train

    if args.device == "cpu":
        torch.set_num_threads(2)
    # progress of hours of work: the cache, every validation round, each fold's scores
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    started = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="lerenet-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    logging.info("working folder %s (--work %s resumes a run cut short)", work, work)
    # a snapshot: editing params.yaml while the benchmark runs must not change later folds,
    # nor a resumed one
    snapshot = work / "params.yaml"
    if not snapshot.exists():
        snapshot.write_text(args.params.read_text())
    args.params = snapshot
    data = work / "data"
    if not (data / "manifest.csv").exists():
        ingest(str(args.data), data, show_progress=False)
    pairs = read_manifest(data)
    resolved = resolved_params(args, data, work, 0, work)
    split = resolved.split
    seeds = protocol["seeds"]
    folds = write_seed_splits(pairs, work, seeds, protocol["episodes"], split)
    device_name = (
        torch.cuda.get_device_name(0)
        if args.device == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    results: dict = {
        "config": vars(args)
        | {"data": str(args.data), "params": snapshot.read_text(), "work": str(work)}
        # the budget trained with, whether a flag or the params file set it
        | {"steps": resolved.train.steps, "batch_size": resolved.train.batch_size},
        "device_name": device_name,
        "protocol": {"name": args.protocol, **protocol},
        "folds": {},
    }
    for fold in args.folds:
        out = work / f"train_f{fold}"
        params = resolved_params(args, data, work / f"splits_s{seeds[0]}", fold, out)
        results["params"] = params.model_dump(mode="json")
        entry: dict = {"classes": folds[fold].__dict__}
        t0 = time.perf_counter()
        res = train(params, show_progress=False, resume=(out / "last.pt").exists())
        train_s = time.perf_counter() - t0
        entry |= score_fold(params, work, fold, seeds, res, args)
        entry["lerenet"] |= {
            "train_s": round(train_s, 1),
            "eval_s": round(time.perf_counter() - t0 - train_s, 1),
            "best_step": res.best_step,
            "best_val_miou": res.best_val_miou,
            "history": res.history,
            "throughput": res.throughput.to_dict() if res.throughput else None,
        }
        results["folds"][fold] = entry
        print(fold_line(fold, entry), flush=True)
        results["total_s"] = round(time.perf_counter() - started, 1)
        RESULTS.mkdir(exist_ok=True)  # after every fold: a run cut short keeps what it did
        (RESULTS / f"{args.tag}.json").write_text(json.dumps(results, indent=2))
    if wants_docs(args):
        write_docs(args.tag, results)
    print(f"total {results['total_s'] / 60:.1f} min; wrote bench/results/{args.tag}.json")


if __name__ == "__main__":
    main()
