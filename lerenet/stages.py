"""Pipeline stages as plain functions of the params: the one code path behind both drivers.

``lerenet <stage>`` (and so ``dvc repro``) and the Prefect tasks call these functions; each
returns a small JSON-able summary and writes its outputs where ``params.yaml`` says. MLflow
tracking lives here, not in the training or evaluation code.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from lerenet.config import Params
from lerenet.tracking.lineage import lineage_tags, split_sha256

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)
TRAIN_SUMMARY = "train.json"


def train_stage(
    params: Params,
    *,
    params_file: Path | None = None,
    resume: bool = False,
    track: bool = True,
    show_progress: bool = True,
    resume_tracked: bool = False,
) -> dict:
    """Train LERENet (and save the prototype baseline), log run + pyfunc model; write
    train.json.

    ``resume``: continue from ``train.out_dir/last.pt``. ``resume_tracked`` (a worker whose
    disk did not survive): continue the newest unfinished run of this same training from the
    checkpoints stored with it, if there is one (``tracking.checkpoints``); else start afresh.
    """
    from lerenet.tracking.pyfunc import log_model
    from lerenet.tracking.runs import start_run
    from lerenet.train import save_baseline, train

    out_dir = Path(params.train.out_dir)
    summary_path = out_dir / TRAIN_SUMMARY
    run_id = None
    if resume and summary_path.exists():
        run_id = json.loads(summary_path.read_text()).get("run_id")
    if track:
        from lerenet.services import require_mlflow
        from lerenet.tracking.runs import tracking_uri

        require_mlflow(tracking_uri(params.tracking))  # before hours of training, not after
    tags = lineage_tags(params)
    tags.update(_class_tags(params))
    resumed_from = None
    if track and resume_tracked:
        from lerenet.tracking.checkpoints import RESUMED_TAG, restore_checkpoints, unfinished_run
        from lerenet.tracking.runs import configure

        configure(params.tracking)
        found = unfinished_run(params.tracking.experiment, tags)
        if found is not None:
            resumed_from = restore_checkpoints(found, out_dir)
            run_id, resume = found, True
            log.info("resuming run %s from its stored checkpoint at step %d", found, resumed_from)
    name = run_name("train", params, tags.get("lerenet.data_version", ""))
    with start_run(
        params, run_name=name, tags=tags, enabled=track, run_id=run_id, params_file=params_file
    ) as run:
        if resumed_from is not None:
            run.tags({RESUMED_TAG: str(resumed_from)})
        out_dir.mkdir(parents=True, exist_ok=True)
        if run.enabled:  # a resumed job finds its run again
            summary_path.write_text(json.dumps({"run_id": run.run_id}) + "\n")
        result = train(params, out_dir=out_dir, resume=resume, run=run, show_progress=show_progress)
        summary = {
            "run_id": run.run_id,
            "best_path": str(result.best_path),
            "best_step": result.best_step,
            "best_val_miou": result.best_val_miou,
            "steps": result.steps_done,
            "interrupted": result.interrupted,
            "weights_sha256": result.weights_sha256,
            "model_uri": None,
            "baseline_path": None,
        }
        run.tags(
            {
                "lerenet.weights_sha256": result.weights_sha256,
                "lerenet.best_step": str(result.best_step),
            }
        )
        if result.interrupted:
            summary_path.write_text(json.dumps(summary, indent=2) + "\n")
            raise KeyboardInterrupt
        if params.train.baseline and params.model.arch != "prototype":
            summary["baseline_path"] = str(save_baseline(params, out_dir / "baseline"))
        if run.enabled:
            from lerenet.checkpoint import state_sha256
            from lerenet.storage import file_sha256

            summary["best_sha256"] = file_sha256(result.best_path)
            info = log_model(result.best_path, size=params.data.image_size)
            summary["model_uri"] = info.model_uri  # MLflow 3: models:/m-<id>, a LoggedModel
            run.tags(
                {
                    "lerenet.model_uri": info.model_uri,
                    "lerenet.state_sha256": state_sha256(result.best_path),
                }
            )
            run.artifact(out_dir / "history.json", "train")
            run.artifact(out_dir / "curve.png", "train")
            # the manifest of the data trained on: `reproduce` names files that changed since
            run.artifact(Path(params.data.root) / "manifest.csv", "data")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_name(stage: str, params: Params, data_version: str) -> str:
    """``train-f0-efficientnet_lite0-d1a2b3c4-1126-1437``: stage, fold, backbone, data version
    and UTC time, so runs tell themselves apart in the MLflow runs list."""
    import time

    version = data_version.partition(":")[2][:8] or "nodata"
    stamp = time.strftime("%m%d-%H%M", time.gmtime())
    return f"{stage}-f{params.train.fold}-{params.model.backbone}-{version}-{stamp}"


def _class_tags(params: Params) -> dict[str, str]:
    from lerenet.data.splits import read_folds

    folds_path = Path(params.split.out_dir) / "folds.json"
    if not folds_path.exists():
        return {}
    fold = read_folds(Path(params.split.out_dir))[params.train.fold]
    return {
        "lerenet.classes.train": ", ".join(fold.train),
        "lerenet.classes.val": ", ".join(fold.val),
        "lerenet.classes.test": ", ".join(fold.test),
    }


def local_copy(model_uri: str, summary: dict) -> str:
    """``model_uri``, or the local model file it was logged from when that file is still
    byte-identical (sha256 recorded at logging time): the same weights without a round trip
    through the artifact store."""
    from lerenet.storage import file_sha256

    path = Path(summary.get("best_path") or "")
    if (
        model_uri == summary.get("model_uri")
        and summary.get("best_sha256")
        and path.is_file()
        and file_sha256(path) == summary["best_sha256"]
    ):
        return str(path)
    return model_uri


def read_train_summary(params: Params) -> dict:
    path = Path(params.train.out_dir) / TRAIN_SUMMARY
    if not path.exists():
        raise FileNotFoundError(f"{path}: no training summary; run `lerenet train` first")
    return json.loads(path.read_text())


def evaluate_stage(
    params: Params, *, model_uri: str | None = None, track: bool = True, out_dir: Path | None = None
) -> dict:
    """Test-class evaluation of a model (default: the last trained one) and its baseline.

    Writes ``metrics.json`` with one section per model (``lerenet``, ``baseline``) and logs
    everything to the training run when the model came from one.
    """
    from lerenet.evaluate import evaluate_model
    from lerenet.metrics import shot_sections
    from lerenet.tracking.pyfunc import load_torch_model
    from lerenet.tracking.runs import configure, start_run
    from lerenet.tracking.uris import run_of

    out_dir = Path(out_dir or params.eval.out_dir)
    summary_path = Path(params.train.out_dir) / TRAIN_SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if model_uri is None:
        summary = read_train_summary(params)
        model_uri = summary.get("model_uri") or summary["best_path"]
    if model_uri != summary.get("model_uri"):
        summary = {}  # another model than the last trained one: no baseline, no run to join
    if track:
        configure(params.tracking)  # run_of may ask the tracking server
    run_id = summary.get("run_id") or (run_of(model_uri) if track else None)
    model, meta = load_torch_model(local_copy(model_uri, summary))
    results: dict = {
        "model_uri": model_uri,
        "split_sha256": split_sha256(Path(params.split.out_dir)),
    }
    with start_run(
        params,
        run_name=f"evaluate-fold{params.train.fold}",
        enabled=track,
        run_id=run_id,
        tags=None if run_id else lineage_tags(params),
    ) as run:
        results["lerenet"] = evaluate_model(
            model, params, out_dir=out_dir / "lerenet", run=run, label="LERENet"
        )
        base = _baseline_for(params, summary, meta)
        if base is not None:
            results["baseline"] = evaluate_model(
                base, params, out_dir=out_dir / "baseline", label="prototype baseline"
            )
            if run.enabled:
                run.metrics(
                    {
                        f"baseline/test/{k}/miou": v["miou"]
                        for k, v in shot_sections(results["baseline"]).items()
                    }
                )
        results["run_id"] = run.run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(metrics_summary(results), indent=2) + "\n")
    return results


def _baseline_for(params: Params, summary: dict, meta: dict) -> nn.Module | None:
    """The prototype baseline to score beside the model: the one its training saved, else
    (a model trained elsewhere, a remote worker) rebuilt from the model's configuration;
    None when ``train.baseline`` is off, the model is the baseline, or its backbone weights
    cannot be loaded here (said in the log)."""
    from lerenet.model import rebuild_baseline
    from lerenet.tracking.pyfunc import load_torch_model

    if summary.get("baseline_path"):
        return load_torch_model(summary["baseline_path"])[0]
    config = meta.get("model_config") or params.model.model_dump()
    if not params.train.baseline or config.get("arch") == "prototype":
        return None
    baseline, why_not = rebuild_baseline(config)
    if baseline is None:
        log.warning("prototype baseline not evaluated: %s", why_not)
    return baseline


def metrics_summary(results: dict) -> dict:
    """``{"1shot": {"model": mIoU, "baseline": mIoU}, …}``: the few numbers ``dvc metrics
    show`` and ``dvc exp show`` should put side by side within 100 columns (metrics.json
    keeps everything)."""
    from lerenet.metrics import shot_sections

    summary: dict = {}
    for name, key in (("lerenet", "model"), ("baseline", "baseline")):
        for shot, m in shot_sections(results.get(name)).items():
            summary.setdefault(shot, {})[key] = round(m["miou"], 4)
    return summary


def promote_stage(params: Params, *, run_id: str | None = None, to: str = "staging") -> dict:
    """Register the trained run's model and move ``staging`` (or ``production``) to it."""
    from lerenet.services import require_mlflow
    from lerenet.tracking.registry import promote_to_production, register
    from lerenet.tracking.runs import configure, tracking_uri

    require_mlflow(tracking_uri(params.tracking))  # fail before registering anything
    configure(params.tracking)
    name = params.tracking.registered_model
    if to == "production" and run_id is None:
        promo = promote_to_production(name)
        return {
            "name": name,
            "version": promo.version,
            "alias": "production",
            "previous": promo.previous,
        }
    run_id = run_id or read_train_summary(params)["run_id"]
    metrics_path = Path(params.eval.out_dir) / "metrics.json"
    metrics = json.loads(metrics_path.read_text()).get("lerenet") if metrics_path.exists() else None
    promo = register(run_id, name=name, alias="staging", metrics=metrics)
    result = {
        "name": name,
        "version": promo.version,
        "alias": "staging",
        "previous": promo.previous,
        "registered": promo.registered,
    }
    if to == "production":
        prod = promote_to_production(name, promo.version)
        result.update({"alias": "production", "previous_production": prod.previous})
    return result


