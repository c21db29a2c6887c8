"""The report as one self-contained HTML page (jinja2, autoescaped; charts embedded as base64 PNG).

Every string from a run is hostile: the template escapes all of it (autoescape=True), and no
value is ever marked safe; the long tables' rows are written by html_rows.py, which escapes each
value the same way and marks only the assembled rows safe. The page has no script and loads
nothing from elsewhere.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from aibench import __version__
from aibench.core.errors import AibenchError
from aibench.core.text import printable
from aibench.report.html_rows import records_rows, results_rows, titled_rows
from aibench.report.markdown import BACKEND_NOTE
from aibench.report.model import (
    Cell,
    Report,
    System,
    cost_texts,
    cost_view,
    energy_texts,
    energy_view,
    metric_texts,
    prices_texts,
    ratio_text,
)


def _environment() -> Any:
    try:
        import jinja2
    except ImportError:  # a runtime dependency; a broken install still gets one clear line
        raise AibenchError("HTML reports need jinja2 (pip install 'jinja2>=3.1')") from None
    return jinja2.Environment(loader=jinja2.PackageLoader("aibench.report", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              finalize=_inert)


def _inert(value: Any) -> Any:
    """Every printed value: autoescaping stops markup, not terminal control sequences (the page can
    go to stdout), so those are written as escapes too."""
    # A printable str (nearly every value) skips the call; Markup is html_rows' rows, escaped there.
    if (type(value) is str and value.isprintable()) or isinstance(value, Markup):
        return value
    return printable(value, keep="\n\t") if isinstance(value, str) else value


def _title(system: System, cell: Cell) -> str:
    return f"{cell.ref}: record {cell.record_id} of {system.label} ({system.source})"


def _results(report: Report) -> list[dict[str, Any]]:
    out = []
    for family, rows in report.families():
        body = []
        for row in rows:
            for system, cell in zip(report.systems, row.cells):
                if cell is None:
                    body.append({"label": row.label, "backend": row.backend, "system": system.label, "cls": "na",
                                 "texts": ["not measured"] + ["-"] * (len(family.metrics) - 1), "ratio": "-",
                                 "ref": "", "title": f"{system.label} has no record of this measurement"})
                    continue
                body.append({"label": row.label, "backend": row.backend, "system": system.label,
                             "cls": "ok" if cell.status == "ok" else "bad", "texts": metric_texts(family, cell),
                             "ratio": ratio_text(cell.ratio), "ref": cell.ref, "title": _title(system, cell)})
        out.append({"name": family.name, "metrics": [m.title for m in family.metrics], "rows_html": results_rows(body)})
    return out


def _energy(report: Report) -> tuple[list[dict[str, Any]], list[str]]:
    rows, unmeasured = energy_view(report)
    return ([{"label": row.label, "system": system.label, "texts": energy_texts(cell.energy), "ref": cell.ref,
              "title": _title(system, cell)} for row, system, cell in rows],
            [f"{system.label}: energy unavailable ({why})" for system, why in unmeasured])


def _tco(report: Report) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    systems = [{"system": s.label, "note": s.cost.note if s.cost else "no prices",
                "prices": prices_texts(s.cost) if s.cost and s.cost.prices else None} for s in report.systems]
    rows = [{"label": row.label, "system": system.label, "ref": cell.ref, "title": _title(system, cell),
             "texts": [energy_texts(cell.energy)[0], *cost_texts(cell.cost)]}
            for row, system, cell in cost_view(report) if cell.cost is not None]
    return systems, rows


def _commitments(report: Report) -> dict[str, Any] | None:
    """The commitments section's text (None without --commitments): the same rows as Markdown's."""
    if report.acceptance is None:
        return None
    from aibench.report.acceptance import COMMITMENTS_HEADER, acceptance_note, commitment_rows

    a = report.acceptance
    verdict = COMMITMENTS_HEADER.index("verdict")
    numbers = {COMMITMENTS_HEADER.index(h) for h in ("committed", "tolerance", "measured median", "one-sided bound")}
    rows = [{"cls": "bad" if texts[verdict] == "FAIL" else "ok",
             "cells": [("num" if i in numbers else "", t) for i, t in enumerate(texts)]} for texts in commitment_rows(a)]
    return {"note": acceptance_note(a), "summaries": [s.summary for s in a.systems], "header": COMMITMENTS_HEADER,
            "rows": rows}


def render_html(report: Report, charts: bool = True) -> str:
    headline: list[Any] = []
    power: list[Any] = []
    serving: list[Any] = []
    chart_notes: list[str] = []
    if charts:  # drawn beside the tables below (report/chart_worker.py), collected before the page
        from aibench.report.chart_worker import start_charts

        finish_charts = start_charts(report)
    energy_rows, unmeasured = _energy(report)
    tco_systems, tco_rows = _tco(report)
    from aibench.report.verdict import SCORE_HEADER, VERDICT_NOTE, build_verdict, score_rows

    results = _results(report)
    energy_html, tco_html = titled_rows(energy_rows), titled_rows(tco_rows)
    records_html = records_rows([{"ref": c.ref, "system": s.label, "id": c.record_id, "source": s.source}
                                 for _, s, c in report.cells()])
    verdict = build_verdict(report)
    template = _environment().get_template("report.html.j2")
    if charts:
        headline, serving, power, chart_notes = finish_charts()
    beside = {c.family: c for c in headline if c.family}
    for fam in results:  # each family's chart beside its table
        fam["chart"] = beside.pop(fam["name"], None)
    headline = [c for c in headline if c.family in beside or not c.family]
    return template.render(
        version=__version__, report=report, systems=report.systems, warnings=report.warnings,
        backend_note=BACKEND_NOTE.get(report.backend, f"backend {report.backend}"),
        first=report.systems[0].label, results=results, energy_rows=energy_rows, energy_html=energy_html,
        unmeasured=unmeasured,
        has_tco=any(s.cost is not None for s in report.systems), prices_source=report.prices_source,
        tco_systems=tco_systems, tco_rows=tco_rows, tco_html=tco_html, headline_charts=headline, power_charts=power,
        serving_charts=serving,
        chart_notes=chart_notes, verdict=verdict, verdict_note=VERDICT_NOTE, score_header=SCORE_HEADER,
        score_rows=score_rows(verdict), commitments=_commitments(report),
        records_html=records_html,
    )
