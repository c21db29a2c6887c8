"""Pure arithmetic of telemetry: integrals, counter deltas, throttle decoding, per-unit energy.

No I/O and no clocks here, so that every number a record carries can be re-derived exactly
from the raw samples written beside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from aibench.core import stats
from aibench.core.formulas import per_unit  # noqa: F401 (re-exported; torch-free for the buyer's recompute)

# Clock-event ("throttle") reason bits of nvmlDeviceGetCurrentClocksEventReasons, as listed in
# shared/reference/hardware.md (NVML section); the older nvmlClocksThrottleReason* names alias them.
THROTTLE_REASONS: dict[int, str] = {
    0x1: "GpuIdle",
    0x2: "ApplicationsClocksSetting",
    0x4: "SwPowerCap",
    0x8: "HwSlowdown",
    0x10: "SyncBoost",
    0x20: "SwThermalSlowdown",
    0x40: "HwThermalSlowdown",
    0x80: "HwPowerBrakeSlowdown",
    0x100: "DisplayClockSetting",
}
# GpuIdle only says the GPU had nothing to do: it is not a limit on the measured work.
NOT_THROTTLING = frozenset({"GpuIdle"})
POWER_REASONS = frozenset({"SwPowerCap", "HwPowerBrakeSlowdown"})
THERMAL_REASONS = frozenset({"SwThermalSlowdown", "HwThermalSlowdown"})


def decode_reasons(mask: int) -> list[str]:
    """Names of the bits set in a clock-event mask, lowest bit first; unknown bits as 'Unknown(0x..)'."""
    if mask < 0:
        raise ValueError(f"clock-event mask must be non-negative, got {mask}")
    names: list[str] = []
    bit = 1
    while bit <= mask:
        if mask & bit:
            names.append(THROTTLE_REASONS.get(bit, f"Unknown({bit:#x})"))
        bit <<= 1
    return names


def throttle_stats(masks: Sequence[int | None]) -> dict[str, Any]:
    """Which clock-event reasons were seen and in what share of the samples that read them.

    Samples whose mask could not be read (None) are left out of the denominator. `throttled_share`
    counts samples with any reason other than GpuIdle.
    """
    known = [m for m in masks if m is not None]
    n = len(known)
    counts: dict[str, int] = {}
    throttled = 0
    for mask in known:
        names = decode_reasons(mask)
        for name in names:
            counts[name] = counts.get(name, 0) + 1
        if any(name not in NOT_THROTTLING for name in names):
            throttled += 1
    seen = sorted(counts, key=lambda name: _bit_of(name))
    return {
        "n_samples": n,
        "reasons_seen": seen,
        "share": {name: counts[name] / n for name in seen} if n else {},
        "throttled_share": throttled / n if n else None,
        "throttled": throttled > 0,
        "power_capped": any(name in POWER_REASONS for name in seen),
        "thermal": any(name in THERMAL_REASONS for name in seen),
    }


def _bit_of(name: str) -> int:
    for bit, known in THROTTLE_REASONS.items():
        if known == name:
            return bit
    return int(name[len("Unknown(") : -1], 16) if name.startswith("Unknown(") else 1 << 62


def trapezoid(times: Sequence[float], values: Sequence[float]) -> float | None:
    """Trapezoidal integral of values over times (W over s gives J); None for fewer than two points.

    Times must be non-decreasing: samples come from one clock in order.
    """
    if len(times) != len(values):
        raise ValueError(f"{len(times)} times but {len(values)} values")
    if len(times) < 2:
        return None
    total = 0.0
    for i in range(1, len(times)):
        dt = times[i] - times[i - 1]
        if dt < 0:
            raise ValueError(f"times decrease at index {i}: {times[i - 1]} -> {times[i]}")
        total += dt * (values[i] + values[i - 1]) / 2.0
    return total


def counter_delta(before: float, after: float, max_range: float | None = None) -> float | None:
    """Increase of a cumulative energy counter between two reads.

    With `max_range` (RAPL's max_energy_range_uj) a decrease is one wrap-around: the counter went
    past max_range and restarted at 0. Without it (NVML's mJ since driver load never wraps in
    practice) a decrease means the counter was reset, e.g. by a driver reload: None, not a guess.
    """
    if after >= before:
        return after - before
    if max_range is None:
        return None
    return after - before + max_range


def counter_energy(
    readings: Sequence[float], max_range: float | None = None
) -> tuple[float | None, str | None]:
    """Sum of successive counter deltas over a window: (energy, None) or (None, reason).

    Summing successive reads (rather than last - first) lets a sampler that reads more often than
    the wrap period follow several wraps, and shows a reset anywhere inside the window.
    """
    if len(readings) < 2:
        return None, "fewer than two energy-counter reads in the window"
    total = 0.0
    for i in range(1, len(readings)):
        delta = counter_delta(readings[i - 1], readings[i], max_range)
        if delta is None:
            return None, (
                f"energy counter decreased between reads ({readings[i - 1]} -> {readings[i]}): "
                "reset, e.g. a driver reload"
            )
        total += delta
    return total, None


def relative_difference(value: float | None, reference: float | None) -> float | None:
    """(value - reference) / reference, or None when either is missing or the reference is 0."""
    if value is None or reference is None or reference == 0:
        return None
    return (value - reference) / reference


def series_stats(values: Iterable[float | None]) -> dict[str, float] | None:
    """n, mean, min, max, median and p99 of the readable values; None when there are none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    return {
        "n": len(vals),
        "mean": stats.mean(vals),
        "min": min(vals),
        "max": max(vals),
        "median": stats.median(vals),
        "p99": stats.percentile(vals, 99.0),
    }


def jitter_stats(actual_intervals: Sequence[float], requested: float) -> dict[str, float | None]:
    """Mean and p99 of (actual - requested) sampling interval, in seconds."""
    if not actual_intervals:
        return {"n": 0, "mean_s": None, "p99_s": None, "max_s": None}
    lateness = [a - requested for a in actual_intervals]
    return {
        "n": len(lateness),
        "mean_s": stats.mean(lateness),
        "p99_s": stats.percentile(lateness, 99.0),
        "max_s": max(lateness),
    }
