"""Per-file checks that a manifest-level suite cannot do: decoding, sizes, mask content, paths.

``inspect_pair`` runs in worker processes (see ``validate.py``); it reads files, never writes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lerenet.data import paths
from lerenet.data.imageio import (
    DecodeError,
    defect_pixels,
    empty_mask_reason,
    mask_grey,
    open_image,
)
from lerenet.data.manifest import Pair
from lerenet.data.quarantine import Finding


@dataclass(frozen=True)
class PairCheck:
    pair: Pair
    findings: tuple[Finding, ...]
    grey_mask: bool  # non-binary values: loaders binarise by the mask rule; counted, not fatal


def inside(root: Path, rel: str) -> Path | None:
    """``root/rel`` under the one path rule (``paths.inside``: no ``..``, no absolute path, no
    link on the way), else None."""
    try:
        return paths.inside(root, rel, "manifest path")
    except paths.PathEscape:
        return None


def inspect_pair(args: tuple[Path, Pair, int]) -> PairCheck:
    root, pair, max_pixels = args
    found: list[Finding] = []

    def fail(check: str, file: str, reason: str, fix: str) -> PairCheck:
        found.append(Finding(pair.cls, file, check, reason, fix))
        return PairCheck(pair, tuple(found), False)

    image_path, mask_path = inside(root, pair.image), inside(root, pair.mask)
    for rel, path in ((pair.image, image_path), (pair.mask, mask_path)):
        if path is None:
            return fail(
                "path_inside_root",
                rel,
                "path escapes the dataset root",
                "fix the manifest row: paths must be relative, without '..' or links",
            )
        if not path.is_file():
            return fail(
                "file_exists",
                rel,
                "file listed in the manifest is missing",
                "restore it (`dvc pull`) or re-ingest the source",
            )
    try:
        image = open_image(image_path, max_pixels)
    except DecodeError as err:
        return fail("image_decodes", pair.image, str(err), "re-export the image and re-ingest")
    try:
        mask_img = open_image(mask_path, max_pixels)
    except DecodeError as err:
        return fail("mask_decodes", pair.mask, str(err), "re-export the mask and re-ingest")
    if mask_img.size != image.size:
        return fail(
            "mask_size",
            pair.mask,
            f"mask {mask_img.size} differs from image {image.size}",
            "export the mask at the image's size",
        )
    if image.size != (pair.width, pair.height):
        return fail(
            "manifest_size",
            pair.image,
            f"image is {image.size}, manifest says {(pair.width, pair.height)}",
            "re-ingest: the file changed after ingest",
        )
    grey = mask_grey(mask_img)
    if not defect_pixels(grey).any():
        return fail(
            "mask_not_empty",
            pair.mask,
            empty_mask_reason(grey),
            "label the defect or remove the pair",
        )
    digest = hashlib.sha256(image_path.read_bytes()).hexdigest()
    if digest != pair.sha256:
        return fail(
            "sha256_matches",
            pair.image,
            "image content differs from the manifest's sha256",
            "re-ingest the file so the manifest records its content",
        )
    grey_mask = bool(np.any((grey != 0) & (grey != 255)))
    return PairCheck(pair, tuple(found), grey_mask)
