"""Ingestion: any supported source → the canonical, manifest-indexed dataset under ``data/``.

Images are stored as PNG (PNG sources byte for byte, others re-encoded losslessly from their
decoded pixels); masks are binarised by the one rule of ``imageio.binarize_mask`` and stored as
0/255 PNG. Ingestion only adds: a pair already present with the same content is skipped, so
re-ingesting a source is a no-op, and nothing already in the dataset is modified. Items that
cannot be used (no mask, undecodable, size mismatch, empty mask, too large, an id clash) are
copied to ``data/quarantine/ingest/`` with their reason; the source itself is never touched.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from lerenet.config.schema import Params
from lerenet.data import paths
from lerenet.data.imageio import (
    DecodeError,
    binarize_mask,
    empty_mask_reason,
    mask_grey,
    open_image,
)
from lerenet.data.layouts import SourceItem, detect_layout, iter_items
from lerenet.data.lock import writer_lock
from lerenet.data.manifest import Pair, check_class_name, read_manifest, write_manifest
from lerenet.data.parallel import parallel_map
from lerenet.data.quarantine import Finding, quarantine_files
from lerenet.data.sources import local_source

INGEST_LOG = "ingest_log.jsonl"


@dataclass
class IngestReport:
    source: str
    layout: str
    added: int = 0
    skipped: int = 0
    binarized: int = 0
    quarantined: list[Finding] = field(default_factory=list)
    new_classes: list[str] = field(default_factory=list)
    per_class: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Job:
    item: SourceItem
    cls: str
    root: Path
    source_name: str
    max_pixels: int
    folder: Path  # the source's root, resolved: files must resolve inside it


@dataclass(frozen=True)
class _Result:
    pair: Pair | None
    finding: Finding | None
    binarized: bool = False
    image_bytes: bytes = b""
    mask_bytes: bytes = b""


def _png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _prepare(job: _Job) -> _Result:
    """Decode, check and encode one item (runs in a worker process; writes nothing)."""
    item, cls = job.item, job.cls
    src = item.source_file

    def bad(check: str, reason: str, fix: str) -> _Result:
        return _Result(None, Finding(cls, src, check, reason, fix))

    for path in (item.image, item.mask):
        if path is not None and not path.resolve().is_relative_to(job.folder):
            return bad(
                "inside_source",
                f"{path.name} is a link to {path.resolve()}, outside the source",
                "copy the file into the source instead of linking to it",
            )
    if item.mask is None:
        return bad(
            "mask_exists",
            "no mask file for this image",
            "add the mask (same id, .png) or remove the image from the source",
        )
    try:
        image = open_image(item.image, job.max_pixels)
    except DecodeError as err:
        return bad("image_decodes", str(err), "re-export the image from its original")
    try:
        mask_img = open_image(item.mask, job.max_pixels)
    except DecodeError as err:
        return bad("mask_decodes", str(err), "re-export the mask from the labelling tool")
    if mask_img.size != image.size:
        return bad(
            "mask_size",
            f"mask {mask_img.size[0]}×{mask_img.size[1]} differs from image "
            f"{image.size[0]}×{image.size[1]}",
            "export the mask at the image's size",
        )
    mask, was_grey = binarize_mask(mask_img)
    defect = int((mask > 0).sum())
    if defect == 0:
        return bad(
            "mask_not_empty",
            empty_mask_reason(mask_grey(mask_img)),
            "label the defect (a label map with several classes: export one class as 0/255), "
            "or leave defect-free images out of few-shot data",
        )
    raw = item.image.read_bytes()
    image_bytes = raw if item.image.suffix.lower() == ".png" else _png_bytes(image)
    mask_bytes = _png_bytes(Image.fromarray(mask, "L"))
    stem = item.image.stem
    pair = Pair(
        image=f"images/{cls}/{stem}.png",
        mask=f"masks/{cls}/{stem}.png",
        cls=cls,
        source=item.origin or job.source_name,
        source_file=src,
        width=image.size[0],
        height=image.size[1],
        defect_pixels=defect,
        sha256=hashlib.sha256(image_bytes).hexdigest(),
    )
    return _Result(pair, None, was_grey, image_bytes, mask_bytes)


def parse_class_map(entries: list[str] | None) -> dict[str, str]:
    """``["MT_Crack=Crack", ...]`` or a single ``@file.json`` → {source class: dataset class}."""
    mapping: dict[str, str] = {}
    for entry in entries or []:
        if entry.startswith("@"):
            mapping.update(json.loads(Path(entry[1:]).read_text()))
            continue
        src, sep, dst = entry.partition("=")
        if not sep or not src or not dst:
            raise ValueError(f"class map entry {entry!r} is not SOURCE=TARGET")
        mapping[src] = dst
    for target in mapping.values():
        check_class_name(target, "--class-map target")
    return mapping


def ingest(
    source: str,
    root: Path,
    *,
    layout: str | None = None,
    class_map: dict[str, str] | None = None,
    class_name: str | None = None,
    mask_suffix: str = "_mask",
    source_name: str | None = None,
    max_pixels: int = 4096 * 4096,
    workers: int = 0,
    endpoint_url: str | None = None,
    show_progress: bool = True,
) -> IngestReport:
    """Add ``source``'s pairs to the dataset at ``root``; see the module docstring."""
    root = Path(root)
    class_map = class_map or {}
    if class_name is not None:
        check_class_name(class_name, "--class-name")
    for target in class_map.values():
        check_class_name(target, "--class-map target")
    name = (
        paths.component(source_name, "--source-name")
        if source_name is not None
        else paths.as_component(Path(source.rstrip("/")).name.split(".")[0])
    )
    with writer_lock(root):
        with local_source(source, endpoint_url) as folder:
            chosen = layout or detect_layout(folder)
            if class_name is not None and chosen != "suffix":
                raise ValueError(
                    f"{source}: --class-name names the class of a flat folder of images and "
                    f"masks, but this is a {chosen} source whose classes are its folders; "
                    "leave --class-name out (or rename the class folder)"
                )
            report = IngestReport(source=source, layout=chosen)
            items = list(iter_items(folder, chosen, class_name, mask_suffix))
            if not items:
                raise ValueError(
                    f"{source}: no images found for layout {chosen!r} "
                    "(check --layout, or the folder structure in `lerenet ingest --help`)"
                )
            _check_source_classes(items, class_map)
            jobs = [
                _Job(it, class_map.get(it.cls, it.cls), root, name, max_pixels, folder.resolve())
                for it in items
            ]
            results = parallel_map(_prepare, jobs, workers, desc="ingesting", show=show_progress)

            existing = read_manifest(root)
            added, bad = _merge(jobs, results, existing, root, report)
            if bad:
                _quarantine(root, bad, name, folder)
                report.quarantined = [f for _, f in bad]

        _record(root, existing, added, report)
        return report


