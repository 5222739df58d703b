"""Data versioning with DVC: ``dvc add data`` and ``dvc push``, called by the pipeline.

Runs DVC as a subprocess of the same environment (``python -m dvc``) so the version used is the
project's pinned one. Outside a DVC repository (no ``.dvc/``) versioning is skipped with a
clear message, so library users who do not use DVC are not forced to.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lerenet.lineage.records import data_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionResult:
    data_version: str
    tracked: bool
    pushed: bool
    message: str


def _dvc(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def _remote_location(repo: Path, remote: str | None) -> tuple[str, str | None] | None:
    """The (url, endpointurl) of ``remote`` (or the default remote), merged over all config
    levels, or None when it cannot be read."""
    name = remote or _dvc("remote", "default", cwd=repo).stdout.strip()
    if not name:
        return None
    url = _dvc("config", f"remote.{name}.url", cwd=repo)
    if url.returncode != 0:
        return None
    endpoint = _dvc("config", f"remote.{name}.endpointurl", cwd=repo)
    return url.stdout.strip(), endpoint.stdout.strip() if endpoint.returncode == 0 else None


def _raise_if_s3_unreachable(repo: Path, remote: str | None) -> None:
    """After a failed DVC command: if the remote is S3 and its bucket does not answer, raise
    the error that names the bucket and the endpoint (DVC's own names only the remote).

    Only run on failure, so a healthy push pays nothing for it.
    """
    from lerenet.services.reach import require_s3
    from lerenet.services.storage import is_s3_uri, split_s3_uri

    location = _remote_location(repo, remote)
    if location is None or not is_s3_uri(location[0]):
        return
    bucket, _ = split_s3_uri(location[0])
    require_s3(bucket, location[1], attempts=1)


def _dvc_transfer(*args: str, cwd: Path, remote: str | None, what: str) -> None:
    """``dvc push``/``dvc pull``; on failure an S3 remote that does not answer is named (bucket
    and endpoint), else DVC's own error is raised."""
    result = _dvc(*args, *(["-r", remote] if remote else []), cwd=cwd)
    if result.returncode != 0:
        _raise_if_s3_unreachable(cwd, remote)
        raise RuntimeError(f"{what} failed: {result.stderr.strip()[-2000:]}")


def pull_data(data_root: Path, repo: Path = Path("."), remote: str | None = None) -> None:
    """``dvc pull <data_root>.dvc``: the data version the repository records (a GPU worker's
    first step)."""
    _dvc_transfer("pull", f"{data_root}.dvc", cwd=Path(repo), remote=remote, what="dvc pull")


def record_pipeline(repo: Path = Path(".")) -> str:
    """``dvc commit --force`` after a flow ran the stages ``dvc.yaml`` declares with the params
    file as it is: ``dvc.lock`` then records what the flow produced, and the next ``dvc repro``
    runs only what changed since (the two drivers share their state). Returns what it did, in
    words; a failure is reported, not raised: the run's results stand without the lock."""
    repo = Path(repo)
    if not (repo / ".dvc").is_dir() or not (repo / "dvc.yaml").exists():
        return "not a DVC pipeline here: no dvc.lock to write"
    result = _dvc("commit", "--force", "dvc.yaml", cwd=repo)  # the stages, not data.dvc
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["dvc commit failed"])[-1][:300]
        return f"dvc.lock not updated ({reason}); `dvc repro` will rerun the stages"
    return "dvc.lock records this run: `dvc repro` reruns only what changes from here"


def default_remote(repo: Path = Path(".")) -> str:
    """``name (url)`` of the DVC repository's default remote, as .dvc/config says, for
    messages; "none" without one."""
    import configparser

    config = configparser.ConfigParser()
    config.read([Path(repo) / ".dvc" / "config", Path(repo) / ".dvc" / "config.local"])
    name = config.get("core", "remote", fallback=None)
    if not name:
        return "none"
    section = 'remote "' + name + '"'  # DVC writes it quoted: ['remote "local"']
    url = config.get(section, "url", fallback=None) or config.get(
        f"'{section}'", "url", fallback="?"
    )
    return f"{name} ({url})"


def require_recorded_data(
    data_root: Path, repo: Path = Path("."), remote: str | None = None
) -> None:
    """A run without a new source needs the recorded data: when the folder has no manifest
    after ``restore_recorded_data``, say why in one sentence (a deployment's fresh clone whose
    default remote is a folder on another machine), not "no manifest" two stages later."""
    repo = Path(repo)
    if (repo / data_root / "manifest.csv").exists():
        return
    recorded = repo / f"{data_root}.dvc"
    if not recorded.exists():
        raise FileNotFoundError(
            f"{data_root}: no data and no {recorded.name}; give --source, or `lerenet ingest`"
        )
    where = f"the remote {remote!r}" if remote else f"the default remote {default_remote(repo)}"
    raise FileNotFoundError(
        f"{data_root}: no data here, and the version {recorded.name} records is neither in the "
        f"DVC cache nor on {where}: `lerenet stack deploy` pushes it to the stack's S3 and "
        "makes the deployments restore from there (or `dvc push -r s3`, then run with "
        "--dvc-remote s3; infra/README.md), or give --source"
    )


