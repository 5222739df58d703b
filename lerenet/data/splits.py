"""Class-disjoint folds and the fixed, seeded validation/test episode files.

Folds (``split.folds`` explicit, else seeded): each fold has train, validation and test (novel)
classes, pairwise disjoint. Seeded assignment shuffles the classes with ``split.seed`` and deals
them into ``num_folds`` test groups; each fold's validation classes are taken from the remaining
ones, the rest train. Classes introduced by the latest ingest go to every fold's test classes
(``new_classes_to_test``): a new defect is evaluated as never seen, not trained on.

Episode files are CSV rows ``episode,class,query,supports`` (supports joined with ``;``),
written for every fold × {val, test} × shot. They depend only on the manifest's rows, the
fold's classes and the seed, so the same inputs give byte-identical files; ``lineage.json``
records each file's sha256 and one ``split_sha256`` over all of them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from lerenet.config.schema import SplitConfig
from lerenet.data.holdout import HOLDOUT_FILE, ClassParts, parts_text, split_images
from lerenet.data.lock import writer_lock
from lerenet.data.manifest import Pair, classes_of, read_manifest


@dataclass(frozen=True)
class Fold:
    train: list[str]
    val: list[str]
    test: list[str]


@dataclass(frozen=True)
class Episode:
    cls: str
    query: str  # manifest image path
    supports: tuple[str, ...]


def _rng(*parts: object) -> random.Random:
    """A generator seeded from a stable hash (Python's hash() is salted per process)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def assign_folds(
    classes: list[str],
    *,
    seed: int,
    num_folds: int,
    val_classes: int,
    explicit: list[dict[str, list[str]]] | None = None,
    novel: list[str] | None = None,
) -> list[Fold]:
    """Build class-disjoint folds; ``novel`` classes join every fold's test classes."""
    novel = sorted(set(novel or []) & set(classes))
    if explicit:
        folds = [
            Fold(sorted(f.get("train", [])), sorted(f.get("val", [])), sorted(f.get("test", [])))
            for f in explicit
        ]
        for i, fold in enumerate(folds):
            unknown = set(fold.train + fold.val + fold.test) - set(classes)
            if unknown:
                raise ValueError(
                    f"split.folds[{i}] names classes not in the manifest: {sorted(unknown)}"
                )
    else:
        pool = sorted(set(classes) - set(novel))
        needed = num_folds + val_classes + 1
        if len(pool) < needed:
            raise ValueError(
                f"{len(pool)} classes cannot make {num_folds} folds with {val_classes} "
                f"validation class(es) and ≥1 training class each (need ≥ {needed}); "
                "lower split.num_folds or add classes"
            )
        _rng("folds", seed).shuffle(pool)
        groups = [pool[i::num_folds] for i in range(num_folds)]
        folds = []
        for i, test in enumerate(groups):
            rest = [c for c in pool if c not in test]
            val = sorted(_rng("val", seed, i).sample(rest, val_classes))
            folds.append(Fold(sorted(c for c in rest if c not in val), val, sorted(test)))
    out = []
    for i, fold in enumerate(folds):
        train = [c for c in fold.train if c not in novel]
        val = [c for c in fold.val if c not in novel]
        test = sorted(set(fold.test) | set(novel))
        if set(train) & set(val) or set(train) & set(test) or set(val) & set(test):
            raise ValueError(f"fold {i}: train/val/test classes overlap")
        if not train or not test:
            raise ValueError(f"fold {i}: needs at least one train and one test class")
        out.append(Fold(train, val, test))
    return out


def make_episodes(
    pairs: list[Pair],
    classes: list[str],
    *,
    shots: int,
    per_class: int,
    seed: int,
    tag: str,
) -> list[Episode]:
    """``per_class`` episodes per class: a query and ``shots`` distinct other supports."""
    by_class: dict[str, list[str]] = {}
    for p in sorted(pairs, key=lambda p: p.image):
        by_class.setdefault(p.cls, []).append(p.image)
    episodes = []
    for cls in sorted(classes):
        images = by_class.get(cls, [])
        if len(images) < shots + 1:
            raise ValueError(
                f"class {cls} has {len(images)} pairs; {shots}-shot episodes need {shots + 1}"
            )
        rng = _rng("episodes", seed, tag, cls, shots)
        for _ in range(per_class):
            chosen = rng.sample(images, shots + 1)
            episodes.append(Episode(cls, chosen[0], tuple(chosen[1:])))
    return episodes


