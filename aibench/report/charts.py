"""Charts for the HTML report: PNG images (matplotlib, Agg, headless) as base64 text.

matplotlib is imported only here and only when a chart is drawn (HAS_MATPLOTLIB says whether it
can be); without it the report says so instead of failing. Labels come from hostile runs:
mathtext parsing is off, so a `$...$` label is drawn as text and cannot break rendering.
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aibench.core.text import printable
from aibench.report.model import Report, Row, ServingCurve, ServingPoint, num, point_xy
from aibench.report.pareto import pareto_frontier
from aibench.results.impossible import MOST_POWER_W

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
MAX_BARS = 30  # measurements per chart; more would be unreadable
# Bars per chart (measurements x systems): ten systems' 30 measurements drew a 71-inch PNG that
# took 0.5 s to encode and could not be read; with more systems, fewer measurements are charted.
MAX_BARS_TOTAL = 120
# Systems per chart: matplotlib's default cycle has 10 distinct colours (C0-C9), so an 11th system
# would share a colour with the first; and the figure grows with systems (50 systems drew a
# 350-inch PNG that took seconds to encode). The tables hold every system.
MAX_SYSTEMS = 10
MAX_LINES = 6  # records per power chart
MAX_SAMPLES_BYTES = 20 * 2**20  # a samples CSV larger than this is not read (a report is not a parser test)
_POWER_COLUMNS = ("power_instant_w", "power_usage_w")  # NVML / amdsmi readers, instant first


LOG_SPAN = 100.0  # values spanning more than this factor get a log axis (linear hides the small bars)
# What matplotlib raises on values it cannot lay out: a log axis whose ticks pass the float range
# ("cannot convert float infinity to integer" for a bar of 2e293 beside one of 2e-4), NaN limits.
# A run is hostile input: such a chart is left out with a note, never the whole report.
_UNDRAWABLE = (OverflowError, ValueError)


@dataclass(frozen=True)
class Chart:
    title: str
    png_base64: str
    alt: str
    family: str = ""  # the results table it belongs beside ("" for power charts)
    preview: bool = False  # its numbers come from a preview or not-comparable run
    caption: str = ""  # what the chart holds and leaves out, beyond its title


def needs_log_scale(values: list[float]) -> bool:
    """Whether positive values span more than LOG_SPAN (max / min)."""
    positive = [v for v in values if v > 0]
    return len(positive) > 1 and max(positive) / min(positive) > LOG_SPAN


def not_comparable(report: Report) -> bool:
    return any(s.preview or not s.comparable for s in report.systems)


def _short(text: str, n: int = 60) -> str:
    # Control characters drawn as escapes: matplotlib's missing-glyph warning would quote them raw.
    text = printable(" ".join(text.split()))
    return text if len(text) <= n else text[: n - 1] + "…"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _bar_chart(report: Report, title: str, rows: list[Row]) -> Chart:
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    metric = rows[0].family.metrics[0]
    n_sys = min(len(report.systems), MAX_SYSTEMS)
    with rc_context({"text.parse_math": False}):
        fig = Figure(figsize=(9, 1.2 + 0.35 * len(rows) * max(1, n_sys) / 1.5))
        ax = fig.add_subplot()
        height = 0.8 / n_sys
        drawn: list[float] = []
        for s in range(n_sys):
            ys, xs = [], []
            for r, row in enumerate(rows):
                cell = row.cells[s]
                y = r + (s - (n_sys - 1) / 2) * height  # the systems' bars side by side around tick r
                value = cell.values[0].value if cell is not None and cell.values else None
                if value is None:  # no bar for what was not measured; say so on the axis
                    ax.text(0, y, " n/a", va="center", fontsize=7, color="gray")
                else:
                    ys.append(y)
                    xs.append(value * metric.scale)
            ax.barh(ys, xs, height=height, color=f"C{s % 10}")
            drawn += xs
        if needs_log_scale(drawn):
            ax.set_xscale("log")
        ax.set_yticks(range(len(rows)))
        ax.set_ylim(len(rows) - 0.5, -0.5)  # first measurement on top
        named = report.backend != "baseline"  # the baseline view shows one backend per measurement
        ax.set_yticklabels([_short(f"{row.label} ({row.backend})" if named else row.label) for row in rows],
                           fontsize=8)
        unit = "" if metric.unit == metric.title else f" ({metric.unit})"
        scale = ", log scale" if ax.get_xscale() == "log" else ""
        ax.set_xlabel(f"{metric.title}{unit}, higher is better{scale}")
        preview = not_comparable(report)
        ax.set_title(_short(("PREVIEW, not comparable: " if preview else "") + title, 90), fontsize=10,
                     color="#b00020" if preview else "black")
        # Explicit handles: a system with no bar at all still gets its colour in the legend.
        handles = [Patch(color=f"C{s % 10}", label=_short(system.label, 40))
                   for s, system in enumerate(report.systems[:n_sys])]
        ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        png = _png(fig)
    return Chart(title, png, f"bar chart of {metric.title} per measurement and system", rows[0].family.name, preview)


def charted_measurements(systems: int) -> int:
    """How many measurements a bar chart of `systems` systems shows (each has a bar per system)."""
    return min(MAX_BARS, max(1, MAX_BARS_TOTAL // max(1, min(systems, MAX_SYSTEMS))))


def headline_charts(report: Report) -> tuple[list[Chart], list[str]]:
    """One bar chart per headline metric group comparing the systems; notes on what was left out."""
    if not HAS_MATPLOTLIB:
        return [], ["charts not drawn: matplotlib is not installed"]
    charts, notes = [], []
    if len(report.systems) > MAX_SYSTEMS:
        notes.append(f"the charts show the first {MAX_SYSTEMS} of {len(report.systems)} systems "
                     "(one colour each); the tables show all")
    for family, rows in report.families():
        if not family.metrics:
            continue
        shown = charted_measurements(len(report.systems))
        if len(rows) > shown:
            notes.append(f"{family.name}: the chart shows the first {shown} of {len(rows)} measurements")
        try:
            charts.append(_bar_chart(report, f"{family.name}: {family.metrics[0].title}", rows[:shown]))
        except _UNDRAWABLE as exc:
            notes.append(f"{family.name}: no chart: its values cannot be drawn ({exc})")
    return charts, notes


def _read_power(path: Path) -> dict[str, tuple[list[float], list[float]]]:
    """device -> (t_rel_s, watts) from a telemetry samples CSV; empty cells are skipped, not zeros,
    and so are readings no sensor gives (nan, inf, 1e308 W, negative watts: the CSV is only hashed
    by verify, and a run directory is not even that)."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        column = next((c for c in _POWER_COLUMNS if c in (reader.fieldnames or [])), None)
        if column is None or "t_rel_s" not in (reader.fieldnames or []):
            return out
        for line in reader:
            try:
                t, w = float(line["t_rel_s"]), float(line[column])
            except (TypeError, ValueError):
                continue
            if not (math.isfinite(t) and 0.0 <= w <= MOST_POWER_W):
                continue
            ts, ws = out.setdefault(str(line.get("device") or "0"), ([], []))
            ts.append(t)
            ws.append(w)
    return out


