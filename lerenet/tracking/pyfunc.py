"""The MLflow model flavour of LERENet: a custom pyfunc, because the model takes an episode
(query + supports + support masks), not a single table or tensor.

Input: a dict of arrays — ``query_img`` B×3×H×W float32 (normalised with the backbone's mean and
std, see ``input_normalization`` in the model's metadata), ``support_imgs`` B×K×3×H×W float32,
``support_masks`` B×K×H×W int64 (1 defect, 0 background, 255 ignore; each episode needs a
defect pixel), images ≥ 32 px, checked by ``evaluation.episode_input`` (a ValueError that names
the array otherwise). Output: B×H×W float32, the defect probability. The served model is
exactly the logged model file.

The model is logged *from code* (``served_model.py``), not pickled: its artifacts are the model
file (tensors and a JSON-able config) and that code file. Nothing in lerenet loads a model
through ``mlflow.pyfunc.load_model``; ``loading.load_torch_model`` reads the tensors, and
``serving_predictor`` runs this class's ``predict`` on them in process.
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
        from lerenet.training.checkpoint import load_model_file

        self.model, self.meta = load_model_file(Path(context.artifacts["model_file"]))

    @classmethod
    def serving(cls, model: Any, meta: dict) -> LERENetPyfunc:
        """The flavour around an already (safely) loaded model: what MLflow serves, in process."""
        wrapper = cls()
        wrapper.model, wrapper.meta = model, meta
        return wrapper

    def predict(self, context, model_input, params=None):
        import torch

        from lerenet.evaluation.episode_input import episode_tensors
        from lerenet.evaluation.inference import predict_logits

        # the contract is checked first: a wrong input is a sentence, never a flat 0.5 map
        logits = predict_logits(
            self.model,
            *episode_tensors(model_input),
            class_name=(params or {}).get("class_name") or None,
        )
        return torch.softmax(logits, dim=1)[:, 1].numpy()


def example_input(size: int = 64, shots: int = 1) -> dict[str, np.ndarray]:
    from lerenet.model.complexity import dummy_episode

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
        python_model=str(Path(__file__).with_name("served_model.py")),
        artifacts={"model_file": str(model_file)},
        signature=signature,
        input_example=example,
        pip_requirements=PIP_REQUIREMENTS,
    )


def serving_predictor(uri: str) -> tuple[Any, Any, dict]:
    """A model by path or URI → (the served ``predict(inputs, params)``, torch module, metadata).

    The weights are read as tensors (``loading.load_torch_model``, never the model's code) and
    predicted through the pyfunc's own ``predict``: ``lerenet predict`` runs what a server runs.
    """
    from lerenet.tracking.loading import load_torch_model

    model, meta = load_torch_model(uri)
    wrapper = LERENetPyfunc.serving(model, meta)

    def predict(model_input: dict, params: dict | None = None) -> np.ndarray:
        return wrapper.predict(None, model_input, params)

    return predict, model, meta
