"""Empty predictions on new classes: what a fallback that acts only on an empty mask does.

    python bench/empty_probe.py            # design episodes (quick protocol, seed 0), 3 folds

#29 item 5: the start predicts no defect pixel on 9-14 % of 1-shot novel-class episodes (the
claim, docs/benchmarks.md item 22); an empty episode adds its whole defect to the class's
union. On a new class the served output is the start exactly (an unnamed class gets no class
memory), so a fresh model's novel-class logits are the served ones and no training is needed.
Each variant below changes only episodes whose argmax mask is empty, so every other episode
scores as before, and the paired per-class Δ isolates what the fallback does:

- ``share r``: the k pixels of highest margin (defect logit − background logit), k = r × the
  supports' mean defect share × the query's pixels (RePRI's foreground-share prior, used
  only to size the fallback);
- ``top m``: the pixels within m logits of the query's highest margin.

Each episode is also run with the query of an episode of another class (``absent_partner``):
a query without the supports' defect, where a mask should stay empty. The second table says
how many of those get a region from the argmax alone and with the fallback, per gate.

Design protocol only (quick, episode seed 0): the claim's seeds 3-5 are never read here.
Results: bench/results/empty_probe.json and both tables on stdout (``--report`` re-renders
them from the results file).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from quality import DEFECTS9, MEMO_BYTES, PROTOCOLS, resolved_params, write_seed_splits
from retrain_report import class_interval

RESULTS = Path(__file__).resolve().parent / "results"
SHARES = (0.25, 0.5, 1.0)
MARGINS = (0.5, 1.0, 2.0)


def fallbacks(margin: torch.Tensor, support_masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every variant's B×H×W 0/1 mask from the margins B×H×W and the supports' masks; the
    argmax mask (``none``) is kept wherever it is not empty. ``share r`` is the library's own
    ``lerenet.model.fallback.lift_empty`` (what ``model.empty_fallback: r`` serves)."""
    from lerenet.model.fallback import lift_empty

    base = (margin > 0).long()
    empty = base.flatten(1).sum(1) == 0
    logits = torch.stack([torch.zeros_like(margin), margin], dim=1)
    out = {"none": base}
    for r in SHARES:
        out[f"share {r}"] = lift_empty(logits, support_masks, r).argmax(1)
    best = margin.flatten(1).max(1).values
    for m in MARGINS:
        near = (margin >= (best - m)[:, None, None]).long()
        out[f"top {m}"] = torch.where(empty[:, None, None], near, base)
    return out


KEYS = ("query_img", "support_imgs", "support_masks", "query_mask")


def episode_batches(ds, size: int = 4):
    """The episodes of ``ds`` in batches of ``size``: (their indices, the stacked batch of
    ``KEYS``, each episode's image paths with the query first: what ``memo_logits`` reads)."""
    for first in range(0, len(ds), size):
        index = list(range(first, min(first + size, len(ds))))
        items = [ds[i] for i in index]
        batch = {k: torch.stack([it[k] for it in items]) for k in KEYS}
        paths = [[ds.episodes[i].query, *ds.episodes[i].supports] for i in index]
        yield index, batch, paths


def absent_partner(classes: list[str], i: int) -> int:
    """The episode whose query stands in for a defect-free one in episode ``i``: the first
    later episode (cyclically) of another class, so the query holds no defect of ``i``'s
    class (it holds another class's defect: the nearest to a defect-free part that defects9
    has, and a harder case)."""
    n = len(classes)
    return next(j % n for j in range(i + 1, i + n) if classes[j % n] != classes[i])


