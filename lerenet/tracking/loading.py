"""Every model the project loads, whatever names it, read as tensors: no loader runs its code.

A model reaches a stage as a local model file, a folder or ``file://`` URI of a logged model,
``runs:/…``, ``models:/…`` (a version, an alias or a logged model) or ``s3://…``. Whatever the
scheme, the files are fetched without being executed and the weights are read with
``torch.load(weights_only=True)`` (``checkpoint.load_model_file``). A logged model must be what
``pyfunc.log_model`` writes: a models-from-code pyfunc whose code file is lerenet's own and
whose ``model_file`` artifact is a tensor file. A pickled pyfunc (``python_model.pkl``) or any
other flavour is refused in one sentence before anything in it is read. When the URI names a
run or a registered version, the weights' digest must equal its ``lerenet.state_sha256``
lineage tag: a model file replaced in the artifact store is refused, not served.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from lerenet.services.reach import first_line
from lerenet.training.checkpoint import CheckpointError, load_model_file, state_sha256

CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
SERVED_CODE = Path(__file__).with_name("served_model.py")
STATE_TAG = "lerenet.state_sha256"
REMOTE = ("runs:/", "models:/", "s3://", "mlflow-artifacts:/")
# models a training run stores beside its model: artifact path → the run tag holding that
# file's weights digest, which loading it by ``runs:/`` URI checks
COMPANIONS = {
    "train/start.pt": "lerenet.start_state_sha256",
    "train/baseline/best.pt": "lerenet.baseline_state_sha256",
}


class ModelRefused(CheckpointError):
    """A model that lerenet will not load: not tensors, not lerenet's, or not what was recorded."""


def load_torch_model(uri: str, device: str = "cpu") -> tuple[Any, dict]:
    """A model by path or URI → (torch module in eval mode, metadata), never running its code.

    ``uri``: a model file, a logged model's folder, ``file://…``, ``runs:/<id>/model``,
    ``models:/<name>/<version>``, ``models:/<name>@<alias>``, ``models:/m-<id>`` or ``s3://…``.
    """
    local = _local_path(uri)
    if local is not None:
        return _load_local(local, uri, device)
    if not uri.startswith(REMOTE):
        raise ModelRefused(
            f"{uri}: no such model file or folder, and not a file://, runs:/, models:/ or s3:// URI"
        )
    expected = recorded_sha256(uri)
    import mlflow

    with tempfile.TemporaryDirectory(prefix="lerenet-model-") as tmp:
        try:
            fetched = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except Exception as err:  # the store's client raises its own kinds (HTTP, botocore)
            raise ModelRefused(f"{uri}: cannot be fetched ({first_line(err, 200)})") from None
        path = model_file_of(fetched, uri) if fetched.is_dir() else fetched
        if expected is not None and state_sha256(path) != expected:
            raise ModelRefused(
                f"{uri}: its weights differ from what the run recorded ({STATE_TAG} "
                f"{expected[:12]}…); refused"
            )
        return load_model_file(path, device)


def available(source: str | None) -> bool:
    """``source`` names a model that may be loaded: a remote URI (the store answers when it is
    loaded) or a local path that exists. A saved companion model (a training's start, its
    baseline) is scored only then."""
    return bool(source) and (source.startswith(REMOTE) or Path(source).exists())


def _local_path(uri: str) -> Path | None:
    """The local path a plain path or ``file://`` URI names; None for a remote URI."""
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if uri.startswith(REMOTE):
        return None
    path = Path(uri)
    return path if path.exists() or path.is_symlink() else None


def _load_local(path: Path, uri: str, device: str) -> tuple[Any, dict]:
    if path.is_symlink():
        raise ModelRefused(f"{uri}: a symbolic link; give the model file or folder itself")
    if path.is_dir():
        return load_model_file(model_file_of(path, uri), device)
    if path.is_file():
        return load_model_file(path, device)
    raise FileNotFoundError(f"{uri}: no such model file or folder")


def model_file_of(folder: Path, uri: str) -> Path:
    """The tensor file inside a logged model's folder, once the folder is shown to be one that
    ``pyfunc.log_model`` wrote (checked from its MLmodel as YAML text, nothing executed)."""
    mlmodel = folder / "MLmodel"
    if not mlmodel.is_file() or mlmodel.is_symlink():
        raise ModelRefused(f"{uri}: no MLmodel file; not a logged model")
    try:
        spec = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
        conf = spec["flavors"]["python_function"]
    except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError):
        raise ModelRefused(f"{uri}: its MLmodel is not a python_function model") from None
    if "python_model" in conf or (folder / "python_model.pkl").exists():
        raise ModelRefused(
            f"{uri}: a pickled pyfunc (python_model.pkl), which can run code when loaded; "
            "lerenet loads only models whose weights are a tensor file (retrain or re-log it)"
        )
    if conf.get("loader_module") != CODE_LOADER:
        raise ModelRefused(f"{uri}: not a lerenet model (loader {conf.get('loader_module')!r})")
    code = folder / Path(str(conf.get("model_code_path", ""))).name
    if not code.is_file() or code.read_bytes() != SERVED_CODE.read_bytes():
        raise ModelRefused(f"{uri}: its model code is not lerenet's served_model.py; refused")
    try:
        relative = conf["artifacts"]["model_file"]["path"]
    except (KeyError, TypeError):
        raise ModelRefused(f"{uri}: no model_file artifact; not a lerenet model") from None
    path = folder / str(relative)
    root = folder.resolve()
    if path.is_symlink() or not path.resolve().is_relative_to(root) or not path.is_file():
        raise ModelRefused(f"{uri}: its model_file {relative!r} is not a file inside the model")
    return path


def recorded_sha256(uri: str) -> str | None:
    """The weights' digest the tracking server recorded for the registered version (its own
    tag, else its run's) or the run ``uri`` names; None for a URI that names neither
    (``s3://``, a raw artifact path). A version or run without one is refused."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from lerenet.tracking.uris import run_of, version_of

    if not uri.startswith(("models:/", "runs:/")):
        return None  # an artifact location: no run or version to ask
    client = MlflowClient()
    try:
        version = version_of(uri)
        run_id = version.run_id if version is not None else run_of(uri)
        tags = dict(version.tags) if version is not None else {}
        what = f"{version.name} v{version.version}" if version is not None else f"run {run_id}"
        if version is None and run_id is None:
            return None
        if STATE_TAG not in tags and run_id:  # a version's lineage is its run's
            tags = client.get_run(run_id).data.tags
    except MlflowException as err:
        raise ModelRefused(f"{uri}: {first_line(err, 200)}") from None
    tag = _digest_tag(uri) if version is None else STATE_TAG
    if tag not in tags:
        raise ModelRefused(f"{uri}: {what} has no {tag} tag: its weights cannot be checked")
    return tags[tag]


def _digest_tag(run_uri: str) -> str:
    """The run tag that records the weights ``runs:/<id>/<path>`` names: a stored companion's
    own (the start, the baseline), else the run's model's."""
    if not run_uri.startswith("runs:/"):
        return STATE_TAG
    artifact = run_uri.removeprefix("runs:/").partition("/")[2].strip("/")
    return COMPANIONS.get(artifact, STATE_TAG)
