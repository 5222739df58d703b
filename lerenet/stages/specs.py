"""One declaration per pipeline stage: what it runs, reads and writes.

``dvc repro`` and the Prefect flows drive the same stage functions, and each needs to know when
a stage's result is stale: DVC from ``dvc.yaml``'s deps/params/outs, Prefect from the tasks'
cache keys. Written twice by hand they drifted (a cache key hashed a file dvc did not, another
hashed no code, dvc.yaml's train stage missed code it runs). Both now come from ``STAGES``,
the ``SPEC`` every stage module of this package exports (``declared``):
``render_dvc_yaml`` writes dvc.yaml (``python -m lerenet.stages.specs --write``; a test fails
when the file and the declarations disagree) and ``cache_key`` hashes the same code, data and
params for Prefect.

Data dependencies name paths relative to the repository; the data folder itself (``data``) is
hashed through its manifest, which records every file's sha256 (``lerenet ingest``), so a
cache key does not read every image.
"""

from __future__ import annotations

import argparse
import ast
import importlib
from pathlib import Path
from types import ModuleType

from lerenet.config.schema import Params
from lerenet.services.storage import file_sha256, json_sha256
from lerenet.stages.declare import DATA, SPLITS, Out, StageSpec, params_of, resolve

PACKAGE = Path(__file__).resolve().parents[1]
REPO = PACKAGE.parent


def _declaring_modules(folder: Path) -> list[str]:
    """The modules of ``folder`` that assign ``SPEC`` at top level (read, not imported: a
    module that declares nothing is not imported to find out)."""
    names = []
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        if any(
            isinstance(node, ast.Assign)
            and any(getattr(t, "id", "") == "SPEC" for t in node.targets)
            for node in tree.body
        ):
            names.append(path.stem)
    return names


def _in_order(specs: list[StageSpec]) -> tuple[StageSpec, ...]:
    """Pipeline order: a stage after every stage whose outputs it reads (then by name)."""

    def reads(later: StageSpec, earlier: StageSpec) -> bool:
        outs = [o.path for o in (*earlier.outs, *earlier.metrics, *earlier.plots)]
        return any(d == o or d.startswith(o + "/") for d in later.data for o in outs)

    ordered: list[StageSpec] = []
    todo = sorted(specs, key=lambda s: s.name)
    while todo:
        ready = [s for s in todo if not any(reads(s, o) for o in todo if o is not s)]
        if not ready:
            raise ValueError(
                f"stages read each other's outputs in a cycle: {[s.name for s in todo]}"
            )
        ordered.append(ready[0])
        todo.remove(ready[0])
    return tuple(ordered)


def declared(package: str = __package__) -> tuple[StageSpec, ...]:
    """Every stage a module of ``package`` declares (its ``SPEC``), in pipeline order."""
    folder = Path(importlib.import_module(package).__file__).parent
    modules = [importlib.import_module(f"{package}.{name}") for name in _declaring_modules(folder)]
    return _in_order([m.SPEC for m in modules])


def stage_module(name: str) -> ModuleType:
    """The module that declares stage ``name`` (its ``run(params)`` is what ``lerenet stage``
    and the flow's generic task call): the declaration's own entry module."""
    return importlib.import_module(spec(name).entry[0])


STAGES = declared()


HEADER = """\
# The retrain pipeline for `dvc repro`: each stage is one `lerenet` command (the same library
# functions the Prefect flows call), with its code, data and *only the params it reads* as deps,
# so changing one param re-runs only what depends on it. Data enters through `lerenet ingest`
# and is versioned in data.dvc (`dvc add data`); promotion stays a deliberate step
# (`lerenet promote`), outside `dvc repro`.
#
# GENERATED from the SPEC of each lerenet/stages/ module (the Prefect cache keys come from the
# same declarations): edit a SPEC, then `python -m lerenet.stages.specs --write`.
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
        lines += [f"  {stage.name}:", f"    cmd: {stage.command}", "    deps:"]
        lines += [f"      - {resolve(dep, params)}" for dep in (*stage.data, *stage.code)]
        lines += ["    params:", *[f"      - {key}" for key in stage.params]]
        lines += _outs_yaml("outs", stage.outs, params)
        lines += _outs_yaml("metrics", stage.metrics, params)
        lines += _outs_yaml("plots", stage.plots, params)
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


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


def cache_key(name: str, params: Params, given: dict[str, str] | None = None) -> str:
    """The Prefect cache key of stage ``name``: its code, data and params, as dvc.yaml has
    them. ``given``: digests of data dependencies that a flow holds in memory (an earlier
    task's result), used instead of reading the file that task wrote."""
    stage = spec(name)
    given = given or {}
    return json_sha256(
        {
            "stage": name,
            "code": {path: tree_sha256(REPO / path) for path in stage.code},
            "data": {dep: given.get(dep) or data_sha256(dep, params) for dep in stage.data},
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
