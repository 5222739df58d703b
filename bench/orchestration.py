"""Orchestration overhead: the `retrain` flow vs the same stages called directly, same run.

    python bench/orchestration.py

Both runs use the embedded default (synthetic data, params.yaml) in scratch folders.
``direct`` calls the library stage functions in sequence with no Prefect, no MLflow tracking and
no DVC (the stages' own compute); ``flow`` runs the Prefect `retrain` flow (ephemeral Prefect
server, SQLite MLflow with model logging, DVC add + push to a local remote). Overhead =
(flow − direct) / flow. Results: bench/results/orchestration.json and docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _workspace(name: str) -> Path:
    work = Path(tempfile.mkdtemp(prefix=f"lerenet-orch-{name}-"))
    shutil.copy(ROOT / "params.yaml", work / "params.yaml")
    from lerenet.data.synth import write_synthetic

    write_synthetic(work / "data-sources" / "synthetic")
    return work


def direct(work: Path) -> float:
    from lerenet.config import load_params
    from lerenet.data.ingest import ingest
    from lerenet.data.splits import split_dataset
    from lerenet.data.validate import limits_from, validate_dataset
    from lerenet.evaluate import evaluate_model
    from lerenet.gate import ShotEvidence, decide  # noqa: F401
    from lerenet.stages import _evidence
    from lerenet.train import train

    os.chdir(work)
    start = time.perf_counter()
    params = load_params("params.yaml")
    ingest("data-sources/synthetic", Path("data"), show_progress=False)
    validate_dataset(
        Path("data"), Path("outputs/validate"), limits_from(params), show_progress=False
    )
    split_dataset(Path("data"), params.split)
    main = train(params, show_progress=False)
    base = train(
        params.model_copy(update={"model": params.model.model_copy(update={"arch": "prototype"})}),
        out_dir=Path("outputs/train/baseline"),
        show_progress=False,
    )
    from lerenet.checkpoint import load_model_file

    model, _ = load_model_file(main.best_path)
    evaluate_model(model, params, out_dir=Path("outputs/eval/lerenet"))
    baseline, _ = load_model_file(base.best_path)
    evaluate_model(baseline, params, out_dir=Path("outputs/eval/baseline"))
    decide(_evidence(model, params), None, params.gate)
    return time.perf_counter() - start


def flow(work: Path) -> float:
    env = {**os.environ, "PREFECT_HOME": str(work / ".prefect")}
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    for cmd in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        [sys.executable, "-m", "dvc", "remote", "add", "-d", "local", "dvc-storage"],
    ):
        subprocess.run(cmd, cwd=work, env=env, check=True, capture_output=True)
    start = time.perf_counter()
    subprocess.run(
        [
            str(Path(sys.executable).parent / "lerenet-pipeline"),
            "retrain",
            "--source",
            "data-sources/synthetic",
        ],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    t_direct = direct(_workspace("direct"))
    t_flow = flow(_workspace("flow"))
    overhead = (t_flow - t_direct) / t_flow
    result = {
        "direct_s": round(t_direct, 1),
        "flow_s": round(t_flow, 1),
        "overhead": round(overhead, 3),
    }
    print(result)
    out = Path(__file__).resolve().parent / "results" / "orchestration.json"
    out.write_text(json.dumps(result, indent=2))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import replace_section

    replace_section(
        "orchestration",
        (
            "`python bench/orchestration.py` (embedded default, 2 CPU cores): the stages called "
            "directly (no Prefect, no MLflow, no DVC) vs the Prefect `retrain` flow (ephemeral "
            "Prefect incl. its start-up, SQLite MLflow with model logging, DVC add + push).\n\n"
            "| run | wall time |\n|---|---|\n"
            f"| stages only | {t_direct:.1f} s |\n| retrain flow | {t_flow:.1f} s |\n"
            f"| **overhead** | **{100 * overhead:.0f}%** ({t_flow - t_direct:.1f} s) |"
        ),
    )


if __name__ == "__main__":
    main()
