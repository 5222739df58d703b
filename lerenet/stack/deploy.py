"""``lerenet stack deploy``: prefect.yaml's deployments on the running stack, nothing left open.

``prefect deploy --all`` alone stopped halfway on a fresh stack (exit 1: no ``lerenet-gpu``
pool) and registered ``{{ $LERENET_GIT_REPOSITORY }}`` unresolved. Here the placeholders get
values first (the local clone and its branch by default, so the stack's process worker runs
the committed code of this repository), the pools are looked up through the Prefect API, and a
missing GPU pool is a sentence: the nightly retrain then trains on the process worker, and the
GPU training deployment waits until the pool exists. prefect.yaml stays the one declaration of
the deployments; this module only chooses which of them to deploy and fills the variables.

The workers restore their data from a DVC remote they can reach: the committed default remote
is a folder on this machine (``../dvc-storage``), absent in a worker's clone, and the nightly
retrain failed out of the box on it. So deploying pushes the data version the branch records
to the stack's S3 remote (``--dvc-remote``, default ``s3``) and the deployments restore from
that remote (their ``dvc_remote`` parameter); a version no worker could restore is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from lerenet.stack.local import WORK_POOL, read_env

GPU_POOL = "lerenet-gpu"
NIGHTLY, ONBOARD = "lerenet-nightly-retrain", "lerenet-onboard-class"
TRAIN_GPU = "lerenet-train-gpu"


@dataclass
class DeployResult:
    deployed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # deployment → why
    repository: str = ""
    branch: str = ""
    dvc_remote: str = ""
    data_version: str | None = None  # pushed to dvc_remote; None: the branch records none


def git_location(repo: Path) -> tuple[str, str]:
    """``(file://<clone>, <branch>)`` of the local clone; it must have a commit to deploy."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(
                f"{repo}: not a git clone with a commit ({done.stderr.strip()}); deployments "
                "run committed code: commit first, or pass --repository and --branch"
            )
        return done.stdout.strip()

    branch = git("branch", "--show-current")
    if not branch:
        raise RuntimeError(f"{repo}: detached HEAD; pass --branch (the branch workers clone)")
    return Path(git("rev-parse", "--show-toplevel")).as_uri(), branch


def pool_exists(api_url: str, name: str, auth: str | None = None) -> bool:
    """Whether the Prefect server has work pool ``name`` (REST: the library imports no Prefect).

    ``auth``: the server's API auth string (``PREFECT_API_AUTH_STRING``), sent as Basic."""
    import base64

    request = urllib.request.Request(f"{api_url}/work_pools/{name}")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return False
        if err.code == 401:
            raise RuntimeError(
                f"the Prefect server at {api_url} refused the stack's auth string; "
                "`source .stack/env.sh` or restart the stack"
            ) from None
        raise
    except urllib.error.URLError as err:
        raise RuntimeError(
            f"the Prefect server at {api_url} does not answer ({err.reason}); start the stack "
            "with `lerenet stack up`"
        ) from None


def _prefect_deploy(name: str, env: dict[str, str], repo: Path, params: dict | None) -> None:
    cmd = [str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "-n", name]
    for key, value in (params or {}).items():
        cmd += ["--param", f"{key}={json.dumps(value)}"]
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if done.returncode:
        tail = " ".join((done.stdout + done.stderr).split()[-60:])
        raise RuntimeError(f"prefect deploy -n {name} failed: {tail}")


def deploy(
    state_dir: Path,
    *,
    repo: Path = Path("."),
    repository: str | None = None,
    branch: str | None = None,
    gpu_image: str | None = None,
    dvc_remote: str = "s3",
) -> DeployResult:
    """Deploy the onboarding and nightly deployments, and GPU training when its pool exists,
    after pushing the data version the branch records to ``dvc_remote`` (which they restore
    from)."""
    from lerenet.config.schema import load_params
    from lerenet.lineage.data_versions import publish_recorded_data

    if not (Path(state_dir) / "env.sh").exists():
        raise RuntimeError(f"{state_dir}: no stack here; start one with `lerenet stack up`")
    stack_env = read_env(state_dir)
    api_url = stack_env.get("PREFECT_API_URL")
    if not api_url:
        raise RuntimeError(f"{state_dir}: no Prefect in this stack; `lerenet stack up` first")
    auth = stack_env.get("PREFECT_API_AUTH_STRING")
    if not pool_exists(api_url, WORK_POOL, auth):
        raise RuntimeError(f"work pool {WORK_POOL!r} not found at {api_url}; `lerenet stack up`")
    if repository is None or branch is None:
        local, current = git_location(repo)
        repository, branch = repository or local, branch or current
    gpu = pool_exists(api_url, GPU_POOL, auth)
    env = os.environ | stack_env
    data_root = Path(load_params(Path(repo) / "params.yaml").data.root)
    # the branch the workers clone, as this clone has it (a --repository elsewhere: the same
    # branch is expected to be pushed there)
    pushed = publish_recorded_data(data_root, Path(repo), dvc_remote, branch, env)
    env |= {
        "LERENET_GIT_REPOSITORY": repository,
        "LERENET_GIT_BRANCH": branch,
        "LERENET_GPU_IMAGE": gpu_image or env.get("LERENET_GPU_IMAGE", "lerenet-gpu:latest"),
    }
    result = DeployResult(
        repository=repository, branch=branch, dvc_remote=dvc_remote, data_version=pushed
    )
    restore = {"dvc_remote": dvc_remote}
    plan: list[tuple[str, dict | None]] = [(ONBOARD, restore)]
    if gpu:
        plan += [(TRAIN_GPU, None), (NIGHTLY, restore)]
    else:  # train on the process worker
        plan.append((NIGHTLY, restore | {"train_deployment": None}))
        result.skipped[TRAIN_GPU] = (
            f"no work pool {GPU_POOL!r}: the nightly retrain trains on the {WORK_POOL!r} "
            "worker; create the GPU pool (infra/README.md) and run `lerenet stack deploy` again"
        )
    for name, params in plan:
        _prefect_deploy(name, env, repo, params)
        result.deployed.append(name)
    return result
