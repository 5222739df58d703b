"""Checkpoints: atomic writes, and a self-describing model file.

A model file holds the weights *and* the model section of the params that built it, so
``load_model_file`` needs nothing else (the MLflow pyfunc, evaluate and export all use it).
A training checkpoint adds optimizer, scheduler, step and every RNG state for exact resume.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lerenet.config.schema import ModelConfig
from lerenet.services.reach import first_line


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file then rename: a crash never leaves a truncated checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class CheckpointError(ValueError):
    """A checkpoint or model file that is not plain tensors and containers: refused."""


def safe_load(path: Path, device: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``: tensors, numbers, strings and containers only.

    A pickle can run any code when loaded; a checkpoint from a shared drive or an artifact
    store is untrusted input, so nothing in one is ever executed. Refusals are one sentence.
    """
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused: not a plain tensor file ({first_line(err)}); lerenet loads "
            "checkpoints and models as weights only and never runs code from them"
        ) from None
    except (EOFError, RuntimeError, OSError) as err:  # empty, truncated, not a torch file
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({first_line(err)}); it is empty, cut "
            "short or another kind of file"
        ) from None


TRAINING_KEYS = ("model", "optimizer", "scheduler", "scaler", "step", "best", "best_step")


def load_training_state(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A training checkpoint (``last.pt``) for ``--resume``: tensors only, with every key a
    resume needs, else one CheckpointError naming what is missing."""
    state = safe_load(path, device)
    missing = [k for k in TRAINING_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: not a lerenet training checkpoint (no {', '.join(missing)}); train "
            "without --resume, or restore the last.pt a training wrote"
        )
    return state


def rng_state() -> dict[str, Any]:
    """Every RNG's state in types that load with ``weights_only=True`` (numpy's key array as a
    tensor: its own state tuple would need numpy classes unpickled)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_model_file(model: nn.Module, cfg: ModelConfig, path: Path, meta: dict | None = None):
    atomic_save(
        {
            "model_config": cfg.model_dump(mode="json"),
            "state_dict": model.state_dict(),
            "meta": meta or {},
        },
        path,
    )


def load_model_file(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network from a model file (no backbone weights needed: they are inside)."""
    from lerenet.model.build import build_model

    blob = safe_load(path, device)
    cfg = ModelConfig.model_validate(blob["model_config"])
    model, _ = build_model(cfg, load_weights=False)
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval(), {"model_config": blob["model_config"], **blob.get("meta", {})}


def identical_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two models hold the same tensors under the same names: a gate comparing such a
    pair can show no difference, and says so instead of leaving it to be guessed."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k])
        for k in sa
    )


def state_sha256(path: Path) -> str:
    """sha256 of a model file's configuration and tensors (names, dtypes, shapes, bytes), not of
    the file: two trainings that ended on the same weights get the same digest even when their
    files' metadata (step, validation score) differ. The registry uses it to refuse duplicates."""
    import hashlib
    import json

    blob = safe_load(path)
    digest = hashlib.sha256(json.dumps(blob["model_config"], sort_keys=True).encode())
    for name, tensor in sorted(blob["state_dict"].items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
