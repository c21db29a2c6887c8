"""Acceptance verdicts: does a delivered system meet what the vendor committed in its bid?

Each commitment is judged from the raw samples of its record, never from a stored summary. The
committed figure less its tolerance is a limit on the time per call (a rate R = W / t is at least
R_min exactly when t <= W / R_min), and a one-sided confidence bound of the median time is held
against it:
  PASS    the pessimistic bound (the upper bound of the time) is within the limit;
  FAIL    even the optimistic bound (the lower bound of the time) misses it, or the measurement
          is missing, failed, invalid, skipped or lacks what the metric needs;
  UNSURE  the interval straddles the limit: more samples would decide, these do not.
The bounds are the two ends of a percentile-bootstrap interval of the median (core/stats.py) at
two-sided level 2c - 1, so each end is a one-sided bound at level c.

A re-test (`baseline`) takes its figures from the installation run instead of the bid: EuroHPC
hosting agreements require re-tests over a system's life to reach at least 90% of the figures
measured at installation, so its tolerance is fixed at 10%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aibench.core import stats
from aibench.core.errors import UsageError
from aibench.core.junit import Status, TestCase
from aibench.results.commitments import (
    Commitment,
    check_tolerance,
    commitments_from_run,
    higher_is_better,
    measured_value,
    sample_metrics,
)
from aibench.results.compare import first_of_each
from aibench.results.runs import LoadedRun

PASS, FAIL, UNSURE = "PASS", "FAIL", "UNSURE"
RETEST_FRACTION = 0.90  # EuroHPC: a re-test reaches at least 90% of the installation figure
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Verdict:
    key: str
    metric: str
    verdict: str
    committed: float
    tolerance: float
    limit: float | None = None  # the committed value less its tolerance, in the metric's direction
    measured: float | None = None  # the metric at the median of the samples
    bound: float | None = None  # the pessimistic one-sided bound of the metric
    higher_is_better: bool = True
    n: int | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class AcceptResult:
    source: str
    reference: str  # the commitments file, or the installation run of a re-test
    verdicts: list[Verdict]
    confidence: float
    warnings: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.verdict == FAIL]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys((PASS, FAIL, UNSURE), 0)
        for v in self.verdicts:
            out[v.verdict] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "reference": self.reference, "accepted": not self.failing,
                "confidence": self.confidence, "counts": self.counts(), "warnings": self.warnings,
                "verdicts": [v.as_dict() for v in self.verdicts]}


def min_samples(confidence: float) -> int:
    """The fewest samples that can bound a median one-sided at `confidence` at all: even the most
    extreme sample lies beyond the median with probability 1 - 0.5^n (distribution-free); below it
    the bootstrap's interval is only the spread of a handful of values."""
    return max(2, math.ceil(math.log(1 - confidence) / math.log(0.5)))


def judge(c: Commitment, rec: dict[str, Any] | None, tolerance: float, confidence: float,
          seed: int = 0) -> Verdict:
    """One commitment against one record (None: not measured). Pure and deterministic."""
    up = higher_is_better(c.metric)
    limit = c.value * (1 - tolerance) if up else c.value / (1 - tolerance)
    head = {"key": c.key, "metric": c.metric, "committed": c.value, "tolerance": tolerance, "limit": limit,
            "higher_is_better": up}
    if rec is None:
        return Verdict(**head, verdict=FAIL, reason="not measured: the run has no such measurement")
    if rec.get("status") != "ok":
        return Verdict(**head, verdict=FAIL, reason=f"{rec.get('status')}: {rec.get('reason')}")
    if c.metric not in sample_metrics(rec):
        custom = (rec.get("timing") or {}).get("method") == "custom"
        why = "a self-timed record's rates are not per sample" if custom else "the record has no work for it"
        return Verdict(**head, verdict=FAIL, reason=f"{c.metric} cannot be computed from the raw samples ({why})")
    samples = rec["timing"]["samples_s"]
    median_s = stats.median(samples)
    measured = measured_value(median_s, rec, c.metric)
    need = min_samples(confidence)
    if len(samples) < need:
        return Verdict(**head, verdict=UNSURE, n=len(samples), measured=measured,
                       reason=f"{len(samples)} sample(s) cannot bound a median at {confidence:.0%} "
                              f"(at least {need} needed)")
    lo_s, hi_s = stats.bootstrap_ci_median(samples, confidence=2 * confidence - 1, seed=seed)
    worst, best = measured_value(hi_s, rec, c.metric), measured_value(lo_s, rec, c.metric)
    assert measured is not None and worst is not None and best is not None  # sample_metrics said so
    # The slowest time is the worst either way: the highest time, the lowest rate.
    meets, misses = (worst >= limit, best < limit) if up else (worst <= limit, best > limit)
    verdict = PASS if meets else FAIL if misses else UNSURE
    reason = "" if verdict == PASS else (
        f"even the optimistic bound {best:.4g} misses the limit {limit:.4g}" if verdict == FAIL
        else f"the one-sided {confidence:.0%} bounds [{min(worst, best):.4g}, {max(worst, best):.4g}] straddle "
             f"the limit {limit:.4g}: more samples would decide")
    return Verdict(**head, verdict=verdict, measured=measured, bound=worst, n=len(samples), reason=reason)


