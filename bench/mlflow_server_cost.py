"""What the stack's tracking server costs to start, hold and stop, with MLflow 3's GenAI job
runner (its default) and without it (what ``lerenet stack up`` runs), in the same command.

    python bench/mlflow_server_cost.py [--repeat 3]

Each round starts an authenticated ``mlflow server`` as the stack does (``MlflowServer``,
SQLite backend) in a scratch folder, once per variant in alternating order, and measures: the
time until ``/health`` answers, the resident memory of its whole process tree 5 s after that,
its process count, and the time ``stop`` takes. Results: bench/results/mlflow_server_cost.json
and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"job runner on (MLflow's default)": "true", "job runner off (the stack)": "false"}


def _tree(pid: int) -> list:
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def measure(flag: str) -> dict[str, float]:
    """One start, hold and stop of the stack's tracking server with the job runner ``flag``,
    in a scratch folder removed afterwards (it holds the server's login)."""
    from unittest import mock

    from lerenet.stack import mlflow_server
    from lerenet.stack.credentials import kept_login

    # the one setting the variants differ in, given as the stack gives it: in the server's env
    real_spawn = mlflow_server.spawn

    def spawn(cmd, log, env):
        return real_spawn(cmd, log, env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": flag})

    with tempfile.TemporaryDirectory(prefix="lerenet-mlflow-cost-") as scratch:
        state = Path(scratch)
        server = mlflow_server.MlflowServer(
            state,
            artifacts_destination="s3://lerenet-artifacts/mlflow",
            s3_env={},
            auth=kept_login(state, "mlflow", "lerenet-admin"),
        )
        with mock.patch.object(mlflow_server, "spawn", spawn):
            began = time.monotonic()
            server.start()
            started = time.monotonic() - began
        time.sleep(5)  # let the runner's consumers finish importing
        tree = _tree(server.process.pid)
        rss = sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20
        began = time.monotonic()
        server.stop()
        stopped = time.monotonic() - began
    return {"start_s": started, "stop_s": stopped, "rss_mib": rss, "processes": len(tree)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds per variant")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    for round_ in range(args.repeat):
        order = list(VARIANTS.items())
        for name, flag in order if round_ % 2 == 0 else order[::-1]:
            runs[name].append(measure(flag))
            print(name, {k: round(v, 2) for k, v in runs[name][-1].items()}, flush=True)
    summary = {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in runs.items()
    }
    out = ROOT / "bench" / "results" / "mlflow_server_cost.json"
    out.write_text(json.dumps({"median": summary, "runs": runs}, indent=2) + "\n")
    print("| variant | start (s) | stop (s) | memory of the process tree (MiB) | processes |")
    print("|---|---|---|---|---|")
    for name, s in summary.items():
        line = f"| {name} | {s['start_s']:.1f} | {s['stop_s']:.1f} | {s['rss_mib']:.0f} |"
        print(f"{line} {s['processes']:.0f} |")


if __name__ == "__main__":
    main()
