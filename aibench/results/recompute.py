"""Derived numbers recomputed from raw samples, and facts checked against each other.

A vendor that signs its own bundle can write any median or TFLOP/s it likes: the buyer's side
recomputes every summary with the pure functions the timer used (core/stats.py), the work from
the workload's formulas at the record's parameters (work.py), every rate from that work at the
median, every % of peak against the datasheet (device/specs.py) and every J per unit from the
energy window. Torch-free: bundle.verify, report and compare import it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from aibench.core import stats
from aibench.core.formulas import per_unit
from aibench.core.jsonutil import finite_number
from aibench.device.specs import match_spec
from aibench.results.impossible import CODE as IMPOSSIBLE
from aibench.results.impossible import impossible_problems
from aibench.results.work import expected_work, param_problem

# Recomputed with the same pure functions on the same floats (JSON keeps floats exactly), the
# numbers agree bit for bit; 1e-9 relative only absorbs a platform's last-bit libm differences.
REL_TOL = 1e-9

# Each statistic of stats.summarize (the timer's record), by the name the record keeps it under.
_STATISTIC: dict[str, Callable[[list[float]], Any]] = {
    "n": len, "median": stats.median, "mean": stats.mean, "stdev": stats.stdev, "min": min, "max": max,
    "p5": lambda v: stats.percentile(v, 5), "p25": lambda v: stats.percentile(v, 25),
    "p75": lambda v: stats.percentile(v, 75), "p95": lambda v: stats.percentile(v, 95), "mad": stats.mad,
    "ci95_median": lambda v: list(stats.bootstrap_ci_median(v)), "rel_noise": stats.rel_noise,
    "rel_stderr_median": stats.rel_stderr_median,
}
_SUMMARY = tuple(_STATISTIC)
# What a statistic raises on samples it cannot read: a string, a NaN, or squares past the float range.
_UNREADABLE = (TypeError, ValueError, OverflowError)


def _differs(got: Any, want: Any) -> bool:
    if type(got) is float and type(want) is float and got == want:  # nearly every honest claim: bit for bit
        return False
    if isinstance(want, list):
        return not isinstance(got, list) or len(got) != len(want) or any(_differs(g, w) for g, w in zip(got, want))
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        return True
    if math.isinf(want) or math.isinf(got):
        return got != want
    return not math.isclose(got, want, rel_tol=REL_TOL, abs_tol=0.0)


def _shown(value: Any) -> str:
    """A value in a finding, claimed or recomputed: a non-finite one named, so that no report ever
    prints nan (a recomputed one is inf where hostile work or energy overflows a float)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "not a finite number"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return repr(value)


def described(rec: dict[str, Any]) -> dict[str, float] | None:
    """stats.describe of an ok record's samples_s; None where it has none or they cannot be read."""
    timing = rec.get("timing")
    samples = timing.get("samples_s") if isinstance(timing, dict) and rec.get("status") == "ok" else None
    if not isinstance(samples, list) or not samples:
        return None
    try:
        return stats.describe(samples)
    except _UNREADABLE:  # a sample no statistic can read: each check says which
        return None


def summary_problems(rec: dict[str, Any], ci: tuple[float, float] | None = None,
                     want: dict[str, float] | None = None) -> list[tuple[str, str]]:
    """("summary_mismatch", why) for each summary statistic that its samples_s do not give. `ci`:
    the samples' bootstrap interval where the caller computed it already (median_intervals);
    `want`: described(rec), where the caller has it."""
    timing = rec.get("timing")
    if rec.get("status") != "ok" or not isinstance(timing, dict):
        return []
    samples = timing.get("samples_s")
    if not isinstance(samples, list) or not samples:
        return [("summary_mismatch", "the timing has no raw samples_s to recompute its summary from")]
    claimed = [name for name in _SUMMARY if name in timing]
    if not claimed:
        return []
    if want is None:  # every statistic from one sorted copy (stats.describe gives each one's exact bits)
        want = described(rec)
    out = []
    for name in claimed:
        try:
            if name == "ci95_median":
                # The costliest: bootstrapped only where claimed, and for many records at once by refused().
                value: Any = list(ci) if ci is not None else _STATISTIC[name](samples)
            else:
                value = want[name] if want is not None else _STATISTIC[name](samples)
        except _UNREADABLE as exc:  # samples past 1e154 s: a squared deviation overflows (hostile input)
            out.append(("summary_mismatch", f"timing.{name} cannot be recomputed from its samples_s ({exc})"))
            continue
        if _differs(timing[name], value):
            out.append(("summary_mismatch", f"timing.{name} is {_shown(timing[name])}, its samples_s give "
                                            f"{_shown(value)}"))
    return out


