"""The decision a buyer reads first: who wins each measurement, and an overall score per system.

A measurement has a winner only where the best system's confidence interval of its key metric
does not overlap any other system's; where intervals overlap it is a tie among those systems
(the samples cannot separate them), and a system without an interval cannot be ranked at all.
The overall score is the geometric mean of each system's key metric normalised to the best
system of each measurement (1.0 = best everywhere), per system and per GPU, per kW and per EUR of
TCO where those are known; each mean says how many measurements it covers, since means over
different sets of measurements are not comparable.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from aibench.core.stats import geomean
from aibench.report.model import Cell, Report, Row


@dataclass(frozen=True)
class Interval:
    """A key-metric figure (higher is better) with its confidence interval."""

    point: float
    low: float
    high: float


@dataclass(frozen=True)
class RowVerdict:
    label: str
    metric: str  # the key metric's title
    winner: str | None  # one system, or None (tie or nothing to rank)
    tied: tuple[str, ...]  # the systems a tie is among (empty unless a tie)
    note: str  # why there is no winner, or what qualifies a win ("" for a clear one)

    @property
    def text(self) -> str:
        if self.winner is not None:
            return f"{self.winner} wins" + (f" ({self.note})" if self.note else "")
        if self.tied:
            return f"tie: {', '.join(self.tied)} (confidence intervals overlap)"
        return f"no verdict: {self.note}"


@dataclass(frozen=True)
class Score:
    """A geometric mean of normalised performance and the number of measurements it covers."""

    value: float | None
    covered: int
    total: int


@dataclass(frozen=True)
class SystemScore:
    system: str
    overall: Score
    per_gpu: Score
    per_kw: Score
    per_eur: Score | None  # None without --tco


@dataclass(frozen=True)
class Verdict:
    rows: tuple[RowVerdict, ...]
    scores: tuple[SystemScore, ...]
    comparable: bool  # false when any system is a preview or not comparable

    def summary(self) -> str:
        """One line: who wins how many measurements, and the ties."""
        wins: dict[str, int] = {}
        for r in self.rows:
            if r.winner is not None:
                wins[r.winner] = wins.get(r.winner, 0) + 1
        ties = sum(1 for r in self.rows if r.tied)
        parts = [f"{name} wins {n}" for name, n in sorted(wins.items(), key=lambda kv: -kv[1])]
        text = ", ".join(parts) or "no system wins a measurement"
        text += f"; {ties} tie(s) of {len(self.rows)} measurement(s)"
        return ("PREVIEW (not comparable): " if not self.comparable else "") + text


# --- the pure decisions (exact unit tests in tests/test_report_verdict.py) -------------------------


def decide(names: Sequence[str], intervals: Sequence[Interval | None]) -> tuple[str | None, tuple[str, ...], str]:
    """(winner, tied, note) of one measurement: the best point wins when its interval overlaps no
    other system's; otherwise the systems whose intervals reach the best one's tie."""
    present = [(n, iv) for n, iv in zip(names, intervals) if iv is not None]
    if not present:
        return None, (), "no system has a figure with a confidence interval"
    if len(present) == 1:
        if len(names) == 1:
            return None, (), "one system only: nothing to compare"
        return present[0][0], (), "the only system with a figure"
    best_name, best = max(present, key=lambda p: p[1].point)
    tied = [n for n, iv in present if n == best_name or iv.high >= best.low]
    if len(tied) == 1:
        return best_name, (), ""
    return None, tuple(tied), "confidence intervals overlap"


def normalised_geomeans(table: Sequence[Sequence[float | None]], systems: int) -> list[Score]:
    """Per system, the geometric mean over rows of its figure / the row's best figure.

    `table` holds one row per measurement and one figure (higher is better, or None) per system;
    a row no system has a positive figure in counts for nobody.
    """
    normalised: list[list[float]] = [[] for _ in range(systems)]
    for row in table:
        best = max((x for x in row if x is not None and x > 0), default=None)
        if best is None:
            continue
        for i, x in enumerate(row):
            if x is not None and x > 0:
                normalised[i].append(x / best)
    total = sum(1 for row in table if any(x is not None and x > 0 for x in row))
    return [Score(geomean(vals) if vals else None, len(vals), total) for vals in normalised]


# --- reading a Report ------------------------------------------------------------------------------


def _interval(cell: Cell | None) -> Interval | None:
    if cell is None or cell.status != "ok" or not cell.values or cell.values[0].value is None or cell.ci is None:
        return None
    return Interval(cell.values[0].value, cell.ci[0], cell.ci[1])


def _key(cell: Cell | None) -> float | None:
    if cell is None or cell.status != "ok" or not cell.values:
        return None
    return cell.values[0].value


def _per(cell: Cell | None, divisor: float | None) -> float | None:
    value = _key(cell)
    return value / divisor if value is not None and divisor else None


def _watts(cell: Cell | None) -> float | None:
    return cell.energy.avg_power_w.value / 1000.0 if cell is not None and cell.energy.avg_power_w.value else None


def _eur(cell: Cell | None) -> float | None:
    return cell.cost.hourly_eur.value if cell is not None and cell.cost is not None else None


def _ranked(row: Row) -> bool:
    return bool(row.family.metrics)


# The last report's verdict: the page and the command's summary line both ask for it, and a report of
# 50 systems x 1,000 measurements takes 0.2 s to judge. Keyed by identity (Report is frozen), held
# weakly: the memo must not keep a report alive.
_last: list[tuple[weakref.ref[Report], Verdict]] = []


def build_verdict(report: Report) -> Verdict:
    if _last and _last[0][0]() is report:
        return _last[0][1]
    verdict = _judge(report)
    _last[:] = [(weakref.ref(report), verdict)]
    return verdict


def _judge(report: Report) -> Verdict:
    names = [s.label for s in report.systems]
    rows = [r for r in report.rows if _ranked(r)]
    verdicts = []
    for row in rows:
        winner, tied, note = decide(names, [_interval(c) for c in row.cells])
        verdicts.append(RowVerdict(row.label, row.family.metrics[0].title, winner, tied, note))
    n = len(names)
    overall = normalised_geomeans([[_key(c) for c in row.cells] for row in rows], n)
    per_gpu = normalised_geomeans([[_per(c, s.accelerator_count) for c, s in zip(row.cells, report.systems)]
                                   for row in rows], n)
    per_kw = normalised_geomeans([[_per(c, _watts(c)) for c in row.cells] for row in rows], n)
    has_tco = any(s.cost is not None for s in report.systems)
    per_eur = normalised_geomeans([[_per(c, _eur(c)) for c in row.cells] for row in rows], n) if has_tco else None
    scores = tuple(SystemScore(name, overall[i], per_gpu[i], per_kw[i], per_eur[i] if per_eur else None)
                   for i, name in enumerate(names))
    comparable = all(s.comparable and not s.preview for s in report.systems)
    return Verdict(tuple(verdicts), scores, comparable)


VERDICT_NOTE = ("A measurement has a winner where the best system's 95% confidence interval of the key metric "
                "overlaps no other system's, else a tie among the systems it overlaps. Scores: geometric mean "
                "of each system's key metric over the best system's in each measurement (1.000 = best "
                "everywhere), with how many measurements each mean covers; means over different sets of "
                "measurements are not comparable.")
SCORE_HEADER = ["system", "overall", "per GPU", "per kW (measured power)", "per EUR of TCO"]


def score_text(score: Score | None) -> str:
    if score is None:
        return "-"
    if score.value is None:
        return f"unavailable (0 of {score.total})"
    return f"{score.value:.3f} ({score.covered} of {score.total})"


def score_rows(verdict: Verdict) -> list[list[str]]:
    """One row per system: overall, per GPU, per kW, per EUR (texts shared by every renderer)."""
    return [[s.system, score_text(s.overall), score_text(s.per_gpu), score_text(s.per_kw), score_text(s.per_eur)]
            for s in verdict.scores]
