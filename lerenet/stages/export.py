"""The export stage: a registered model as ONNX, checked against onnxruntime, logged to its run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lerenet.config.schema import Params


@dataclass(frozen=True)
class ExportResult:
    """An exported ONNX file and how closely onnxruntime matches torch on it."""

    path: Path
    max_abs_diff: float  # worst |torch - onnxruntime| over the checked episodes
    episodes: int  # episodes checked (random ones plus real ones)
    real_episodes: int  # of which from the split's test episodes
    run_id: str | None  # the model version's run the file was logged to


def run(params: Params, *, model_uri: str, out: Path, shots: int = 1) -> ExportResult:
    """Export ``model_uri`` to ONNX, check parity with onnxruntime on random and real test
    episodes, and log the file to the version's run (tagging the version with the parity)."""
    from lerenet.evaluation.scoring import episode_dataset
    from lerenet.model.complexity import dummy_episode
    from lerenet.model.onnx import export_onnx, parity
    from lerenet.tracking.loading import load_torch_model
    from lerenet.tracking.runs import connect
    from lerenet.tracking.uris import log_export

    connect(params.tracking)
    model, meta = load_torch_model(model_uri)
    size = int(meta.get("image_size") or params.data.image_size)
    export_onnx(model, out, size, shots=shots)
    episodes = [dummy_episode(1, shots, size, seed=s) for s in range(2)]
    real = 0
    try:
        dataset = episode_dataset(params, model, "test", shots, params.train.fold, limit=4)
        if dataset.image_size == size:
            for i in range(len(dataset)):
                item = dataset[i]
                episodes.append(
                    (
                        item["query_img"][None],
                        item["support_imgs"][None],
                        item["support_masks"][None],
                    )
                )
                real += 1
    except FileNotFoundError:
        pass  # no split here: random episodes only
    worst = parity(model, out, episodes)
    run_id = log_export(model_uri, out, worst)
    return ExportResult(out, worst, len(episodes), real, run_id)