def restore_recorded_data(
    data_root: Path, repo: Path = Path("."), remote: str | None = None
) -> bool:
    """Pull the data version that ``<data_root>.dvc`` records when the folder does not hold it.

    A deployment's worker runs in a fresh git clone: data.dvc is there, data/ is not. Ingesting
    a new source into the empty folder and versioning it would record a data version with the
    new images only, dropping every class before it. So the flows restore the recorded version
    first. Returns whether it pulled (False: the folder has its manifest, or nothing records
    a version, or the clone is not a DVC repository, or the version it records is on no
    remote: the repository's own data.dvc in a fresh clone of it, whose files were pushed to a
    local remote on another machine; logged, and the run starts from its source alone). A
    remote that does not answer still fails the run. ``remote``: the DVC remote to pull from
    (a deployment's: ``lerenet stack deploy`` names the stack's S3); None: the default one.
    """
    repo = Path(repo)
    recorded = repo / f"{data_root}.dvc"
    if (repo / data_root / "manifest.csv").exists() or not recorded.exists():
        return False
    if not (repo / ".dvc").is_dir():
        return False
    try:
        pull_data(data_root, repo, remote)
    except RuntimeError as err:
        if "Missing cache files" not in str(err):
            raise
        log.warning(
            "%s records a data version that neither the DVC cache nor the remote has; "
            "starting from the ingested source alone (%s)",
            recorded,
            str(err).splitlines()[-1] if str(err) else "",
        )
        return False
    return True


def dvc_record(version: str, path: str = "data") -> str:
    """The ``.dvc`` file text that records data version ``version`` (``dvc:<md5>.dir``) of the
    folder ``path`` beside it: what ``dvc add`` writes, enough for ``dvc pull``."""
    if not version.startswith("dvc:"):
        raise ValueError(
            f"data version {version!r} is not a DVC hash; only DVC-versioned data can be "
            "fetched from a remote (version the data: a DVC repository with a remote)"
        )
    return f"outs:\n- md5: {version.removeprefix('dvc:')}\n  path: {path}\n  hash: md5\n"


def checkout_data_version(
    version: str, data_root: Path, repo: Path = Path("."), remote: str | None = None
) -> bool:
    """Make ``data_root`` hold data version ``version``, pulled from the DVC remote.

    A training worker gets the version the parent flow versioned *by value*: its clone's
    ``data.dvc`` is the one of the commit it cloned, which predates a run that has just added
    data, so pulling what the clone records would train on older data. Returns whether it
    pulled (False: the folder already holds that version, e.g. a worker sharing the parent's
    directory).
    """
    repo = Path(repo)
    dvc_file = repo / f"{data_root}.dvc"
    folder = repo / data_root
    if (folder / "manifest.csv").exists() and data_version(folder, dvc_file) == version:
        return False
    dvc_file.write_text(dvc_record(version, Path(data_root).name))
    pull_data(data_root, repo, remote)
    return True


def version_data(
    data_root: Path, repo: Path = Path("."), push: bool = True, remote: str | None = None
) -> VersionResult:
    """Track ``data_root`` with DVC (writes ``<data_root>.dvc``) and push it to the remote."""
    repo = Path(repo)
    if not (repo / ".dvc").is_dir():
        return VersionResult(
            data_version(repo / data_root),
            False,
            False,
            "not a DVC repository (no .dvc/): data not versioned",
        )
    added = _dvc("add", str(data_root), cwd=repo)
    if added.returncode != 0:
        raise RuntimeError(f"dvc add {data_root} failed:\n{added.stderr.strip()}")
    pushed, message = False, "tracked"
    if push:
        _dvc_transfer(
            "push",
            f"{data_root}.dvc",
            cwd=repo,
            remote=remote,
            what=f"dvc push (remote {remote or 'default'})",
        )
        pushed, message = True, "tracked and pushed"
    return VersionResult(data_version(repo / data_root), True, pushed, message)


