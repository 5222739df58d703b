"""Predict, ONNX export and reproduce on registered models (real mlflow server + S3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lerenet.cli.main import app
from lerenet.config.schema import load_params
from lerenet.data.manifest import read_manifest
from tests.conftest import make_tiny_project, running_mlflow, track_with

pytestmark = [pytest.mark.integration, pytest.mark.slow]
runner = CliRunner()


@pytest.fixture(scope="module")
def registered(
    synthetic_source: Path, s3_server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """One tiny project trained, evaluated and promoted to @staging on its own tracking
    server, shared by this module's tests (training it takes most of a test's time): they
    read the version; the reproduce test, last, changes the data."""
    from lerenet.stages import evaluate as evaluate_stage
    from lerenet.stages import promote as promote_stage
    from lerenet.stages import train as train_stage

    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        running_mlflow(s3_server, tmp_path_factory.mktemp("mlflow")) as server,
    ):
        monkeypatch.setenv("LERENET_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        project = make_tiny_project(
            tmp_path_factory.mktemp("registered"), synthetic_source, monkeypatch
        )
        track_with(project, server, monkeypatch)
        params = load_params("params.yaml")
        train_stage.run(params, params_file=Path("params.yaml"), show_progress=False)
        evaluate_stage.run(params)
        promote_stage.run(params)  # → @staging
        yield project


def test_predict_through_the_registry(registered: Path, fixture_or_synthetic: Path) -> None:
    # the real fixture when ../shared is there, else the project's own ingested data
    if not (fixture_or_synthetic / "manifest.csv").exists():
        fixture_or_synthetic = Path("data")
    rows = read_manifest(fixture_or_synthetic)
    cls = rows[0].cls
    mine = [r for r in rows if r.cls == cls]
    supports = [
        f"--support={fixture_or_synthetic / r.image}:{fixture_or_synthetic / r.mask}"
        for r in mine[:2]
    ]
    queries = [str(fixture_or_synthetic / r.image) for r in mine[2:4]]
    result = runner.invoke(
        app, ["predict", "--model", "models:/lerenet@staging", *supports, "--out", "pred", *queries]
    )
    assert result.exit_code == 0, result.output
    for r in mine[2:4]:
        mask = np.asarray(Image.open(Path("pred") / f"{Path(r.image).stem}_mask.png"))
        assert mask.shape == (r.height, r.width)  # back at the query's own size
        assert set(np.unique(mask)) <= {0, 255}
        assert (Path("pred") / f"{Path(r.image).stem}_overlay.png").exists()
    bad = runner.invoke(
        app, ["predict", "--model", "models:/lerenet@staging", "--support", "nocolon", *queries]
    )
    assert bad.exit_code == 2 and "IMAGE:MASK" in bad.output

    # a truncated query and one over data.max_pixels are skipped with their reason; the good
    # query is still segmented (no traceback, nothing decoded past the limit)
    Path("truncated.png").write_bytes(Path(queries[0]).read_bytes()[:200])
    Image.new("L", (4200, 4200)).save("huge.png")  # 17.6 M pixels > 4096², a few kB as PNG
    mixed = runner.invoke(
        app,
        ["predict", "--model", "models:/lerenet@staging", *supports, "--out", "pred2"]
        + ["truncated.png", "huge.png", queries[0]],
    )
    assert mixed.exit_code == 0, mixed.output
    assert (Path("pred2") / f"{Path(mine[2].image).stem}_mask.png").exists()
    skipped = (Path("pred2") / "skipped.csv").read_text()
    assert "truncated.png" in skipped and "cannot decode" in skipped
    assert "huge.png" in skipped and "exceeds the limit" in skipped
    assert "2 queries skipped" in mixed.output and "Traceback" not in mixed.output


def test_onnx_export_parity_and_logging(registered: Path) -> None:
    from mlflow import MlflowClient

    result = runner.invoke(
        app,
        ["export", "--onnx", "model.onnx", "--model", "models:/lerenet@staging", "--shots", "5"],
    )
    assert result.exit_code == 0, result.output
    version = MlflowClient().get_model_version_by_alias("lerenet", "staging")
    assert float(version.tags["lerenet.onnx_max_abs_diff"]) < 1e-4
    assert "(4 real)" in result.output
    logged = {a.path for a in MlflowClient().list_artifacts(version.run_id, "onnx")}
    assert logged == {"onnx/model.onnx"}


def _touch_one_image(root: Path) -> str:
    """Change one stored image (and its manifest sha256, as a re-ingest would)."""
    import hashlib

    from lerenet.data.manifest import Pair, write_manifest

    row = read_manifest(root)[3]
    img = root / row.image
    arr = np.asarray(Image.open(img)).copy()
    arr[0, 0] = (arr[0, 0] + 1) % 255
    Image.fromarray(arr).save(img)
    digest = hashlib.sha256(img.read_bytes()).hexdigest()
    write_manifest(
        root,
        [
            Pair(**{**r.__dict__, "sha256": digest}) if r.image == row.image else r
            for r in read_manifest(root)
        ],
    )
    return row.image


def test_reproduce_restores_the_recorded_dvc_version(tracked_project: Path) -> None:
    import os
    import subprocess
    import sys

    from lerenet.stages import evaluate as evaluate_stage
    from lerenet.stages import promote as promote_stage
    from lerenet.stages import train as train_stage

    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    dvc = [sys.executable, "-m", "dvc"]
    for cmd in (
        ["git", "init", "-q"],
        [*dvc, "init", "-q"],
        [*dvc, "remote", "add", "-d", "local", "../dvc-remote"],
        [*dvc, "add", "data"],
        [*dvc, "push"],
    ):
        subprocess.run(cmd, env=env, check=True, capture_output=True)
    params = load_params("params.yaml")
    train_stage.run(params, params_file=Path("params.yaml"), show_progress=False)
    evaluate_stage.run(params)
    promote_stage.run(params)
    changed = _touch_one_image(Path("data"))
    result = runner.invoke(app, ["reproduce", "models:/lerenet@staging"])
    text = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 0, result.output
    assert f"changed: {changed}" in text
    assert "retrained on the recorded data version dvc:" in text
    assert "split sha256 matches" in text and "test/1shot/miou" in text


def test_reproduce_matches_then_names_changed_data(registered: Path) -> None:
    ok = runner.invoke(app, ["reproduce", "models:/lerenet@staging"])
    assert ok.exit_code == 0, ok.output
    assert "split sha256 matches" in ok.output
    # change one data file (no DVC here, so nothing to restore): it refuses and names it
    name = _touch_one_image(Path("data"))
    changed = runner.invoke(app, ["reproduce", "models:/lerenet@staging"])
    assert changed.exit_code == 1
    assert f"changed: {name}" in changed.output
