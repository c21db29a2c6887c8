"""The report's commitments section: each system judged against the vendor's committed figures.

The verdicts are `aibench accept`'s own (results/accept.py judges every commitment from the raw
samples); this module only runs that judgement once per report input and turns the verdicts into
table text that every format prints alike. A report is not a gate: a FAIL here is shown, and only
`aibench accept` exits 1 on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aibench.results.accept import DEFAULT_CONFIDENCE, AcceptResult, Verdict, accept_run
from aibench.results.commitments import Commitment
from aibench.results.runs import LoadedRun

DEFAULT_TOLERANCE = 0.05  # aibench accept's default --tolerance
COMMITMENTS_HEADER = ["system", "entry", "metric", "committed", "tolerance", "measured median",
                      "one-sided bound", "verdict", "why"]


@dataclass(frozen=True)
class SystemAcceptance:
    system: str  # the report's label of the system
    result: AcceptResult

    @property
    def summary(self) -> str:
        counts = self.result.counts()
        decided = "commitments not met" if self.result.failing else (
            "every commitment met" if not counts["UNSURE"] else "no FAIL, but some undecided")
        return f"{self.system}: " + ", ".join(f"{n} {name}" for name, n in counts.items()) + f" ({decided})"


@dataclass(frozen=True)
class Acceptance:
    source: str  # the commitments file
    tolerance: float  # the default; a commitment's own tolerance wins
    confidence: float
    systems: tuple[SystemAcceptance, ...]


def build_acceptance(runs: Sequence[LoadedRun], labels: Sequence[str], commitments: Sequence[Commitment],
                     source: str, tolerance: float = DEFAULT_TOLERANCE,
                     confidence: float = DEFAULT_CONFIDENCE) -> Acceptance:
    """Every report input against the same commitments, exactly as `aibench accept` judges one."""
    systems = tuple(SystemAcceptance(label, accept_run(run, list(commitments), source, tolerance, confidence))
                    for run, label in zip(runs, labels))
    return Acceptance(source, tolerance, confidence, systems)


def _figure(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def verdict_texts(system: str, v: Verdict) -> list[str]:
    """One table row, in COMMITMENTS_HEADER's order."""
    entry, _, record = v.key.partition("::")
    return [system, f"{entry} ({record})" if record else entry, v.metric, _figure(v.committed), f"{v.tolerance:.1%}",
            _figure(v.measured), _figure(v.bound), v.verdict, v.reason or "-"]


def commitment_rows(acceptance: Acceptance) -> list[list[str]]:
    return [verdict_texts(s.system, v) for s in acceptance.systems for v in s.result.verdicts]


def acceptance_note(acceptance: Acceptance) -> str:
    return (f"Committed figures from {acceptance.source}, judged as aibench accept judges them, from each "
            f"record's raw samples: PASS where the pessimistic one-sided {acceptance.confidence:.0%} bound of "
            f"the median meets the committed value less its tolerance (default {acceptance.tolerance:.0%}), "
            "FAIL where even the optimistic bound misses it or the measurement is missing or failed, UNSURE in "
            "between. Rates are better high, median_s low.")
