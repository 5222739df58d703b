"""Validation stage: per-file checks + the GX suite, quarantine of failing pairs, a report.

Order: (1) every pair's files are decoded and checked in parallel (``checks.py``); (2) the GX
suite runs over the manifest (``suite.py``); (3) pairs failing either are *moved* to
``data/quarantine/validate/`` with their reasons and dropped from the manifest; (4) the blocking
table-level expectations run on what remains. On clean data nothing moves, so running it twice
is a no-op. The pipeline attaches ``report.html``; ``report.json`` is for machines.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from lerenet.config.schema import Params
from lerenet.data.checks import inside, inspect_pair
from lerenet.data.lock import writer_lock
from lerenet.data.manifest import MANIFEST, Pair, read_manifest, write_manifest
from lerenet.data.parallel import parallel_map
from lerenet.data.quarantine import Finding, quarantine_files
from lerenet.data.report import render_html
from lerenet.data.suite import Outcome, SuiteLimits, run_class_counts, run_suite

_ROW_FIXES = {
    "sha256": (
        "duplicate_image",
        "the same image is already in the dataset (first kept)",
        "remove the duplicate from the source; one image belongs to one class",
    ),
    "class": (
        "allowed_class",
        "class is not in data.classes",
        "add the class to params.yaml data.classes or fix the class name",
    ),
    "width": (
        "image_size",
        "image width is outside the allowed bounds",
        "resize the image or change data.min_side / data.max_side",
    ),
    "height": (
        "image_size",
        "image height is outside the allowed bounds",
        "resize the image or change data.min_side / data.max_side",
    ),
    "defect_fraction": (
        "defect_fraction",
        "defect covers too much (or too little) of the image",
        "check the mask is not inverted; adjust data.*_defect_fraction",
    ),
}


@dataclass
class ValidationReport:
    root: str
    pairs: int
    classes: dict[str, int]
    outcomes: list[Outcome] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    grey_masks: int = 0
    quarantined: int = 0
    blocking: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.blocking

    def digest(self) -> str:
        """What a later stage depends on, hashed: the verdict, the usable pairs per class and
        what was quarantined (not how long it took, which differs at every run)."""
        from lerenet.services.storage import json_sha256

        return json_sha256(
            {
                "passed": self.passed,
                "pairs": self.pairs,
                "classes": self.classes,
                "quarantined": self.quarantined,
                "findings": [asdict(f) for f in self.findings],
                "blocking": self.blocking,
            }
        )

    def to_json(self) -> str:
        data = asdict(self)
        data["passed"] = self.passed
        return json.dumps(data, indent=2, default=str)


def _row_findings(outcomes: list[Outcome], by_image: dict[str, Pair]) -> list[Finding]:
    found = []
    for out in outcomes:
        if out.success or out.blocking or out.column not in _ROW_FIXES:
            continue
        check, reason, fix = _ROW_FIXES[out.column]
        rows = out.bad_rows
        if out.column == "sha256":  # keep the first of each duplicate group
            seen: set[str] = set()
            dupes = []
            for img in sorted(rows):
                digest = by_image[img].sha256
                (dupes.append(img) if digest in seen else seen.add(digest))
            rows = dupes
        for img in rows:
            found.append(Finding(by_image[img].cls, img, check, reason, fix))
    return found


def unlisted_files(root: Path, pairs: list[Pair]) -> list[Finding]:
    """Image and mask files under ``root`` that no manifest row lists: an interrupted or
    concurrent writer, or a file copied in by hand. Reported, never moved or deleted."""
    listed = {p.image for p in pairs} | {p.mask for p in pairs}
    found = []
    for sub in ("images", "masks"):
        for path in sorted((root / sub).rglob("*")) if (root / sub).is_dir() else []:
            rel = path.relative_to(root).as_posix()
            if path.is_file() and rel not in listed:
                parts = rel.split("/")
                found.append(
                    Finding(
                        parts[1] if len(parts) > 2 else "",
                        rel,
                        "listed_in_manifest",
                        "on disk but not in manifest.csv, so no stage uses it",
                        "ingest it with `lerenet ingest`, or delete it",
                    )
                )
    return found


def validate_dataset(
    root: Path,
    out_dir: Path,
    limits: SuiteLimits,
    *,
    max_pixels: int = 4096 * 4096,
    workers: int = 0,
    show_progress: bool = True,
) -> ValidationReport:
    """Validate the dataset at ``root``; quarantine failures; write report.{html,json}."""
    start = time.perf_counter()
    root, out_dir = Path(root), Path(out_dir)
    with writer_lock(root):
        if not (root / MANIFEST).exists():
            raise FileNotFoundError(f"{root / MANIFEST}: no manifest; run `lerenet ingest` first")
        pairs = read_manifest(root)
        checks = parallel_map(
            inspect_pair,
            [(root, p, max_pixels) for p in pairs],
            workers,
            desc="checking files",
            show=show_progress,
        )
        file_findings = [f for c in checks for f in c.findings]
        frame = (
            pd.DataFrame([{**asdict(p), "class": p.cls} for p in pairs]).drop(
                columns=["cls"], errors="ignore"
            )
            if pairs
            else pd.DataFrame(columns=["image"])
        )
        outcomes = run_suite(frame, limits)
        by_image = {p.image: p for p in pairs}
        row_findings = _row_findings(outcomes, by_image)
        findings = file_findings + row_findings

        bad_images = {f.file for f in row_findings} | {c.pair.image for c in checks if c.findings}
        kept = _quarantine_bad(root, pairs, bad_images, findings)
        findings = findings + unlisted_files(root, pairs)  # reported only

        report = ValidationReport(
            root=str(root),
            pairs=len(kept),
            classes={c: sum(p.cls == c for p in kept) for c in sorted({p.cls for p in kept})},
            outcomes=outcomes,
            findings=findings,
            quarantined=len(bad_images),
            grey_masks=sum(c.grey_mask for c in checks),
        )
        _block_on(report, outcomes, frame, kept, limits)
        report.seconds = time.perf_counter() - start
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(report.to_json())
        (out_dir / "report.html").write_text(render_html(report))
        return report


def _quarantine_bad(root: Path, pairs: list, bad_images: set[str], findings: list) -> list:
    """Move the failing pairs to quarantine and rewrite the manifest without them; returns the
    kept pairs. A row whose path escapes the root leaves the manifest; its file is not
    touched."""
    if not bad_images:
        return list(pairs)
    moved = [
        (path, rel)
        for p in pairs
        if p.image in bad_images
        for rel in (p.image, p.mask)
        if (path := inside(root, rel)) is not None
    ]
    quarantine_files(root, "validate", moved, findings, move=True)
    kept = [p for p in pairs if p.image not in bad_images]
    write_manifest(root, kept)
    return kept


def _block_on(report: ValidationReport, outcomes, frame, kept: list, limits: SuiteLimits) -> None:
    """The blocking reasons: a manifest without its schema, and classes with too few usable
    pairs for K-shot episodes (counted on the pairs kept)."""
    for out in outcomes:
        if out.blocking and not out.success:
            report.blocking.append(
                f"manifest columns: expected {out.observed} to contain the "
                "manifest schema; re-create it with `lerenet ingest`"
            )
    if not kept and report.blocking:
        return
    kept_frame = frame[frame["image"].isin([p.image for p in kept])] if kept else frame
    counts = run_class_counts(kept_frame, limits)
    report.outcomes.append(counts)
    if not counts.success:
        few = ", ".join(
            f"{c} ({counts.observed.get(c, 0)})" if isinstance(counts.observed, dict) else c
            for c in counts.bad_rows
        ) or str(counts.observed)
        report.blocking.append(
            f"classes with fewer than {limits.min_pairs_per_class} usable pairs: {few}; "
            "label more images of these classes (K-shot needs K supports + 1 query)"
        )


def limits_from(params: Params) -> SuiteLimits:
    """Suite bounds from params: K+1 pairs per class for the largest K any stage uses."""
    largest_k = max([*params.split.shots, *params.eval.shots, params.model.shots])
    return SuiteLimits(
        min_side=params.data.min_side,
        max_side=params.data.max_side,
        min_defect_fraction=params.data.min_defect_fraction,
        max_defect_fraction=params.data.max_defect_fraction,
        min_pairs_per_class=largest_k + 1,
        allowed_classes=tuple(params.data.classes) if params.data.classes else None,
    )


def validate_with_params(
    params: Params, out_dir: Path = Path("outputs/validate"), *, show_progress: bool = True
) -> ValidationReport:
    """``validate_dataset`` as every driver calls it: root, bounds and workers from params
    (one call shared by `lerenet validate` and the Prefect task)."""
    return validate_dataset(
        Path(params.data.root),
        out_dir,
        limits_from(params),
        max_pixels=params.data.max_pixels,
        workers=params.data.workers,
        show_progress=show_progress,
    )
