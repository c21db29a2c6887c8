"""Regression verdicts between two runs of the same measurements (kernel developers' CI).

A change is called only when it is both large and real (methods.md, "Deciding slower in CI"):
the medians differ by at least `threshold` (5% by default) AND a two-sided Mann-Whitney U test
on the raw samples gives p < `alpha` (0.002, asv's bound). A large difference the test cannot
confirm is `noise`, never a regression. A measurement that worked in the base and failed or
became invalid in the new run is `broken`, which fails CI like a slowdown. Runs measured on
different devices are refused unless asked for (pyperf refuses them too): a comparison across
hardware is a procurement report, not a regression test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aibench import stats
from aibench.errors import UsageError
from aibench.runs import LoadedRun

VERDICTS = ("slower", "broken", "faster", "same", "noise", "missing", "new", "not_comparable")
FAILING = frozenset({"slower", "broken"})


@dataclass(frozen=True)
class CompareOptions:
    threshold: float = 0.05
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

    @property
    def failing(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict in FAILING]

    @property
    def geomean_ratio(self) -> float | None:
        """Geometric mean of new/base over every pair timed in both runs (Google Benchmark's summary)."""
        ratios = [c.ratio for c in self.comparisons if c.ratio is not None]
        return stats.geomean(ratios) if ratios else None

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(VERDICTS, 0)
        for c in self.comparisons:
            out[c.verdict] += 1
        return {k: v for k, v in out.items() if v}

    def as_dict(self) -> dict[str, Any]:
        return {"base": self.base, "new": self.new, "regression": bool(self.failing),
                "geomean_ratio": self.geomean_ratio, "counts": self.counts(), "warnings": self.warnings,
                "comparisons": [c.as_dict() for c in self.comparisons]}


def record_key(rec: dict[str, Any]) -> str:
    """Pairs records across runs: the measurement id, qualified by its suite entry when it has one."""
    return f"{rec['entry']}::{rec['id']}" if rec.get("entry") else rec["id"]


def judge(base: list[float], new: list[float], options: CompareOptions) -> tuple[str, float, float]:
    """(verdict, new/base median ratio, p-value) of two timing sample sets. Pure."""
    ratio = stats.median(new) / stats.median(base)
    _, p = stats.mann_whitney_u(base, new)
    if ratio >= 1 + options.threshold:
        return ("slower" if p < options.alpha else "noise"), ratio, p
    if ratio <= 1 / (1 + options.threshold):
        return ("faster" if p < options.alpha else "noise"), ratio, p
    return "same", ratio, p


def _pair(key: str, b: dict[str, Any] | None, n: dict[str, Any] | None, options: CompareOptions) -> Comparison:
    some = n or b
    assert some is not None
    head = {"key": key, "workload": some["workload"], "backend": some["backend"]}
    if b is None:
        return Comparison(**head, verdict="new", reason="only in the new run")
    if n is None:
        return Comparison(**head, verdict="missing", reason="only in the base run")
    if b["status"] != "ok":
        return Comparison(**head, verdict="not_comparable", reason=f"base is {b['status']}: {b.get('reason')}")
    if n["status"] != "ok":
        verdict = "broken" if n["status"] in ("failed", "invalid") else "not_comparable"
        return Comparison(**head, verdict=verdict, base_median_s=b["timing"]["median"],
                          reason=f"new is {n['status']}: {n.get('reason')}")
    methods = (b["timing"].get("method"), n["timing"].get("method"))
    if methods[0] != methods[1]:
        # A CUDA-graph replay has no launch gaps that per-call events have: the ratio would
        # measure the change of method (a newer suite version), not the code or the hardware.
        return Comparison(**head, verdict="not_comparable", base_median_s=b["timing"]["median"],
                          new_median_s=n["timing"]["median"], reason=f"timed differently: {methods[0]} vs {methods[1]}")
    verdict, ratio, p = judge(b["timing"]["samples_s"], n["timing"]["samples_s"], options)
    return Comparison(**head, verdict=verdict, base_median_s=b["timing"]["median"],
                      new_median_s=n["timing"]["median"], ratio=ratio, p_value=p)


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
    if suites[0].get("name") == suites[1].get("name") and suites[0].get("version") != suites[1].get("version"):
        warnings.append(f"suite {suites[0].get('name')!r} versions differ ({suites[0].get('version')} vs "
                        f"{suites[1].get('version')}): entries and timing methods may have changed")
    if base.manifest.get("environment_sha256") != new.manifest.get("environment_sha256"):
        warnings.append("the environment fingerprints differ (versions, driver or clocks changed)")
    b = {record_key(r): r for r in base.records}
    n = {record_key(r): r for r in new.records}
    keys = list(b) + [k for k in n if k not in b]
    comparisons = [_pair(k, b.get(k), n.get(k), options) for k in keys]
    comparisons.sort(key=lambda c: (c.verdict not in FAILING, -(c.ratio or 0.0)))
    return CompareResult(base.source, new.source, comparisons, warnings)
