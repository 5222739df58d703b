"""MLflow model registry with aliases (``staging``, ``production``), never deprecated stages.

Promotion order makes a half-promotion impossible: register the version, wait until it is
READY, tag it with its lineage, load it back as lerenet loads it (so the alias can only ever
point at a loadable model), and only then move the alias. Production history lives in a tag of the
registered model (``lerenet.production_history``, a JSON list of versions) so ``rollback`` knows
where to go back to.

Alias moves of one registered model are serialised by a lock file per (tracking URI, model) on
this machine, and each reports the alias as read back after its move: two `lerenet promote` at
once no longer both claim "was: 4". (Promotions from different machines are not serialised by
it; MLflow has no registry lock. The read-back still reports what the alias really is.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lerenet.results import ModelScores

HISTORY_TAG = "lerenet.production_history"
GATE_TAG = "lerenet.gate"


log = logging.getLogger(__name__)


class PromotionError(RuntimeError):
    """Promotion refused or failed; aliases are as they were before the call."""


@dataclass(frozen=True)
class Promotion:
    name: str
    version: str
    alias: str
    previous: str | None
    registered: bool = True  # False: an existing version held these weights already
    previous_production: str | None = None  # set when a promotion also moved @production


def _client(tracking_uri: str | None = None) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri) if tracking_uri else MlflowClient()


@contextmanager
def alias_lock(client: Any, name: str) -> Iterator[None]:
    """Hold this machine's lock on ``name``'s aliases in the client's registry."""
    from filelock import FileLock

    uri = getattr(client, "_registry_uri", None) or getattr(client, "tracking_uri", "")
    key = hashlib.sha256(f"{uri}|{name}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lerenet"
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / f"registry-{key}.lock")):
        yield


def move_alias(client: Any, name: str, alias: str, version: str) -> tuple[str | None, str | None]:
    """Point ``alias`` at ``version`` under the alias lock; (before, after) as read back."""
    with alias_lock(client, name):
        previous = alias_version(client, name, alias)
        client.set_registered_model_alias(name, alias, version)
        return previous, alias_version(client, name, alias)


def alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def production_uri(name: str) -> str | None:
    """``models:/<name>@production`` when the configured registry has one, else None."""
    return champion_of(name)


def champion_of(name: str, given: str | None = None) -> str | None:
    """The model a challenger is judged against: ``given``, else ``models:/<name>@production``;
    None when that names an alias the registry does not hold (nothing in production yet: the
    gate's floors alone decide). The one place the champion's URI is made."""
    uri = given or f"models:/{name}@production"
    if uri.startswith("models:/"):
        model, _, alias = uri.removeprefix("models:/").partition("@")
        if alias and alias_version(_client(), model, alias) is None:
            return None
    return uri


def same_weights(client: Any, name: str, state_sha256: str | None) -> str | None:
    """The registered version of ``name`` whose weights digest is ``state_sha256``, if any."""
    if not state_sha256:
        return None
    for mv in client.search_model_versions(f"name='{name}'"):
        if mv.tags.get("lerenet.state_sha256") == state_sha256:
            return str(mv.version)
    return None


def require_artifacts(source: str) -> None:
    """The model's files must be in the artifact store before a version points at them: a
    version registered during an artifact-store outage would be an entry nothing can load."""
    import mlflow

    try:
        names = {Path(f.path).name for f in mlflow.artifacts.list_artifacts(artifact_uri=source)}
    except Exception as err:  # the store's client raises its own kinds (botocore, HTTP, OS)
        raise PromotionError(
            f"{source}: model artifacts cannot be read ({err}); nothing registered"
        ) from err
    if "MLmodel" not in names:
        raise PromotionError(f"{source}: no MLmodel in the artifact store; nothing registered")


def verify_loadable(uri: str) -> None:
    """What the alias will serve must load, as lerenet loads it: a lerenet models-from-code
    pyfunc whose weights are tensors matching the version's ``lerenet.state_sha256`` (never
    through ``mlflow.pyfunc.load_model``, which would run the model's code to find out)."""
    from lerenet.tracking.loading import load_torch_model

    load_torch_model(uri)


