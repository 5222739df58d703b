"""Configuration validation and the CLI skeleton."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lerenet.cli.main import app
from lerenet.config.schema import ConfigError, Params, flatten, load_params, params_sha256

runner = CliRunner()


def test_repo_params_file_is_valid(repo_root: Path) -> None:
    params = load_params(repo_root / "params.yaml")
    assert params.model.arch == "lerenet"


def test_unknown_key_and_bad_value_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("model:\n  backbon: resnet50\ntrain:\n  lr: -1\n")
    with pytest.raises(ConfigError) as err:
        load_params(path)
    text = str(err.value)
    assert str(path) in text and "model.backbon" in text and "train.lr" in text


def test_overrides_and_hash(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  steps: 5\n")
    a = load_params(path)
    b = load_params(path, overrides={"train.steps": 6})
    assert (a.train.steps, b.train.steps) == (5, 6)
    assert params_sha256(a) != params_sha256(b)
    assert params_sha256(a) == params_sha256(load_params(path))
    assert flatten(a)["train.steps"] == 5


def test_package_weights_only_for_efficientnet() -> None:
    with pytest.raises(ValueError, match="only available for efficientnet_lite0"):
        Params.model_validate({"model": {"backbone": "resnet50", "weights": "package"}})


def test_cli_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "model" in result.stdout and "config" in result.stdout


def test_model_summary_prints_modules(repo_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("model:\n  backbone: vgg16_bn\n")
    result = runner.invoke(
        app, ["model", "summary", "--params", str(path), "--size", "64", "--random-init"]
    )
    assert result.exit_code == 0, result.output
    for name in ("backbone", "mpr", "mpe", "ifm", "total"):
        assert name in result.stdout


def test_model_summary_without_weights_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("model:\n  backbone: resnet50\n")
    result = runner.invoke(app, ["model", "summary", "--params", str(path), "--size", "64"])
    assert result.exit_code == 2
    assert "model.weights is not set" in result.output


def test_summary_flops_scale_with_shots() -> None:
    from lerenet.model.backbones.vgg16_bn import VGG16BN
    from lerenet.model.complexity import model_summary
    from lerenet.model.lerenet import LERENet

    model = LERENet(VGG16BN())
    one = {r.name: r.flops for r in model_summary(model, shots=1, size=64)}
    five = {r.name: r.flops for r in model_summary(model, shots=5, size=64)}
    assert five["backbone"] == 3 * one["backbone"]  # 2 images → 6 images
    assert five["ifm"] == one["ifm"]  # the head sees the averaged support once


def test_expected_errors_are_one_line_with_brackets_kept(tmp_path: Path) -> None:
    """A path with [brackets] must reach the user as written (not eaten as rich markup)."""
    missing = tmp_path / "lot[7]" / "params.yaml"
    result = runner.invoke(app, ["config", "show", "--params", str(missing)])
    assert result.exit_code == 2
    assert "lot[7]" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["promote", "--to", "archive"])
    assert result.exit_code == 2 and "--to must be staging or production" in result.output


def test_the_commands_that_read_stage_params_take_set(tmp_path: Path) -> None:
    """The README says which commands take --set; config show resolves it like the stages."""
    shown = runner.invoke(app, ["config", "show", "--set", "gate.margin=0.07"])
    assert shown.exit_code == 0 and "margin: 0.07" in shown.output
    typo = runner.invoke(app, ["split", "--set", "split.seedz=1"])
    assert typo.exit_code == 2 and "seedz" in typo.output and "Traceback" not in typo.output
    for command in ("validate", "split", "train", "evaluate", "gate", "stage"):
        assert "--set" in runner.invoke(app, [command, "--help"]).output, command


def test_recipe_fills_only_the_keys_the_file_leaves_out(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("recipe: improved\nmodel:\n  residual: false\n")
    params = load_params(path)
    assert params.model.prior == "matching" and params.train.feature_cache  # from the recipe
    assert params.model.residual == "off"  # written in the file: the file wins
    paper = load_params(path, {"recipe": "paper"})
    assert (paper.model.prior, paper.train.feature_cache) == ("positional", False)
    with pytest.raises(ConfigError, match="recipe"):
        load_params(path, {"recipe": "best"})


def test_duplicate_sections_and_empty_files_are_errors(tmp_path: Path) -> None:
    """YAML lets a second ``train:`` silently replace the first; an empty file would mean
    'every default' without saying so. Both name the file."""
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  steps: 10\nmodel:\n  shots: 1\ntrain:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"params.yaml.*duplicate key 'train' \(lines 1 and 5\)"):
        load_params(path)
    path.write_text("train:\n  steps: 10\n  steps: 20\n")
    with pytest.raises(ConfigError, match="duplicate key 'steps'"):
        load_params(path)
    path.write_text("# nothing but a comment\n")
    with pytest.raises(ConfigError, match="params.yaml: the params file is empty"):
        load_params(path)


def test_one_set_parser_for_every_driver() -> None:
    from lerenet.config.schema import ConfigError, parse_overrides

    assert parse_overrides(["train.lr=0.001", "model.prior_levels=[s4, s8]"]) == {
        "train.lr": 0.001,
        "model.prior_levels": ["s4", "s8"],
    }
    with pytest.raises(ConfigError, match="'train.lr' is not section.key=value"):
        parse_overrides(["train.lr"])
