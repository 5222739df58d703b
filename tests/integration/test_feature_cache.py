"""The frozen-backbone fast path: cached features equal live ones, training on them resumes
exactly, and synthetic tasks are deterministic and drawn from training images only."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from lerenet.config.schema import load_params

pytestmark = pytest.mark.slow

FAST = {
    "model.prior": "matching",
    "model.residual": True,
    "model.backbone_bn": "frozen",
    "model.prior_levels": ["s4", "s8"],
    "train.backbone_lr_mult": 0.0,
    "train.feature_cache": True,
    "train.cache_copies": 2,
}


@pytest.mark.parametrize(
    "start",
    [{"model.residual": True}, {"model.residual": "lda", "model.lda_scales": [0.75, 1.0]}],
    ids=["prototype", "multiscale-lda"],
)
def test_cached_stages_equal_the_backbone_on_the_same_augmented_image(
    tiny_project: Path, start: dict
) -> None:
    from lerenet.data.imageio import load_label, load_rgb
    from lerenet.data.manifest import mask_of, read_manifest
    from lerenet.data.splits import Episode
    from lerenet.data.transforms import build_transform, to_tensors
    from lerenet.model.build import build_model
    from lerenet.training.feature_cache import build_cache, cached_batch, image_key

    params = load_params("params.yaml", {**FAST, **start})
    model, _ = build_model(params.model)
    model.eval()
    scales = tuple(params.model.lda_scales)
    images = [p.image for p in read_manifest(Path("data"))][:3]
    mean, std = model.backbone.mean, model.backbone.std
    cache = build_cache(
        model.backbone,
        Path("data"),
        images,
        image_size=48,
        copies=2,
        seed=5,
        mean=mean,
        std=std,
        device=torch.device("cpu"),
        show_progress=False,
        scales=scales,
        scaled_levels=model.scaled_levels,
    )
    scaled = {f"{n}@{s:g}" for s in scales if s != 1.0 for n in ("s4", "s8")}
    assert set(cache.levels) == {"s4", "s8"} | scaled and cache.labels.shape == (6, 48, 48)

    def augmented(image: str, copy: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Copy ``copy`` of ``image``, recomputed by hand with the same seeded augmentation."""
        rng = random.Random(f"5|{image_key(image)}|{copy}")
        out = build_transform(48, True, seed=rng.randrange(2**31))(
            image=load_rgb(Path("data") / image), mask=load_label(Path("data") / mask_of(image))
        )
        return to_tensors(out["image"], out["mask"].astype(np.uint8), mean, std)

    img, label = augmented(images[0], 1)
    row = cache.rows[images[0]][1]
    assert torch.equal(cache.labels[row], label.to(torch.uint8))
    with torch.no_grad():
        live = model.backbone.forward_levels(img[None])
        cached_s4 = cache.levels["s4"][row].float()
        torch.testing.assert_close(cached_s4, live["s4"][0], atol=2e-2, rtol=1e-2)
        # the head on a cached batch = the whole model on the images of the copies it chose
        batch = cached_batch(
            cache, [Episode("c", images[0], (images[1], images[2]))], 3, torch.device("cpu")
        )
        cached = model.forward_levels(
            batch["query_levels"], batch["support_levels"], batch["support_masks"], (48, 48)
        )
        pick = random.Random(3)
        copies = [pick.choice([0, 1]) for _ in range(3)]
        parts = [augmented(i, c) for i, c in zip(images, copies, strict=True)]
        assert torch.equal(batch["query_mask"][0], parts[0][1])
        assert torch.equal(batch["support_masks"][0], torch.stack([parts[1][1], parts[2][1]]))
        whole = model(
            parts[0][0][None],
            torch.stack([parts[1][0], parts[2][0]])[None],
            batch["support_masks"],
        )
    torch.testing.assert_close(cached, whole, atol=5e-2, rtol=1e-2)  # fp16 cache


def test_cache_needs_a_frozen_backbone(tiny_project: Path) -> None:
    from lerenet.training.loop import train

    params = load_params("params.yaml", {**FAST, "train.backbone_lr_mult": 0.1})
    with pytest.raises(ValueError, match="needs a frozen backbone"):
        train(params, show_progress=False)


def test_cached_training_with_synthetic_tasks_resumes_identically(tiny_project: Path) -> None:
    from lerenet.training.loop import train

    extra = {
        **FAST,
        "train.synthetic_classes": 3,
        "train.synthetic_per_class": 6,
        "train.shots": [1, 2],  # K drawn per step
    }
    params = load_params("params.yaml", extra)
    full = train(params, out_dir=Path("full"), show_progress=False)
    part = train(params, out_dir=Path("resumed"), show_progress=False, stop_after=4)
    resumed = train(params, out_dir=Path("resumed"), resume=True, show_progress=False)
    assert part.steps_done == 4 and resumed.steps_done == full.steps_done == 6
    a = torch.load(full.last_path, weights_only=False)["model"]
    b = torch.load(resumed.last_path, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the frozen pretrained weights did not move; the head did
    start = torch.load(Path("full") / "best.pt", weights_only=True)["state_dict"]
    assert torch.equal(
        a["backbone._blocks.0._depthwise_conv.weight"],
        start["backbone._blocks.0._depthwise_conv.weight"],
    )
    # synthetic tasks: the same files on both runs, painted on training-class images only
    tasks = sorted((Path("full") / "synthetic_tasks" / "images").rglob("*.png"))
    again = sorted((Path("resumed") / "synthetic_tasks" / "images").rglob("*.png"))
    assert len(tasks) == 18 and [p.read_bytes() for p in tasks] == [p.read_bytes() for p in again]
    masks = sorted((Path("full") / "synthetic_tasks" / "masks").rglob("*.png"))
    from PIL import Image

    assert all(np.asarray(Image.open(m)).max() == 255 for m in masks)


def test_synthetic_tasks_paint_on_training_images_only(
    tiny_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lerenet.data.synth_tasks as synth_tasks
    from lerenet.data.split_result import Split
    from lerenet.training.batches import synthetic_tasks

    used: list[str] = []
    real = synth_tasks._surface
    monkeypatch.setattr(
        synth_tasks,
        "_surface",
        lambda root, image, size: used.append(image) or real(root, image, size),
    )
    params = load_params("params.yaml", {"train.synthetic_classes": 4})
    split = Split.read(Path("splits"))
    fold = split.folds[0]
    tasks = synthetic_tasks(params, fold.train, Path("out"), split.held_out)
    assert sorted(tasks) == ["Task_000", "Task_001", "Task_002", "Task_003"]
    assert all(len(v) == params.train.synthetic_per_class for v in tasks.values())
    assert used and {Path(i).parent.name for i in used} <= set(fold.train)
    assert not set(used) & split.held_out  # never an image the split held out
