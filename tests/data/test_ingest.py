"""Ingestion: every layout and source kind, incremental adds, and each bad-input kind."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lerenet.data.ingest import ingest, last_new_classes, parse_class_map
from lerenet.data.manifest import read_manifest
from lerenet.data.sources import UnsafeArchiveError


def _pair(size: tuple[int, int] = (40, 32), value: int = 255) -> tuple[Image.Image, Image.Image]:
    rng = np.random.default_rng(size[0] * 7 + value)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[5:15, 5:20] = value
    return img, Image.fromarray(mask)


def _reasons(root: Path) -> list[dict]:
    with open(root / "quarantine" / "reasons.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_canonical_synthetic_ingest_and_noop_reingest(synthetic_source: Path, tmp_path: Path):
    root = tmp_path / "data"
    report = ingest(str(synthetic_source), root, workers=1, show_progress=False)
    assert report.layout == "canonical" and report.added == 42 and not report.quarantined
    assert len(report.new_classes) == 6
    before = (root / "manifest.csv").read_bytes()
    again = ingest(str(synthetic_source), root, workers=1, show_progress=False)
    assert (again.added, again.skipped) == (0, 42)
    assert (root / "manifest.csv").read_bytes() == before


def test_fixture_ingest_reproduces_shared_manifest(fixture_dataset: Path, tmp_path: Path):
    report = ingest(str(fixture_dataset), tmp_path / "data", show_progress=False)
    assert report.added == 54
    ours = (tmp_path / "data" / "manifest.csv").read_text().splitlines()
    theirs = (fixture_dataset / "manifest.csv").read_text().splitlines()
    assert ours[0] == theirs[0] and sorted(ours[1:]) == sorted(theirs[1:])


def test_magnetic_tile_layout(tmp_path: Path) -> None:
    src = tmp_path / "mt"
    for cls in ("MT_Crack", "MT_Free"):
        (src / cls / "Imgs").mkdir(parents=True)
        for i in range(2):
            img, mask = _pair()
            img.save(src / cls / "Imgs" / f"exp{i}.jpg")
            mask.save(src / cls / "Imgs" / f"exp{i}.png")
    report = ingest(str(src), tmp_path / "data", workers=1, show_progress=False)
    assert report.layout == "magnetic_tile"
    assert report.per_class == {"MT_Crack": 2}  # MT_Free (defect-free) skipped
    row = read_manifest(tmp_path / "data")[0]
    assert row.source_file == "MT_Crack/Imgs/exp0.jpg" and row.image.endswith(".png")


def test_sd_saliency_layout_with_class_map(tmp_path: Path) -> None:
    src = tmp_path / "sd"
    (src / "Source Images").mkdir(parents=True)
    (src / "Ground truth").mkdir()
    for name in ("In_1", "Sc_2"):
        img, mask = _pair()
        img.save(src / "Source Images" / f"{name}.bmp")
        mask.save(src / "Ground truth" / f"{name}.png")
    report = ingest(
        str(src),
        tmp_path / "data",
        class_map={"Steel_Scratches": "Scratch"},
        workers=1,
        show_progress=False,
    )
    assert report.layout == "sd_saliency"
    assert report.per_class == {"Scratch": 1, "Steel_Inclusion": 1}


def test_suffix_layout_and_grey_masks_binarised(tmp_path: Path) -> None:
    src = tmp_path / "flat" / "Dent"
    src.mkdir(parents=True)
    img, mask = _pair(value=200)  # grey mask: binarised by the ≥128 rule
    img.save(src / "a.jpg")
    mask.save(src / "a_mask.png")
    img2, mask2 = _pair(size=(30, 30), value=100)
    faint = np.asarray(mask2).copy()
    faint[20:25, 20:25] = 60  # three levels, none ≥ 128: no reading finds a defect
    img2.save(src / "b.jpg")
    Image.fromarray(faint).save(src / "b_mask.png")
    root = tmp_path / "data"
    report = ingest(str(tmp_path / "flat"), root, layout="suffix", workers=1, show_progress=False)
    assert report.added == 1 and report.binarized == 1
    stored = np.asarray(Image.open(root / "masks" / "Dent" / "a.png"))
    assert set(np.unique(stored)) == {0, 255}
    [reason] = _reasons(root)
    assert reason["check"] == "mask_not_empty"
    assert "0, 60, 100" in reason["reason"]  # the values, so the user sees what was exported


def _label_map(kind: str, defect: np.ndarray) -> Image.Image:
    """``defect`` (bool H×W) as labelling tools export it."""
    if kind == "0/1":
        return Image.fromarray(defect.astype(np.uint8))
    if kind == "16-bit 0/1":
        return Image.fromarray(defect.astype(np.uint16))
    if kind == "palette":
        img = Image.fromarray(defect.astype(np.uint8), "P")
        img.putpalette([0, 0, 0, 128, 0, 0])  # VOC's first class colour: grey 38
        return img
    rgb = np.zeros((*defect.shape, 3), np.uint8)
    rgb[defect] = (255, 0, 0)  # red on black: grey 76
    return Image.fromarray(rgb)


@pytest.mark.parametrize("kind", ["0/1", "16-bit 0/1", "palette", "red on black"])
def test_two_value_masks_are_read_as_labelled(tmp_path: Path, kind: str) -> None:
    """A mask with two values and none ≥ 128 has one reading: the non-zero value is the
    defect. The threshold alone read these as empty and quarantined a user's whole class."""
    src = tmp_path / "flat" / "Dent"
    src.mkdir(parents=True)
    img, mask = _pair()
    defect = np.asarray(mask) > 0
    img.save(src / "a.jpg")
    _label_map(kind, defect).save(src / "a_mask.png")
    root = tmp_path / "data"
    report = ingest(str(tmp_path / "flat"), root, layout="suffix", workers=1, show_progress=False)
    assert report.added == 1, report.quarantined
    stored = np.asarray(Image.open(root / "masks" / "Dent" / "a.png"))
    assert np.array_equal(stored > 0, defect)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_archive_sources(synthetic_source: Path, tmp_path: Path, kind: str) -> None:
    archive = tmp_path / f"src.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for p in synthetic_source.rglob("*.png"):
                zf.write(p, f"pack/{p.relative_to(synthetic_source)}")
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(synthetic_source, arcname="pack")
    report = ingest(str(archive), tmp_path / "data", workers=1, show_progress=False)
    assert report.added == 42


