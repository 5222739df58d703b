"""Quarantine: items taken out of the dataset are moved, never deleted, with their reason.

``<root>/quarantine/<stage>/<original relative path>`` holds the files and
``<root>/quarantine/reasons.csv`` one row per item: stage, class, file, check, reason, fix.
A person can inspect, repair and re-ingest them. Every entry's path obeys the one path rule
(``paths.inside``); a source file that is a link, or reached through one to outside its
source, is recorded as ``<name>.link.txt`` holding its target, never copied or kept as a link.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

from lerenet.data import paths
from lerenet.data.manifest import QUARANTINE

REASONS = "reasons.csv"
COLUMNS = ["stage", "class", "file", "check", "reason", "fix"]


@dataclass(frozen=True)
class Finding:
    """One failed check on one item (``file`` relative to the dataset or source root)."""

    cls: str
    file: str
    check: str
    reason: str
    fix: str

    def line(self) -> str:
        return f"{self.file}: [{self.check}] {self.reason} → {self.fix}"


def quarantine_files(
    root: Path,
    stage: str,
    files: list[tuple[Path, str]],
    findings: list[Finding],
    move: bool,
    source_root: Path | None = None,
) -> None:
    """Move (or copy, for source files we do not own) ``files`` into quarantine and log why.

    ``files`` pairs each file with the relative path it keeps under ``quarantine/<stage>/``.
    ``source_root``: the folder copied files come from; a link, or a file whose real path is
    outside it, is recorded as text (its target), never read.
    """
    qroot = Path(root) / QUARANTINE
    for src, rel in files:
        if not src.is_symlink() and not src.exists():
            continue
        dest = paths.inside(qroot / stage, rel, "quarantine entry")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if move:
            shutil.move(str(src), dest)
            continue
        target = paths.followed_link(src, source_root or src.parent)
        if target is not None:
            dest.with_name(dest.name + ".link.txt").write_text(f"symbolic link to {target}\n")
        else:
            shutil.copy2(src, dest)
    reasons = qroot / REASONS
    new = not reasons.exists()
    qroot.mkdir(parents=True, exist_ok=True)
    with open(reasons, "a", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if new:
            writer.writerow(COLUMNS)
        for f in findings:
            writer.writerow([stage, f.cls, f.file, f.check, f.reason, f.fix])
