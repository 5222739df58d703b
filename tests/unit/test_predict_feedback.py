"""`lerenet predict` says what it found: a defect share per image, and a warning with a hint
when a mask is empty (it used to say "wrote 2 masks" over all-zero masks)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lerenet.cli.main import app
from lerenet.stages.predict import LoadedModel

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _bright_pixels_are_defects(inputs: dict) -> np.ndarray:
    """A stand-in model: defect probability 0.9 where the query is brighter than mid-grey."""
    query = np.asarray(inputs["query_img"])  # 1×3×H×W, normalised
    return np.where(query.mean(1) > 0, 0.9, 0.1).astype(np.float32)


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_empty_masks_are_reported_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "lerenet.stages.predict.load_for_prediction",
        lambda uri: LoadedModel(_bright_pixels_are_defects, 32, MEAN, STD),
    )
    monkeypatch.chdir(tmp_path)
    spot = np.zeros((32, 32, 3), np.uint8)
    spot[8:16, 8:16] = 255  # a bright defect on a quarter of the width and height
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 255
    support = f"{_png(tmp_path / 's.png', spot)}:{_png(tmp_path / 's_mask.png', mask)}"
    queries = tmp_path / "queries"
    queries.mkdir()
    _png(queries / "clean.png", np.zeros((32, 32, 3), np.uint8))
    _png(queries / "spot.png", spot)
    result = CliRunner().invoke(
        app, ["predict", str(queries), "--model", "unused", "--support", support]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "no defect found in" in text and "clean.png (highest defect probability 0.10" in text
    assert "spot.png: defect on 6.2%" in text  # 8×8 of 32×32
    assert "1 with a defect, 1 empty" in text and "lower --threshold" in text
    assert "more of them (up to 5; 1 given)" in text
    # more supports than the few-shot model is made for: one sentence, before any model loads
    six = CliRunner().invoke(
        app, ["predict", str(queries), "--model", "unused", *["--support", support] * 6]
    )
    assert six.exit_code == 2 and "6 --support pairs given: give 1 to 5" in six.output
    from lerenet.stages.predict import predict_files

    with pytest.raises(ValueError, match="6 supports given: give 1 to 5"):
        predict_files("unused", [(tmp_path / "s.png", tmp_path / "s_mask.png")] * 6, [], tmp_path)
    rows = list(csv.DictReader(Path("predictions/found.csv").read_text().splitlines()))
    assert {r["mask"]: r["found"] for r in rows} == {"clean_mask.png": "no", "spot_mask.png": "yes"}
    assert {(r["threshold"], r["model"]) for r in rows} == {("0.5", "unused")}
    assert {r["mask"]: float(r["defect_share"]) for r in rows} == {
        "clean_mask.png": 0.0,
        "spot_mask.png": pytest.approx(64 / 1024, abs=0.01),
    }


def test_a_probability_just_under_the_threshold_is_not_printed_as_equal() -> None:
    from lerenet.cli.models import _below

    for probability in (0.495, 0.4999, 0.49999, 0.1):
        assert float(_below(probability, 0.5)) < 0.5, probability
    assert _below(0.4999, 0.5) == "0.4999"  # "0.50" would read as at the threshold
    assert _below(0.1, 0.5) == "0.10"


def test_support_masks_as_labelling_tools_export_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 0/1 support mask is the defect it labels (the mask rule of ingestion); a mask with
    no defect under that rule is refused with the values it holds."""
    seen: list[np.ndarray] = []

    def record_support(inputs: dict) -> np.ndarray:
        seen.append(np.asarray(inputs["support_masks"]))
        return _bright_pixels_are_defects(inputs)

    monkeypatch.setattr(
        "lerenet.stages.predict.load_for_prediction",
        lambda uri: LoadedModel(record_support, 32, MEAN, STD),
    )
    from lerenet.stages.predict import predict_files

    spot = np.zeros((32, 32, 3), np.uint8)
    spot[8:16, 8:16] = 255
    labels = np.zeros((32, 32), np.uint8)
    labels[8:16, 8:16] = 1  # a label map: 1 = defect
    image = _png(tmp_path / "s.png", spot)
    predict_files("unused", [(image, _png(tmp_path / "l.png", labels))], [image], tmp_path / "o")
    assert seen and int((seen[0] == 1).sum()) == 64
    blank = _png(tmp_path / "blank.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="every pixel is 0"):
        predict_files("unused", [(image, blank)], [image], tmp_path / "o")