def accept_run(run: LoadedRun, commitments: list[Commitment], reference: str, tolerance: float = 0.05,
               confidence: float = DEFAULT_CONFIDENCE) -> AcceptResult:
    """Every commitment judged against `run`; a commitment's own tolerance wins over `tolerance`."""
    check_tolerance(tolerance)
    if not 0.5 < confidence < 1:
        raise UsageError(f"confidence must be in (0.5, 1), got {confidence}")
    records = first_of_each(run.records)
    verdicts = [judge(c, records.get(c.key), tolerance if c.tolerance is None else c.tolerance, confidence)
                for c in commitments]
    verdicts.sort(key=lambda v: ({FAIL: 0, UNSURE: 1, PASS: 2}[v.verdict], v.key, v.metric))
    warnings = list(run.warnings)
    if run.manifest.get("preview") or not run.manifest.get("comparable", True):
        warnings.append("the run is a preview: its numbers are not comparable across machines")
    return AcceptResult(run.source, reference, verdicts, confidence, warnings)


def retest_commitments(installation: LoadedRun, commitments: list[Commitment] | None) -> list[Commitment]:
    """A re-test's figures: the installation run's medians, at the fixed 90% rule. `commitments`
    (the bid) picks what is re-tested; None re-tests everything the installation run measured.
    A committed measurement the installation run lacks keeps no figure to re-test: it is left out
    here and reported by `retest_missing`."""
    measured = {(c.key, c.metric): c for c in commitments_from_run(installation, 1 - RETEST_FRACTION)}
    wanted = [(c.key, c.metric) for c in commitments] if commitments is not None else list(measured)
    return [measured[k] for k in wanted if k in measured]


def retest_missing(installation: LoadedRun, commitments: list[Commitment]) -> list[Verdict]:
    """FAIL for each committed figure the installation run does not give: nothing to re-test against."""
    have = {(c.key, c.metric) for c in commitments_from_run(installation)}
    return [Verdict(c.key, c.metric, FAIL, c.value, 1 - RETEST_FRACTION, higher_is_better=higher_is_better(c.metric),
                    reason=f"the installation run {installation.source} has no {c.metric} for it")
            for c in commitments if (c.key, c.metric) not in have]


def retest_run(run: LoadedRun, installation: LoadedRun, commitments: list[Commitment] | None = None,
               confidence: float = DEFAULT_CONFIDENCE) -> AcceptResult:
    """The 90% re-test of `run` against the installation run."""
    figures = retest_commitments(installation, commitments)
    result = accept_run(run, figures, installation.source, 1 - RETEST_FRACTION, confidence)
    missing = retest_missing(installation, commitments) if commitments is not None else []
    warnings = result.warnings + [f"installation: {w}" for w in installation.warnings]
    if installation.device_name != run.device_name:
        warnings.append(f"different devices: installation {installation.device_name!r}, re-test {run.device_name!r}")
    return AcceptResult(result.source, result.reference, missing + result.verdicts, confidence, warnings)


def junit_cases(result: AcceptResult) -> list[TestCase]:
    """One JUnit case per verdict: FAIL fails, UNSURE is skipped (undecided is not passed)."""
    status: dict[str, Status] = {PASS: "passed", FAIL: "failed", UNSURE: "skipped"}
    out = []
    for v in result.verdicts:
        detail = (f"committed {v.committed:.6g}, limit {v.limit:.6g}" if v.limit is not None else "") + (
            f", measured median {v.measured:.6g}, bound {v.bound:.6g} (n={v.n})" if v.measured is not None else "")
        out.append(TestCase(classname=v.key.split("::")[0], name=f"{v.key} {v.metric}", status=status[v.verdict],
                            message=v.reason, detail=f"{v.reason}\n{detail}".strip()))
    return out