def _check_source_classes(items: list, class_map: dict[str, str]) -> None:
    """Every class the source would add has a usable name, before anything is written."""
    for cls in sorted({class_map.get(it.cls, it.cls) for it in items}):
        try:
            check_class_name(cls, "source class")
        except ValueError as err:
            raise ValueError(
                f"{err}; nothing was ingested: rename that folder, or map it with "
                f"`lerenet ingest --class-map '{cls}=New_Name'`"
            ) from None


def _merge(
    jobs: list[_Job], results: list, existing: list[Pair], root: Path, report: IngestReport
) -> tuple[list[Pair], list[tuple[_Job, Finding]]]:
    """Write the prepared pairs that are new; skip exact repeats; refuse a known id with other
    content. Returns (added pairs, refused jobs with their finding)."""
    by_key = {p.key: p for p in existing}
    added: list[Pair] = []
    bad: list[tuple[_Job, Finding]] = []
    for job, res in zip(jobs, results, strict=True):
        if res.pair is None:
            bad.append((job, res.finding))
            continue
        prior = by_key.get(res.pair.key)
        if prior is not None:
            if prior.sha256 == res.pair.sha256:
                report.skipped += 1
                continue
            clash = Finding(
                res.pair.cls,
                job.item.source_file,
                "id_unique",
                f"{res.pair.key} is already in the dataset with different content",
                "rename the new file, or ingest it under another class",
            )
            bad.append((job, clash))
            continue
        for rel, blob in ((res.pair.image, res.image_bytes), (res.pair.mask, res.mask_bytes)):
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
        by_key[res.pair.key] = res.pair
        added.append(res.pair)
        report.binarized += res.binarized
    return added, bad


def _quarantine(root: Path, bad: list[tuple[_Job, Finding]], name: str, folder: Path) -> None:
    """Copy refused files to quarantine, kept under the file's own place in the source
    (``source_file`` is provenance text from the source's manifest, not a path to write to)."""
    files = []
    for job, _ in bad:
        for path in (job.item.image, job.item.mask):
            if path is not None:
                files.append((path, f"{name}/{path.relative_to(folder).as_posix()}"))
    quarantine_files(root, "ingest", files, [f for _, f in bad], move=False, source_root=folder)


def _record(root: Path, existing: list[Pair], added: list[Pair], report: IngestReport) -> None:
    """Fill the report's counts; append the added pairs to the manifest and the ingest log."""
    report.added = len(added)
    report.new_classes = sorted({p.cls for p in added} - {p.cls for p in existing})
    report.per_class = {c: sum(p.cls == c for p in added) for c in sorted({p.cls for p in added})}
    if not added:
        return
    write_manifest(root, existing + added)
    # no timestamp: the log is part of the versioned data and must be reproducible
    entry = {
        "source": report.source,
        "layout": report.layout,
        "added": report.added,
        "classes": report.per_class,
        "new_classes": report.new_classes,
    }
    with open(root / INGEST_LOG, "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def ingest_with_params(source: str, params: Params, **options) -> IngestReport:
    """The ingest stage as both drivers call it: root, pixel limit and workers from params."""
    return ingest(
        source,
        Path(params.data.root),
        max_pixels=params.data.max_pixels,
        workers=params.data.workers,
        **options,
    )


def last_new_classes(root: Path) -> list[str]:
    """Classes that the most recent ingest that added data introduced (for the split stage)."""
    log = Path(root) / INGEST_LOG
    if not log.exists():
        return []
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    return json.loads(lines[-1]).get("new_classes", []) if lines else []
