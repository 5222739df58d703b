"""The split stage: class-disjoint folds, held-out images of every class and the seeded
episode files (``lerenet/data/splits.py`` does the work)."""

from __future__ import annotations

from pathlib import Path

from lerenet.config.schema import Params
from lerenet.stages.declare import DATA, SPLITS, VALIDATE_DIR, Out, StageSpec

SPEC = StageSpec(
    "split",
    cmd="lerenet split",
    entry=(__name__,),
    data=(f"{DATA}/manifest.csv", f"{VALIDATE_DIR}/report.json"),
    params=("split",),
    outs=(Out(SPLITS),),
)


def run(params: Params) -> dict:
    """Split ``data.root`` into ``split.out_dir``; returns the split's lineage record."""
    from lerenet.data.splits import split_dataset

    return split_dataset(Path(params.data.root), params.split)