def make_seen_episodes(
    parts: dict[str, ClassParts],
    classes: list[str],
    *,
    part: str,
    shots: int,
    per_class: int,
    seed: int,
    tag: str,
) -> list[Episode]:
    """``per_class`` episodes per training class with a held-out ``part`` (val|test): the query
    from that part, ``shots`` supports from the class's training part (``data/holdout.py``).
    Classes without held-out images, or with fewer training images than ``shots``, get none."""
    episodes = []
    for cls in sorted(classes):
        entry = parts.get(cls)
        queries = list(getattr(entry, part, ())) if entry else []
        if not queries or len(entry.train) < shots:
            continue
        rng = _rng("seen", seed, tag, cls, shots)
        for _ in range(per_class):
            episodes.append(
                Episode(cls, rng.choice(queries), tuple(rng.sample(list(entry.train), shots)))
            )
    return episodes


def episodes_text(episodes: list[Episode]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["episode", "class", "query", "supports"])
    for i, ep in enumerate(episodes):
        writer.writerow([i, ep.cls, ep.query, ";".join(ep.supports)])
    return buffer.getvalue()


def read_episodes(path: Path) -> list[Episode]:
    with open(path, newline="") as handle:
        return [
            Episode(r["class"], r["query"], tuple(r["supports"].split(";")))
            for r in csv.DictReader(handle)
        ]


def episode_file(out_dir: Path, fold: int, part: str, shots: int) -> Path:
    return Path(out_dir) / f"fold{fold}" / f"{part}_{shots}shot.csv"


