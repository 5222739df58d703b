"""The registered versions of a model, as a table (`lerenet models`), and two of them side by
side (`lerenet models diff A B`).

The MLflow UI shows one version at a time; choosing what to promote or roll back to needs them
side by side: which alias points where, what each version's gate said, the data it was trained
on and its test scores (from the evaluation metrics of the run that logged it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lerenet.tracking.loading import STATE_TAG
from lerenet.tracking.registry import GATE_TAG, _client

# what a version was made from: the run's lineage tags, compared by `models diff`
LINEAGE = (
    GATE_TAG,
    STATE_TAG,
    "lerenet.data_version",
    "lerenet.split_sha256",
    "lerenet.params_sha256",
    "lerenet.git_commit",
    "lerenet.checkpoint_step",
)


@dataclass(frozen=True)
class VersionRow:
    version: str
    aliases: tuple[str, ...]
    gate: str
    data_version: str
    created: str  # UTC, to the minute
    test: dict[str, float]  # "1shot" → model mIoU on the test classes, as its run logged it
    weights: str = ""  # the weights' digest (lerenet.state_sha256): equal digests, same model


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
                mv.tags.get(STATE_TAG, ""),
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


@dataclass(frozen=True)
class VersionDiff:
    a: str
    b: str
    lineage: list[tuple[str, str, str]]  # (tag, a's, b's): only those that differ
    params: list[tuple[str, str, str]]  # (param, a's, b's): only those that differ
    metrics: list[tuple[str, float | None, float | None]]  # every test/seen score of either

    @property
    def same_weights(self) -> bool:
        return not any(tag == STATE_TAG for tag, _, _ in self.lineage)


def _version_facts(client: Any, name: str, version: str) -> tuple[dict, dict, dict]:
    """(lineage tags, params, scores) of one version: its own tags over its run's."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(name, version)
    except MlflowException as err:
        raise LookupError(f"{name} has no version {version!r} (`lerenet models` lists them)") from (
            None if err.error_code == "RESOURCE_DOES_NOT_EXIST" else err
        )
    tags, params, metrics = {}, {}, {}
    if mv.run_id:
        try:
            run = client.get_run(mv.run_id)
            tags, params, metrics = dict(run.data.tags), dict(run.data.params), run.data.metrics
        except MlflowException:  # the run was deleted: the version's own tags still say much
            pass
    tags |= mv.tags
    scores = {
        k: v
        for k, v in metrics.items()
        if k.split("/")[0] in ("test", "seen_test") and not k.endswith(("_low", "_high"))
    }
    return {t: tags.get(t, "") for t in LINEAGE}, params, scores


def diff_versions(name: str, a: str, b: str, tracking_uri: str | None = None) -> VersionDiff:
    """Versions ``a`` and ``b`` of ``name`` side by side: what they were made from where it
    differs (lineage tags, params) and every test and seen-class score of either."""
    client = _client(tracking_uri)
    (lin_a, par_a, met_a), (lin_b, par_b, met_b) = (_version_facts(client, name, v) for v in (a, b))
    return VersionDiff(
        a,
        b,
        [(t, lin_a[t], lin_b[t]) for t in LINEAGE if lin_a[t] != lin_b[t]],
        [
            (k, par_a.get(k, "-"), par_b.get(k, "-"))
            for k in sorted(par_a.keys() | par_b.keys())
            if par_a.get(k) != par_b.get(k)
        ],
        [(k, met_a.get(k), met_b.get(k)) for k in sorted(met_a.keys() | met_b.keys())],
    )
