"""From one device's raw rows over a window [t0, t1] to the numbers a record keeps.

Energy follows shared/reference/methods.md (Energy, after Zeus): the difference of the device's
energy counter around the window, read after a device sync; the trapezoidal integral of sampled
power is kept beside it as a cross-check and is the answer only when the counter is missing or
was reset. Pure: no clocks, no devices, so tests feed it recorded rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aibench.telemetry import calc
from aibench.telemetry.reader import Row

# The NVML energy counter updates every 20-100 ms (hardware.md) and the power sensor sees only
# part of the time (Yang et al., arXiv 2312.02741): windows shorter than this get a note.
SHORT_WINDOW_S = 1.0
# Sampled power and the counter agreed within ~1.5% on an H200 matmul window; a gap this large
# means one of them is wrong (a counter reset between two reads that still increased, a sensor
# that missed the load): worth a note in the record.
DISAGREEMENT_NOTE = 0.25

STAT_FIELDS = ("sm_clock_mhz", "mem_clock_mhz", "temperature_c", "gpu_util_pct", "mem_util_pct")


def window_rows(rows: Sequence[Row], t0: float, t1: float) -> list[Row]:
    """Rows with t0 <= t <= t1, in time order."""
    inside = [r for r in rows if isinstance(r.get("t"), (int, float)) and t0 <= r["t"] <= t1]
    return sorted(inside, key=lambda r: float(r["t"]))


def _values(rows: Sequence[Row], key: str) -> list[Any]:
    return [r.get(key) for r in rows]


def device_window(
    rows: Sequence[Row],
    *,
    t0: float,
    t1: float,
    power_fields: Sequence[str],
    counter_field: str | None,
    counter_per_j: float,
    counter_max: float | None = None,
    unavailable: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Energy, power, clocks, temperature and throttle figures of one device over [t0, t1].

    `rows` must include the boundary samples taken at t0 and t1 (after the syncs, marked
    "boundary"): the counter difference is taken between them.
    """
    inside = window_rows(rows, t0, t1)
    duration = t1 - t0
    notes: list[str] = []

    counter_j: float | None = None
    if counter_field is None:
        notes.append("no energy counter on this device")
    else:
        ends = [r for r in inside if r.get("boundary")] or inside
        first = ends[0].get(counter_field) if ends else None
        last = ends[-1].get(counter_field) if ends else None
        readings = [v for v in _values(inside, counter_field) if v is not None]
        if first is None or last is None:
            why = (unavailable or {}).get(counter_field, "not read at both ends of the window")
            notes.append(f"energy counter unavailable: {why}")
        else:
            raw, reason = calc.counter_energy(readings, counter_max)
            if raw is None:
                notes.append(f"{reason}; fell back to integrated power")
            elif raw == 0 and duration > 0:
                # A powered device always uses energy: a counter that did not move is stuck (amdsmi
                # on VM guests, a frozen driver counter) or slower than the window, not 0 J.
                notes.append(f"energy counter did not advance over the {duration:.3f} s window; "
                             "fell back to integrated power")
            else:
                counter_j = raw / counter_per_j  # division keeps integer counts exact

    power_field = None
    times: list[float] = []
    powers: list[float] = []
    for field in power_fields:
        pts = [(r["t"], r[field]) for r in inside if r.get(field) is not None]
        if len(pts) >= 2 and not any(p for _, p in pts):
            # Every sample 0 W: a sensor that answers without measuring (no device draws 0 W).
            notes.append(f"{field} read 0 W in every sample: not a measurement")
            continue
        if len(pts) >= 2:
            power_field = field
            times = [float(t) for t, _ in pts]
            powers = [float(p) for _, p in pts]
            break
    integrated_j = calc.trapezoid(times, powers) if power_field else None
    if power_field is None:
        notes.append("fewer than two power samples in the window")
    elif times[0] > t0 or times[-1] < t1:
        notes.append(f"power samples cover {times[-1] - times[0]:.3f} s of the {duration:.3f} s window")

    if counter_j is not None:
        method, energy_j = "counter", counter_j
    elif integrated_j is not None:
        method, energy_j = "integrated_power", integrated_j
    else:
        method, energy_j = None, None
    disagreement = calc.relative_difference(integrated_j, counter_j)
    if disagreement is not None and abs(disagreement) > DISAGREEMENT_NOTE:
        notes.append(f"integrated power differs from the energy counter by {disagreement:+.0%}")
    if duration < SHORT_WINDOW_S:
        notes.append(f"window of {duration:.3f} s is short for the energy counter (updates every 20-100 ms)")

    # Reasons never read (an unsupported API) are unknown, not "not throttled".
    masks = [r["clocks_event_reasons"] for r in inside if r.get("clocks_event_reasons") is not None]
    return {
        "energy_j": energy_j,
        "method": method,
        "counter_energy_j": counter_j,
        "integrated_energy_j": integrated_j,
        "integral_vs_counter_rel": disagreement,
        "power_field": power_field,
        "avg_power_w": energy_j / duration if energy_j is not None and duration > 0 else None,
        "peak_power_w": max(powers) if powers else None,
        "duration_s": duration,
        "n_samples": len(inside),
        "power_w": {f: calc.series_stats(_values(inside, f)) for f in power_fields},
        **{f: calc.series_stats(_values(inside, f)) for f in STAT_FIELDS},
        "memory_used_bytes_max": max((v for v in _values(inside, "memory_used_bytes") if v is not None), default=None),
        "throttle": calc.throttle_stats(masks) if masks else None,
        "unavailable": dict(unavailable or {}),
        "notes": notes,
    }


def combine_throttle(per_device: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """Any-device view of the throttle figures: reasons seen on any, worst share, flags OR-ed.

    None (unknown) when no device's reasons were read, or when some device's were not and none of
    the others throttled: that device may have, so "not throttled" would be a guess.
    """
    known = [t for t in per_device if t]
    if not known or (len(known) < len(per_device) and not any(bool(t["throttled"]) for t in known)):
        return None
    seen: list[str] = []
    for t in known:
        seen.extend(n for n in t["reasons_seen"] if n not in seen)
    shares = [t["throttled_share"] for t in known if t["throttled_share"] is not None]
    return {
        "reasons_seen": seen,
        "throttled": any(bool(t["throttled"]) for t in known),
        "power_capped": any(bool(t["power_capped"]) for t in known),
        "thermal": any(bool(t["thermal"]) for t in known),
        "throttled_share_max": max(shares) if shares else None,
    }