def write_split(
    pairs: list[Pair],
    out_dir: Path,
    folds: list[Fold],
    *,
    shots: list[int],
    per_class: int,
    seed: int,
    holdout: tuple[float, float] = (0.0, 0.0),
    holdout_seed: int | None = None,
) -> dict:
    """Write folds.json, holdout.json, every episode file and lineage.json; returns the
    lineage record. ``holdout``: the (test, val) shares of each class's images held out from
    training (``data/holdout.py``); their seen-class episodes go to ``seen_test``/``seen_val``
    files of every fold's training classes. ``holdout_seed`` (default ``seed``) seeds the parts
    alone, so that several episode seeds can share one set of held-out images."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hashes: dict[str, str] = {}

    def put(rel: str, text: str) -> None:
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        hashes[rel] = hashlib.sha256(text.encode()).hexdigest()

    put("folds.json", json.dumps([asdict(f) for f in folds], indent=2, sort_keys=True) + "\n")
    parts = split_images(
        pairs,
        seed=seed if holdout_seed is None else holdout_seed,
        test_share=holdout[0],
        val_share=holdout[1],
        min_train=max(shots),
        rng_of=_rng,
    )
    put(HOLDOUT_FILE, parts_text(parts))
    for i, fold in enumerate(folds):
        for part in ("val", "test"):
            for k in shots:
                eps = make_seen_episodes(
                    parts,
                    fold.train,
                    part=part,
                    shots=k,
                    per_class=per_class,
                    seed=seed,
                    tag=f"seen_{part}{i}",
                )
                put(
                    episode_file(out_dir, i, f"seen_{part}", k).relative_to(out_dir).as_posix(),
                    episodes_text(eps),
                )
        for part, classes in (("val", fold.val), ("test", fold.test)):
            for k in shots:
                eps = (
                    make_episodes(
                        pairs, classes, shots=k, per_class=per_class, seed=seed, tag=f"{part}{i}"
                    )
                    if classes
                    else []
                )
                put(
                    episode_file(out_dir, i, part, k).relative_to(out_dir).as_posix(),
                    episodes_text(eps),
                )
    combined = hashlib.sha256(
        "".join(f"{k}:{v}\n" for k, v in sorted(hashes.items())).encode()
    ).hexdigest()
    lineage = {
        "split_sha256": combined,
        "files": dict(sorted(hashes.items())),
        "seed": seed,
        "shots": shots,
        "episodes_per_class": per_class,
        "holdout": {"test_share": holdout[0], "val_share": holdout[1]},
    }
    (out_dir / "lineage.json").write_text(json.dumps(lineage, indent=2) + "\n")
    return lineage


def read_folds(out_dir: Path) -> list[Fold]:
    return [Fold(**f) for f in json.loads((Path(out_dir) / "folds.json").read_text())]


class TrainEpisodeSampler:
    """Infinite, seeded stream of training episodes drawn from the train classes.

    Each step's episodes come from ``random.Random`` seeded by (seed, step), so resuming at step
    N draws exactly what an uninterrupted run draws at step N. ``shots`` may list several K:
    each step draws one for its whole batch. ``extra`` classes (synthetic tasks: class → image
    paths) supply a share ``extra_share`` of the episodes. ``exclude``: images held out from
    training (``data/holdout.py``), never drawn.
    """

    def __init__(
        self,
        pairs: list[Pair],
        classes: list[str],
        shots: int | list[int],
        seed: int,
        extra: dict[str, list[str]] | None = None,
        extra_share: float = 0.0,
        exclude: set[str] | None = None,
    ) -> None:
        choices = sorted(set(shots)) if isinstance(shots, list) else [shots]
        self.by_class: dict[str, list[str]] = {}
        for p in sorted(pairs, key=lambda p: p.image):
            if p.cls in classes and p.image not in (exclude or ()):
                self.by_class.setdefault(p.cls, []).append(p.image)
        self.extra = {c: sorted(images) for c, images in (extra or {}).items()}
        short = [
            c
            for c in [*classes, *self.extra]
            if len(self.by_class.get(c, self.extra.get(c, []))) < choices[-1] + 1
        ]
        if short:
            raise ValueError(f"train classes with fewer than {choices[-1] + 1} pairs: {short}")
        self.classes = sorted(self.by_class)
        self.choices, self.seed = choices, seed
        self.extra_share = extra_share if self.extra else 0.0

    def images(self) -> list[str]:
        """Every image an episode can draw (real and extra classes)."""
        return sorted({i for pool in (self.by_class, self.extra) for v in pool.values() for i in v})

    def batch(self, step: int, size: int) -> list[Episode]:
        """``size`` episodes of one K (drawn per step when several are allowed)."""
        rng = _rng("train", self.seed, step)
        shots = self.choices[0] if len(self.choices) == 1 else rng.choice(self.choices)
        out = []
        for _ in range(size):
            pool = self.by_class
            if self.extra_share and rng.random() < self.extra_share:
                pool = self.extra
            cls = rng.choice(sorted(pool))
            chosen = rng.sample(pool[cls], shots + 1)
            out.append(Episode(cls, chosen[0], tuple(chosen[1:])))
        return out


def split_dataset(root: Path, cfg: SplitConfig, out_dir: Path | None = None) -> dict:
    """The split stage: folds + episode files for the dataset at ``root``; returns lineage.

    Novel classes: ``cfg.novel_classes`` plus, when ``cfg.new_classes_to_test``, the classes
    the latest ingest added (if they are not the whole dataset, as on a first ingest).
    """
    from lerenet.data.ingest import last_new_classes

    with writer_lock(root):
        pairs = read_manifest(root)
        if not pairs:
            raise FileNotFoundError(f"{root}/manifest.csv: no pairs; run `lerenet ingest` first")
        classes = classes_of(pairs)
        novel = set(cfg.novel_classes)
        if cfg.new_classes_to_test:
            recent = set(last_new_classes(root))
            if recent and recent != set(classes):
                novel |= recent
        folds = assign_folds(
            classes,
            seed=cfg.seed,
            num_folds=cfg.num_folds,
            val_classes=cfg.val_classes,
            explicit=cfg.folds,
            novel=sorted(novel),
        )
        lineage = write_split(
            pairs,
            Path(out_dir or cfg.out_dir),
            folds,
            shots=cfg.shots,
            per_class=cfg.episodes_per_class,
            seed=cfg.seed,
            holdout=(cfg.holdout_share, cfg.seen_val_share),
        )
        lineage["novel_classes"] = sorted(novel)
        return lineage
