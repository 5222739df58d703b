"""The validate stage: every pair and the manifest checked (Great Expectations), failures
quarantined, a report written (``lerenet/data/validate.py`` does the work)."""

from __future__ import annotations

from pathlib import Path

from lerenet.config.schema import Params
from lerenet.data.validate import ValidationReport
from lerenet.stages.declare import DATA, VALIDATE_DIR, Out, StageSpec

SPEC = StageSpec(
    "validate",
    cmd=f"lerenet validate --out-dir {VALIDATE_DIR}",
    entry=(__name__,),
    data=(DATA,),
    params=("data", "split.shots", "eval.shots", "model.shots"),
    outs=(
        Out(f"{VALIDATE_DIR}/report.html", cache=False),
        Out(f"{VALIDATE_DIR}/report.json", cache=False),
    ),
)


def run(params: Params, out_dir: Path = Path(VALIDATE_DIR), **options) -> ValidationReport:
    """Validate ``data.root``; write ``out_dir/report.{html,json}``."""
    from lerenet.data.validate import validate_with_params

    return validate_with_params(params, out_dir, **options)