def power_charts(report: Report) -> tuple[list[Chart], list[str]]:
    """Power over time of each system's records, from the samples CSVs of run directories only."""
    charts: list[Chart] = []
    notes: list[str] = []
    for s, system in enumerate(report.systems):
        cells = [(row, c) for row in report.rows if (c := row.cells[s]) is not None and c.samples_file]
        if not cells:
            continue
        if not system.is_dir:
            notes.append(f"{system.label}: no power-over-time chart: a bundle is read in memory and never "
                         "extracted (report its run directory to see one)")
            continue
        if not HAS_MATPLOTLIB:
            continue
        root = Path(system.source).resolve()
        series = []
        for row, cell in cells[:MAX_LINES]:
            path = (root / str(cell.samples_file)).resolve()
            if not path.is_relative_to(root) or not path.is_file() or path.stat().st_size > MAX_SAMPLES_BYTES:
                notes.append(f"{system.label}: {cell.ref}: samples file not read ({cell.samples_file})")
                continue
            try:
                data = _read_power(path)
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                notes.append(f"{system.label}: {cell.ref}: samples file unreadable ({exc})")
                continue
            series += [(f"{cell.ref} {_short(row.label, 40)}" + (f" dev {d}" if len(data) > 1 else ""), ts, ws)
                       for d, (ts, ws) in data.items() if ts]
        if series:
            try:
                charts.append(_power_chart(system.label, series))
            except _UNDRAWABLE as exc:
                notes.append(f"{system.label}: no power-over-time chart: its samples cannot be drawn ({exc})")
    return charts, notes


def _power_chart(label: str, series: list[tuple[str, list[float], list[float]]]) -> Chart:
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    with rc_context({"text.parse_math": False}):
        fig = Figure(figsize=(9, 3.5))
        ax = fig.add_subplot()
        for name, ts, ws in series:
            ax.plot(ts, ws, label=name, linewidth=1)
        ax.set_xlabel("time in the energy window (s)")
        ax.set_ylabel("measured power (W)")
        ax.set_title(_short(f"{label}: power over time", 90), fontsize=10)
        ax.legend(fontsize=7, loc="best")
        png = _png(fig)
    return Chart(f"{label}: power over time", png, f"line chart of measured power over time on {label}")


MAX_CURVES = 12  # serving charts per report (one per suite entry and backend)
SERVING_AXES = ("interactivity (1000 / TPOT ms), tok/s per user", "output tokens/s per GPU")