def fetch_data_version(version: str, dest: Path, repo: Path = Path(".")) -> Path:
    """Materialise the recorded DVC data version (``dvc:<md5>.dir``) at ``dest`` from the
    repository's DVC remote, without touching the workspace's own ``data/``.

    A scratch DVC project gets the repository's remote configuration and a ``.dvc`` file
    pointing at the recorded hash; ``dvc pull`` then fetches exactly that version.
    """
    import shutil

    record = dvc_record(version)  # refuses a version that is not a DVC hash
    repo, dest = Path(repo), Path(dest)
    if not (repo / ".dvc" / "config").exists():
        raise FileNotFoundError(f"{repo}: no .dvc/config, so no remote to restore data from")
    dest.mkdir(parents=True, exist_ok=True)
    init = _dvc("init", "--no-scm", "-q", cwd=dest)
    if init.returncode != 0 and "already" not in init.stderr:
        raise RuntimeError(f"dvc init failed: {init.stderr.strip()}")
    for name in ("config", "config.local"):
        source = repo / ".dvc" / name
        if source.exists():
            text = source.read_text()
            shutil.copy(source, dest / ".dvc" / name)
            # relative local remotes are relative to the original .dvc/ folder
            if "url = " in text:
                lines = []
                for line in text.splitlines():
                    key, sep, value = line.partition("url = ")
                    if sep and "://" not in value and not Path(value).is_absolute():
                        value = str((repo / ".dvc" / value).resolve())
                    lines.append(key + sep + value)
                (dest / ".dvc" / name).write_text("\n".join(lines) + "\n")
    _dvc("config", "core.no_scm", "true", cwd=dest)  # the copied config replaced init's
    (dest / "data.dvc").write_text(record)
    _dvc_transfer("pull", "data.dvc", cwd=dest, remote=None, what=f"dvc pull of data {version}")
    return dest / "data"


def _git_show(repo: Path, ref: str, path: str) -> str | None:
    done = subprocess.run(
        ["git", "show", f"{ref}:{path}"], cwd=repo, capture_output=True, text=True, check=False
    )
    return done.stdout if done.returncode == 0 else None


def publish_recorded_data(
    data_root: Path, repo: Path, remote: str, ref: str, env: dict[str, str] | None = None
) -> str | None:
    """Push the data version ``<data_root>.dvc`` records at git ``ref`` to DVC remote
    ``remote``, where a deployment's worker, cloning ``ref``, restores it from.

    Without this the deployed nightly retrain failed out of the box: the committed default
    remote is a folder on the deploying machine, absent in the worker's clone. Returns the
    version pushed (``dvc:<md5>.dir``), or None when ``ref`` records none. Raises a one-sentence
    RuntimeError, saying how to fix it, when the worker could not restore the version: the
    working tree's record differs from ``ref``'s, ``ref``'s .dvc/config lacks ``remote``, or
    neither this clone's DVC cache nor the remote holds the files.
    """
    repo = Path(repo)
    name = f"{Path(data_root).as_posix()}.dvc"
    recorded = _git_show(repo, ref, name)
    if recorded is None:
        return None
    here = repo / name
    if not here.exists() or here.read_text() != recorded:
        raise RuntimeError(
            f"{name} differs from the one on {ref}, which the deployments' workers clone and "
            f"restore: commit it (`git add {name} && git commit`) and deploy again"
        )
    if f'remote "{remote}"' not in (_git_show(repo, ref, ".dvc/config") or ""):
        raise RuntimeError(
            f"{ref}'s .dvc/config has no DVC remote {remote!r} for the workers to restore "
            f"from: `dvc remote add {remote} s3://lerenet-data/dvc`, commit .dvc/config, and "
            "deploy again"
        )
    version = data_version(repo / data_root, here)  # the record is the branch's, checked above
    done = _dvc("push", "-r", remote, name, cwd=repo, env=env)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no output"]
        raise RuntimeError(f"dvc push -r {remote} {name} failed: {lines[-1][:300]}")
    if "Missing cache files" in done.stderr:
        raise RuntimeError(
            f"{name} on {ref} records data version {version}, which neither this clone's DVC "
            f"cache nor the remote {remote!r} holds, so no worker could restore it: run the "
            "pipeline here once (README, Quickstart) or `dvc pull` that version from where it "
            f"was pushed, commit {name}, and deploy again"
        )
    return version


RUN_STATE = ("data.dvc", "dvc.lock", "outputs")  # what a run changes that git should keep


def pending_commit(repo: Path = Path(".")) -> list[str]:
    """The paths of ``RUN_STATE`` that a run left changed or new in git's eyes: what to commit
    so that the data version, ``dvc.lock`` and the small metrics travel with the code (a
    deployment's worker clones the branch and restores what its ``data.dvc`` records). Empty
    outside a git clone."""
    done = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=normal", "--", *RUN_STATE],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return []
    return sorted({line[3:].strip().rstrip("/").split("/")[0] for line in done.stdout.splitlines()})
