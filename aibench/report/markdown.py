"""The report as Markdown (GitHub-flavoured tables): the default, printed on stdout.

Every string from a run is hostile: `md()` escapes what Markdown or the HTML it renders to would
interpret (table pipes, line breaks, tags, entities, link brackets, code spans, math).
"""

from __future__ import annotations

import html

from aibench import __version__
from aibench.core.text import printable
from aibench.report.model import (
    Report,
    cost_texts,
    cost_view,
    energy_texts,
    energy_view,
    metric_texts,
    point_xy,
    prices_texts,
    ratio_text,
    show,
)
from aibench.report.pareto import pareto_frontier

# `$` too: GitHub renders $...$ as math.
_SPECIAL = str.maketrans({"|": "\\|", "[": "\\[", "]": "\\]", "`": "\\`", "$": "\\$", "\\": "\\\\"})
BACKEND_NOTE = {
    "baseline": "the baseline backend of each workload (the vendor library: it measures the hardware)",
    "all": "every backend",
}


def md(value: object) -> str:
    """One line of inert Markdown text: safe inside a table cell, a heading or a list item."""
    text = printable(" ".join(str(value).split()))  # newlines (and \r, tabs) would end a table row
    return html.escape(text, quote=False).translate(_SPECIAL)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(md(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def render_markdown(report: Report) -> str:
    lines = [f"# aibench report: {', '.join(md(s.label) for s in report.systems)}", "",
             f"aibench {__version__}; {len(report.systems)} system(s); measurements shown: "
             f"{md(BACKEND_NOTE.get(report.backend, f'backend {report.backend}'))}. "
             f"Ratios are against the first system, {md(report.systems[0].label)} (higher is better). "
             "Every figure names its record (`rN`, listed under Records).", ""]
    if report.warnings:
        lines += ["## Warnings", ""] + [f"- **WARNING** {md(w)}" for w in report.warnings] + [""]
    lines += (_verdict(report) + _systems(report) + _results(report) + _serving(report) + _energy(report)
              + _tco(report) + _commitments(report) + _records(report))
    return "\n".join(lines).rstrip() + "\n"


def _verdict(report: Report) -> list[str]:
    from aibench.report.verdict import SCORE_HEADER, VERDICT_NOTE, build_verdict, score_rows

    verdict = build_verdict(report)
    out = ["## Verdict", "", f"**{md(verdict.summary())}**", "", md(VERDICT_NOTE), ""]
    if verdict.rows:
        out += _table(["measurement", "key metric", "verdict"], [[r.label, r.metric, r.text] for r in verdict.rows])
    return out + _table(SCORE_HEADER, score_rows(verdict))


def _systems(report: Report) -> list[str]:
    fields = [
        ("device", lambda s: s.device), ("submitter", lambda s: s.submitter),
        ("accelerators", lambda s: s.accelerators), ("driver", lambda s: s.driver),
        ("torch", lambda s: s.torch), ("triton", lambda s: s.triton), ("suite", lambda s: s.suite),
        ("division", lambda s: s.division), ("suite sha256", lambda s: s.suite_sha256 or "not stated"), ("run id", lambda s: s.run_id),
        ("created", lambda s: s.created_at), ("complete", lambda s: "yes" if s.complete else "NO"),
        ("comparable", lambda s: "NO (preview)" if s.preview else ("yes" if s.comparable else "NO")),
        ("source", lambda s: s.source), ("signature", lambda s: s.signature),
    ]
    rows = [[name, *(get(s) for s in report.systems)] for name, get in fields]
    return ["## Systems", "", *_table(["", *(s.label for s in report.systems)], rows)]


def _results(report: Report) -> list[str]:
    out = ["## Results", ""]
    if not report.rows:
        return [*out, "No measurement matches the backend selection.", ""]
    first = report.systems[0].label
    for family, rows in report.families():
        out += [f"### {md(family.name)}", ""]
        header = ["measurement", "backend", "system", *(m.title for m in family.metrics), f"vs {first}", "record"]
        body = []
        for row in rows:
            for system, cell in zip(report.systems, row.cells):
                if cell is None:
                    body.append([row.label, row.backend, system.label, "not measured",
                                 *["-"] * len(family.metrics), ""])
                    continue
                body.append([row.label, row.backend, system.label, *metric_texts(family, cell),
                             ratio_text(cell.ratio), cell.ref])
        out += _table(header, body)
    return out


def _serving(report: Report) -> list[str]:
    """The serving chart's points as a table (the HTML page draws them): frontier points marked."""
    if not report.serving_curves:
        return []
    out = ["### Serving: output tokens/s per GPU against interactivity", "",
           "One point per serving record (interactivity = 1000 / mean TPOT in ms); `frontier`: no other point "
           "of that system beats it on both axes.", ""]
    body = []
    for curve in report.serving_curves:
        for system, points in zip(report.systems, curve.points):
            front = set(pareto_frontier(point_xy(p) for p in points if p.ok))
            for p in sorted(points, key=lambda p: (not p.ok, point_xy(p) if p.ok else (0.0, 0.0))):
                where = ("frontier" if point_xy(p) in front else "dominated") if p.ok else \
                    f"left out: {p.interactivity.reason or p.per_gpu.reason}"
                body.append([f"{curve.title} ({curve.backend})", system.label, p.label, show(p.interactivity, "tok/s"),
                             show(p.per_gpu, "tok/s"), where, p.ref])
    return out + _table(["set-up", "system", "measurement", "interactivity per user", "output tokens/s per GPU",
                         "Pareto", "record"], body)


def _energy(report: Report) -> list[str]:
    out = ["## Energy", "", "Average power of each record's energy window (the measured accelerator power, "
           "no estimate), energy per unit of work and work per joule; method `counter` reads the "
           "energy counter, `integrated power` integrates power samples.", ""]
    rows, unmeasured = energy_view(report)
    body = [[row.label, system.label, *energy_texts(cell.energy), cell.ref] for row, system, cell in rows]
    if body:
        out += _table(["measurement", "system", "avg power", "energy per unit", "work per joule", "method",
                       "throttled", "record"], body)
    out += [f"- {md(system.label)}: energy unavailable ({md(why)})" for system, why in unmeasured]
    return out + ([""] if unmeasured else [])


def _tco(report: Report) -> list[str]:
    if all(s.cost is None for s in report.systems):
        return []
    out = ["## Total cost of ownership", "",
           f"Prices from {md(report.prices_source or 'the prices file')}, per accelerator. Hourly cost = "
           "purchase / (lifetime x 8760 h) + opex / 8760 h + measured average power (kW) x PUE x price per "
           "kWh; cost per million tokens = hourly / (tokens/s x 3600) x 1e6 (InferenceX); throughput per "
           "provisioned MW = rate / (kW x PUE / 1000). Without a measured power there is no energy cost "
           "and no figure built on it.", ""]
    rows = [[s.label, s.cost.note if s.cost else "no prices", *prices_texts(s.cost)] for s in report.systems]
    out += _table(["system", "prices entry", "capex", "lifetime", "opex / year", "per kWh", "PUE",
                   "fixed cost"], rows)
    body = [[row.label, system.label, *energy_texts(cell.energy)[:1], *cost_texts(cell.cost), cell.ref]
            for row, system, cell in cost_view(report) if cell.cost is not None]
    if body:
        out += _table(["measurement", "system", "avg power", "hourly cost", "cost per work", "per provisioned MW",
                       "record"], body)
    return out


def _commitments(report: Report) -> list[str]:
    """The vendor's committed figures against each system (only with --commitments)."""
    if report.acceptance is None:
        return []
    from aibench.report.acceptance import COMMITMENTS_HEADER, acceptance_note, commitment_rows

    a = report.acceptance
    out = ["## Commitments", "", md(acceptance_note(a)), ""]
    out += [f"- **{md(s.summary)}**" for s in a.systems] + [""]
    return out + _table(COMMITMENTS_HEADER, commitment_rows(a))


def _records(report: Report) -> list[str]:
    rows = [[cell.ref, system.label, cell.record_id, system.source] for _, system, cell in report.cells()]
    return ["## Records", "", "The raw samples of each figure are in its record (records.jsonl of the run).", "",
            *_table(["ref", "system", "record id", "run"], rows)]
