"""Exact tests of the pure telemetry arithmetic (aibench/telemetry/calc.py, window.py)."""

from __future__ import annotations

import math
import random

import pytest

from aibench.telemetry import calc
from aibench.telemetry.window import combine_throttle, device_window


def test_decode_reasons_every_documented_bit() -> None:
    # Bits from shared/reference/hardware.md (NVML section).
    expected = {
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
    for bit, name in expected.items():
        assert calc.decode_reasons(bit) == [name]
    assert calc.decode_reasons(0) == []
    assert calc.decode_reasons(0x44) == ["SwPowerCap", "HwThermalSlowdown"]
    assert calc.decode_reasons(0x1FF) == list(expected.values())
    assert calc.decode_reasons(0x204) == ["SwPowerCap", "Unknown(0x200)"]
    with pytest.raises(ValueError):
        calc.decode_reasons(-1)


def test_decode_reasons_matches_pynvml_constants() -> None:
    pynvml = pytest.importorskip("pynvml")
    for name in ("GpuIdle", "SwPowerCap", "HwSlowdown", "SwThermalSlowdown", "HwThermalSlowdown", "HwPowerBrakeSlowdown"):
        assert calc.decode_reasons(getattr(pynvml, f"nvmlClocksEventReason{name}")) == [name]


def test_throttle_stats_shares_and_flags() -> None:
    masks = [0x1, 0, 0x44, 0x44, None, 0x4, 0x0]
    out = calc.throttle_stats(masks)
    assert out["n_samples"] == 6  # the unreadable sample is left out
    assert out["reasons_seen"] == ["GpuIdle", "SwPowerCap", "HwThermalSlowdown"]
    assert out["share"] == {"GpuIdle": 1 / 6, "SwPowerCap": 3 / 6, "HwThermalSlowdown": 2 / 6}
    assert out["throttled_share"] == 3 / 6
    assert out["throttled"] and out["power_capped"] and out["thermal"]


def test_throttle_stats_idle_is_not_throttled() -> None:
    out = calc.throttle_stats([0x1, 0x1, 0])
    assert out["throttled"] is False and out["throttled_share"] == 0.0
    assert out["power_capped"] is False and out["thermal"] is False
    empty = calc.throttle_stats([None, None])
    assert empty["n_samples"] == 0 and empty["throttled_share"] is None and empty["share"] == {}


def test_trapezoid_exact_on_linear_and_uneven_steps() -> None:
    assert calc.trapezoid([0.0, 1.0, 3.0], [100.0, 200.0, 400.0]) == 150.0 + 600.0
    assert calc.trapezoid([0.0, 2.0], [5.0, 5.0]) == 10.0
    assert calc.trapezoid([1.0, 1.0, 2.0], [9.0, 1.0, 1.0]) == 1.0  # a repeated time adds nothing
    assert calc.trapezoid([1.0], [3.0]) is None
    assert calc.trapezoid([], []) is None
    with pytest.raises(ValueError):
        calc.trapezoid([0.0, 1.0], [1.0])
    with pytest.raises(ValueError):
        calc.trapezoid([1.0, 0.5], [1.0, 1.0])


def test_trapezoid_random_linear_power_is_exact() -> None:
    rng = random.Random(7)
    for _ in range(20):
        times = sorted(rng.uniform(0, 10) for _ in range(rng.randint(2, 40)))
        a, b = rng.uniform(50, 700), rng.uniform(-20, 20)
        power = [a + b * t for t in times]
        exact = a * (times[-1] - times[0]) + b * (times[-1] ** 2 - times[0] ** 2) / 2
        assert calc.trapezoid(times, power) == pytest.approx(exact, rel=1e-9)


def test_counter_delta_wrap_and_reset() -> None:
    assert calc.counter_delta(100, 250) == 150
    assert calc.counter_delta(100, 100) == 0
    assert calc.counter_delta(900, 50) is None  # NVML: a decrease is a reset
    assert calc.counter_delta(900, 50, max_range=1000) == 150  # RAPL: one wrap
    assert calc.counter_delta(0, 1000, max_range=1000) == 1000


def test_counter_energy_sums_reads_and_flags_reset() -> None:
    assert calc.counter_energy([10, 20, 35]) == (25.0, None)
    assert calc.counter_energy([900, 990, 30, 60], max_range=1000) == (160.0, None)
    assert calc.counter_energy([0, 600, 200, 800, 400], max_range=1000) == (2400.0, None)  # two wraps
    energy, reason = calc.counter_energy([10, 20, 5, 15])
    assert energy is None and "decreased" in reason and "20 -> 5" in reason
    energy, reason = calc.counter_energy([10])
    assert energy is None and "fewer than two" in reason


def test_relative_difference() -> None:
    assert calc.relative_difference(110.0, 100.0) == pytest.approx(0.1)
    assert calc.relative_difference(90.0, 100.0) == pytest.approx(-0.1)
    assert calc.relative_difference(None, 100.0) is None
    assert calc.relative_difference(5.0, 0.0) is None
    assert calc.relative_difference(5.0, None) is None


def test_series_stats_ignores_missing_values() -> None:
    out = calc.series_stats([1.0, None, 3.0, 2.0, float("nan")])
    assert out == {"n": 3, "mean": 2.0, "min": 1.0, "max": 3.0, "median": 2.0, "p99": pytest.approx(2.98)}
    assert calc.series_stats([None, None]) is None
    assert calc.series_stats([]) is None


def test_per_unit_energy_figures() -> None:
    out = calc.per_unit(20.0, {"flops": 4e12, "tokens": 8, "images": 2, "bytes": 5e9})
    assert out["j_per_tflop"] == 5.0 and out["tflop_per_j"] == 0.2
    assert out["j_per_token"] == 2.5 and out["tokens_per_j"] == 0.4
    assert out["j_per_image"] == 10.0 and out["images_per_j"] == 0.1
    assert out["j_per_gb"] == 4.0 and out["gb_per_j"] == 0.25
    assert calc.per_unit(20.0, {"requests": 4}) == {"j_per_request": 5.0, "requests_per_j": 0.2}
    # Unknown energy or no work: None, never 0 or inf.
    assert calc.per_unit(None, {"tokens": 8}) == {"j_per_token": None, "tokens_per_j": None}
    assert calc.per_unit(20.0, {"tokens": 0}) == {"j_per_token": None, "tokens_per_j": None}
    assert calc.per_unit(20.0, None) == {}


def test_jitter_stats() -> None:
    out = calc.jitter_stats([0.015, 0.016, 0.017], 0.015)
    assert out["n"] == 3
    assert out["mean_s"] == pytest.approx(0.001)
    assert out["max_s"] == pytest.approx(0.002)
    assert calc.jitter_stats([], 0.015) == {"n": 0, "mean_s": None, "p99_s": None, "max_s": None}


def _rows(energy: list[int | None], power: list[float | None], masks: list[int] | None = None) -> list[dict]:
    rows = []
    for i, (e, p) in enumerate(zip(energy, power)):
        row = {"t": i * 0.5, "energy_counter_mj": e, "power_instant_w": p, "power_usage_w": 200.0}
        if masks is not None:
            row["clocks_event_reasons"] = masks[i]
        rows.append(row)
    return rows


WINDOW = {"power_fields": ("power_instant_w", "power_usage_w"), "counter_field": "energy_counter_mj", "counter_per_j": 1000}


def test_device_window_prefers_counter_and_reports_disagreement() -> None:
    rows = _rows([1000, 101000, 201000, 301000, 401000], [200.0, 200.0, 200.0, 200.0, 240.0], [0, 4, 4, 0, 0])
    out = device_window(rows, t0=0.0, t1=2.0, **WINDOW)
    assert out["method"] == "counter"
    assert out["energy_j"] == 400.0 and out["counter_energy_j"] == 400.0
    assert out["integrated_energy_j"] == 410.0
    assert out["integral_vs_counter_rel"] == pytest.approx(0.025)
    assert out["power_field"] == "power_instant_w"
    assert out["avg_power_w"] == 200.0 and out["peak_power_w"] == 240.0
    assert out["throttle"]["share"] == {"SwPowerCap": 0.4}
    assert out["n_samples"] == 5 and out["notes"] == []


def test_device_window_falls_back_when_counter_resets_or_is_missing() -> None:
    reset = device_window(_rows([1000, 101000, 50, 100050, 200050], [200.0] * 5), t0=0.0, t1=2.0, **WINDOW)
    assert reset["method"] == "integrated_power" and reset["energy_j"] == 400.0
    assert reset["counter_energy_j"] is None
    assert any("decreased" in n and "fell back" in n for n in reset["notes"])
    missing = device_window(
        _rows([None] * 5, [200.0] * 5), t0=0.0, t1=2.0, unavailable={"energy_counter_mj": "NVMLError_NotSupported: Not Supported"}, **WINDOW
    )
    assert missing["method"] == "integrated_power"
    assert any("Not Supported" in n for n in missing["notes"])


def test_device_window_uses_averaged_power_without_instant_and_none_without_any() -> None:
    out = device_window(_rows([None] * 5, [None] * 5), t0=0.0, t1=2.0, **WINDOW)
    assert out["power_field"] == "power_usage_w" and out["energy_j"] == 400.0
    rows = [{"t": 0.0}, {"t": 1.0}]
    nothing = device_window(rows, t0=0.0, t1=1.0, **WINDOW)
    assert nothing["energy_j"] is None and nothing["method"] is None and nothing["avg_power_w"] is None
    assert nothing["throttle"] is None


def test_device_window_counter_between_boundary_rows_and_disagreement_note() -> None:
    rows = _rows([1000, None, None, None, 401000], [300.0] * 5)
    rows[0]["boundary"] = rows[-1]["boundary"] = True
    rows.append({"t": 1.0, "power_instant_w": 300.0})  # a thread row appended after the last boundary
    out = device_window(rows, t0=0.0, t1=2.0, **WINDOW)
    assert out["counter_energy_j"] == 400.0 and out["integrated_energy_j"] == 600.0
    assert out["integral_vs_counter_rel"] == 0.5
    assert "integrated power differs from the energy counter by +50%" in out["notes"]


def test_device_window_ignores_rows_outside_and_notes_short_windows() -> None:
    rows = _rows([0, 1000, 2000, 3000, 4000], [2.0] * 5)
    out = device_window(rows, t0=0.5, t1=1.0, **WINDOW)
    assert out["n_samples"] == 2 and out["counter_energy_j"] == 1.0
    assert any("short" in n for n in out["notes"])


def test_combine_throttle() -> None:
    a = calc.throttle_stats([0, 0x4])
    b = calc.throttle_stats([0x1, 0x40, 0x40, 0x40])
    out = combine_throttle([a, None, b])
    assert out == {
        "reasons_seen": ["SwPowerCap", "GpuIdle", "HwThermalSlowdown"],
        "throttled": True,
        "power_capped": True,
        "thermal": True,
        "throttled_share_max": 0.75,
    }
    assert combine_throttle([None]) is None
    assert math.isclose(a["throttled_share"], 0.5)
