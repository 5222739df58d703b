"""Prediction on files: support image/mask pairs + query images → mask PNGs and overlays.

The model's weights are read as tensors whatever its URI, and the prediction goes through the
served pyfunc's ``predict``: what runs here is exactly what the registered model serves.
Images are resized to the model's input size and normalised with its backbone's statistics;
probabilities are resized back to each query's original size before thresholding.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lerenet.data.imageio import (
    DecodeError,
    empty_mask_reason,
    load_label,
    load_rgb,
    mask_grey,
    open_image,
)
from lerenet.data.layouts import IMAGE_EXTS
from lerenet.data.paths import unique_names
from lerenet.data.transforms import build_transform, query_tensor, to_tensors
from lerenet.evaluation.plots import _tint

MAX_SUPPORTS = 5  # few-shot: the most shots training and evaluation use


@dataclass(frozen=True)
class LoadedModel:
    predict: object  # callable(dict of arrays) -> B×H×W probabilities
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()  # what its class memory learned (``predict --class``)


def load_for_prediction(uri: str) -> LoadedModel:
    """The model ``uri`` names (a file, a folder, ``models:/``, ``runs:/``, ``s3://``) read as
    tensors and wrapped in the served pyfunc's ``predict``; its code never runs."""
    from lerenet.tracking.pyfunc import serving_predictor

    predictor, model, meta = serving_predictor(uri)
    memory = getattr(model, "memory", None)
    classes = tuple(memory.classes) if memory is not None else ()
    size = int(meta.get("image_size") or 200)
    return LoadedModel(
        predictor, size, tuple(model.backbone.mean), tuple(model.backbone.std), classes
    )


@dataclass(frozen=True)
class Found:
    """What one query's mask holds: the defect's share of the image and the highest defect
    probability anywhere (how far from the threshold an empty mask was)."""

    query: Path
    mask: Path
    defect_share: float
    max_probability: float

    @property
    def empty(self) -> bool:
        return self.defect_share == 0.0


@dataclass(frozen=True)
class PredictResult:
    """Masks written (with what each holds), and the queries skipped with the reason."""

    found: list[Found]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def written(self) -> list[Path]:
        return [f.mask for f in self.found]


def expand_queries(paths: list[Path]) -> list[Path]:
    """Files as given; folders → their images (sorted)."""
    out = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        elif path.exists():
            out.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such query image or folder")
    if not out:
        raise FileNotFoundError("no query images found")
    return out


def predict_files(
    model_uri: str,
    supports: list[tuple[Path, Path]],
    queries: list[Path],
    out_dir: Path,
    threshold: float = 0.5,
    max_pixels: int = 4096 * 4096,
    class_name: str | None = None,
) -> PredictResult:
    """Write ``<stem>_mask.png`` (0/255) and ``<stem>_overlay.png`` per query (a stem met
    before gets ``-2``, ``-3``…: nothing is overwritten), and ``found.csv``: per query whether
    a defect was found, the mask's defect share, the highest defect probability, the threshold
    and the model it was predicted with.

    Every image is decoded under ``max_pixels`` (data.max_pixels) like in ingest and validate:
    an unusable support stops the call (ValueError: the episode would be wrong), an unusable
    query is skipped with its reason (in the result and ``skipped.csv``) and the rest proceed.
    ``class_name``: the supports' class, when the model trained on it (its class memory then
    applies what it learned; see ``lerenet/model/memory.py``).
    """
    if not 1 <= len(supports) <= MAX_SUPPORTS:
        raise ValueError(
            f"{len(supports)} supports given: give 1 to {MAX_SUPPORTS} (the model is trained "
            f"and scored at 1 and 5 shots); keep the {MAX_SUPPORTS} that look most like the "
            "queries"
        )
    loaded = load_for_prediction(model_uri)
    if class_name and class_name not in loaded.classes:
        known = ", ".join(loaded.classes) or "none: it holds no class memory"
        raise ValueError(
            f"--class {class_name}: the model learned no such class (its classes: {known}); "
            "leave --class out to segment the supports' defect without it"
        )
    transform = build_transform(loaded.image_size, train=False)
    support_imgs, support_masks = _support_arrays(supports, transform, loaded, max_pixels)
    out_dir.mkdir(parents=True, exist_ok=True)
    found, skipped = [], []
    given = expand_queries(queries)
    # one output per input: two queries named alike (in different folders) get a ``-2`` suffix
    for query, stem in zip(given, unique_names([q.stem for q in given]), strict=True):
        try:
            rgb = load_rgb(query, max_pixels)
        except DecodeError as err:
            skipped.append((query, str(err)))
            continue
        q = query_tensor(rgb, transform, loaded.mean, loaded.std)
        inputs = {
            "query_img": q[None].numpy(),
            "support_imgs": support_imgs,
            "support_masks": support_masks,
        }
        # a predictor takes the class as MLflow's ``params`` only when one is named
        named = {"params": {"class_name": class_name}} if class_name else {}
        prob = np.asarray(loaded.predict(inputs, **named))[0]
        found.append(_write_prediction(prob, rgb, threshold, out_dir, stem, query))
    _write_tables(out_dir, found, skipped, threshold, model_uri)
    return PredictResult(found, skipped)


def _support_arrays(
    supports: list[tuple[Path, Path]], transform, loaded, max_pixels: int
) -> tuple[np.ndarray, np.ndarray]:
    """The episode's 1×K support images and masks as the model takes them; an unusable or
    defect-free support is a ValueError (the episode would be wrong)."""
    s_imgs, s_masks = [], []
    for img_path, mask_path in supports:
        try:
            rgb, label = load_rgb(img_path, max_pixels), load_label(mask_path, max_pixels)
        except DecodeError as err:
            raise ValueError(f"support {img_path}:{mask_path}: {err}") from None
        if not label.any():
            reason = empty_mask_reason(mask_grey(open_image(mask_path, max_pixels)))
            raise ValueError(f"{mask_path}: support {reason}")
        out = transform(image=rgb, mask=label)
        img, mask = to_tensors(out["image"], out["mask"], loaded.mean, loaded.std)
        if not (mask == 1).any():
            raise ValueError(
                f"{mask_path}: support mask has no defect pixel at the model's input size "
                "(the defect is too small to survive the resize: give a larger crop)"
            )
        s_imgs.append(img)
        s_masks.append(mask)
    return torch.stack(s_imgs)[None].numpy(), torch.stack(s_masks)[None].numpy().astype(np.int64)


def _write_prediction(
    prob: np.ndarray, rgb: np.ndarray, threshold: float, out_dir: Path, stem: str, query: Path
) -> Found:
    """The defect probability at the query's own size, thresholded: mask and overlay PNGs."""
    full = F.interpolate(
        torch.as_tensor(prob)[None, None], size=rgb.shape[:2], mode="bilinear", align_corners=True
    )[0, 0].numpy()
    mask = (full >= threshold).astype(np.uint8)
    mask_path = out_dir / f"{stem}_mask.png"
    Image.fromarray(mask * 255).save(mask_path)
    Image.fromarray(_tint(rgb, mask, (230, 30, 30))).save(out_dir / f"{stem}_overlay.png")
    return Found(query, mask_path, float(mask.mean()), float(full.max()))


def _write_tables(
    out_dir: Path, found: list[Found], skipped: list, threshold: float, model_uri: str
) -> None:
    """found.csv (a row per predicted query) and, when any was skipped, skipped.csv."""
    header = ("query", "mask", "found", "defect_share", "max_probability", "threshold", "model")
    rows = [
        (str(f.query), f.mask.name, "no" if f.empty else "yes", f.defect_share,
         f.max_probability, threshold, model_uri)
        for f in found
    ]  # fmt: skip
    with open(out_dir / "found.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    if skipped:
        with open(out_dir / "skipped.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([("query", "reason"), *((str(q), r) for q, r in skipped)])
