"""What was not measured is never reported as 0 J, 0 W or "not throttled": a counter that did
not advance, sensors that read 0 W, clock-event reasons that could not be read. Driven by the
stand-in pynvml of tests/fixtures/telemetry (trace: 100 -> 300 W over 2 s, 400 J)."""

from __future__ import annotations

import json
from typing import Any

import pynvml
import pytest
import torch
from load_helpers import FAKE_PYNVML, load_module

from aibench.telemetry import calc, open_telemetry
from aibench.telemetry.window import combine_throttle, device_window

fake = load_module("aibench_test_fake_pynvml_unmeasured", FAKE_PYNVML)
STEP_S = 0.1


def _window(trace: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    clock = fake.FakeClock()
    nvml = fake.make_module(clock, trace, **kwargs)
    tele = open_telemetry([torch.device("cuda", 0)], nvml=nvml, clock=clock, sleep=clock.advance, inline=True)
    s = tele.measure_energy(lambda: clock.advance(STEP_S), lambda: None, min_duration_s=2.0,
                            work={"tokens": 4}).summary
    json.dumps(s, allow_nan=False)
    tele.close()
    return s


def _trace(**constant: int) -> dict[str, Any]:
    trace = fake.load_trace()
    for row in trace["rows"]:
        row.update(constant)
    return trace


def test_a_counter_that_does_not_advance_is_not_zero_joules() -> None:
    """A stuck energy counter (amdsmi on some MI100/VM guests, a frozen NVML counter) read 0 J
    and 0 W as a measurement while the power sensor saw 100-300 W."""
    s = _window(_trace(energy_mj=15050718))
    (dev,) = s["devices"]
    assert dev["counter_energy_j"] is None
    assert any("did not advance" in n for n in dev["notes"])
    assert s["method"] == "integrated_power"
    assert s["energy_j"] == pytest.approx(400.0, rel=1e-12)
    assert s["avg_power_w"] == pytest.approx(200.0, rel=1e-12)
    assert s["per_unit"]["j_per_token"] == pytest.approx(5.0, rel=1e-12)


def test_sensors_reading_zero_watts_are_not_a_measurement() -> None:
    """Counter stuck and both power readings 0 W: no energy at all, said why, never 0 J / 0 W."""
    s = _window(_trace(energy_mj=15050718, power_instant_mw=0, power_usage_mw=0))
    (dev,) = s["devices"]
    assert s["energy_j"] is None and s["avg_power_w"] is None and s["method"] is None
    assert s["energy_per_call_j"] is None and s["per_unit"] == {"j_per_token": None, "tokens_per_j": None}
    assert dev["integrated_energy_j"] is None and dev["peak_power_w"] is None
    assert any("0 W" in n for n in dev["notes"])


def test_zero_watt_instant_field_yields_to_the_averaged_one() -> None:
    """A binding that answers NVML_SUCCESS with 0 for the instantaneous field: the 1 s average is
    integrated instead (labelled as such), not a 0 W peak."""
    s = _window(_trace(power_instant_mw=0))
    (dev,) = s["devices"]
    assert dev["power_field"] == "power_usage_w"
    assert dev["peak_power_w"] == 200.0 and s["peak_power_w"] == 200.0
    assert s["method"] == "counter" and s["energy_j"] == 400.0


def test_device_window_zero_power_without_counter_is_none() -> None:
    rows = [{"t": t, "power_instant_w": 0.0, "energy_counter_mj": None} for t in (0.0, 0.5, 1.0)]
    out = device_window(rows, t0=0.0, t1=1.0, power_fields=("power_instant_w",),
                        counter_field="energy_counter_mj", counter_per_j=1000)
    assert out["energy_j"] is None and out["avg_power_w"] is None and out["method"] is None


def test_unreadable_clock_event_reasons_are_not_not_throttled() -> None:
    """Neither reasons API answers: throttling is unknown (None), never `throttled: False`."""
    s = _window(raise_on={"nvmlDeviceGetCurrentClocksEventReasons": pynvml.NVML_ERROR_NOT_SUPPORTED,
                          "nvmlDeviceGetCurrentClocksThrottleReasons": pynvml.NVML_ERROR_NOT_SUPPORTED})
    (dev,) = s["devices"]
    assert dev["throttle"] is None and s["throttle"] is None
    assert "Not Supported" in dev["unavailable"]["clocks_event_reasons"]


def test_combine_throttle_with_an_unknown_device() -> None:
    calm = calc.throttle_stats([0, 0x1])
    hot = calc.throttle_stats([0x4, 0x4])
    # One device not throttled, the other unknown: the case's throttling is unknown.
    assert combine_throttle([calm, None]) is None
    # One device known to throttle: the case throttled, whatever the unknown one did.
    out = combine_throttle([hot, None])
    assert out is not None and out["throttled"] is True and out["reasons_seen"] == ["SwPowerCap"]
    assert combine_throttle([calm, calm]) is not None
