"""The one path rule (``lerenet/data/paths.py``), row by row as the hostile pass found them:
every name that becomes a path stays inside its root, links are recorded as text and never
followed, archives expand within a budget, and predict writes one output per input."""

from __future__ import annotations

import csv
import hashlib
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lerenet.data import sources
from lerenet.data.ingest import ingest
from lerenet.data.manifest import read_manifest, write_manifest
from lerenet.data.paths import PathEscape, inside, unique_names
from lerenet.data.sources import UnsafeArchiveError


def _pair(folder: Path, stem: str, cls: str = "A", defect: bool = True) -> None:
    rng = np.random.default_rng(len(stem))
    (folder / "images" / cls).mkdir(parents=True, exist_ok=True)
    (folder / "masks" / cls).mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)).save(
        folder / "images" / cls / f"{stem}.png"
    )
    mask = np.zeros((32, 40), np.uint8)
    if defect:
        mask[5:15, 5:20] = 255
    Image.fromarray(mask).save(folder / "masks" / cls / f"{stem}.png")


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}


@pytest.mark.parametrize("name", ["../../../../x", "/tmp/abs", "a/b", "..", ".hidden", ""])
def test_a_source_name_that_is_not_one_folder_name_is_refused_and_nothing_written(
    tmp_path: Path, name: str
) -> None:
    src = tmp_path / "work" / "src"
    _pair(src, "good")
    _pair(src, "empty", defect=False)  # would be quarantined under the source name
    before = _files(tmp_path)
    with pytest.raises(PathEscape, match="--source-name"):
        ingest(str(src), tmp_path / "work" / "data", source_name=name, show_progress=False)
    assert _files(tmp_path) == before


def test_a_source_manifest_cannot_choose_where_quarantine_writes(tmp_path: Path) -> None:
    """A canonical source's own manifest.csv names ``source_file`` (provenance); a row with
    ``../`` there once wrote the quarantined file wherever it pointed."""
    src = tmp_path / "src"
    _pair(src, "empty", defect=False)
    (src / "manifest.csv").write_text(
        "image,mask,class,source,source_file\n"
        "images/A/empty.png,masks/A/empty.png,A,up,../../../../../../tmp/planted.png\n"
    )
    root = tmp_path / "data"
    report = ingest(str(src), root, workers=1, show_progress=False)
    assert [f.check for f in report.quarantined] == ["mask_not_empty"]
    assert _files(root / "quarantine") == {
        "reasons.csv",
        "ingest/src/images/A/empty.png",
        "ingest/src/masks/A/empty.png",
    }
    assert not Path("/tmp/planted.png").exists()


def test_a_symlinked_class_folder_is_recorded_as_links_never_copied(tmp_path: Path) -> None:
    outside = tmp_path / "secrets"
    _pair(outside, "private")
    src = tmp_path / "src"
    _pair(src, "good")
    (src / "images" / "B").symlink_to(outside / "images" / "A", target_is_directory=True)
    (src / "masks" / "B").symlink_to(outside / "masks" / "A", target_is_directory=True)
    root = tmp_path / "data"
    report = ingest(str(src), root, workers=1, show_progress=False)
    assert report.added == 1 and [f.check for f in report.quarantined] == ["inside_source"]
    secret = hashlib.sha256((outside / "images" / "A" / "private.png").read_bytes()).digest()
    for path in root.rglob("*"):
        assert not path.is_symlink(), path
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).digest() != secret, path
    note = root / "quarantine" / "ingest" / "src" / "images" / "B" / "private.png.link.txt"
    assert note.read_text() == f"symbolic link to {(outside / 'images/A/private.png').resolve()}\n"


