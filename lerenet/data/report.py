"""Self-contained HTML report of a validation run (no external assets: it is attached to runs)."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lerenet.data.validate import ValidationReport

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.ok{color:#17803d}"
    ".bad{color:#b3261e;font-weight:bold}"
)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: ValidationReport) -> str:
    verdict = (
        '<p class="ok">PASSED</p>'
        if report.passed
        else '<p class="bad">FAILED (blocking)</p><ul>'
        + "".join(f"<li>{escape(b)}</li>" for b in report.blocking)
        + "</ul>"
    )
    expectations = _table(
        ["expectation", "column", "result", "blocking", "failing rows (first 10)"],
        [
            [
                escape(o.name),
                escape(str(o.column or "")),
                '<span class="ok">pass</span>' if o.success else '<span class="bad">fail</span>',
                "yes" if o.blocking else "no",
                escape(", ".join(o.bad_rows[:10])),
            ]
            for o in report.outcomes
        ],
    )
    findings = (
        _table(
            ["class", "file", "check", "reason", "what to do"],
            [
                [escape(f.cls), escape(f.file), escape(f.check), escape(f.reason), escape(f.fix)]
                for f in report.findings
            ],
        )
        if report.findings
        else ("<p>None.</p>")
    )
    classes = _table(["class", "pairs"], [[escape(c), str(n)] for c, n in report.classes.items()])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>lerenet data validation"
        f"</title><style>{_STYLE}</style></head><body><h1>Data validation</h1>{verdict}"
        f"<p>Dataset <code>{escape(report.root)}</code>: {report.pairs} usable pairs in "
        f"{len(report.classes)} classes; {report.quarantined} quarantined; "
        f"{report.grey_masks} masks with values other than 0/255 (binarised at load by the mask "
        f"rule: grey ≥ 128, or a two-value mask's non-zero value); "
        f"{report.seconds:.1f} s.</p><h2>Expectations</h2>{expectations}"
        f"<h2>Findings (quarantined items; files not in the manifest)</h2>{findings}"
        f"<h2>Classes</h2>{classes}</body></html>"
    )