def _wait_ready(client: Any, name: str, version: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_model_version(name, version).status
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION":
            raise PromotionError(f"{name} v{version}: registration failed")
        time.sleep(0.5)
    raise PromotionError(f"{name} v{version}: not READY after {timeout:.0f} s")


def describe(run: Any, metrics: ModelScores | None) -> str:
    """A version description in words: data, classes, test metrics."""
    tags = run.data.tags
    params = run.data.params
    lines = [
        f"LERENet ({params.get('model.backbone', '?')} backbone, "
        f"{params.get('model.shots', '?')}-shot training) trained on data version "
        f"{tags.get('lerenet.data_version', '?')}, fold {tags.get('lerenet.fold', '?')}."
    ]
    for key in ("train", "val", "test"):
        if f"lerenet.classes.{key}" in tags:
            lines.append(f"{key} classes: {tags[f'lerenet.classes.{key}']}.")
    for shot, m in (metrics.shots if metrics else {}).items():
        lines.append(
            f"Test {shot}: mIoU {m.miou:.3f} [{m.miou_low:.3f}, {m.miou_high:.3f}], "
            f"FB-IoU {m.fbiou:.3f}."
        )
    gate = tags.get(GATE_TAG, "not run")
    reasons = tags.get("lerenet.gate_reasons")
    why = f" ({reasons})" if reasons else ""
    lines.append(f"Gate: {gate}{why}. Run {run.info.run_id}.")
    return " ".join(lines)


def register(
    run_id: str,
    *,
    name: str,
    alias: str = "staging",
    artifact: str = "model",
    metrics: ModelScores | None = None,
    tracking_uri: str | None = None,
) -> Promotion:
    """Register the run's model as a new version, verify it, then move ``alias`` to it."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    run = client.get_run(run_id)
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description="LERENet few-shot defect segmentation")
        except MlflowException as err:  # a concurrent promotion created it first
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("lerenet.")}
    twin = same_weights(client, name, tags.get("lerenet.state_sha256"))
    if twin is not None:  # a retrain that reproduced a registered model: no second entry
        log.info("%s v%s already holds these weights; not registering them again", name, twin)
        # the same run judged again (a later gate run): its version carries the latest
        # verdict, so `promote --to production` reads what the gate said last. Another run
        # that reproduced the weights leaves the version's own record alone.
        if client.get_model_version(name, twin).run_id == run_id:
            for key in (GATE_TAG, "lerenet.gate_reasons", "lerenet.gate_champion"):
                if key in tags:
                    client.set_model_version_tag(name, twin, key, tags[key])
        previous, now = move_alias(client, name, alias, twin)
        return Promotion(name, now or twin, alias, previous, registered=False)
    source = tags.get("lerenet.model_uri") or f"runs:/{run_id}/{artifact}"
    model_id = source.removeprefix("models:/") if source.startswith("models:/m-") else None
    require_artifacts(source)
    version = client.create_model_version(
        name, source=source, run_id=run_id, tags=tags, model_id=model_id
    )
    v = str(version.version)
    try:
        _wait_ready(client, name, v)
        client.update_model_version(name, v, description=describe(run, metrics))
        verify_loadable(f"models:/{name}/{v}")
    except Exception as err:
        client.set_model_version_tag(name, v, "lerenet.promotion", f"failed: {err}")
        raise PromotionError(
            f"{name} v{v} registered but not promoted (alias {alias!r} "
            f"unchanged at {alias_version(client, name, alias) or 'none'}): {err}"
        ) from err
    previous, now = move_alias(client, name, alias, v)
    client.set_model_version_tag(
        name, v, f"lerenet.{alias}_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    return Promotion(name, now or v, alias, previous)


def promote_to_production(
    name: str, version: str | None = None, *, tracking_uri: str | None = None
) -> Promotion:
    """Point ``production`` at ``version`` (default: the ``staging`` one) if its gate passed."""
    client = _client(tracking_uri)
    version = version or alias_version(client, name, "staging")
    if version is None:
        raise PromotionError(f"{name} has no 'staging' version; promote one first")
    mv = client.get_model_version(name, version)
    if mv.tags.get(GATE_TAG) != "passed":
        raise PromotionError(
            f"{name} v{version} did not pass its gate "
            f"({GATE_TAG}={mv.tags.get(GATE_TAG, 'missing')}); refusing to "
            "put it in production"
        )
    verify_loadable(f"models:/{name}/{version}")
    with alias_lock(client, name):
        previous = alias_version(client, name, "production")
        history = json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))
        client.set_registered_model_alias(name, "production", version)
        if not history or history[-1] != version:
            history.append(version)
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        now = alias_version(client, name, "production")
    return Promotion(name, now or version, "production", previous)


def rollback(name: str, reason: str, *, tracking_uri: str | None = None) -> Promotion:
    """Point ``production`` back at the previous production version, recording why."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    with alias_lock(client, name):
        try:
            model = client.get_registered_model(name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise PromotionError(f"{name}: no such registered model, nothing to roll back") from err
        history = json.loads(model.tags.get(HISTORY_TAG, "[]"))
        current = alias_version(client, name, "production")
        if current is None or len(history) < 2:
            raise PromotionError(f"{name}: no earlier production version to roll back to")
        if history[-1] != current:
            history.append(current)
        history.pop()
        target = history[-1]
        verify_loadable(f"models:/{name}/{target}")
        client.set_registered_model_alias(name, "production", target)
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    client.set_model_version_tag(
        name,
        current,
        "lerenet.rolled_back",
        json.dumps({"at": stamp, "reason": reason, "to": target}),
    )
    return Promotion(name, target, "production", current)