def export_stage(params: Params, *, model_uri: str, out: Path, shots: int = 1) -> dict:
    """Export ``model_uri`` to ONNX, check parity with onnxruntime on random and real test
    episodes, and log the file to the version's run (tagging the version with the parity)."""
    from lerenet.evaluate import episode_dataset
    from lerenet.export import export_onnx, parity
    from lerenet.summary import dummy_episode
    from lerenet.tracking.pyfunc import load_torch_model
    from lerenet.tracking.runs import configure
    from lerenet.tracking.uris import log_export

    configure(params.tracking)
    model, meta = load_torch_model(model_uri)
    size = int(meta.get("image_size") or params.data.image_size)
    export_onnx(model, out, size, shots=shots)
    episodes = [dummy_episode(1, shots, size, seed=s) for s in range(2)]
    real = 0
    try:
        dataset = episode_dataset(params, model, "test", shots, params.train.fold, limit=4)
        if dataset.image_size == size:
            for i in range(len(dataset)):
                item = dataset[i]
                episodes.append(
                    (
                        item["query_img"][None],
                        item["support_imgs"][None],
                        item["support_masks"][None],
                    )
                )
                real += 1
    except FileNotFoundError:
        pass  # no split here: random episodes only
    worst = parity(model, out, episodes)
    run_id = log_export(model_uri, out, worst)
    return {
        "path": str(out),
        "max_abs_diff": worst,
        "episodes": len(episodes),
        "real_episodes": real,
        "run_id": run_id,
    }
