"""Splits: class-disjoint folds, byte-identical seeded episode files, training sampler."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lerenet.config.schema import SplitConfig
from lerenet.data.episodes import EpisodeDataset
from lerenet.data.ingest import ingest
from lerenet.data.manifest import read_manifest
from lerenet.data.splits import (
    TrainEpisodeSampler,
    assign_folds,
    read_episodes,
    read_folds,
    split_dataset,
)

CFG = SplitConfig(num_folds=2, val_classes=1, episodes_per_class=5, shots=[1, 5])


def test_split_is_byte_identical_for_same_inputs(synthetic_dataset: Path, tmp_path: Path):
    a = split_dataset(synthetic_dataset, CFG, tmp_path / "a")
    b = split_dataset(synthetic_dataset, CFG, tmp_path / "b")
    assert a["split_sha256"] == b["split_sha256"]
    for rel in a["files"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    other = split_dataset(synthetic_dataset, CFG.model_copy(update={"seed": 1}), tmp_path / "c")
    assert other["split_sha256"] != a["split_sha256"]


def test_folds_are_class_disjoint_and_episodes_well_formed(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    split_dataset(synthetic_dataset, CFG, tmp_path)
    classes = {r.image: r.cls for r in read_manifest(synthetic_dataset)}
    folds = read_folds(tmp_path)
    tests = [set(f.test) for f in folds]
    assert not tests[0] & tests[1]  # every class is novel in at most one fold
    for i, fold in enumerate(folds):
        assert not (
            set(fold.train) & set(fold.val)
            or set(fold.train) & set(fold.test)
            or set(fold.val) & set(fold.test)
        )
        for part, allowed in (("val", fold.val), ("test", fold.test)):
            for shots in (1, 5):
                eps = read_episodes(tmp_path / f"fold{i}" / f"{part}_{shots}shot.csv")
                assert len(eps) == 5 * len(allowed)
                for ep in eps:
                    assert ep.cls in allowed and len(ep.supports) == shots
                    assert ep.query not in ep.supports and len(set(ep.supports)) == shots
                    assert {classes[x] for x in (ep.query, *ep.supports)} == {ep.cls}


def test_newly_ingested_class_is_novel_in_every_fold(
    synthetic_source: Path, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    shutil.copytree(synthetic_source, first, ignore=shutil.ignore_patterns("*Synth_Stain*"))
    root = tmp_path / "data"
    ingest(str(first), root, workers=1, show_progress=False)
    ingest(str(synthetic_source), root, workers=1, show_progress=False)
    lineage = split_dataset(root, CFG, tmp_path / "splits")
    assert lineage["novel_classes"] == ["Synth_Stain"]
    for fold in read_folds(tmp_path / "splits"):
        assert "Synth_Stain" in fold.test and "Synth_Stain" not in fold.train + fold.val


def test_explicit_folds_and_their_errors() -> None:
    folds = assign_folds(
        ["a", "b", "c"],
        seed=0,
        num_folds=1,
        val_classes=1,
        explicit=[{"train": ["a"], "val": ["b"], "test": ["c"]}],
    )
    assert (folds[0].train, folds[0].val, folds[0].test) == (["a"], ["b"], ["c"])
    with pytest.raises(ValueError, match="not in the manifest"):
        assign_folds(
            ["a", "b"],
            seed=0,
            num_folds=1,
            val_classes=1,
            explicit=[{"train": ["a"], "test": ["zzz"]}],
        )
    with pytest.raises(ValueError, match="overlap"):
        assign_folds(
            ["a", "b"],
            seed=0,
            num_folds=1,
            val_classes=1,
            explicit=[{"train": ["a"], "test": ["a", "b"]}],
        )
    with pytest.raises(ValueError, match="cannot make 3 folds"):
        assign_folds(["a", "b", "c"], seed=0, num_folds=3, val_classes=1)


def test_train_sampler_is_seeded_per_step(synthetic_dataset: Path) -> None:
    pairs = read_manifest(synthetic_dataset)
    sampler = TrainEpisodeSampler(pairs, ["Synth_Pit", "Synth_Crack"], shots=2, seed=3)
    assert sampler.batch(7, 4) == TrainEpisodeSampler(
        pairs, ["Synth_Pit", "Synth_Crack"], shots=2, seed=3
    ).batch(7, 4)
    assert sampler.batch(7, 4) != sampler.batch(8, 4)
    assert {ep.cls for s in range(20) for ep in sampler.batch(s, 2)} == {"Synth_Pit", "Synth_Crack"}
    # several K: one per step for the whole batch, both drawn over the steps, seeded
    mixed = TrainEpisodeSampler(pairs, ["Synth_Pit", "Synth_Crack"], shots=[1, 3], seed=3)
    ks = [{len(ep.supports) for ep in mixed.batch(s, 4)} for s in range(30)]
    assert all(len(k) == 1 for k in ks) and set().union(*ks) == {1, 3}
    assert mixed.batch(5, 4) == TrainEpisodeSampler(
        pairs, ["Synth_Pit", "Synth_Crack"], shots=[3, 1], seed=3
    ).batch(5, 4)


@pytest.mark.parametrize("train", [False, True])
def test_episode_dataset_items_follow_the_contract(synthetic_dataset: Path, train: bool):
    pairs = read_manifest(synthetic_dataset)
    sampler = TrainEpisodeSampler(pairs, ["Synth_Patch"], shots=3, seed=0)
    ds = EpisodeDataset(
        synthetic_dataset,
        sampler.batch(0, 2),
        ["Synth_Patch"],
        image_size=48,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        train=train,
        seed=1,
    )
    item = ds[0]
    assert item["query_img"].shape == (3, 48, 48)
    assert item["support_imgs"].shape == (3, 3, 48, 48)
    assert item["support_masks"].shape == (3, 48, 48) and item["class_id"] == 0
    values = set(torch.unique(item["support_masks"]).tolist())
    assert values <= ({0, 1, 255} if train else {0, 1}) and 1 in values
    again = ds[0]
    assert torch.equal(item["query_img"], again["query_img"])  # item-seeded augmentation


def test_capped_validation_keeps_every_class() -> None:
    from lerenet.data.splits import Episode
    from lerenet.evaluation.scoring import balanced_head

    episodes = [Episode(c, f"{c}/{i}.png", (f"{c}/s{i}.png",)) for c in "abc" for i in range(5)]
    head = balanced_head(episodes, 6)
    assert [e.cls for e in head] == ["a", "b", "c", "a", "b", "c"]
    assert head[0] == episodes[0] and head[3] == episodes[1]  # file order within a class
    one = [e for e in episodes if e.cls == "a"]
    assert balanced_head(one, 3) == one[:3]  # one class: the plain head, as before
    assert len(balanced_head(episodes, 100)) == 15


def test_held_out_images_are_never_trained_on_and_are_the_seen_queries(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    """Every class is split at image level (seeded): seen-class episodes of a fold's training
    classes take queries from the held-out part and supports from the training part, and the
    training sampler never draws a held-out image."""
    import json

    from lerenet.data.holdout import read_held_out

    # 7 pairs a class: 2 held out for test, 1 for validation, 4 to train (≥ 2 supports)
    cfg = CFG.model_copy(update={"holdout_share": 0.25, "seen_val_share": 0.1, "shots": [1, 2]})
    lineage = split_dataset(synthetic_dataset, cfg, tmp_path)
    assert "holdout.json" in lineage["files"]
    parts = json.loads((tmp_path / "holdout.json").read_text())
    held = read_held_out(tmp_path)
    assert held and held == {i for p in parts.values() for i in p["val"] + p["test"]}
    pairs = read_manifest(synthetic_dataset)
    for fold_index, fold in enumerate(read_folds(tmp_path)):
        for part in ("seen_val", "seen_test"):
            for shots in (1, 2):
                eps = read_episodes(tmp_path / f"fold{fold_index}" / f"{part}_{shots}shot.csv")
                assert {ep.cls for ep in eps} == set(fold.train)
                for ep in eps:
                    assert ep.query in parts[ep.cls][part.removeprefix("seen_")]
                    assert not set(ep.supports) & held and len(ep.supports) == shots
        sampler = TrainEpisodeSampler(pairs, fold.train, shots=1, seed=0, exclude=held)
        drawn = {
            i
            for step in range(50)
            for ep in sampler.batch(step, 4)
            for i in (ep.query, *ep.supports)
        }
        assert drawn and not drawn & held
        assert not set(sampler.images()) & held
    # the parts are part of the split's identity; a share of 0 holds nothing out
    none = split_dataset(
        synthetic_dataset, CFG.model_copy(update={"holdout_share": 0.0}), tmp_path / "n"
    )
    assert none["split_sha256"] != lineage["split_sha256"] and not read_held_out(tmp_path / "n")


def test_the_split_result_is_what_the_files_hold_and_serves_without_them(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    """``Split`` is the split stage's typed result: read back from its folder it equals the
    files, and episodes are served from it after the folder is gone (a flow's in-memory path)."""
    from lerenet.config.schema import Params
    from lerenet.data.split_result import Split
    from lerenet.evaluation.scoring import episode_dataset, has_episodes

    lineage = split_dataset(synthetic_dataset, CFG, tmp_path / "s")
    split = Split.read(tmp_path / "s")
    assert split.sha256 == lineage["split_sha256"]
    assert list(split.folds) == read_folds(tmp_path / "s")
    assert split.episodes_of(0, "test", 5) == read_episodes(tmp_path / "s/fold0/test_5shot.csv")
    with pytest.raises(FileNotFoundError, match="split.shots must include 3"):
        split.episodes_of(0, "test", 3)
    shutil.rmtree(tmp_path / "s")
    params = Params.model_validate(
        {"data": {"root": str(synthetic_dataset)}, "split": {"out_dir": str(tmp_path / "s")}}
    )
    model = torch.nn.Module()
    model.backbone = torch.nn.Module()
    model.backbone.mean, model.backbone.std = (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)
    dataset = episode_dataset(params, model, "test", 1, 0, split=split)
    assert dataset.episodes == split.episodes_of(0, "test", 1)
    assert has_episodes(params, "test", split)
    with pytest.raises(FileNotFoundError, match="run `lerenet split` first"):
        Split.read(tmp_path / "s")
