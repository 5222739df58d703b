"""Validation: the GX suite and per-file checks, quarantine, blocking failures, report."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lerenet.cli.main import app
from lerenet.data.manifest import read_manifest, write_manifest
from lerenet.data.suite import SuiteLimits
from lerenet.data.validate import validate_dataset


def _validate(root: Path, tmp_path: Path, **limits):
    return validate_dataset(
        root, tmp_path / "report", SuiteLimits(**limits), workers=1, show_progress=False
    )


def _reasons(root: Path) -> dict[str, str]:
    with open(root / "quarantine" / "reasons.csv", newline="") as handle:
        return {r["file"]: r["check"] for r in csv.DictReader(handle)}


def test_clean_data_passes_and_moves_nothing(synthetic_dataset: Path, tmp_path: Path) -> None:
    before = (synthetic_dataset / "manifest.csv").read_bytes()
    report = _validate(synthetic_dataset, tmp_path, min_pairs_per_class=6)
    assert report.passed and report.quarantined == 0 and report.pairs == 42
    assert (synthetic_dataset / "manifest.csv").read_bytes() == before
    assert all(o.success for o in report.outcomes)
    html = (tmp_path / "report" / "report.html").read_text()
    assert "PASSED" in html and "Synth_Pit" in html


def test_corrupted_and_duplicate_and_unknown_class_are_quarantined(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    rows = read_manifest(synthetic_dataset)
    pit = [r for r in rows if r.cls == "Synth_Pit"]
    crack = [r for r in rows if r.cls == "Synth_Crack"]
    # truncate one stored image
    broken = synthetic_dataset / pit[0].image
    broken.write_bytes(broken.read_bytes()[:100])
    # copy a Crack image into Pit under a new id: duplicate sha256 across classes
    dup_img = "images/Synth_Pit/dup.png"
    shutil.copy(synthetic_dataset / crack[0].image, synthetic_dataset / dup_img)
    shutil.copy(synthetic_dataset / crack[0].mask, synthetic_dataset / "masks/Synth_Pit/dup.png")
    dup = crack[0].__class__(
        **{
            **crack[0].__dict__,
            "image": dup_img,
            "mask": "masks/Synth_Pit/dup.png",
            "cls": "Synth_Pit",
        }
    )
    # a manifest row whose path escapes the dataset root
    escape = crack[1].__class__(
        **{**crack[1].__dict__, "image": "../../etc/passwd", "cls": "Synth_Crack"}
    )
    write_manifest(synthetic_dataset, rows + [dup, escape])
    report = _validate(
        synthetic_dataset,
        tmp_path,
        min_pairs_per_class=2,
        allowed_classes=tuple(sorted({r.cls for r in rows} - {"Synth_Stain"})),
    )
    reasons = _reasons(synthetic_dataset)
    assert reasons[pit[0].image] == "image_decodes"
    assert reasons["../../etc/passwd"] == "path_inside_root"
    dup_key = max(crack[0].image, dup_img)  # first in sorted order is kept
    assert reasons[dup_key] == "duplicate_image"
    assert {f for f, c in reasons.items() if c == "allowed_class"} == {
        r.image for r in rows if r.cls == "Synth_Stain"
    }
    assert report.passed  # row failures quarantine; the rest is usable
    kept = {r.image for r in read_manifest(synthetic_dataset)}
    assert pit[0].image not in kept and dup_key not in kept
    quarantined = synthetic_dataset / "quarantine" / "validate" / pit[0].image
    assert quarantined.exists() and not broken.exists()  # moved, not deleted
    again = _validate(synthetic_dataset, tmp_path, min_pairs_per_class=2)
    assert again.quarantined == 0  # idempotent


def test_too_few_pairs_per_class_blocks_with_exit_code(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        f"data:\n  root: {synthetic_dataset}\n  workers: 1\nsplit:\n  shots: [1, 10]\n"
    )
    result = CliRunner().invoke(
        app, ["validate", "--params", str(params), "--out-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 1
    assert "fewer than 11 usable pairs" in result.output and "Synth_Pit (7)" in result.output


def test_manifest_missing_columns_is_blocking(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "manifest.csv").write_text("image,class\nimages/A/x.png,A\n")
    with pytest.raises(ValueError, match="missing columns"):
        _validate(root, tmp_path)


def test_no_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run `lerenet ingest` first"):
        _validate(tmp_path, tmp_path)


def test_files_the_manifest_does_not_list_are_reported_not_moved(
    synthetic_dataset: Path, tmp_path: Path
) -> None:
    rows = read_manifest(synthetic_dataset)
    stray = synthetic_dataset / "images" / rows[0].cls / "stray.png"
    shutil.copy(synthetic_dataset / rows[0].image, stray)
    report = _validate(synthetic_dataset, tmp_path, min_pairs_per_class=6)
    (finding,) = [f for f in report.findings if f.check == "listed_in_manifest"]
    assert finding.file == f"images/{rows[0].cls}/stray.png" and finding.cls == rows[0].cls
    assert report.passed and report.quarantined == 0 and stray.exists()


def test_concurrent_ingests_into_one_root_keep_every_row(
    synthetic_source: Path, tmp_path: Path
) -> None:
    """Two `lerenet ingest` processes at once: the writer lock serialises them, so the
    manifest lists every pair on disk (without it each wrote its own view)."""
    import subprocess
    import sys

    halves = []
    for i, classes in enumerate((slice(0, 3), slice(3, 6))):
        half = tmp_path / f"src{i}"
        for sub in ("images", "masks"):
            for cls_dir in sorted((synthetic_source / sub).iterdir())[classes]:
                shutil.copytree(cls_dir, half / sub / cls_dir.name)
        halves.append(half)
    root = tmp_path / "data"
    (tmp_path / "params.yaml").write_text(f"data:\n  root: {root}\n  workers: 1\n")
    cli = str(Path(sys.executable).parent / "lerenet")
    procs = [
        subprocess.Popen(
            [cli, "ingest", "--source", str(h), "--params", str(tmp_path / "params.yaml")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for h in halves
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    on_disk = sorted(p.relative_to(root).as_posix() for p in (root / "images").rglob("*.png"))
    assert sorted(r.image for r in read_manifest(root)) == on_disk and len(on_disk) == 42
