"""The registered versions of a model, as a table: what `lerenet versions` prints.

The MLflow UI shows one version at a time; choosing what to promote or roll back to needs them
side by side: which alias points where, what each version's gate said, the data it was trained
on and its test scores (from the evaluation metrics of the run that logged it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lerenet.tracking.registry import GATE_TAG, _client


@dataclass(frozen=True)
class VersionRow:
    version: str
    aliases: tuple[str, ...]
    gate: str
    data_version: str
    created: str  # UTC, to the minute
    test: dict[str, float]  # "1shot" → model mIoU on the test classes, as its run logged it


def list_versions(name: str, tracking_uri: str | None = None) -> list[VersionRow]:
    """Every version of registered model ``name``, newest first (an empty list: none yet)."""
    import time

    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        model = client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name='{name}'"):
        rows.append(
            VersionRow(
                str(mv.version),
                tuple(sorted(aliases.get(str(mv.version), []))),
                mv.tags.get(GATE_TAG, "not run"),
                mv.tags.get("lerenet.data_version", "?"),
                time.strftime("%Y-%m-%d %H:%M", time.gmtime(mv.creation_timestamp / 1000)),
                _test_scores(client, mv.run_id),
            )
        )
    return sorted(rows, key=lambda r: int(r.version), reverse=True)


def _test_scores(client: Any, run_id: str | None) -> dict[str, float]:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return {}
    try:
        metrics = client.get_run(run_id).data.metrics
    except MlflowException:  # the run was deleted: the version stays listed
        return {}
    return {
        key.split("/")[1]: value
        for key, value in sorted(metrics.items())
        if key.startswith("test/") and key.endswith("/miou") and key.count("/") == 2
    }
