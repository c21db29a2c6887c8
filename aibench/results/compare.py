"""Regression verdicts between two runs of the same measurements (kernel developers' CI).

A change is called only when it is both large and real (methods.md, "Deciding slower in CI"):
the medians differ by at least `threshold` AND a two-sided Mann-Whitney U test on the raw
samples gives p < `alpha` (0.002, asv's bound). The threshold is the smallest change that
counts, not the size of change the gate is sure to catch: the measured ratio scatters around
the true one, so a change exactly at the threshold is caught half the time. The default 3%
catches a 5% slowdown in >= 95% of trials at 2% noise and 30 samples a side, with A/A false
alarms <= 1% (aibench/results/compare_simulation.py measures both; tests hold them). A large
difference the test cannot confirm is `noise`, never a regression (its reason says when the sample counts, not the spread,
made the test powerless). A measurement that worked in the base and failed or became invalid in
the new run, or that fails in the new run and has no base, is `broken`, which fails CI like a
slowdown. One that worked in the base and was not measured in the new run (skipped now, its
workload skipped as a whole, or never reached by an interrupted run) is `lost`, which fails too:
a gate must not pass on a measurement it did not make, and a kernel that crashes the suite
process leaves exactly that. Runs measured on different devices are refused unless asked for
(pyperf refuses them too): a comparison across hardware is a procurement report, not a
regression test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aibench.core import stats
from aibench.core.errors import UsageError
from aibench.core.junit import TestCase, junit_xml
from aibench.results.runs import LoadedRun

_NO_POWER = "samples: the test cannot reach"  # how a powerless `noise` reason reads

VERDICTS = ("slower", "broken", "lost", "faster", "same", "noise", "missing", "new", "not_comparable")
FAILING = frozenset({"slower", "broken", "lost"})


@dataclass(frozen=True)
class CompareOptions:
    threshold: float = 0.03  # the smallest change that counts (see the module docstring)
    alpha: float = 0.002
    allow_different_devices: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 10:
            raise UsageError(f"threshold must be in (0, 10), got {self.threshold}")
        if not 0 < self.alpha < 1:
            raise UsageError(f"alpha must be in (0, 1), got {self.alpha}")


@dataclass(frozen=True)
class Comparison:
    key: str
    workload: str
    backend: str
    verdict: str
    base_median_s: float | None = None
    new_median_s: float | None = None
    ratio: float | None = None  # new / base time: > 1 is slower
    p_value: float | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CompareResult:
    base: str
    new: str
    comparisons: list[Comparison]
    warnings: list[str] = field(default_factory=list)
    options: CompareOptions = field(default_factory=CompareOptions)
    # Keys of the measurements timed in both runs whose sample counts let no change at all pass
    # the test, whatever their verdict (a `same` there is no evidence either).
    too_few_samples: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict in FAILING]

    @property
    def geomean_ratio(self) -> float | None:
        """Geometric mean of new/base over every pair timed in both runs (Google Benchmark's summary)."""
        ratios = [c.ratio for c in self.comparisons if c.ratio is not None]
        return stats.geomean(ratios) if ratios else None

    def counts(self) -> dict[str, int]:
        """Every verdict, zeros included: a CI script reads counts["slower"] without a KeyError."""
        out = dict.fromkeys(VERDICTS, 0)
        for c in self.comparisons:
            out[c.verdict] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        # The rule applied travels with the verdicts: a JSON file alone says what "slower" meant.
        return {"base": self.base, "new": self.new, "regression": bool(self.failing),
                "threshold": self.options.threshold, "alpha": self.options.alpha,
                "geomean_ratio": self.geomean_ratio, "counts": self.counts(), "warnings": self.warnings,
                "too_few_samples": self.too_few_samples,
                "comparisons": [c.as_dict() for c in self.comparisons]}


def record_key(rec: dict[str, Any]) -> str:
    """Pairs records across runs: the measurement id, qualified by its suite entry when it has one."""
    return f"{rec['entry']}::{rec['id']}" if rec.get("entry") else rec["id"]


def judge(base: list[float], new: list[float], options: CompareOptions) -> tuple[str, float, float]:
    """(verdict, new/base median ratio, p-value) of two timing sample sets. Pure."""
    verdict, ratio, p, _ = _judge(base, new, options)
    return verdict, ratio, p


def _judge(base: list[float], new: list[float], options: CompareOptions) -> tuple[str, float, float, str]:
    """`judge` and why a large change is only `noise`."""
    ratio = stats.median(new) / stats.median(base)
    u_base, p = stats.mann_whitney_u(base, new)
    if ratio < 1 + options.threshold and ratio > 1 / (1 + options.threshold):
        return "same", ratio, p, ""
    slower = ratio > 1
    if p >= options.alpha:
        least = stats.mann_whitney_min_p(len(base), len(new))
        if least >= options.alpha:
            # Not the spread: at these sample counts no data at all could pass the test.
            return "noise", ratio, p, (f"{len(base)} and {len(new)} {_NO_POWER} p < {options.alpha:g} "
                                       f"with so few (smallest possible p {least:.2g})")
        return "noise", ratio, p, f"not significant (p = {p:.2g} >= {options.alpha:g})"
    # U of the base counts the (base, new) pairs where the base is the larger. A two-sided test
    # is also significant for a shift against the medians' direction (bimodal samples): that is
    # evidence of a change, not of this one.
    if slower == (u_base > len(base) * len(new) / 2):
        return "noise", ratio, p, "the medians and the rank test disagree on the direction of the change"
    return ("slower" if slower else "faster"), ratio, p, ""


def _median(rec: dict[str, Any]) -> float:
    """The median of the samples themselves: the one the verdict compares, never a stored copy
    that a hand-edited or foreign record may contradict."""
    return stats.median(rec["timing"]["samples_s"])


def _pair(key: str, b: dict[str, Any] | None, n: dict[str, Any] | None, options: CompareOptions,
          absent: str | None = None) -> Comparison:
    """`absent`: why a base record without a partner in the new run was not measured there
    (None: the new run simply has no such measurement)."""
    some = n or b
    assert some is not None
    head = {"key": key, "workload": some["workload"], "backend": some["backend"]}
    if b is None:
        if n is not None and n["status"] in ("failed", "invalid"):
            # Nothing to compare it with, but a kernel added broken is still a broken kernel.
            return Comparison(**head, verdict="broken", reason=f"only in the new run, {n['status']}: {n.get('reason')}")
        return Comparison(**head, verdict="new", reason="only in the new run")
    if n is None:
        if absent is not None and b["status"] == "ok":
            return Comparison(**head, verdict="lost", base_median_s=_median(b), reason=absent)
        return Comparison(**head, verdict="missing", reason="only in the base run")
    if b["status"] != "ok":
        return Comparison(**head, verdict="not_comparable", reason=f"base is {b['status']}: {b.get('reason')}")
    if n["status"] != "ok":
        verdict = {"failed": "broken", "invalid": "broken", "skipped": "lost"}.get(n["status"], "not_comparable")
        return Comparison(**head, verdict=verdict, base_median_s=_median(b),
                          reason=f"new is {n['status']}: {n.get('reason')}")
    methods = (b["timing"].get("method"), n["timing"].get("method"))
    if methods[0] != methods[1]:
        # A CUDA-graph replay has no launch gaps that per-call events have: the ratio would
        # measure the change of method (a newer suite version), not the code or the hardware.
        return Comparison(**head, verdict="not_comparable", base_median_s=_median(b),
                          new_median_s=_median(n), reason=f"timed differently: {methods[0]} vs {methods[1]}")
    flushed = (b["timing"].get("l2_flush"), n["timing"].get("l2_flush"))
    if None not in flushed and flushed[0] != flushed[1]:
        # Same reason: from a warm L2 a memory-bound kernel runs up to twice as fast.
        state = {True: "L2 flushed", False: "L2 warm"}
        return Comparison(**head, verdict="not_comparable", base_median_s=_median(b), new_median_s=_median(n),
                          reason=f"timed differently: {state[bool(flushed[0])]} vs {state[bool(flushed[1])]}")
    verdict, ratio, p, reason = _judge(b["timing"]["samples_s"], n["timing"]["samples_s"], options)
    return Comparison(**head, verdict=verdict, base_median_s=_median(b),
                      new_median_s=_median(n), ratio=ratio, p_value=p, reason=reason)


def first_of_each(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Key -> record; of a measurement recorded twice the first counts, as in `aibench report`
    (verify warns about the duplicate): one bundle never gives two answers."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        out.setdefault(record_key(r), r)
    return out


def _suite_entry(run: LoadedRun) -> dict[str, str]:
    """Case id (a record's `entry`, e.g. `gemm-sq/m=1`) -> the suite entry it was planned from."""
    suite = run.manifest.get("suite")
    entries = suite.get("entries") if isinstance(suite, dict) else None
    out: dict[str, str] = {}
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict) and isinstance(e.get("id"), str) and isinstance(e.get("entry"), str):
            out[e["id"]] = e["entry"]
    return out


def _absent_reasons(base: LoadedRun, new: LoadedRun, same_plan: bool) -> dict[str, str]:
    """Base record key -> why the new run did not measure it, for those it should have.

    A whole-entry skip record (backend "*", written when the workload cannot load or the entry
    is skipped as a whole) stands for every shape and backend the base measured under that
    entry, when both runs planned the same suite version in the same mode (otherwise the skip
    may be the configuration's: `quick.skip`, a newer suite); an incomplete run never reached
    what it lacks.
    """
    skipped = {r.get("entry"): r for r in new.records
               if same_plan and r["backend"] == "*" and r["status"] == "skipped"}
    entry_of = _suite_entry(base)
    out: dict[str, str] = {}
    for r in base.records:
        case = r.get("entry")
        star = skipped.get(case) or skipped.get(entry_of.get(case or ""))
        if case and star is not None:
            out[record_key(r)] = f"new skips the whole entry {star.get('entry')!r}: {star.get('reason')}"
        elif same_plan and not new.manifest.get("complete"):  # another plan may simply not have it
            out[record_key(r)] = "not measured: the new run is incomplete (interrupted before it)"
    return out


def compare_runs(base: LoadedRun, new: LoadedRun, options: CompareOptions | None = None) -> CompareResult:
    options = options or CompareOptions()
    warnings = [f"base: {w}" for w in base.warnings] + [f"new: {w}" for w in new.warnings]
    if base.device_name != new.device_name:
        if not options.allow_different_devices:
            raise UsageError(
                f"the runs were measured on different devices ({base.device_name!r} vs {new.device_name!r}); "
                "a regression check compares like with like (--allow-different-devices to compare anyway)"
            )
        warnings.append(f"different devices: {base.device_name!r} vs {new.device_name!r}")
    for which, run in (("base", base), ("new", new)):
        if run.manifest.get("preview") or not run.manifest.get("comparable", True):
            warnings.append(f"{which} is a preview run: its numbers are not comparable across machines")
    suites = [run.manifest.get("suite") or {} for run in (base, new)]
    if suites[0].get("name") != suites[1].get("name"):
        # `aibench run` output (no suite) or another suite: most measurements will not pair.
        warnings.append(f"different suites: {suites[0].get('name')!r} vs {suites[1].get('name')!r}; "
                        "only the measurements both ran are compared")
    elif suites[0].get("version") != suites[1].get("version"):
        warnings.append(f"suite {suites[0].get('name')!r} versions differ ({suites[0].get('version')} vs "
                        f"{suites[1].get('version')}): entries and timing methods may have changed")
    if suites[0].get("mode") != suites[1].get("mode") and suites[0] and suites[1]:
        warnings.append(f"suite modes differ ({suites[0].get('mode')} vs {suites[1].get('mode')}): "
                        "other shapes and stopping rules")
    if base.manifest.get("environment_sha256") != new.manifest.get("environment_sha256"):
        warnings.append("the environment fingerprints differ (versions, driver or clocks changed)")
    b, n = first_of_each(base.records), first_of_each(new.records)
    keys = list(b) + [k for k in n if k not in b]
    same_plan = all(suites[0].get(k) == suites[1].get(k) for k in ("name", "version", "mode"))
    absent = _absent_reasons(base, new, same_plan)
    comparisons = [_pair(k, b.get(k), n.get(k), options, absent.get(k)) for k in keys]
    comparisons.sort(key=lambda c: (c.verdict not in FAILING, -(c.ratio or 0.0)))
    powerless = [c.key for c in comparisons if c.ratio is not None and options.alpha <= stats.mann_whitney_min_p(
        len(b[c.key]["timing"]["samples_s"]), len(n[c.key]["timing"]["samples_s"]))]
    if powerless:
        named = ", ".join(powerless[:10]) + (f" and {len(powerless) - 10} more" if len(powerless) > 10 else "")
        need = stats.mann_whitney_samples_needed(options.alpha)
        warnings.append(f"{len(powerless)} measurement(s) have too few samples for the test to reach p < "
                        f"{options.alpha:g}: no change there can be called, however large (raise the suite's "
                        f"min_samples: at least {need} a side): {named}")
    return CompareResult(base.source, new.source, comparisons, warnings, options, powerless)


def geomean_phrase(ratio: float) -> str:
    """The geometric mean with its direction: "geomean new/base time = 1.03 (3% slower)"."""
    change = ratio - 1
    if abs(change) < 0.0005:
        way = "no change"
    else:
        way = f"{abs(change) * 100:.2g}% {'slower' if change > 0 else 'faster'}"
    return f"geomean new/base time = {ratio:.3g} ({way})"


_JUNIT_STATUS = {"slower": "failed", "broken": "failed", "lost": "failed",
                 "missing": "skipped", "not_comparable": "skipped"}


def junit_cases(result: CompareResult) -> list[TestCase]:
    """One JUnit test case per measurement: `slower`, `broken` and `lost` fail (as the exit code
    does), `missing` and `not_comparable` are skipped (nothing was judged), the rest pass."""
    cases = []
    for c in result.comparisons:
        message = c.verdict
        if c.ratio is not None:
            message += f": new/base time {c.ratio:.3f}" + (f", p = {c.p_value:.2g}" if c.p_value is not None else "")
        if c.reason:
            message += f" ({c.reason})"
        time_s = c.new_median_s if c.new_median_s is not None else 0.0
        cases.append(TestCase(classname=c.workload, name=f"{c.key} [{c.backend}]",
                              status=_JUNIT_STATUS.get(c.verdict, "passed"),  # type: ignore[arg-type]
                              message=message, time_s=time_s))
    return cases


def compare_junit(result: CompareResult) -> str:
    """The JUnit XML text of a comparison (CI test reporters show each failing measurement)."""
    return junit_xml(f"aibench compare {result.base} -> {result.new}", junit_cases(result))
