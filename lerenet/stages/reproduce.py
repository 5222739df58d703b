"""Reproduce a registered model from its lineage and compare the metrics.

From the version's run: the resolved params it was trained with, the manifest of its data and
its lineage tags. The current workspace's data is compared with the recorded manifest (changed,
added and removed files are named) and its params with the recorded ones; then the split is
rebuilt with the recorded params (its sha256 must match the recorded one), the model is
retrained and re-evaluated in a scratch folder, and recorded and reproduced test metrics are
set side by side. On CPU with the same data, params, code and seed the aim is bit-identical.
When the workspace's data differ and the recorded data version is a DVC hash, that exact
version is fetched from the DVC remote into the scratch folder (the workspace's ``data/`` is
left alone) and used; otherwise the changed files are named and nothing is retrained.
"""

from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lerenet.config.schema import Params, flatten, load_params


@dataclass
class Reproduction:
    run_id: str
    data_changes: list[str] = field(default_factory=list)
    param_changes: list[str] = field(default_factory=list)
    split_matches: bool | None = None
    rows: list[tuple[str, float, float]] = field(default_factory=list)  # metric, rec, repro
    tolerance: float = 0.0
    restored_data: str | None = None  # the DVC version fetched when the workspace differs

    @property
    def matches(self) -> bool:
        usable_data = not self.data_changes or self.restored_data is not None
        return (
            usable_data
            and self.split_matches is not False
            and all(abs(a - b) <= self.tolerance for _, a, b in self.rows)
        )


def _manifest_rows(text: str) -> dict[str, str]:
    return {r["image"]: r["sha256"] for r in csv.DictReader(io.StringIO(text))}


def diff_manifests(recorded: str, current: str) -> list[str]:
    old, new = _manifest_rows(recorded), _manifest_rows(current)
    out = [f"changed: {k}" for k in sorted(old.keys() & new.keys()) if old[k] != new[k]]
    out += [f"removed: {k}" for k in sorted(old.keys() - new.keys())]
    out += [f"added: {k}" for k in sorted(new.keys() - old.keys())]
    return out


def reproduce(
    model_uri: str,
    params_path: Path = Path("params.yaml"),
    *,
    tolerance: float = 0.0,
    force: bool = False,
    show_progress: bool = True,
    repo: Path = Path("."),
) -> Reproduction:
    from lerenet.data.splits import split_dataset
    from lerenet.evaluation.scoring import evaluate_model
    from lerenet.tracking.loading import load_torch_model
    from lerenet.tracking.runs import configure, recorded_run
    from lerenet.tracking.uris import version_run_id
    from lerenet.training.loop import train

    current = load_params(params_path)
    configure(current.tracking)
    run_id, _, _ = version_run_id(model_uri)
    if run_id is None:
        raise ValueError(
            f"{model_uri}: give a registered model (models:/NAME@ALIAS or models:/NAME/VERSION)"
        )
    with tempfile.TemporaryDirectory(prefix="lerenet-repro-") as tmp:
        tmp = Path(tmp)
        run = recorded_run(run_id, tmp)
        recorded = Params.model_validate(yaml.safe_load(run.params_yaml.read_text()))
        result = Reproduction(run_id, tolerance=tolerance)
        rec_flat, cur_flat = flatten(recorded), flatten(current)
        result.param_changes = [
            f"{k}: recorded {rec_flat.get(k)!r}, now {cur_flat.get(k)!r}"
            for k in sorted(rec_flat.keys() | cur_flat.keys())
            if rec_flat.get(k) != cur_flat.get(k)
        ]
        manifest = run.manifest
        data_root = Path(recorded.data.root)
        now = (
            (data_root / "manifest.csv").read_text()
            if (data_root / "manifest.csv").exists()
            else "image,sha256\n"
        )
        result.data_changes = diff_manifests(manifest.read_text(), now)
        recorded_version = run.tags.get("lerenet.data_version", "")
        if result.data_changes and recorded_version.startswith("dvc:"):
            from lerenet.lineage.data_versions import fetch_data_version

            data_root = fetch_data_version(recorded_version, tmp / "dvc", repo)
            restored = diff_manifests(
                manifest.read_text(), (data_root / "manifest.csv").read_text()
            )
            if restored:
                raise RuntimeError(
                    f"DVC version {recorded_version} does not match the run's "
                    f"manifest: {restored[:5]}"
                )
            result.restored_data = recorded_version
        elif result.data_changes and not force:
            return result
        params = recorded.model_copy(
            update={
                "split": recorded.split.model_copy(update={"out_dir": str(tmp / "splits")}),
                "train": recorded.train.model_copy(
                    update={"out_dir": str(tmp / "train"), "baseline": False}
                ),
            }
        )
        lineage = split_dataset(data_root, params.split)
        result.split_matches = lineage["split_sha256"] == run.tags.get("lerenet.split_sha256")
        trained = train(params, show_progress=show_progress)
        model, _ = load_torch_model(str(trained.best_path))
        metrics = evaluate_model(model, params, out_dir=tmp / "eval", label="reproduced")
        for key, m in metrics.shots.items():
            for name in ("miou", "fbiou"):
                rec = run.metrics.get(f"test/{key}/{name}")
                if rec is not None:
                    result.rows.append((f"test/{key}/{name}", rec, getattr(m, name)))
    return result