def median_intervals(records: list[dict[str, Any]]) -> list[tuple[float, float] | None]:
    """Each record's bootstrap interval of the median where it claims one (None elsewhere, and for
    samples that cannot be bootstrapped), all computed in one batch: 50,000 records of 30 samples
    take 0.4 s instead of 1.7 s (2-core CPU)."""
    at, rows = [], []
    for i, rec in enumerate(records):
        timing = rec.get("timing")
        if rec.get("status") == "ok" and isinstance(timing, dict) and "ci95_median" in timing \
                and isinstance(timing.get("samples_s"), list) and timing["samples_s"]:
            at.append(i)
            rows.append(timing["samples_s"])
    out: list[tuple[float, float] | None] = [None] * len(records)
    for i, ci in zip(at, stats.bootstrap_ci_median_many(rows)):
        out[i] = ci
    return out


def expected_metrics(rec: dict[str, Any], median: float | None = None) -> dict[str, float]:
    """The rates runner.derive_metrics gives from the record's work at the median of its samples
    (`median`: that median, where the caller computed it already). Self-timed records (method
    "custom", a serving loop) own their rates: none expected here."""
    timing = rec.get("timing")
    if not isinstance(timing, dict) or timing.get("method") == "custom" or not timing.get("samples_s"):
        return {}
    if median is None:
        try:
            median = stats.median(timing["samples_s"])
        except _UNREADABLE:  # a NaN among a run directory's samples: no rate follows (summary_mismatch says why)
            return {}
    if median <= 0:
        return {}
    work = rec.get("work") if isinstance(rec.get("work"), dict) else {}
    out: dict[str, float] = {}
    for unit, amount in work.items():
        if isinstance(amount, (int, float)) and not isinstance(amount, bool):
            if unit == "flops":
                out["tflops"] = amount / median / 1e12
            elif unit == "bytes":
                out["gbps"] = amount / median / 1e9
            else:
                out[f"{unit}_per_s"] = amount / median
    return out


def metric_problems(rec: dict[str, Any], median: float | None = None) -> list[tuple[str, str]]:
    if rec.get("status") != "ok":
        return []
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    out = []
    for name, want in expected_metrics(rec, median).items():
        if name in metrics and _differs(metrics[name], want):
            out.append(("metric_mismatch", f"metrics.{name} is {_shown(metrics[name])}, the samples and work give "
                                           f"{_shown(want)}"))
    return out