def probe_fold(params, work: Path, fold: int, seed: int) -> dict:
    """Per shot count: per variant the per-episode stats and empty flags; per episode the
    highest margin of its query and of an absent query (``absent_partner``) under the same
    supports, and whether the argmax mask of the absent query is empty."""
    from lerenet.evaluation.metrics import episode_stats
    from lerenet.evaluation.scoring import episode_dataset
    from lerenet.model.build import build_model
    from lerenet.training.level_memo import LevelMemo, memo_logits

    model, _ = build_model(params.model)
    model.eval()
    memo = LevelMemo(MEMO_BYTES)
    split = params.split.model_copy(update={"out_dir": str(work / f"splits_s{seed}")})
    params = params.model_copy(update={"split": split})
    out: dict = {}
    for shots in (1, 5):
        ds = episode_dataset(params, model, "test", shots, fold)
        classes = [ep.cls for ep in ds.episodes]
        rows: dict[str, list] = {}
        empty: dict[str, list] = {}
        best, best_absent, empty_absent = [], [], []
        with torch.inference_mode():
            for index, batch, paths in episode_batches(ds):
                margin = margin_of(memo_logits(model, memo, batch, paths))
                for name, pred in fallbacks(margin, batch["support_masks"]).items():
                    rows.setdefault(name, []).append(episode_stats(pred, batch["query_mask"]))
                    empty.setdefault(name, []).extend((pred.flatten(1).sum(1) == 0).tolist())
                best += margin.flatten(1).max(1).values.tolist()
                partners = [absent_partner(classes, i) for i in index]
                swapped = batch | {"query_img": torch.stack([ds[j]["query_img"] for j in partners])}
                swapped_paths = [
                    [ds.episodes[j].query, *p[1:]] for j, p in zip(partners, paths, strict=True)
                ]
                absent = margin_of(memo_logits(model, memo, swapped, swapped_paths))
                best_absent += absent.flatten(1).max(1).values.tolist()
                empty_absent += ((absent > 0).flatten(1).sum(1) == 0).tolist()
        out[f"{shots}shot"] = {
            "classes": classes,
            "stats": {name: np.concatenate(v).tolist() for name, v in rows.items()},
            "empty": empty,
            "best": best,
            "best_absent": best_absent,
            "empty_absent": empty_absent,
        }
    return out


def margin_of(logits: torch.Tensor) -> torch.Tensor:
    """Defect minus background logit, B×H×W: the argmax mask is ``margin > 0``."""
    return (logits[:, 1] - logits[:, 0]).float()


def summary(results: dict) -> list[str]:
    """Per shot and variant: the fold means of mIoU, Δ vs ``none`` paired per (fold, class)
    with a bootstrap interval over those units, and the empty share."""
    from lerenet.evaluation.metrics import class_ious  # the scoring's own accumulation

    lines = ["| shots | variant | mIoU (fold means) | Δ vs none [class-level 95 %] | empty |"]
    lines.append("|---|---|---|---|---|")
    for shots in ("1shot", "5shot"):
        names = list(next(iter(results.values()))[shots]["stats"])
        for name in names:
            fold_mious, deltas, empties = [], [], []
            for fold in results.values():
                part = fold[shots]
                classes = sorted(set(part["classes"]))
                idx = np.array([classes.index(c) for c in part["classes"]])
                stats = np.array(part["stats"][name])
                base = np.array(part["stats"]["none"])
                pc, _ = class_ious(stats, idx, len(classes))
                pb, _ = class_ious(base, idx, len(classes))
                fold_mious.append(float(pc.mean()))
                deltas += list(pc - pb)
                empties.append(float(np.mean(part["empty"][name])))
            lo, hi = class_interval(deltas)
            lines.append(
                f"| {shots[0]} | {name} | {' / '.join(f'{m:.3f}' for m in fold_mious)} → "
                f"{statistics.mean(fold_mious):.3f} | {np.mean(deltas):+.3f} [{lo:+.3f}, "
                f"{hi:+.3f}] | {' / '.join(f'{e:.0%}' for e in empties)} |"
            )
    return lines


