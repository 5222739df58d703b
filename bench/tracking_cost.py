"""What a training loop waits for when it tracks to an MLflow server: one per-step metrics call,
synchronous and queued, and one checkpoint upload, against the project's own stack.

    python bench/tracking_cost.py

Starts SeaweedFS and an MLflow server (``lerenet stack up`` without Prefect) in a scratch
directory, times 100 ``log_metrics`` calls each way and three ``log_checkpoints`` uploads of
the default model's checkpoint (weights and optimizer state), and stops them. The numbers
explain the training loop's tracking share in ``bench/worker_throughput.py``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import mlflow
    import torch

    from lerenet.config.schema import load_params
    from lerenet.model.build import build_model
    from lerenet.stack.local import down, up
    from lerenet.tracking.checkpoints import log_checkpoints

    work = Path(tempfile.mkdtemp(prefix="lerenet-trackcost-"))
    state = up(work / ".stack", with_prefect=False, repo=work)
    os.environ.update(state.env)
    try:
        mlflow.set_tracking_uri(state.env["MLFLOW_TRACKING_URI"])
        mlflow.set_experiment("tracking-cost")
        model, _ = build_model(load_params(ROOT / "params.yaml").model)
        trained = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trained, lr=0.1, momentum=0.9)
        checkpoint = work / "last.pt"
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, checkpoint)
        result = {"checkpoint_mb": round(checkpoint.stat().st_size / 1e6, 1)}
        with mlflow.start_run() as run:
            for label, synchronous in (("sync", True), ("queued", False)):
                began = time.perf_counter()
                for step in range(100):
                    mlflow.log_metrics({"a": 1.0, "b": 2.0}, step=step, synchronous=synchronous)
                result[f"log_metrics_{label}_ms"] = round((time.perf_counter() - began) * 10, 2)
            began = time.perf_counter()
            for step in range(3):
                log_checkpoints(run.info.run_id, step, checkpoint)
            result["checkpoint_upload_s"] = round((time.perf_counter() - began) / 3, 2)
    finally:
        down(work / ".stack")
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / "tracking_cost.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
