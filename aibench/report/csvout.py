"""The report as CSV: one row per system x record, for spreadsheets and scripts.

Numbers are written in full precision in the record's own units; an unavailable number is an
empty cell with its reason in the matching *_unavailable column (never 0). Text comes from
hostile runs: a cell a spreadsheet would run as a formula gets a leading quote, and control
characters other than newline and tab are written as escapes (the CSV may be printed on a terminal).
"""

from __future__ import annotations

import csv
import io

from aibench.core.text import printable
from aibench.report.model import Report, Value

COLUMNS = (
    "system", "device", "entry", "workload", "backend", "params", "status", "reason", "median_s", "rel_noise",
    "metric", "value", "unit", "value_unavailable", "ratio_to_first", "avg_power_w", "energy_method",
    "energy_unit", "j_per_unit", "units_per_j", "energy_unavailable", "throttle_reasons", "hourly_cost_eur",
    "cost_per_million_tokens_eur", "cost_per_work_eur", "cost_basis", "units_per_s_per_mw", "cost_unavailable",
    "run_id", "source", "record_id",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP: what spreadsheets evaluate


def guard(value: object) -> object:
    """Neutralize CSV formula injection: text starting like a formula gets a leading quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _v(v: Value | None) -> float | str:
    return "" if v is None or v.value is None else v.value


def render_csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row, system, cell in report.cells():
        metric = row.family.metrics[0] if row.family.metrics else None
        key = cell.values[0] if cell.values else None
        if key is not None:
            value_why = "" if key.ok else key.reason
        else:  # an ok record of a workload whose family has no metric has no reason in its status
            value_why = f"status {cell.status}" if cell.status != "ok" else "no headline metric"
        e, c = cell.energy, cell.cost
        tokens = c is not None and row.family.cost_basis == "tokens"
        cost_why = ""
        if c is not None:
            cost_why = next((x.reason or "" for x in (c.hourly_eur, c.per_work_eur) if not x.ok), "")
        values = (
            system.label, system.device, row.entry or "", row.workload, row.backend, row.params_json, cell.status,
            cell.reason or "", cell.median_s if cell.median_s is not None else "",
            cell.rel_noise if cell.rel_noise is not None else "",
            metric.key if metric else "", _v(key), metric.unit if metric else "", value_why or "",
            _v(cell.ratio), _v(e.avg_power_w), e.method or "", e.unit, _v(e.j_per_unit), _v(e.units_per_j),
            next((x.reason or "" for x in (e.avg_power_w, e.j_per_unit) if not x.ok), ""), "unknown" if e.throttle is None else "|".join(e.throttle),
            _v(c.hourly_eur) if c else "", _v(c.per_work_eur) if tokens and c else "",
            _v(c.per_work_eur) if c else "", c.per_work_label if c else "", _v(c.per_mw) if c else "", cost_why,
            system.run_id, system.source, cell.record_id,
        )
        writer.writerow([guard(printable(v, keep="\n\t") if isinstance(v, str) else v) for v in values])
    return buf.getvalue()