def gate_lines(results: dict, gates=(None, -0.25, -0.5, -1.0)) -> list[str]:
    """What a gate on the best margin (``model.fallback_gate``) separates: per shot count, the
    share of empty present-defect episodes it lets the fallback fill, against the share of
    queries without the supports' defect (``absent_partner``) that end up with a region."""
    lines = [
        "| shots | gate | empty masks filled (defect present) | queries without the defect "
        "given a region: argmax → with the fallback |",
        "|---|---|---|---|",
    ]
    for shots in ("1shot", "5shot"):
        present, absent, absent_empty = [], [], []
        for fold in results.values():
            part = fold[shots]
            empty = np.array(part["empty"]["none"])
            present += list(np.array(part["best"])[empty])
            absent += part["best_absent"]
            absent_empty += part["empty_absent"]
        best_absent, was_empty = np.array(absent), np.array(absent_empty)
        for gate in gates:
            g = -np.inf if gate is None else gate
            filled = np.mean(np.array(present) >= g)
            alarms = np.mean(~was_empty | (best_absent >= g))
            lines.append(
                f"| {shots[0]} | {'none' if gate is None else gate} | {filled:.0%} of "
                f"{len(present)} | {np.mean(~was_empty):.0%} → {alarms:.0%} |"
            )
    return lines


def design_setup(source: Path, work: Path | None, prefix: str):
    """The design protocol's data and episodes in ``work`` (a new temporary folder if None;
    given again, it is reused): returns (work, data, the params arguments of
    ``quality.resolved_params``, the episode seed, the pairs). The probes' common start."""
    if not (source / "manifest.csv").exists():
        sys.exit(f"{source}: defects9 not found (it lives in ../shared/datasets)")
    from lerenet.data.ingest import ingest
    from lerenet.data.manifest import read_manifest

    torch.set_num_threads(2)
    protocol = PROTOCOLS["quick"]
    work = work or Path(tempfile.mkdtemp(prefix=prefix))
    data = work / "data"
    if not (data / "manifest.csv").exists():
        ingest(str(source), data, show_progress=False)
    qargs = argparse.Namespace(
        steps=1, batch_size=None, device="cpu", workers=0, size=None, overrides=[],
        params=Path(__file__).resolve().parents[1] / "params.yaml",
    )  # fmt: skip
    split = resolved_params(qargs, data, work, 0, work).split
    seed = protocol["seeds"][0]
    pairs = read_manifest(data)
    write_seed_splits(pairs, work, (seed,), protocol["episodes"], split)
    return work, data, qargs, seed, pairs


def probe_folds(folds, name: str, probe, qargs, data: Path, work: Path, seed: int) -> dict:
    """``probe(params, fold)`` for each fold with the fold's resolved params, timed, then the
    results written to bench/results/<name>.json."""
    results = {}
    for fold in folds:
        t0 = time.perf_counter()
        params = resolved_params(qargs, data, work / f"splits_s{seed}", fold, work / "unused")
        results[str(fold)] = probe(params, fold)
        print(f"fold {fold}: {time.perf_counter() - t0:.0f} s", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results))
    return results


def probe_parser(doc: str) -> argparse.ArgumentParser:
    """The design probes' common command line (each adds its own options)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFECTS9)
    parser.add_argument("--folds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, help="working folder (reused when given again)")
    parser.add_argument("--report", action="store_true", help="only render the results file")
    return parser


def run_design_probe(args: argparse.Namespace, name: str, probe) -> dict:
    """bench/results/<name>.json as it stands (``--report``), else ``probe(params, fold,
    work, seed, pairs)`` on the design episodes of each fold, written there."""
    if args.report:
        return json.loads((RESULTS / f"{name}.json").read_text())
    work, data, qargs, seed, pairs = design_setup(args.data, args.work, f"lerenet-{name}-")
    return probe_folds(
        args.folds, name, lambda p, fold: probe(p, fold, work, seed, pairs), qargs, data, work, seed
    )


def main() -> None:
    args = probe_parser(__doc__).parse_args()
    results = run_design_probe(
        args, "empty_probe", lambda p, f, work, seed, _: probe_fold(p, work, f, seed)
    )
    print("\n".join(summary(results) + [""] + gate_lines(results)))


if __name__ == "__main__":
    main()
