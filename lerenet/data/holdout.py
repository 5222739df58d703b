"""Image-level parts of every class: what training may read, and what it never sees.

A few-shot model is scored on classes it never trained on (the fold's test classes). That cannot
show what a retrain buys: training is known to help on the classes it trained on, and a class
that gains labels and becomes a training class would never be scored again. So every class's
pairs are also split at image level, seeded by (``split.seed``, class):

- ``test``: held out; the queries of *seen-class* episodes (``seen_test``), never trained on;
- ``val``: the queries of the seen-class validation episodes (``seen_val``) that checkpoint
  selection reads, never trained on;
- the rest (``train``): what training reads, and where seen-class episodes take supports.

A class too small for all three (the train part must hold ``max(shots)`` supports) keeps every
image for training and has no seen-class episodes. The parts are written to ``holdout.json``
in the split directory and hashed into ``split_sha256`` like every episode file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lerenet.data.manifest import Pair

HOLDOUT_FILE = "holdout.json"


@dataclass(frozen=True)
class ClassParts:
    """One class's images by part; ``train`` is everything not held out."""

    train: tuple[str, ...]
    val: tuple[str, ...] = ()
    test: tuple[str, ...] = ()

    def held_out(self) -> set[str]:
        return set(self.val) | set(self.test)


def split_images(
    pairs: list[Pair],
    *,
    seed: int,
    test_share: float,
    val_share: float,
    min_train: int,
    rng_of,
) -> dict[str, ClassParts]:
    """Each class's images → ``ClassParts`` (seeded shuffle per class; ``rng_of(*parts)`` is
    the split's stable generator). Shares of 0 hold nothing out."""
    by_class: dict[str, list[str]] = {}
    for p in sorted(pairs, key=lambda p: p.image):
        by_class.setdefault(p.cls, []).append(p.image)
    out: dict[str, ClassParts] = {}
    for cls, images in sorted(by_class.items()):
        n_test = max(1, round(test_share * len(images))) if test_share > 0 else 0
        n_val = max(1, round(val_share * len(images))) if val_share > 0 else 0
        if n_test == 0 or len(images) - n_test - n_val < min_train:
            out[cls] = ClassParts(tuple(images))
            continue
        order = list(images)
        rng_of("holdout", seed, cls).shuffle(order)
        test, val = sorted(order[:n_test]), sorted(order[n_test : n_test + n_val])
        held = set(test) | set(val)
        out[cls] = ClassParts(tuple(i for i in images if i not in held), tuple(val), tuple(test))
    return out


def parts_text(parts: dict[str, ClassParts]) -> str:
    """``holdout.json``: the held-out images of each class (train is the rest)."""
    return (
        json.dumps(
            {cls: {"val": list(p.val), "test": list(p.test)} for cls, p in sorted(parts.items())},
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )


def read_held_out(split_dir: Path) -> set[str]:
    """Every image held out from training in the split at ``split_dir`` (empty for a split
    written before image-level parts existed)."""
    path = Path(split_dir) / HOLDOUT_FILE
    if not path.exists():
        return set()
    data = json.loads(path.read_text())
    return {image for entry in data.values() for part in ("val", "test") for image in entry[part]}
