"""Orchestration overhead: the `retrain` flow vs the same stages as a plain script, same run.

    python bench/orchestration.py [--repeat 3]

Every run is a fresh Python process timed from outside (interpreter start and imports
included on both sides), on the embedded default (synthetic data, params.yaml) in its own
scratch folder:

- ``stages``: the library stage functions in sequence, no Prefect, no MLflow, no DVC: the
  stages' own compute.
- ``flow (cold)``: ``lerenet-pipeline retrain``: the first run on a machine: new Prefect
  database (migrations), ephemeral Prefect server start-up, new MLflow SQLite database, model
  logging, DVC add + push to a local remote.
- ``flow (warm)``: the same flow where the Prefect database and the MLflow database already
  exist: every run after the first (a nightly schedule).

Overhead = (flow − stages) / flow. Results: bench/results/orchestration.json and
docs/benchmarks.md.
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
BIN = Path(sys.executable).parent


def _workspace(name: str) -> Path:
    work = Path(tempfile.mkdtemp(prefix=f"lerenet-orch-{name}-"))
    shutil.copy(ROOT / "params.yaml", work / "params.yaml")
    from lerenet.data.synth import write_synthetic

    write_synthetic(work / "data-sources" / "synthetic")
    return work


def _env(work: Path, prefect_home: Path) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "DVC_NO_ANALYTICS": "1"}
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _timed(cmd: list[str], work: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return elapsed


def run_stages() -> None:
    """The stages' own compute, in this process (called as ``--stages`` in a workspace)."""
    from lerenet.config.schema import load_params
    from lerenet.data.ingest import ingest
    from lerenet.data.splits import split_dataset
    from lerenet.data.validate import validate_with_params
    from lerenet.evaluation.gate import decide
    from lerenet.evaluation.scoring import evaluate_model
    from lerenet.services.offline import apply_offline_env
    from lerenet.training.checkpoint import load_model_file
    from lerenet.training.loop import save_baseline, train

    apply_offline_env()
    params = load_params("params.yaml")
    ingest("data-sources/synthetic", Path("data"), show_progress=False)
    validate_with_params(params, Path("outputs/validate"), show_progress=False)
    split_dataset(Path("data"), params.split)
    main = train(params, show_progress=False)
    base_path = save_baseline(params, Path("outputs/train/baseline"))
    model, _ = load_model_file(main.best_path)
    scores = evaluate_model(model, params, out_dir=Path("outputs/eval/lerenet"))
    baseline, _ = load_model_file(base_path)
    evaluate_model(baseline, params, out_dir=Path("outputs/eval/baseline"))
    decide(scores.evidence, None, params.gate)


def stages() -> float:
    work = _workspace("stages")
    return _timed(
        [sys.executable, str(Path(__file__).resolve()), "--stages"],
        work,
        _env(work, work / ".prefect"),
    )


def flow(warm: bool) -> float:
    work = _workspace("flow-warm" if warm else "flow-cold")
    env = _env(work, work / ".prefect")
    for cmd in (
        ["git", "init", "-q"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        [sys.executable, "-m", "dvc", "remote", "add", "-d", "local", "dvc-storage"],
    ):
        subprocess.run(cmd, cwd=work, env=env, check=True, capture_output=True)
    if warm:  # what a first run leaves behind: a migrated Prefect DB and the MLflow DB
        warmup = (
            "from prefect import flow\n"
            "flow(lambda: None, name='warm-up')()\n"
            "import mlflow\n"
            f"mlflow.set_tracking_uri('sqlite:///{work}/mlflow.db')\n"
            "mlflow.set_experiment('lerenet')\n"
        )
        subprocess.run(
            [sys.executable, "-c", warmup], cwd=work, env=env, check=True, capture_output=True
        )
    return _timed(
        [str(BIN / "lerenet-pipeline"), "retrain", "--source", "data-sources/synthetic"],
        work,
        env,
    )


def main() -> None:
    import argparse
    import statistics

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--repeat", type=int, default=1, help="interleaved rounds; the table shows medians"
    )
    args = parser.parse_args()
    if args.stages:
        run_stages()
        return
    runs: dict[str, list[float]] = {"stages": [], "cold": [], "warm": []}
    for _ in range(args.repeat):  # interleaved, so machine noise hits all three alike
        runs["stages"].append(stages())
        runs["cold"].append(flow(warm=False))
        runs["warm"].append(flow(warm=True))
    t_stages, t_cold, t_warm = (statistics.median(runs[k]) for k in ("stages", "cold", "warm"))
    result = {
        "rounds": args.repeat,
        "runs_s": {k: [round(t, 1) for t in v] for k, v in runs.items()},
        "stages_s": round(t_stages, 1),
        "flow_cold_s": round(t_cold, 1),
        "flow_warm_s": round(t_warm, 1),
        "overhead_cold": round((t_cold - t_stages) / t_cold, 3),
        "overhead_warm": round((t_warm - t_stages) / t_warm, 3),
    }
    print(result)
    out = Path(__file__).resolve().parent / "results" / "orchestration.json"
    out.write_text(json.dumps(result, indent=2))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import replace_section

    rows = "".join(
        f"| {label} | {t:.1f} s | {100 * (t - t_stages) / t:.0f}% ({t - t_stages:.1f} s) |\n"
        for label, t in (
            ("retrain flow, first run (cold)", t_cold),
            ("retrain flow, later runs (warm)", t_warm),
        )
    )
    replace_section(
        "orchestration",
        (
            "`python bench/orchestration.py` (embedded default, 2 CPU cores; each run a fresh "
            "process timed from outside): the stages as a plain script (no Prefect, no MLflow, "
            "no DVC) vs the Prefect `retrain` flow (ephemeral Prefect incl. its start-up, SQLite "
            "MLflow with model logging, DVC add + push). Cold: new Prefect and MLflow databases; "
            "warm: both exist, as on every run after the first. Medians of "
            f"{args.repeat} interleaved round(s); every run in bench/results/orchestration.json."
            "\n\n"
            "| run | wall time | overhead |\n|---|---|---|\n"
            f"| stages only | {t_stages:.1f} s | |\n" + rows
        ).rstrip(),
    )


if __name__ == "__main__":
    main()
