"""Rich tables of records (what a person reads at the end of a run) and of a suite's plan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.markup import escape
from rich.table import Table

from aibench.report.model import num, ratio


def _pct(x: float) -> str:
    return f"{x:.0f}%" if abs(x) >= 1 else f"{x:.2g}%"


# (metric key, column title, formatter) in display order; a record shows the ones it has. Small
# values keep significant digits: a preview run's 0.0004 TFLOP/s is measured, and "0.0" would read
# as a zero nobody measured.
_COLUMNS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("tflops", "TFLOP/s", num),
    ("pct_peak_tflops", "% peak", _pct),
    ("gbps", "GB/s", num),
    ("pct_peak_bandwidth", "% BW", _pct),
    ("busbw_gbps", "busbw GB/s", num),  # collectives: nccl-tests' bus bandwidth, then algorithm bandwidth
    ("algbw_gbps", "algbw GB/s", num),
    ("tokens_per_s", "tok/s", num),
    ("images_per_s", "img/s", num),
    ("speedup", "speedup", ratio),
)

_STATUS_STYLE = {"ok": "green", "failed": "red", "invalid": "red", "skipped": "yellow"}


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _energy(rec: dict[str, Any]) -> str:
    tel = rec.get("telemetry") or {}
    if not tel.get("available"):
        return "-"
    parts = []
    if tel.get("avg_power_w") is not None:
        parts.append(f"{tel['avg_power_w']:.0f} W")
    if tel.get("energy_per_call_j") is not None:
        parts.append(f"{tel['energy_per_call_j']:.3g} J")
    throttle = tel.get("throttle") or {}
    if throttle.get("throttled"):
        reasons = [r for r in throttle.get("reasons_seen") or [] if r != "GpuIdle"]
        parts.append("[red]throttled: " + escape(",".join(reasons)) + "[/red]")
    return " ".join(parts) or "-"


def records_table(records: list[dict[str, Any]], title: str = "results") -> Table:
    present = [c for c in _COLUMNS if any(c[0] in (r.get("metrics") or {}) for r in records)]
    table = Table(title=title)
    table.add_column("measurement", overflow="fold")
    table.add_column("backend")
    table.add_column("status")
    table.add_column("median", justify="right")
    table.add_column("noise", justify="right")
    for _, title_, _ in present:
        table.add_column(title_, justify="right")
    table.add_column("power / energy", justify="right")
    for rec in records:
        timing = rec.get("timing") or {}
        status = rec["status"]
        style = _STATUS_STYLE.get(status, "")
        status_cell = f"[{style}]{status}[/{style}]"
        if status != "ok" and rec.get("reason"):
            status_cell += f"\n[dim]{escape(rec['reason'][:120])}[/dim]"
        median = _fmt_time(timing["median"]) if timing.get("median") else "-"
        noise = f"±{timing['rel_noise'] * 100:.1f}%" if timing.get("rel_noise") is not None else "-"
        metrics = rec.get("metrics") or {}
        cells = [fmt(metrics[key]) if metrics.get(key) is not None else "-" for key, _, fmt in present]
        label = rec.get("entry") or rec["workload"] + " " + ",".join(f"{k}={v}" for k, v in rec["params"].items())
        # Labels carry "[params]" and reasons quote paths: data, never rich markup.
        table.add_row(escape(label), escape(rec["backend"]), status_cell, median, noise, *cells, _energy(rec))
    return table


def plan_table(rows: list[dict[str, Any]], title: str = "plan") -> Table:
    """One row per planned case: its backends, an entry's own timing mode, or why it is skipped."""
    table = Table(title=title)
    table.add_column("case", overflow="fold")
    table.add_column("workload")
    table.add_column("backends")
    table.add_column("timing")
    table.add_column("skipped because", overflow="fold")
    for r in rows:
        backends = r["backends"] if isinstance(r["backends"], str) else ", ".join(r["backends"])
        timing = ", ".join(f"{k}={v}" for k, v in r["timer"].items()) or "suite rules"
        skip = r["skip_reason"]
        table.add_row(escape(r["case"]), escape(r["workload"]), escape(backends), escape(timing),
                      f"[yellow]{escape(skip)}[/yellow]" if skip else "")
    return table


def finding_summary(findings: list[tuple[str, str]]) -> list[str]:
    """One line per finding code, in order of first appearance: its count and its first example
    (what a person reads; --verbose shows every finding)."""
    first: dict[str, str] = {}
    counts: dict[str, int] = {}
    for code, text in findings:
        first.setdefault(code, text)
        counts[code] = counts.get(code, 0) + 1
    return [f"{code}: {counts[code]} x, e.g. {first[code]}" if counts[code] > 1 else f"{code}: {first[code]}"
            for code in first]