def work_problems(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """("work_mismatch", why) for each unit of work that the workload's formulas at the record's
    parameters do not give: a raised `work` would carry its rates up with it unseen."""
    if rec.get("status") != "ok":
        return []
    why = param_problem(rec)
    if why is not None:  # not a size the workload takes: its work cannot be recomputed, nor trusted
        return [("work_mismatch", why)]
    want = expected_work(rec)
    if want is None:
        return []
    work = rec.get("work") if isinstance(rec.get("work"), dict) else {}
    out = []
    for unit, amount in want.items():
        if unit not in work:
            out.append(("work_mismatch", f"work.{unit} is missing; {rec.get('workload')} at its params does {amount!r}"))
        elif _differs(work[unit], float(amount)):  # sizes are at most 2**40 (param_problem): a float holds it
            out.append(("work_mismatch", f"work.{unit} is {_shown(work[unit])}, {rec.get('workload')} at its "
                                         f"params does {amount!r}"))
    return out


# Each "% of peak" metric, the rate it is a share of, and which datasheet column is its 100%.
# A datasheet peak is the chip's at its highest clock, so no measured rate exceeds it: the bound
# leaves slack for a board whose row understates it (2x), and for a bandwidth measured partly out
# of a cache far faster than memory (10x). Past them is sizes that were never run (m = 10**30).
_MOST_PCT = {"tflops": 200.0, "bandwidth": 1000.0}
_PEAK_SHARES = (("pct_peak_tflops", "tflops", "tflops"), ("mfu_pct", "tflops", "tflops"),
                ("pct_peak_bandwidth", "gbps", "bandwidth"), ("mbu_pct", "effective_bandwidth_gbps", "bandwidth"))


def peak_problems(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """("metric_mismatch", why) for a % of peak whose implied 100% is no datasheet peak of the
    record's device (device/specs.py), or that is claimed for a device with no datasheet row."""
    if rec.get("status") != "ok":
        return []
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    device = rec.get("device") if isinstance(rec.get("device"), dict) else {}
    name = device.get("name") if device.get("kind") != "cpu" else None
    spec = match_spec(name if isinstance(name, str) else None)
    out = []
    for pct_name, rate_name, column in _PEAK_SHARES:
        pct, rate = metrics.get(pct_name), metrics.get(rate_name)
        if pct is None:
            continue
        if spec is None:
            out.append(("metric_mismatch", f"metrics.{pct_name} is claimed, but no datasheet peak is known for "
                                           f"device {_shown(name)}"))
            continue
        peaks = list(spec.peak_tflops.values()) if column == "tflops" else [spec.bandwidth_gbps]
        if not finite_number(rate) or not finite_number(pct) or pct < 0:
            continue  # nothing to divide: the rate's own recompute or the schema speaks for it
        if pct == 0:  # 0 (or -0.0) % of peak is no share of a rate above 0: a report would show 0.0%
            if rate > 0:
                out.append(("metric_mismatch", f"metrics.{pct_name} is {_shown(pct)}, but {rate_name} is "
                                               f"{_shown(rate)}"))
            continue
        implied = 100.0 * rate / pct  # inf for a subnormal pct: no datasheet peak either
        if all(p is None or _differs(implied, p) for p in peaks):
            out.append(("metric_mismatch", f"metrics.{pct_name} is {_shown(pct)}: with {rate_name} "
                                           f"{_shown(rate)} that puts 100% at {_shown(implied)}, not a datasheet "
                                           f"peak of {spec.name}"))
        elif pct > _MOST_PCT[column]:
            out.append(("metric_mismatch", f"metrics.{pct_name} is {_shown(pct)}: more than a chip reaches of "
                                           f"its datasheet peak ({_MOST_PCT[column]:g}%)"))
    return out


def energy_problems(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """("energy_mismatch", why) where the energy window's derived numbers (per call, average power,
    J per unit of work) are not what its own energy, calls, duration and the record's work give."""
    tel = rec.get("telemetry")
    if rec.get("status") != "ok" or not isinstance(tel, dict):
        return []
    if not finite_number(tel.get("energy_j")):
        if not isinstance(tel.get("energy_j"), float):  # none stated: nothing to recompute from
            return []
        # NaN or inf (a run directory's JSON holds them): the window derives none of its figures
        # from such an energy (telemetry/core.py), so a power or J per unit beside it stands on nothing.
        per = tel.get("per_unit") if isinstance(tel.get("per_unit"), dict) else {}
        derived = [name for name in ("energy_per_call_j", "avg_power_w") if finite_number(tel.get(name))]
        derived += [f"per_unit.{name}" for name, value in per.items() if finite_number(value)]
        return [("energy_mismatch", f"telemetry.{name} is stated, but energy_j is {_shown(tel.get('energy_j'))}")
                for name in derived[:1]]
    energy, calls, duration = tel["energy_j"], tel.get("calls"), tel.get("duration_s")
    out = []
    devices = tel.get("devices")
    parts = [d.get("energy_j") for d in devices if isinstance(d, dict)] if isinstance(devices, list) else []
    if parts and all(finite_number(e) for e in parts) and _differs(energy, math.fsum(parts)):
        out.append(("energy_mismatch", f"telemetry.energy_j is {energy!r}, its devices sum to {_shown(math.fsum(parts))}"))
    if finite_number(calls) and (calls < 1 or calls != int(calls)):
        # A count: 1e-300 "calls" put 1e300 J on each one, every figure per call consistent with it.
        out.append(("energy_mismatch", f"telemetry.calls is {calls!r}: a number of calls is a whole number >= 1"))
        calls = None
    per_call = energy / calls if finite_number(calls) and calls > 0 else None
    if per_call is not None and _differs(tel.get("energy_per_call_j"), per_call):
        out.append(("energy_mismatch", f"telemetry.energy_per_call_j is {_shown(tel.get('energy_per_call_j'))}, "
                                       f"energy_j / calls give {_shown(per_call)}"))
    if finite_number(duration) and duration > 0 and "avg_power_w" in tel and _differs(tel["avg_power_w"], energy / duration):
        out.append(("energy_mismatch", f"telemetry.avg_power_w is {_shown(tel['avg_power_w'])}, energy_j / "
                                       f"duration_s give {_shown(energy / duration)}"))
    work = rec.get("work") if isinstance(rec.get("work"), dict) else {}
    per_work = tel.get("work_per_call")
    if isinstance(per_work, dict) and per_work != work:
        out.append(("energy_mismatch", "telemetry.work_per_call is not the record's work"))
    claimed = tel.get("per_unit")
    if per_call is not None and isinstance(claimed, dict):
        wants = per_unit(per_call, work)
        for name in sorted(set(claimed) - set(wants)):  # a report would show it as if measured
            out.append(("energy_mismatch", f"telemetry.per_unit.{_shown(name)} names no unit of the record's work"))
        for name, want in wants.items():
            if name not in claimed:
                continue
            if (want is None) != (claimed[name] is None) or (want is not None and _differs(claimed[name], want)):
                out.append(("energy_mismatch", f"telemetry.per_unit.{name} is {_shown(claimed[name])}, the energy "
                                               f"per call and the work give {_shown(want)}"))
    return out


def _no_gpu(env: dict[str, Any]) -> str | None:
    """Why the environment fingerprint shows no GPU, or None when it shows one."""
    software = env.get("software") if isinstance(env.get("software"), dict) else {}
    torch_v = software.get("torch")
    if isinstance(torch_v, str) and torch_v.endswith("+cpu"):
        return f"a CPU-only torch build ({torch_v})"
    if "gpus" in env and not env.get("gpus"):
        return "an environment with no GPU"
    return None


def fact_problems(rec: dict[str, Any], manifest: dict[str, Any] | None) -> list[tuple[str, str]]:
    """("fact_contradiction", why): claims that the record's own device or environment refutes."""
    out: list[tuple[str, str]] = []
    device = rec.get("device") if isinstance(rec.get("device"), dict) else {}
    env = (manifest or {}).get("environment")
    env = env if isinstance(env, dict) else {}
    why = "a CPU device" if device.get("kind") == "cpu" else _no_gpu(env)
    if why is not None:
        # Only a Triton backend runs in the interpreter without a GPU; torch on a CPU is not interpreted.
        triton = str(rec.get("backend", "")).split(".")[0] == "triton"
        for name, honest in (("comparable", False), ("preview", True), ("interpreted", True)):
            if name == "interpreted" and not triton:
                continue
            if name in rec and rec[name] is not honest and rec[name] is not None:
                out.append(("fact_contradiction", f"{name}: {rec[name]!r} on {why}"))
    gpus = env.get("gpus")
    if device.get("kind") == "cuda" and isinstance(gpus, list) and gpus:
        names = {g.get("name") for g in gpus if isinstance(g, dict)}
        if device.get("name") not in names:
            out.append(("device_mismatch", f"device {device.get('name')!r} is not among the environment's GPUs "
                                           f"{sorted(str(n) for n in names)}"))
    if device.get("kind") == "cuda" and "gpus" in env and not gpus:
        out.append(("device_mismatch", "the record ran on a CUDA device, the environment fingerprint has no GPU"))
    corr = rec.get("correctness") if isinstance(rec.get("correctness"), dict) else {}
    err, tol = corr.get("rel_error"), corr.get("tolerance")
    if corr.get("passed") is True and isinstance(err, (int, float)) and isinstance(tol, (int, float)) \
            and not err <= tol:
        out.append(("correctness_contradiction", f"correctness passed with rel_error {_shown(err)} above its tolerance "
                                                     f"{_shown(tol)}"))
    return out


def manifest_problems(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """A run claiming comparable: true or preview: false where its environment has no GPU."""
    env = manifest.get("environment") if isinstance(manifest.get("environment"), dict) else {}
    why = _no_gpu(env)
    if why is None:
        return []
    return [("fact_contradiction", f"the run claims {name}: {manifest[name]!r} on {why}")
            for name, honest in (("comparable", False), ("preview", True))
            if name in manifest and manifest[name] is not honest]


def record_problems(rec: dict[str, Any], manifest: dict[str, Any] | None,
                    ci: tuple[float, float] | None = None) -> list[tuple[str, str]]:
    """Every (code, why) that makes this record's numbers untrustworthy; empty for an honest one.
    `ci`: its samples' interval of the median, where median_intervals computed it already."""
    want = described(rec)  # once: the summary check and the rates' median share it
    return [*summary_problems(rec, ci, want), *work_problems(rec),
            *metric_problems(rec, want["median"] if want is not None else None), *peak_problems(rec),
            *energy_problems(rec), *impossible_problems(rec), *fact_problems(rec, manifest)]


REFUSING_CODES = frozenset({"summary_mismatch", "work_mismatch", "metric_mismatch", "energy_mismatch",
                            IMPOSSIBLE, "fact_contradiction", "device_mismatch", "correctness_contradiction"})


def refused(records: list[dict[str, Any]], manifest: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The records with each untrustworthy one turned into status "invalid" with the reason, its
    numbers dropped: a reader lists it as refused, never shows its numbers."""
    out = []
    for rec, ci in zip(records, median_intervals(records)):
        problems = record_problems(rec, manifest, ci)
        out.append(invalidated(rec, [f"{c}: {m}" for c, m in problems]) if problems else rec)
    return out


def invalidated(rec: dict[str, Any], why: list[str]) -> dict[str, Any]:
    """The record refused: status "invalid", its numbers dropped, the reasons said."""
    return {**rec, "status": "invalid", "metrics": {}, "timing": None, "reason": "refused: " + "; ".join(why)}
