"""One declaration per pipeline stage: what it runs, reads and writes.

``dvc repro`` and the Prefect flows drive the same stage functions, and each needs to know when
a stage's result is stale: DVC from ``dvc.yaml``'s deps/params/outs, Prefect from the tasks'
cache keys. Written twice by hand they drifted (a cache key hashed a file dvc did not, another
hashed no code, dvc.yaml's train stage missed code it runs). Both now come from ``STAGES``:
``render_dvc_yaml`` writes dvc.yaml (``python -m lerenet.stages.specs --write``; a test fails
when the file and the declarations disagree) and ``cache_key`` hashes the same code, data and
params for Prefect.

Data dependencies name paths relative to the repository; the data folder itself (``data``) is
hashed through its manifest, which records every file's sha256 (``lerenet ingest``), so a
cache key does not read every image.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lerenet.config.schema import Params
from lerenet.services.storage import file_sha256, json_sha256
from lerenet.stages.code_deps import code_deps

PACKAGE = Path(__file__).resolve().parents[1]
REPO = PACKAGE.parent


@dataclass(frozen=True)
class Out:
    """A file or folder a stage writes; ``cache=False`` keeps small reports in git. The path
    may name a params key in braces (``{train.out_dir}/best.pt``): outputs follow the params."""

    path: str
    cache: bool = True


@dataclass(frozen=True)
class StageSpec:
    name: str
    cmd: str
    entry: tuple[str, ...]  # the stage's module(s); its code deps are what they import
    data: tuple[str, ...]  # the data and earlier outputs it reads (``{key}`` from params)
    params: tuple[str, ...]  # params.yaml keys it reads (a section or section.key)
    outs: tuple[Out, ...] = ()
    metrics: tuple[Out, ...] = ()
    plots: tuple[Out, ...] = ()
    note: str = ""  # a comment written above the stage in dvc.yaml

    @property
    def code(self) -> tuple[str, ...]:
        """The library's files/folders the stage runs: its entry modules' import closure."""
        return code_deps(self.entry)


TRAIN, EVAL, SPLITS, DATA = "{train.out_dir}", "{eval.out_dir}", "{split.out_dir}", "{data.root}"
VALIDATE_DIR = "outputs/validate"  # the CLI's and the flow's default report folder

STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        "validate",
        f"lerenet validate --out-dir {VALIDATE_DIR}",
        entry=("lerenet.data.validate",),
        data=(DATA,),
        params=("data", "split.shots", "eval.shots", "model.shots"),
        outs=(
            Out(f"{VALIDATE_DIR}/report.html", cache=False),
            Out(f"{VALIDATE_DIR}/report.json", cache=False),
        ),
    ),
    StageSpec(
        "split",
        "lerenet split",
        entry=("lerenet.data.splits",),
        data=(f"{DATA}/manifest.csv", f"{VALIDATE_DIR}/report.json"),
        params=("split",),
        outs=(Out(SPLITS),),
    ),
    StageSpec(
        "train",
        "lerenet train",
        entry=("lerenet.stages.train",),
        data=(SPLITS, DATA),
        params=("recipe", "model", "train", "data.image_size"),
        outs=(
            Out(f"{TRAIN}/best.pt"),
            Out(f"{TRAIN}/start.pt"),
            Out(f"{TRAIN}/last.pt"),
            Out(f"{TRAIN}/baseline"),
            Out(f"{TRAIN}/train.json", cache=False),
        ),
        plots=(Out(f"{TRAIN}/curve.png", cache=False),),
        note="a PNG curve, not a vega spec of history.json: vega needs scripts from a CDN",
    ),
    StageSpec(
        "evaluate",
        "lerenet evaluate",
        entry=("lerenet.stages.evaluate",),
        data=(f"{TRAIN}/best.pt", f"{TRAIN}/start.pt", f"{TRAIN}/train.json", SPLITS),
        params=("eval",),
        outs=(Out(f"{EVAL}/metrics.json", cache=False),),
        metrics=(Out(f"{EVAL}/summary.json", cache=False),),
        plots=(
            # per class: the model, its start and the baseline side by side, with intervals
            Out(f"{EVAL}/class_iou_1shot.png", cache=False),
            Out(f"{EVAL}/class_iou_5shot.png", cache=False),
            Out(f"{EVAL}/lerenet/overlays_1shot.png", cache=False),
        ),
        note="summary.json: 1/5-shot mIoU of model and baseline, readable at 100 columns",
    ),
    StageSpec(
        "gate",
        "lerenet gate --report-only --out-dir outputs/gate",
        entry=("lerenet.stages.gate",),
        data=(f"{EVAL}/metrics.json",),
        params=("gate",),
        outs=(Out("outputs/gate/decision.json", cache=False),),
        metrics=(Out("outputs/gate/summary.json", cache=False),),
    ),
)


def resolve(path: str, params: Params) -> str:
    """``path`` with each ``{section.key}`` replaced by that param's value."""
    values = {key: str(value) for key, value in _placeholders(path, params).items()}
    for key, value in values.items():
        path = path.replace("{" + key + "}", value.rstrip("/"))
    return path


