"""The split stage's typed result: what training and evaluation receive.

A flow passes the ``Split`` from the split task to training, evaluation and the gate in memory;
the CLI (``dvc repro``) reads the same object back from ``split.out_dir`` with ``Split.read``,
the one reader of the files ``write_split`` leaves there (``folds.json``, ``holdout.json``,
the episode CSVs, ``lineage.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lerenet.data.holdout import read_held_out
from lerenet.data.splits import Episode, Fold, read_episodes, read_folds


def episode_key(fold: int, part: str, shots: int) -> str:
    """``fold0/test_1shot.csv``: an episode list's name, as its file is named in the split."""
    return f"fold{fold}/{part}_{shots}shot.csv"


@dataclass(frozen=True)
class Split:
    """Folds, the images held out of training, every fixed episode list, and the sha256 that
    names them all (``lineage.json``'s ``split_sha256``)."""

    sha256: str
    folds: tuple[Fold, ...]
    held_out: frozenset[str] = frozenset()
    episodes: dict[str, tuple[Episode, ...]] = field(default_factory=dict, repr=False)
    novel_classes: tuple[str, ...] = ()
    out_dir: str = ""

    def episodes_of(self, fold: int, part: str, shots: int) -> list[Episode]:
        """The fixed ``part`` episodes of ``fold`` at ``shots`` (FileNotFoundError when the
        split wrote none: another shot count, or a split older than that part)."""
        key = episode_key(fold, part, shots)
        if key not in self.episodes:
            raise FileNotFoundError(
                f"{Path(self.out_dir) / key}: no episode file; run `lerenet split` "
                f"(split.shots must include {shots})"
            )
        return list(self.episodes[key])

    def has_episodes(self, fold: int, part: str, shots: list[int]) -> bool:
        """Whether there are ``part`` episodes of ``fold`` at every one of ``shots``."""
        return all(self.episodes.get(episode_key(fold, part, k)) for k in shots)

    @classmethod
    def read(cls, out_dir: Path) -> Split:
        """The split written at ``out_dir`` (FileNotFoundError, with the fix, without one)."""
        out_dir = Path(out_dir)
        if not (out_dir / "folds.json").exists():
            raise FileNotFoundError(f"{out_dir}/folds.json: no split; run `lerenet split` first")
        lineage_path = out_dir / "lineage.json"
        lineage = json.loads(lineage_path.read_text()) if lineage_path.exists() else {}
        episodes = {
            path.relative_to(out_dir).as_posix(): tuple(read_episodes(path))
            for path in sorted(out_dir.glob("fold*/*.csv"))
        }
        return cls(
            str(lineage.get("split_sha256", "")),
            tuple(read_folds(out_dir)),
            frozenset(read_held_out(out_dir)),
            episodes,
            tuple(lineage.get("novel_classes", ())),
            str(out_dir),
        )