def test_zip_slip_member_is_refused_and_nothing_written(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("images/A/x.png", b"x")
        zf.writestr("../../escape.txt", b"owned")
    with pytest.raises(UnsafeArchiveError, match=r"\.\./\.\./escape\.txt"):
        ingest(str(archive), tmp_path / "data", show_progress=False)
    assert not (tmp_path / "data").exists()
    assert not list(tmp_path.parent.rglob("escape.txt"))


@pytest.mark.parametrize("member", ["absolute", "symlink", "hardlink"])
def test_tar_members_that_could_escape_are_refused(tmp_path: Path, member: str) -> None:
    """An absolute member path, or a link member (pointing anywhere): nothing is written."""
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        data = io.BytesIO(b"x")
        info = tarfile.TarInfo("images/A/x.png")
        info.size = 1
        tf.addfile(info, data)
        evil = tarfile.TarInfo(
            str(tmp_path / "escape.txt") if member == "absolute" else "images/A/link.png"
        )
        if member == "symlink":
            evil.type, evil.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif member == "hardlink":
            evil.type, evil.linkname = tarfile.LNKTYPE, "/etc/passwd"
        else:
            evil.size = 5
        tf.addfile(evil, io.BytesIO(b"owned") if member == "absolute" else None)
    with pytest.raises(UnsafeArchiveError):
        ingest(str(archive), tmp_path / "data", show_progress=False)
    assert not (tmp_path / "data").exists() and not (tmp_path / "escape.txt").exists()


def test_a_source_file_linking_outside_the_source_is_quarantined_not_followed(
    tmp_path: Path,
) -> None:
    """A drop folder may hold a link to ~/.aws/credentials or another class's images: the
    link is quarantined as text, its target is neither ingested nor copied anywhere."""
    src = tmp_path / "src"
    for kind in ("images", "masks"):
        (src / kind / "A").mkdir(parents=True)
    img, mask = _pair()
    img.save(tmp_path / "outside.png")
    img.save(src / "images" / "A" / "inside.png")
    (src / "images" / "A" / "linked.png").symlink_to(tmp_path / "outside.png")
    for stem in ("inside", "linked"):
        mask.save(src / "masks" / "A" / f"{stem}.png")
    root = tmp_path / "data"
    report = ingest(str(src), root, workers=1, show_progress=False)
    assert report.added == 1
    assert [(f.check, Path(f.file).name) for f in report.quarantined] == [
        ("inside_source", "linked.png")
    ]
    kept = root / "quarantine" / "ingest" / "src" / "images" / "A" / "linked.png.link.txt"
    # the link as text, neither a copy of what it points at nor a link (which `dvc push`
    # would follow)
    assert kept.read_text() == f"symbolic link to {tmp_path / 'outside.png'}\n"
    assert not any(p.is_symlink() for p in root.rglob("*"))
    assert not (root / "images" / "A" / "linked.png").exists()


def test_incremental_class_changes_nothing_already_there(
    synthetic_source: Path, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    shutil.copytree(synthetic_source, first, ignore=shutil.ignore_patterns("*Synth_Stain*"))
    root = tmp_path / "data"
    ingest(str(first), root, workers=1, show_progress=False)
    before = _tree_digest(root / "images") | _tree_digest(root / "masks")
    rows_before = read_manifest(root)
    report = ingest(str(synthetic_source), root, workers=1, show_progress=False)
    assert report.new_classes == ["Synth_Stain"] and report.added == 7
    after = _tree_digest(root / "images") | _tree_digest(root / "masks")
    assert all(after[k] == v for k, v in before.items())
    assert set(rows_before) <= set(read_manifest(root))
    assert last_new_classes(root) == ["Synth_Stain"]


def test_bad_inputs_are_quarantined_with_reasons_and_kept(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "images" / "A").mkdir(parents=True)
    (src / "masks" / "A").mkdir(parents=True)
    good_img, good_mask = _pair()
    png = io.BytesIO()
    good_img.save(png, format="PNG")
    cases = {
        "good": (png.getvalue(), good_mask),
        "corrupt": (b"definitely not an image", good_mask),
        "truncated": (png.getvalue()[: len(png.getvalue()) // 2], good_mask),
        "mismatch": (png.getvalue(), _pair(size=(20, 20))[1]),
        "empty": (png.getvalue(), Image.fromarray(np.zeros((32, 40), np.uint8))),
        "huge": (None, None),
        "nomask": (png.getvalue(), None),
    }
    for name, (blob, mask) in cases.items():
        if name == "huge":
            big_img, big_mask = _pair(size=(300, 300))
            big_img.save(src / "images" / "A" / "huge.png")
            big_mask.save(src / "masks" / "A" / "huge.png")
            continue
        (src / "images" / "A" / f"{name}.png").write_bytes(blob)
        if mask is not None:
            mask.save(src / "masks" / "A" / f"{name}.png")
    before = _tree_digest(src)
    root = tmp_path / "data"
    report = ingest(str(src), root, max_pixels=200 * 200, workers=1, show_progress=False)
    assert report.added == 1
    checks = {r["file"].split("/")[-1].removesuffix(".png"): r["check"] for r in _reasons(root)}
    assert checks == {
        "corrupt": "image_decodes",
        "truncated": "image_decodes",
        "mismatch": "mask_size",
        "empty": "mask_not_empty",
        "huge": "image_decodes",
        "nomask": "mask_exists",
    }
    huge_reason = next(r for r in _reasons(root) if "huge" in r["file"])["reason"]
    assert "exceeds the limit" in huge_reason
    assert _tree_digest(src) == before  # the source is never modified
    kept = _tree_digest(root / "quarantine" / "ingest")
    assert {Path(k).stem for k in kept} == set(checks)  # nothing lost


def test_id_clash_with_different_content_is_quarantined(tmp_path: Path) -> None:
    for n, seed_size in enumerate(((40, 32), (44, 36))):
        src = tmp_path / f"src{n}" / "A"
        src.mkdir(parents=True)
        img, mask = _pair(size=seed_size)
        img.save(src / "same.jpg")
        mask.save(src / "same_mask.png")
        report = ingest(
            str(src.parent), tmp_path / "data", layout="suffix", workers=1, show_progress=False
        )
    assert report.added == 0
    assert [r["check"] for r in _reasons(tmp_path / "data")] == ["id_unique"]


def test_class_map_parsing(tmp_path: Path) -> None:
    mapping_file = tmp_path / "map.json"
    mapping_file.write_text('{"a": "b"}')
    assert parse_class_map(["x=y", f"@{mapping_file}"]) == {"x": "y", "a": "b"}
    with pytest.raises(ValueError, match="SOURCE=TARGET"):
        parse_class_map(["nonsense"])


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        ingest(str(tmp_path / "nope"), tmp_path / "data", show_progress=False)


@pytest.mark.integration
def test_s3_prefix_source(s3_env, synthetic_source: Path, tmp_path: Path) -> None:
    client = s3_env.client()
    for p in synthetic_source.rglob("*.png"):
        client.upload_file(str(p), "lerenet-data", f"incoming/{p.relative_to(synthetic_source)}")
    report = ingest("s3://lerenet-data/incoming", tmp_path / "data", show_progress=False)
    assert report.added == 42
    assert _tree_digest(tmp_path / "data" / "images") == _tree_digest(synthetic_source / "images")


@pytest.mark.parametrize(
    "how",
    [
        {"class_name": "../../evil"},
        {"class_name": "/abs"},
        {"class_name": "a/b"},
        {"class_name": ".hidden"},
        {"class_map": {"flat": "../up"}},
        {"class_map": {"flat": "ok\\..\\x"}},
    ],
)
def test_class_names_cannot_leave_the_data_root(tmp_path: Path, how: dict) -> None:
    """A class name becomes images/<Class>/: a separator or '..' would write outside the
    dataset (and the mask over the image). Refused before anything is written."""
    src = tmp_path / "flat"
    src.mkdir()
    img, mask = _pair()
    img.save(src / "x.png")
    mask.save(src / "x_mask.png")
    root = tmp_path / "work" / "data"
    with pytest.raises(ValueError, match="letters, digits, '_' and '-'"):
        ingest(str(src), root, layout="suffix", workers=1, show_progress=False, **how)
    assert not (tmp_path / "work").exists() and not (tmp_path / "evil").exists()
    with pytest.raises(ValueError, match="--class-map target '../up'"):
        parse_class_map(["flat=../up"])


def test_an_unsafe_source_folder_name_or_manifest_class_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src" / "images" / "bad name"
    src.mkdir(parents=True)
    img, mask = _pair()
    img.save(src / "x.png")
    (tmp_path / "src" / "masks" / "bad name").mkdir(parents=True)
    mask.save(tmp_path / "src" / "masks" / "bad name" / "x.png")
    with pytest.raises(ValueError, match="--class-map 'bad name=New_Name'"):
        ingest(str(tmp_path / "src"), tmp_path / "data", workers=1, show_progress=False)
    assert not (tmp_path / "data").exists()
    ok = ingest(
        str(tmp_path / "src"),
        tmp_path / "data",
        class_map={"bad name": "Bad_Name"},
        workers=1,
        show_progress=False,
    )
    assert ok.added == 1
    manifest = tmp_path / "data" / "manifest.csv"
    manifest.write_text(manifest.read_text().replace(",Bad_Name,", ",../Bad_Name,"))
    with pytest.raises(ValueError, match="manifest.csv: class '../Bad_Name' is not allowed"):
        read_manifest(tmp_path / "data")


def test_a_decompression_bomb_is_one_quarantined_file_not_an_aborted_ingest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PIL raises DecompressionBombError (not an OSError) inside Image.open for images over
    twice its limit, before the project's own max_pixels check; it must quarantine that file
    and let the others in. The limit is lowered here instead of writing a 20k×20k file."""
    src = tmp_path / "flat" / "Dent"
    src.mkdir(parents=True)
    for name, size in (("small", (40, 32)), ("huge", (200, 200))):
        img, mask = _pair(size=size)
        img.save(src / f"{name}.png")
        mask.save(src / f"{name}_mask.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)  # 200×200 > 2 × 5,000: a "bomb"
    root = tmp_path / "data"
    report = ingest(str(tmp_path / "flat"), root, layout="suffix", workers=1, show_progress=False)
    assert report.added == 1 and len(report.quarantined) == 1
    (reason,) = _reasons(root)
    assert "huge" in reason["file"] and "pixel limit" in reason["reason"]


def test_class_name_on_a_source_whose_folders_are_its_classes_is_refused(
    synthetic_source: Path, tmp_path: Path
) -> None:
    """`--class-name` was ignored on a canonical source; the run then failed later with a
    message about split.novel_classes (#27.6). Now it says so before anything is written."""
    root = tmp_path / "data"
    with pytest.raises(ValueError, match="a canonical source whose classes are its folders"):
        ingest(str(synthetic_source), root, class_name="Dent", workers=1, show_progress=False)
    assert not root.exists()
