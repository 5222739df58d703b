"""The Great Expectations 1.x suite over the manifest.

Row-level expectations (each failing row is quarantined): unique image sha256 across the whole
dataset, allowed classes, image size bounds, defect-pixel fraction bounds. Table-level
expectations (blocking: the data cannot be used as a whole): the manifest's columns, and at least
K+1 pairs per class so that a K-shot episode with a distinct query exists.
GX is imported here only, inside the functions: it costs seconds to import.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lerenet.data.manifest import COLUMNS


@dataclass(frozen=True)
class SuiteLimits:
    min_side: int = 16
    max_side: int = 4096
    min_defect_fraction: float = 0.0
    max_defect_fraction: float = 0.95
    min_pairs_per_class: int = 2
    allowed_classes: tuple[str, ...] | None = None


@dataclass
class Outcome:
    """One expectation's result, in words a person can act on."""

    name: str
    column: str | None
    success: bool
    blocking: bool
    observed: Any = None
    bad_rows: list[str] = field(default_factory=list)  # manifest `image` values


def _context():
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    # older/newer config shapes may refuse this; the bars are cosmetic
    with contextlib.suppress(Exception):
        context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return gx, context


def _run(gx, context, name: str, df: pd.DataFrame, expectations: list, id_col: str) -> list:
    source = context.data_sources.add_pandas(f"{name}_source")
    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_suite"))
    for exp in expectations:
        suite.add_expectation(exp)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}_validation", data=batch, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": df},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [id_col]},
    )
    return list(result.results)


def run_suite(manifest: pd.DataFrame, limits: SuiteLimits) -> list[Outcome]:
    """Validate the manifest frame; returns one Outcome per expectation."""
    gx, context = _context()
    E = gx.expectations
    outcomes: list[Outcome] = []

    columns_ok = set(COLUMNS) <= set(manifest.columns)
    table = [E.ExpectTableColumnsToMatchSet(column_set=COLUMNS, exact_match=False)]
    rows: list = []
    if columns_ok and len(manifest):
        df = manifest.copy()
        df["defect_fraction"] = df["defect_pixels"] / (df["width"] * df["height"]).clip(lower=1)
        rows = [E.ExpectColumnValuesToNotBeNull(column=c) for c in COLUMNS] + [
            E.ExpectColumnValuesToBeUnique(column="sha256"),
            E.ExpectColumnValuesToBeBetween(
                column="width", min_value=limits.min_side, max_value=limits.max_side
            ),
            E.ExpectColumnValuesToBeBetween(
                column="height", min_value=limits.min_side, max_value=limits.max_side
            ),
            E.ExpectColumnValuesToBeBetween(
                column="defect_fraction",
                min_value=limits.min_defect_fraction,
                max_value=limits.max_defect_fraction,
            ),
        ]
        if limits.allowed_classes is not None:
            rows.append(
                E.ExpectColumnValuesToBeInSet(
                    column="class", value_set=list(limits.allowed_classes)
                )
            )
        results = _run(gx, context, "manifest", df, table + rows, "image")
    else:
        results = _run(
            gx,
            context,
            "manifest",
            manifest,
            table,
            COLUMNS[0] if COLUMNS[0] in manifest.columns else manifest.columns[0],
        )
    for res in results:
        cfg = res.expectation_config
        bad = [
            str(item.get("image"))
            for item in (res.result.get("unexpected_index_list") or [])
            if isinstance(item, dict)
        ]
        outcomes.append(
            Outcome(
                cfg.type,
                cfg.kwargs.get("column"),
                bool(res.success),
                blocking=cfg.type == "expect_table_columns_to_match_set",
                observed=res.result.get("observed_value"),
                bad_rows=bad,
            )
        )
    return outcomes


def run_class_counts(manifest: pd.DataFrame, limits: SuiteLimits) -> Outcome:
    """Blocking: every class keeps at least K+1 pairs (after quarantine)."""
    gx, context = _context()
    counts = manifest.groupby("class").size().rename("pairs").reset_index()
    if counts.empty:
        return Outcome(
            "expect_column_values_to_be_between", "pairs", False, True, observed="no pairs at all"
        )
    [res] = _run(
        gx,
        context,
        "class_counts",
        counts,
        [
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="pairs", min_value=limits.min_pairs_per_class
            )
        ],
        "class",
    )
    bad = [str(item.get("class")) for item in (res.result.get("unexpected_index_list") or [])]
    return Outcome(
        "expect_column_values_to_be_between",
        "pairs",
        bool(res.success),
        True,
        observed=dict(zip(counts["class"], counts["pairs"].astype(int), strict=True)),
        bad_rows=bad,
    )