def _split(points: tuple[ServingPoint, ...]) -> tuple[list[ServingPoint], list[ServingPoint]]:
    """(the points with both coordinates, the ones lacking one)."""
    return [p for p in points if p.ok], [p for p in points if not p.ok]


def _caption(report: Report, curve: ServingCurve, fronts: list[set[tuple[float, float]]]) -> str:
    """Each system's points and frontier by record reference; the points left out, counted, with why."""
    parts, left = [], []
    for system, points, front in zip(report.systems, curve.points, fronts):
        drawn, lacking = _split(points)
        left += [f"{p.ref} of {system.label} ({p.interactivity.reason or p.per_gpu.reason})" for p in lacking]
        if drawn:
            named = ", ".join(f"{p.ref} ({num(point_xy(p)[0])}, {num(point_xy(p)[1])})" for p in sorted(drawn, key=point_xy))
            on = ", ".join(p.ref for p in sorted(drawn, key=point_xy) if point_xy(p) in front)
            parts.append(f"{system.label}: {len(drawn)} point(s) {named}; Pareto frontier {on}")
    text = "; ".join(parts)
    if left:
        text += (f". {len(left)} point(s) left out, lacking {SERVING_AXES[1]} or interactivity: "
                 + "; ".join(left))
    return text


def _serving_chart(report: Report, curve: ServingCurve, n_sys: int) -> Chart:
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    title = f"LLM serving: {curve.title} ({curve.backend}): {SERVING_AXES[1]} vs interactivity"
    # Every system's frontier (the caption names them all); the first n_sys are drawn.
    fronts = [set(pareto_frontier(point_xy(p) for p in _split(points)[0])) for points in curve.points]
    preview = not_comparable(report)
    with rc_context({"text.parse_math": False}):
        fig = Figure(figsize=(8, 4.5))
        ax = fig.add_subplot()
        handles = []
        for s, (system, points) in enumerate(zip(report.systems[:n_sys], curve.points[:n_sys])):
            drawn, _ = _split(points)
            xy = sorted(point_xy(p) for p in drawn)
            front = sorted(fronts[s])
            colour = f"C{s % 10}"
            if xy:  # every point, joined in interactivity order, and the frontier over it, bold
                ax.plot([x for x, _ in xy], [y for _, y in xy], linestyle=":", marker="o", markersize=4,
                        color=colour, alpha=0.7)
                ax.plot([x for x, _ in front], [y for _, y in front], linestyle="-", marker="D", markersize=7,
                        color=colour, linewidth=2)
                for p in drawn:
                    ax.annotate(p.ref, point_xy(p), textcoords="offset points", xytext=(4, 4), fontsize=7, color=colour)
            handles.append(Line2D([], [], color=colour, marker="D", linewidth=2, label=_short(system.label, 40)))
        handles.append(Line2D([], [], color="gray", marker="o", linestyle=":", label="every point"))
        handles.append(Line2D([], [], color="gray", marker="D", linewidth=2, label="Pareto frontier"))
        ax.set_xlabel(f"{SERVING_AXES[0]}, higher is better")
        ax.set_ylabel(f"{SERVING_AXES[1]}, higher is better")
        ax.set_title(_short(("PREVIEW, not comparable: " if preview else "") + title, 90), fontsize=10,
                     color="#b00020" if preview else "black")
        ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        png = _png(fig)
    return Chart(title, png, f"line chart of {SERVING_AXES[1]} against interactivity per system, "
                 "Pareto frontier marked", "", preview, _caption(report, curve, fronts))


def serving_charts(report: Report) -> tuple[list[Chart], list[str]]:
    """One throughput-per-GPU vs interactivity chart per serving set-up (InferenceX's chart): each
    system's sweep points, its Pareto frontier marked; notes on what was left out."""
    charts: list[Chart] = []
    notes: list[str] = []
    if not report.serving_curves:
        return charts, notes
    if not HAS_MATPLOTLIB:
        return charts, ["serving charts not drawn: matplotlib is not installed"]
    n_sys = min(len(report.systems), MAX_SYSTEMS)
    if len(report.serving_curves) > MAX_CURVES:
        notes.append(f"serving charts: the first {MAX_CURVES} of {len(report.serving_curves)} set-ups are drawn")
    for curve in report.serving_curves[:MAX_CURVES]:
        if not any(p.ok for points in curve.points[:n_sys] for p in points):
            total = sum(len(points) for points in curve.points)
            notes.append(f"{curve.title} ({curve.backend}): no serving chart: none of its {total} record(s) "
                         f"has both {SERVING_AXES[1]} and interactivity")
            continue
        try:
            charts.append(_serving_chart(report, curve, n_sys))
        except _UNDRAWABLE as exc:
            notes.append(f"{curve.title} ({curve.backend}): no serving chart: its values cannot be drawn ({exc})")
    return charts, notes
