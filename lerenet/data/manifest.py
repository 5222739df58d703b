"""The dataset manifest: one row per image/mask pair, the single index every stage reads.

Layout of a canonical dataset root (as in ../shared/datasets)::

    images/<Class>/<id>.png   masks/<Class>/<id>.png   manifest.csv
    quarantine/               (items taken out by ingest/validate, with reasons.csv)

Columns: image, mask, class, source, source_file, width, height, defect_pixels, sha256 (of the
stored image file). Paths are relative to the root. Rows are kept sorted by (class, image) so the
file is byte-stable for DVC and for split hashing.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

MANIFEST = "manifest.csv"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class Pair:
    image: str
    mask: str
    cls: str
    source: str
    source_file: str
    width: int
    height: int
    defect_pixels: int
    sha256: str

    @property
    def key(self) -> str:
        """Unique id of a pair inside a dataset: ``<Class>/<id>``."""
        return f"{self.cls}/{Path(self.image).stem}"


COLUMNS = [("class" if f.name == "cls" else f.name) for f in fields(Pair)]

# A class name becomes a folder (images/<Class>/) and a key in splits, metrics and MLflow: one
# rule wherever a name enters (source folders, --class-name, --class-map, the manifest), so no
# name can hold a path separator, "..", or start as an absolute or hidden path.
CLASS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
CLASS_NAME_RULE = (
    "letters, digits, '_' and '-', starting with a letter or digit, at most 64 characters"
)


def check_class_name(name: str, where: str = "class name") -> str:
    """``name`` if it is a safe class name, else ValueError saying what is allowed."""
    if not isinstance(name, str) or not CLASS_NAME.fullmatch(name):
        raise ValueError(f"{where} {name!r} is not allowed: use {CLASS_NAME_RULE}")
    return name


def mask_of(image: str) -> str:
    """The mask path of an image path: its last ``images/`` folder becomes ``masks/``.

    The last one, so that absolute paths (synthetic training tasks) whose parents happen to
    contain an ``images/`` folder map correctly too.
    """
    head, sep, tail = image.rpartition("images/")
    if not sep:
        raise ValueError(f"{image}: not under an images/ folder")
    return f"{head}masks/{tail}"


def read_manifest(root: Path) -> list[Pair]:
    """Rows of ``root/manifest.csv`` (empty list if the dataset is new)."""
    path = Path(root) / MANIFEST
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}; expected {COLUMNS}")
        return [
            Pair(
                image=r["image"],
                mask=r["mask"],
                cls=check_class_name(r["class"], f"{path}: class"),
                source=r["source"],
                source_file=r["source_file"],
                width=int(r["width"]),
                height=int(r["height"]),
                defect_pixels=int(r["defect_pixels"]),
                sha256=r["sha256"],
            )
            for r in reader
        ]


def manifest_text(rows: list[Pair]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in sorted(rows, key=lambda r: (r.cls, r.image)):
        values = asdict(row)
        writer.writerow([values["cls" if c == "class" else c] for c in COLUMNS])
    return buffer.getvalue()


def write_manifest(root: Path, rows: list[Pair]) -> Path:
    """Write the manifest atomically (a crash never leaves a half-written index)."""
    path = Path(root) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.part")
    tmp.write_text(manifest_text(rows))
    os.replace(tmp, path)
    return path


def classes_of(rows: list[Pair]) -> list[str]:
    return sorted({r.cls for r in rows})
