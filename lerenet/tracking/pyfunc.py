"""The MLflow model flavour of LERENet: a custom pyfunc, because the model takes an episode
(query + supports + support masks), not a single table or tensor.

Input: a dict of arrays — ``query_img`` B×3×H×W float32 (normalised with the backbone's mean and
std, see ``input_normalization`` in the model's metadata), ``support_imgs`` B×K×3×H×W float32,
``support_masks`` B×K×H×W int64 (1 defect, 0 background, 255 ignore). Output: B×H×W float32,
the defect probability. The served model is exactly the logged model file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PIP_REQUIREMENTS = ["torch>=2.4", "numpy", "pydantic>=2.6", "pyyaml", "lerenet"]


def _pyfunc_base():
    import mlflow.pyfunc

    return mlflow.pyfunc.PythonModel


class LERENetPyfunc(_pyfunc_base()):
    """Wraps a model file written by ``checkpoint.save_model_file``."""

    # The input is a dict of tensors checked against the logged TensorSpec signature; MLflow's
    # type-hint validation does not cover that shape, so it is switched off, not half-used.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from lerenet.checkpoint import load_model_file

        self.model, self.meta = load_model_file(Path(context.artifacts["model_file"]))

    def predict(self, context, model_input, params=None):
        import torch

        from lerenet.inference import predict_logits

        logits = predict_logits(
            self.model,
            torch.as_tensor(model_input["query_img"], dtype=torch.float32),
            torch.as_tensor(model_input["support_imgs"], dtype=torch.float32),
            torch.as_tensor(model_input["support_masks"], dtype=torch.long),
            class_name=(params or {}).get("class_name") or None,
        )
        return torch.softmax(logits, dim=1)[:, 1].numpy()


def example_input(size: int = 64, shots: int = 1) -> dict[str, np.ndarray]:
    from lerenet.summary import dummy_episode

    query, supports, masks = dummy_episode(1, shots, size)
    return {
        "query_img": query.numpy(),
        "support_imgs": supports.numpy(),
        "support_masks": masks.numpy(),
    }


def log_model(model_file: Path, *, name: str = "model", size: int = 64) -> Any:
    """Log a model file as a pyfunc model of the active run; returns MLflow's ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    example = example_input(size)
    signature = infer_signature(example, np.zeros((1, size, size), np.float32))
    # variable batch, shots and image size
    signature.inputs = Schema(
        [
            TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1), "query_img"),
            TensorSpec(np.dtype(np.float32), (-1, -1, 3, -1, -1), "support_imgs"),
            TensorSpec(np.dtype(np.int64), (-1, -1, -1, -1), "support_masks"),
        ]
    )
    signature.outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1))])
    # the supports' class when the caller knows it: a class memory then serves that class
    signature.params = ParamSchema([ParamSpec("class_name", "string", "")])
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=LERENetPyfunc(),
        artifacts={"model_file": str(model_file)},
        signature=signature,
        input_example=example,
        pip_requirements=PIP_REQUIREMENTS,
    )


def load_pyfunc(uri: str) -> tuple[Any, Any, dict]:
    """A logged model by URI as MLflow serves it → (its ``predict``, torch module, metadata):
    predicting through the pyfunc is what a served model does, so ``lerenet predict`` on a
    URI checks the served path too."""
    import mlflow

    pyfunc = mlflow.pyfunc.load_model(uri)
    wrapper = pyfunc.unwrap_python_model()
    return pyfunc.predict, wrapper.model, wrapper.meta


def load_torch_model(uri: str, device: str = "cpu") -> tuple[Any, dict]:
    """A model by URI → (torch module, metadata).

    ``uri``: a local model file, ``runs:/<id>/model``, ``models:/<name>/<version>``,
    ``models:/<name>@<alias>`` or ``models:/m-<id>``.
    """
    from lerenet.checkpoint import load_model_file

    path = Path(uri)
    if path.exists():
        return load_model_file(path, device)
    _, model, meta = load_pyfunc(uri)
    return model.to(device), meta
