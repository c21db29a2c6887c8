"""Procurement reports: systems side by side, energy and cost of ownership (Markdown, HTML, CSV).

`build_report(runs, prices, backend)` pairs the measurements of loaded runs into a `Report`;
`render(report, fmt)` writes it. HTML (jinja2 + matplotlib charts) is imported only when asked for.
"""

from __future__ import annotations

from aibench.core.errors import UsageError
from aibench.report.build import build_report
from aibench.report.model import Report
from aibench.report.tco import Prices, load_prices

FORMATS = ("md", "html", "csv")


def render(report: Report, fmt: str) -> str:
    if fmt == "md":
        from aibench.report.markdown import render_markdown

        return render_markdown(report)
    if fmt == "html":
        from aibench.report.html import render_html

        return render_html(report)
    if fmt == "csv":
        from aibench.report.csvout import render_csv

        return render_csv(report)
    raise UsageError(f"unknown report format {fmt!r} (choose from {', '.join(FORMATS)})")


__all__ = ["FORMATS", "Prices", "Report", "build_report", "load_prices", "render"]
