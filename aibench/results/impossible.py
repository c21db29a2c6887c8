"""Numbers no measurement can give, whatever the other fields of the record say.

recompute.py checks that a record's derived numbers follow from its raw ones; a vendor who makes
them all agree can still sign raw numbers that cannot be true: samples of 1e-300 s (TFLOP/s past
1e290), samples of 1e200 s inside a case that lasted a second, 1e300 W drawn by one accelerator.
Each bound below is far outside anything real hardware does, so that no honest record comes near
it, and each names what it rests on. Torch-free: bundle.verify, report and compare import it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from aibench.core.jsonutil import finite_number

CODE = "impossible_value"

# No timer aibench uses resolves less than a nanosecond (CUDA events: ~0.5 us; perf_counter: tens
# of ns), and no kernel launch or call takes less: one clock cycle of a 2 GHz chip is 0.5 ns.
SHORTEST_SAMPLE_S = 1e-9
# Whatever the record's own duration says (an older one states none): a suite kills a case after
# its case_timeout_s (minutes), and no benchmark call, not even a training run to a target, lasts a year.
LONGEST_SAMPLE_S = 365 * 86400.0
# The timestamps are wall-clock text to the millisecond, taken just outside the perf_counter span
# that gives duration_s; the slack also covers a clock that NTP stepped during the case.
CLOCK_SLACK_S = 60.0
# One record measures at most one node: 72 of today's fastest accelerators (an NVL72 domain) do
# about 4e5 dense fp8 TFLOP/s and 6e5 GB/s, so 1e6 of either is past any node, not a fast one.
FASTEST_RATE = {"tflops": 1e6, "gbps": 1e6}
# A megawatt is a data-hall row, not the accelerators of one node; a milliwatt is less than any
# powered-on accelerator or CPU package draws at idle (0 W means "no reading": report/build.py).
MOST_POWER_W = 1e6
LEAST_POWER_W = 1e-3


def _span_s(rec: dict[str, Any]) -> float | None:
    """finished_at - started_at in seconds, None where either is not an ISO timestamp with a zone."""
    try:
        start = datetime.fromisoformat(rec["started_at"])
        end = datetime.fromisoformat(rec["finished_at"])
        return (end - start).total_seconds()
    except (KeyError, TypeError, ValueError):  # missing, not text, not a timestamp, naive vs aware
        return None


def _sum(values: list[Any]) -> float:
    try:
        return math.fsum(values)
    except OverflowError:  # "intermediate overflow": samples near 1e308 add up past any duration
        return math.inf
    except ValueError:  # inf and -inf among them (a run directory's JSON holds both)
        return math.nan


def _seconds(value: float) -> str:
    """A duration in a finding; never "inf" (a report quotes findings)."""
    return f"{value:.6g} s" if math.isfinite(value) else "more seconds than a float holds"


def _time_problems(rec: dict[str, Any]) -> list[str]:
    timing = rec.get("timing")
    timing = timing if isinstance(timing, dict) else {}
    samples = timing.get("samples_s")
    duration = rec.get("duration_s")
    out = []
    span = _span_s(rec)
    if finite_number(duration) and span is not None and duration > span + CLOCK_SLACK_S:
        out.append(f"duration_s is {duration!r}, but finished_at is {span:.6g} s after started_at")
    # type() and fsum run in C (records are read 50,000 at a time): a NaN among the samples makes
    # the sum NaN, and the summary recompute already refuses it; an inf makes it inf, like overflow.
    if not isinstance(samples, list) or not samples or not set(map(type, samples)) <= {int, float}:
        return out  # the schema speaks for these
    total = _sum(samples)
    if math.isnan(total):
        return out
    shortest, longest = min(samples), max(samples)
    if shortest < SHORTEST_SAMPLE_S:
        out.append(f"timing.samples_s holds {shortest!r} s: no timer resolves less than a nanosecond")
    if longest > LONGEST_SAMPLE_S:
        out.append(f"timing.samples_s holds {_seconds(longest)}: no measured call lasts a year")
    if not finite_number(duration) or duration <= 0:
        return out  # no duration stated (0 is Record's default): only the bounds above hold the samples
    # Self-timed records (a serving loop) keep per-request latencies, which overlap: only each one
    # must fit in the case. Every other sample is one call (a CUDA-graph sample: one replay of
    # calls_per_sample calls, divided by them), timed one after the other inside the case, after
    # the warm-up.
    if timing.get("method") == "custom":
        timed, what = float(longest), "its longest sample is"
    else:
        per_sample = timing.get("calls_per_sample")
        calls = per_sample if finite_number(per_sample) and per_sample > 1 else 1
        warmup = timing.get("warmup_s")
        timed = total * calls + (warmup if finite_number(warmup) and warmup > 0 else 0.0)
        what = "its samples (and warm-up) add up to"
    if timed > duration * (1 + 1e-9):  # inf (a sum past the float range) is longer than any duration
        out.append(f"{what} {_seconds(timed)}, longer than the whole case (duration_s {duration!r})")
    return out


def _rate_problems(rec: dict[str, Any]) -> list[str]:
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    return [f"metrics.{name} is {metrics[name]!r}: more than any node does ({ceiling:g})"
            for name, ceiling in FASTEST_RATE.items() if finite_number(metrics.get(name)) and metrics[name] > ceiling]


def _energy_problems(rec: dict[str, Any]) -> list[str]:
    tel = rec.get("telemetry") if isinstance(rec.get("telemetry"), dict) else {}
    power, energy, window, calls = (tel.get(k) for k in ("avg_power_w", "energy_j", "duration_s", "calls"))
    out = []
    if finite_number(power) and power != 0 and not LEAST_POWER_W <= power <= MOST_POWER_W:
        out.append(f"telemetry.avg_power_w is {power!r} W: no accelerator draws under {LEAST_POWER_W:g} W or "
                   f"one node over {MOST_POWER_W:g} W")
    if finite_number(energy) and energy > 0 and finite_number(window) and window <= 0:
        out.append(f"telemetry.energy_j is {energy!r} over a window of {window!r} s")
    # The window runs the calls one after the other: none is shorter than a sample can be.
    if finite_number(calls) and finite_number(window) and calls * SHORTEST_SAMPLE_S > window + CLOCK_SLACK_S:
        out.append(f"telemetry.calls is {calls!r} in a window of {window!r} s: under a nanosecond each")
    return out


def impossible_problems(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """(CODE, why) for each number of an ok record that no measurement can give."""
    if rec.get("status") != "ok":
        return []
    return [(CODE, why) for why in (*_time_problems(rec), *_rate_problems(rec), *_energy_problems(rec))]
