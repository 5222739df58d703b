"""The split stage: class-disjoint folds, held-out images of every class and the seeded
episode files (``lerenet/data/splits.py`` does the work)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lerenet.config.schema import Params
from lerenet.data.split_result import Split
from lerenet.stages.declare import DATA, SPLITS, VALIDATE_REPORT, Out, StageSpec

SPEC = StageSpec(
    "split",
    cmd="lerenet split",
    entry=(__name__,),
    data=(f"{DATA}/manifest.csv", VALIDATE_REPORT),
    params=("split",),
    outs=(Out(SPLITS),),
)


def run(params: Params) -> Split:
    """Split ``data.root`` into ``split.out_dir``; returns the split, which a flow hands to
    training, evaluation and the gate in memory."""
    from lerenet.data.splits import split_dataset

    lineage = split_dataset(Path(params.data.root), params.split)
    split = Split.read(Path(params.split.out_dir))
    return replace(split, novel_classes=tuple(lineage["novel_classes"]))
