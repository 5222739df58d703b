"""Source layouts ingestion understands, each turned into (class, image file, mask file) items.

- ``canonical``: ``images/<Class>/<id>.*`` with ``masks/<Class>/<id>.png`` (../shared/datasets).
- ``magnetic_tile``: ``MT_<Class>/Imgs/<id>.jpg`` with ``<id>.png`` masks beside them
  (abin24/Magnetic-tile-defect-datasets); ``MT_Free`` (defect-free) is skipped.
- ``sd_saliency``: ``Source Images/<In|Pa|Sc>_<n>.bmp`` with ``Ground truth/<same>.png``
  (SD-saliency-900); the class comes from the file-name prefix.
- ``suffix``: any folder of ``<id>.<ext>`` images with ``<id><suffix>.png`` masks
  (default suffix ``_mask``); the class is the parent folder's name, or ``--class-name``.
``detect_layout`` picks one from the folder's shape; ``--layout`` overrides it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
SD_SALIENCY_CLASSES = {"In": "Steel_Inclusion", "Pa": "Steel_Patches", "Sc": "Steel_Scratches"}
LAYOUTS = ("canonical", "magnetic_tile", "sd_saliency", "suffix")


@dataclass(frozen=True)
class SourceItem:
    cls: str
    image: Path
    mask: Path | None  # None: the mask file is missing (quarantined with that reason)
    source_file: str  # path relative to the source root, for provenance
    origin: str | None = None  # upstream source named by a canonical source's manifest


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _canonical_provenance(root: Path) -> dict[str, tuple[str, str]]:
    """image path → (source, source_file) from a canonical source's own manifest, if any,
    so provenance survives re-ingestion (e.g. ../shared/datasets keeps the upstream repo)."""
    import csv

    path = root / "manifest.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as handle:
        return {
            r["image"]: (r.get("source") or "", r.get("source_file") or r["image"])
            for r in csv.DictReader(handle)
            if r.get("image")
        }


def detect_layout(root: Path) -> str:
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "canonical"
    if (root / "Source Images").is_dir() and (root / "Ground truth").is_dir():
        return "sd_saliency"
    if any(
        p.is_dir() and p.name.startswith("MT_") and (p / "Imgs").is_dir() for p in root.iterdir()
    ):
        return "magnetic_tile"
    return "suffix"


def iter_items(
    root: Path, layout: str, class_name: str | None = None, mask_suffix: str = "_mask"
) -> Iterator[SourceItem]:
    """Items of ``root`` in a stable order (sorted paths)."""
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    if layout == "canonical":
        upstream = _canonical_provenance(root)
        for cls_dir in sorted(p for p in (root / "images").iterdir() if p.is_dir()):
            for img in _images(cls_dir):
                mask = root / "masks" / cls_dir.name / f"{img.stem}.png"
                origin, source_file = upstream.get(rel(img), (None, rel(img)))
                yield SourceItem(
                    cls_dir.name, img, mask if mask.exists() else None, source_file, origin
                )
    elif layout == "magnetic_tile":
        for cls_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("MT_")):
            if cls_dir.name == "MT_Free" or not (cls_dir / "Imgs").is_dir():
                continue
            for img in _images(cls_dir / "Imgs"):
                if img.suffix.lower() == ".png":
                    continue  # the masks live beside the .jpg images
                mask = img.with_suffix(".png")
                yield SourceItem(cls_dir.name, img, mask if mask.exists() else None, rel(img))
    elif layout == "sd_saliency":
        for img in _images(root / "Source Images"):
            prefix = img.stem.split("_", 1)[0]
            cls = SD_SALIENCY_CLASSES.get(prefix, prefix)
            mask = root / "Ground truth" / f"{img.stem}.png"
            yield SourceItem(cls, img, mask if mask.exists() else None, rel(img))
    elif layout == "suffix":
        folders = [root] + sorted(p for p in root.rglob("*") if p.is_dir())
        for folder in folders:
            for img in _images(folder):
                if img.stem.endswith(mask_suffix):
                    continue
                cls = class_name or (folder.name if folder != root else root.name)
                mask = folder / f"{img.stem}{mask_suffix}.png"
                yield SourceItem(cls, img, mask if mask.exists() else None, rel(img))
    else:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