def test_a_linked_file_is_recorded_as_text_with_its_target(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _pair(src, "good")
    _pair(tmp_path / "elsewhere", "other")
    (src / "images" / "A" / "linked.png").symlink_to(tmp_path / "elsewhere/images/A/other.png")
    (src / "masks" / "A" / "linked.png").symlink_to(tmp_path / "elsewhere/masks/A/other.png")
    root = tmp_path / "data"
    ingest(str(src), root, workers=1, show_progress=False)
    quarantined = _files(root / "quarantine" / "ingest")
    assert quarantined == {"src/images/A/linked.png.link.txt", "src/masks/A/linked.png.link.txt"}


def test_validate_never_moves_a_file_outside_its_root(synthetic_dataset: Path, tmp_path: Path):
    from lerenet.data.suite import SuiteLimits
    from lerenet.data.validate import validate_dataset

    victim = synthetic_dataset.parent / "victim.txt"
    victim.write_text("not the dataset's\n")
    rows = read_manifest(synthetic_dataset)
    escape = rows[0].__class__(**{**rows[0].__dict__, "image": "../victim.txt"})
    write_manifest(synthetic_dataset, rows + [escape])
    report = validate_dataset(
        synthetic_dataset, tmp_path / "report", SuiteLimits(), workers=1, show_progress=False
    )
    assert victim.read_text() == "not the dataset's\n"
    assert "../victim.txt" in {f.file for f in report.findings}
    assert not list((synthetic_dataset / "quarantine").rglob("victim.txt"))


def test_a_link_inside_the_dataset_is_not_followed_by_validate(synthetic_dataset: Path):
    rows = read_manifest(synthetic_dataset)
    image = synthetic_dataset / rows[0].image
    image.unlink()
    image.symlink_to(synthetic_dataset / rows[1].image)
    with pytest.raises(PathEscape, match="symbolic link"):
        inside(synthetic_dataset, rows[0].image, "manifest path")


def test_a_zip_bomb_stops_while_extracting_and_leaves_no_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 5 MiB member of zeros compresses ~1000×; the budget (lowered here from 256 MiB so the
    test writes little) is counted on the bytes written, not on what the archive declares."""
    monkeypatch.setattr(sources, "MIN_BUDGET", 1024**2)
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images/A/zeros.png", b"\0" * (5 * 1024**2))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(UnsafeArchiveError, match="decompression bomb"):
        ingest(str(archive), tmp_path / "data", show_progress=False)
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "data" / "images").exists()


def test_an_archive_with_too_many_members_is_refused_before_extracting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "MAX_MEMBERS", 3)
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(4):
            zf.writestr(f"images/A/{i}.png", b"x")
    with pytest.raises(UnsafeArchiveError, match="4 members, more than 3"):
        sources.extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["../x.png", "/etc/x.png", "a\\..\\x.png", "C:/x.png"])
def test_archive_members_that_climb_out_are_refused(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("images/A/ok.png", b"x")
        zf.writestr(name, b"x")
    with pytest.raises(UnsafeArchiveError, match="path traversal"):
        sources.extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_two_queries_with_one_name_get_two_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lerenet.stages.predict import LoadedModel, predict_files

    def half(inputs: dict) -> np.ndarray:
        query = np.asarray(inputs["query_img"])
        return np.where(query.mean(1) > 0, 0.9, 0.1).astype(np.float32)

    monkeypatch.setattr(
        "lerenet.stages.predict.load_for_prediction",
        lambda uri: LoadedModel(half, 32, (0.5,) * 3, (0.25,) * 3),
    )
    bright, dark = np.full((32, 32, 3), 255, np.uint8), np.zeros((32, 32, 3), np.uint8)
    for folder, pixels in (("line1", bright), ("line2", dark)):
        (tmp_path / folder).mkdir()
        Image.fromarray(pixels).save(tmp_path / folder / "part.png")
    Image.fromarray(bright).save(tmp_path / "s.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[4:8, 4:8] = 255
    Image.fromarray(mask).save(tmp_path / "s_mask.png")
    out = tmp_path / "out"
    result = predict_files(
        "unused",
        [(tmp_path / "s.png", tmp_path / "s_mask.png")],
        [tmp_path / "line1", tmp_path / "line2"],
        out,
    )
    assert [f.mask.name for f in result.found] == ["part_mask.png", "part-2_mask.png"]
    assert np.asarray(Image.open(out / "part_mask.png")).min() == 255  # line1's, bright
    assert np.asarray(Image.open(out / "part-2_mask.png")).max() == 0  # line2's, dark
    with open(out / "found.csv", newline="") as handle:
        assert [r["query"] for r in csv.DictReader(handle)] == [
            str(tmp_path / "line1" / "part.png"),
            str(tmp_path / "line2" / "part.png"),
        ]


def test_unique_names_keep_order_and_never_collide_with_a_given_name() -> None:
    assert unique_names(["a", "a", "a-2", "b", "a"]) == ["a", "a-3", "a-2", "b", "a-4"]
