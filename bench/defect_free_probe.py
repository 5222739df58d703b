"""Defect-free parts: how often the served model puts a defect on a part that has none.

    python bench/defect_free_probe.py --free DIR   # DIR: MT_Free/Imgs of the magnetic-tile set

#29 item 5 asks for at most 3 % empty 1-shot masks; the fallback that meets it on defects9
(``model.empty_fallback``, docs/benchmarks.md item 23) was left off because it also gives a
region to every query without the supports' defect, and defects9 has no defect-free part to
say what that costs on a real line. The magnetic-tile dataset that five defects9 classes come
from has 952 defect-free tiles (``MT_Free``, skipped by defects9's build): the same parts,
camera and processing. Here each design episode of a magnetic-tile test class (quick
protocol, seed 0: MT_Blowhole, MT_Crack, MT_Break, MT_Fray, MT_Uneven) is run twice under the
same supports: with its own query, and with a defect-free tile (a seeded pick) as the query.
On a new class the served output is the start exactly, so a fresh model's logits are the
served ones and no training is needed. Per shot count and variant (argmax alone, the
fallback, the fallback behind a gate on the best margin): the share of defect-free tiles
given a region, its mean area, and the share of empty masks on the defect-bearing queries.

The tiles are resized as defects9's images were (long side at most 320 px, Lanczos, never
upscaled), then go through the evaluation's own transform. Results:
bench/results/defect_free_probe.json and a table on stdout (``--report`` re-renders it).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from empty_probe import margin_of, probe_parser, run_design_probe
from PIL import Image
from quality import MEMO_BYTES

SHARE = 0.25  # the fallback's share (item 23's best)
GATES = (None, -0.25, -0.5)
LONG_SIDE = 320  # defects9's processing (its SOURCES.md)


def load_free(path: Path, image_size: int, mean, std) -> torch.Tensor:
    """A defect-free tile as the evaluation sees a defects9 image: 3×S×S, normalised."""
    from lerenet.data.transforms import build_transform, query_tensor

    with Image.open(path) as img:
        img = img.convert("RGB")
        scale = LONG_SIDE / max(img.size)
        if scale < 1:
            size = (round(img.size[0] * scale), round(img.size[1] * scale))
            img = img.resize(size, Image.Resampling.LANCZOS)
        rgb = np.asarray(img)
    return query_tensor(rgb, build_transform(image_size, False), mean, std)


def variants(margin: torch.Tensor, support_masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """B×H×W 0/1 masks: the argmax, and the library's fallback (``lift_empty``) behind each
    gate (``model.fallback_gate``: only where the best margin reaches it)."""
    from lerenet.model.fallback import lift_empty

    logits = torch.stack([torch.zeros_like(margin), margin], dim=1)
    out = {"argmax": (margin > 0).long()}
    for gate in GATES:
        name = "fallback" if gate is None else f"fallback, gate {gate}"
        out[name] = lift_empty(logits, support_masks, SHARE, gate).argmax(1)
    return out


def probe_fold(params, work: Path, fold: int, seed: int, free: list[Path]) -> dict:
    """Per shot count and variant: per magnetic-tile episode, whether its own query's mask is
    empty, and the defect-free tile's predicted defect share (0: empty)."""
    from lerenet.evaluation.scoring import backbone_norm, episode_dataset
    from lerenet.model.build import build_model
    from lerenet.training.level_memo import LevelMemo, memo_logits

    model, _ = build_model(params.model)
    model.eval()
    memo = LevelMemo(MEMO_BYTES)
    mean, std = backbone_norm(model)
    split = params.split.model_copy(update={"out_dir": str(work / f"splits_s{seed}")})
    params = params.model_copy(update={"split": split})
    keys = ("query_img", "support_imgs", "support_masks")
    size = params.data.image_size
    out: dict = {}
    for shots in (1, 5):
        ds = episode_dataset(params, model, "test", shots, fold)
        index = [i for i, ep in enumerate(ds.episodes) if ep.cls.startswith("MT_")]
        picks = random.Random(f"{fold}:{shots}:{seed}").choices(free, k=len(index))
        res: dict = {"classes": [ds.episodes[i].cls for i in index], "present_empty": {}}
        res["free_share"] = {}
        with torch.inference_mode():
            for first in range(0, len(index), 4):
                chunk = index[first : first + 4]
                items = [ds[i] for i in chunk]
                batch = {k: torch.stack([it[k] for it in items]) for k in keys}
                paths = [[ds.episodes[i].query, *ds.episodes[i].supports] for i in chunk]
                tiles = picks[first : first + 4]
                present = margin_of(memo_logits(model, memo, batch, paths))
                query = torch.stack([load_free(t, size, mean, std) for t in tiles])
                free_paths = [[f"free/{t.name}", *p[1:]] for t, p in zip(tiles, paths, strict=True)]
                free_batch = batch | {"query_img": query}
                absent = margin_of(memo_logits(model, memo, free_batch, free_paths))
                masks = batch["support_masks"]
                for name, pred in variants(present, masks).items():
                    empty = (pred.flatten(1).sum(1) == 0).tolist()
                    res["present_empty"].setdefault(name, []).extend(empty)
                for name, pred in variants(absent, masks).items():
                    share = pred.flatten(1).float().mean(1).tolist()
                    res["free_share"].setdefault(name, []).extend(share)
        out[f"{shots}shot"] = res
    return out


def table(results: dict) -> list[str]:
    """Per shot count and variant, pooled over the folds' magnetic-tile episodes."""
    lines = [
        "| shots | variant | defect-free tiles given a region | their mean predicted defect "
        "area | empty masks on defect-bearing queries |",
        "|---|---|---|---|---|",
    ]
    for shots in ("1shot", "5shot"):
        names = list(next(iter(results.values()))[shots]["free_share"])
        for name in names:
            share = np.concatenate([f[shots]["free_share"][name] for f in results.values()])
            empty = np.concatenate([f[shots]["present_empty"][name] for f in results.values()])
            flagged = share > 0
            area = share[flagged].mean() if flagged.any() else 0.0
            lines.append(
                f"| {shots[0]} | {name} | {flagged.mean():.0%} of {len(share)} | "
                f"{area:.1%} of the image | {empty.mean():.0%} |"
            )
    return lines


def main() -> None:
    parser = probe_parser(__doc__)
    parser.add_argument("--free", type=Path, help="folder of defect-free tiles (*.jpg)")
    args = parser.parse_args()
    free = sorted(args.free.glob("*.jpg")) if args.free else []
    if not free and not args.report:
        parser.error(f"--free {args.free}: no *.jpg defect-free tiles there")
    results = run_design_probe(
        args,
        "defect_free_probe",
        lambda p, f, work, seed, _: probe_fold(p, work, f, seed, free),
    )
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