def _placeholders(path: str, params: Params) -> dict[str, Any]:
    keys = tuple(re.findall(r"\{([\w.]+)\}", path))
    return params_of(params, keys) if keys else {}


def outputs(stage: StageSpec, params: Params) -> list[Path]:
    """Every file or folder ``stage`` writes, at the paths ``params`` give."""
    return [Path(resolve(o.path, params)) for o in (*stage.outs, *stage.metrics, *stage.plots)]


HEADER = """\
# The retrain pipeline for `dvc repro`: each stage is one `lerenet` command (the same library
# functions the Prefect flows call), with its code, data and *only the params it reads* as deps,
# so changing one param re-runs only what depends on it. Data enters through `lerenet ingest`
# and is versioned in data.dvc (`dvc add data`); promotion stays a deliberate step
# (`lerenet promote`), outside `dvc repro`.
#
# GENERATED from lerenet/stages/specs.py (the Prefect cache keys come from the same
# declarations): edit that file, then `python -m lerenet.stages.specs --write`.
"""


def spec(name: str) -> StageSpec:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise KeyError(f"no stage {name!r}; stages: {[s.name for s in STAGES]}")


def _outs_yaml(key: str, outs: tuple[Out, ...], params: Params) -> list[str]:
    if not outs:
        return []
    lines = [f"    {key}:"]
    for out in outs:
        lines.append(f"      - {resolve(out.path, params)}" + ("" if out.cache else ":"))
        if not out.cache:
            lines.append("          cache: false")
    return lines


def shipped_params() -> Params:
    """The repository's ``params.yaml``, resolved: what dvc.yaml's paths are rendered from."""
    from lerenet.config.schema import load_params

    return load_params(REPO / "params.yaml")


def render_dvc_yaml(stages: tuple[StageSpec, ...] = STAGES, params: Params | None = None) -> str:
    """dvc.yaml's text for ``stages``: deps = code + data, params, outs, metrics, plots, at
    the paths ``params`` (default: the shipped params.yaml) give."""
    params = params or shipped_params()
    lines = [HEADER.rstrip("\n"), "stages:"]
    for stage in stages:
        if stage.note:
            lines.append(f"  # {stage.note}")
        lines += [f"  {stage.name}:", f"    cmd: {stage.cmd}", "    deps:"]
        lines += [f"      - {resolve(dep, params)}" for dep in (*stage.data, *stage.code)]
        lines += ["    params:", *[f"      - {key}" for key in stage.params]]
        lines += _outs_yaml("outs", stage.outs, params)
        lines += _outs_yaml("metrics", stage.metrics, params)
        lines += _outs_yaml("plots", stage.plots, params)
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def params_of(params: Params, keys: tuple[str, ...]) -> dict[str, Any]:
    """The values of dvc-style params keys (``split`` or ``split.shots``) in ``params``."""
    dump = params.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key in keys:
        value: Any = dump
        for part in key.split("."):
            value = value[part]
        out[key] = value
    return out


def tree_sha256(path: Path) -> str:
    """A file's sha256, or a folder's: the sorted (relative path, sha256) of its .py files."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
        return json_sha256([(p.relative_to(path).as_posix(), file_sha256(p)) for p in files])
    return file_sha256(path, missing="absent")


def data_sha256(dep: str, params: Params) -> str:
    """Digest of one data dependency: the data folder through its manifest, else the path
    (resolved against the params' data root and split folder, which the user may move)."""
    if dep == DATA:
        return file_sha256(Path(params.data.root) / "manifest.csv", missing="absent")
    if dep == SPLITS:
        return file_sha256(Path(params.split.out_dir) / "lineage.json", missing="absent")
    return tree_sha256(Path(resolve(dep, params)))


def cache_key(name: str, params: Params) -> str:
    """The Prefect cache key of stage ``name``: its code, data and params, as dvc.yaml has
    them."""
    stage = spec(name)
    return json_sha256(
        {
            "stage": name,
            "code": {path: tree_sha256(REPO / path) for path in stage.code},
            "data": {dep: data_sha256(dep, params) for dep in stage.data},
            "params": params_of(params, stage.params),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Render dvc.yaml from the stage declarations.")
    parser.add_argument("--write", action="store_true", help="write dvc.yaml (else print it)")
    parser.add_argument("--path", type=Path, default=REPO / "dvc.yaml")
    args = parser.parse_args()
    text = render_dvc_yaml()
    if args.write:
        args.path.write_text(text)
        print(f"wrote {args.path}")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
