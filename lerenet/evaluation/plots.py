"""Pictures for people: episode overlays and per-class bar charts (PNG, logged to MLflow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _denorm(img, mean, std) -> np.ndarray:
    arr = img.detach().cpu().float().numpy().transpose(1, 2, 0) * np.array(std) + np.array(mean)
    return (np.clip(arr, 0, 1) * 255).astype(np.uint8)


def _tint(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    out = rgb.astype(np.float32)
    sel = mask == 1
    out[sel] = 0.5 * out[sel] + 0.5 * np.array(colour)
    return out.astype(np.uint8)


def overlay_row(item: dict, pred: np.ndarray, mean, std) -> np.ndarray:
    """support (green mask) | query with truth (green) | query with prediction (red)."""
    support = _tint(
        _denorm(item["support_imgs"][0], mean, std), item["support_masks"][0].numpy(), (0, 200, 0)
    )
    query = _denorm(item["query_img"], mean, std)
    truth = _tint(query, item["query_mask"].numpy(), (0, 200, 0))
    guess = _tint(query, pred, (230, 30, 30))
    return np.concatenate([support, truth, guess], axis=1)


def overlay_grid(rows: list[np.ndarray], path: Path, title: str = "") -> Path:
    """Stack overlay rows into one PNG with a caption line."""
    grid = np.concatenate(rows, axis=0)
    canvas = Image.new("RGB", (grid.shape[1], grid.shape[0] + 14), "white")
    canvas.paste(Image.fromarray(grid), (0, 14))
    ImageDraw.Draw(canvas).text(
        (2, 1), title or "support | query truth | query prediction", fill="black"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def class_bar_chart(
    per_class: dict[str, tuple[float, float, float]], path: Path, title: str
) -> Path:
    """Horizontal bars of per-class IoU with their confidence intervals."""
    plt = _pyplot()
    names = list(per_class)
    values = np.array([per_class[n][0] for n in names])
    err = np.array(
        [
            [per_class[n][0] - per_class[n][1] for n in names],
            [per_class[n][2] - per_class[n][0] for n in names],
        ]
    )
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1.2))
    ax.barh(names, values, xerr=np.clip(err, 0, None), color="#3b7dd8", capsize=3)
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU (95% bootstrap CI)")
    ax.set_title(title)
    return _save(plt, fig, path)


def compare_chart(
    models: dict[str, dict[str, tuple[float, float, float]]], path: Path, title: str
) -> Path:
    """Per-class IoU of several models side by side (one bar each, with its 95% interval):
    ``models`` maps a label to ``{class: (iou, low, high)}``; classes in the first model's
    order. The model and its references in one picture, where separate charts had to be
    compared by eye."""
    plt = _pyplot()
    names = list(next(iter(models.values()), {}))
    colours = ("#3b7dd8", "#9aa5b1", "#2a9d5c", "#e07a1f")
    height = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) * len(models) + 1.5))
    for i, (label, per_class) in enumerate(models.items()):
        at = np.arange(len(names)) + i * height
        values = np.array([per_class.get(n, (0.0, 0.0, 0.0))[0] for n in names])
        low = np.array([per_class.get(n, (0.0, 0.0, 0.0))[1] for n in names])
        high = np.array([per_class.get(n, (0.0, 0.0, 0.0))[2] for n in names])
        err = np.clip(np.stack([values - low, high - values]), 0, None)
        colour = colours[i % len(colours)]
        ax.barh(at, values, height, xerr=err, color=colour, capsize=2, label=label)
    ax.set_yticks(np.arange(len(names)) + height * (len(models) - 1) / 2, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU (95% bootstrap CI)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    return _save(plt, fig, path)


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on workers or in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def training_curve(
    history: list[dict], path: Path, title: str = "training", selected: int | None = None
) -> Path:
    """Validation mIoU (validation classes and, with a class memory, the training classes'
    held-out images) and training loss against the step, as a PNG, with a legend and the
    ``selected`` step (the served checkpoint) marked.

    A picture rather than a vega-lite spec: ``dvc plots show`` embeds images as they are,
    while vega plots need three scripts from a CDN, which an offline laptop cannot load.
    """
    plt = _pyplot()
    series = {
        "validation classes mIoU": ("val_miou", "o-", "#3b7dd8"),
        "training classes, held-out mIoU": ("seen_val_miou", "^-", "#2a9d5c"),
    }
    fig, ax = plt.subplots(figsize=(6, 3.2))
    handles = []
    for label, (key, style, color) in series.items():
        points = [(h["step"], h[key]) for h in history if h.get(key) is not None]
        if points:
            handles += ax.plot(*zip(*points, strict=True), style, color=color, label=label)
    if selected is not None:
        handles.append(
            ax.axvline(selected, color="#555555", linestyle=":", label=f"served: step {selected}")
        )
    ax.set_xlabel("step")
    ax.set_ylabel("mIoU")
    ax.set_ylim(0, 1)
    loss = [(h["step"], h["loss"]) for h in history if h.get("loss") is not None]
    if loss:
        twin = ax.twinx()
        handles += twin.plot(
            *zip(*loss, strict=True), "s--", color="#d8663b", label="training loss"
        )
        twin.set_ylabel("training loss")
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize="small")
    ax.set_title(title)
    return _save(plt, fig, path)
