"""NVML path against a stand-in pynvml replaying tests/fixtures/telemetry/nvml_trace.json.

The trace ramps instantaneous power 100 -> 300 W over 2 s (so the trapezoid is exact) with the
energy counter its exact integral: 400 J over the window, 20 J per call of 0.1 s.
"""

from __future__ import annotations

import json
import sys

import pynvml
import pytest
import torch
from load_helpers import FAKE_PYNVML, load_module

from aibench.measure.records import Record, validate
from aibench.telemetry import nvml as nvml_module
from aibench.telemetry import open_telemetry
from aibench.telemetry.nvml import nvml_index_for

fake = load_module("aibench_test_fake_pynvml", FAKE_PYNVML)
CUDA0 = torch.device("cuda", 0)
STEP_S = 0.1


def _open(clock, **kwargs):
    nvml = fake.make_module(clock, **kwargs)
    tele = open_telemetry([CUDA0], nvml=nvml, clock=clock, sleep=clock.advance, inline=True)
    return tele, nvml


def _measure(tele, clock, **kwargs):
    calls = []

    def fn() -> None:
        calls.append(clock())
        clock.advance(STEP_S)

    result = tele.measure_energy(fn, lambda: None, min_duration_s=2.0, **kwargs)
    return result, calls


def test_counter_energy_power_ramp_and_throttle_episode() -> None:
    clock = fake.FakeClock()
    tele, nvml = _open(clock, raise_on={"nvmlDeviceGetUtilizationRates": pynvml.NVML_ERROR_NOT_SUPPORTED})
    assert tele.available and tele.source == "nvml" and tele.reason is None
    result, calls = _measure(tele, clock, work={"flops": 2e12, "tokens": 4})
    s = result.summary
    json.dumps(s, allow_nan=False)  # goes into record["telemetry"] as is
    device = {"spec": "cuda:0", "kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "index": 0}
    validate(Record(id="w[]/b", workload="w", backend="b", params={}, device=device, status="skipped",
                    telemetry=s).to_dict())

    assert s["available"] is True and s["reason"] is None and s["source"] == "nvml"
    assert len(calls) == s["calls"] == 20
    assert s["duration_s"] == 2.0
    assert s["method"] == "counter"
    assert s["energy_j"] == 400.0  # E(2 s) - E(0) of the counter: 400000 mJ
    assert s["energy_per_call_j"] == 20.0
    assert s["avg_power_w"] == 200.0
    assert s["peak_power_w"] == 300.0
    assert s["per_unit"] == {"j_per_tflop": 10.0, "tflop_per_j": 0.1, "j_per_token": 5.0, "tokens_per_j": 0.2}

    (dev,) = s["devices"]
    assert dev["index"] == 0 and dev["nvml_index"] == 0
    assert dev["name"] == "NVIDIA H100 80GB HBM3"
    assert dev["uuid"] == "GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
    assert dev["power_limit_w"] == 700.0 and dev["driver_version"] == "570.86.15"
    assert dev["counter_energy_j"] == 400.0
    assert dev["integrated_energy_j"] == pytest.approx(400.0, rel=1e-12)
    assert abs(dev["integral_vs_counter_rel"]) < 1e-12
    assert dev["power_field"] == "power_instant_w"

    # 22 samples: the boundary reads at 0 s and 2 s and one after each of the 20 calls.
    assert dev["n_samples"] == 22 and len(result.samples) == 22
    throttle = dev["throttle"]
    assert throttle["reasons_seen"] == ["GpuIdle", "SwPowerCap", "HwThermalSlowdown"]
    assert throttle["share"] == {"GpuIdle": 1 / 22, "SwPowerCap": 5 / 22, "HwThermalSlowdown": 5 / 22}
    assert throttle["throttled_share"] == 5 / 22  # GpuIdle does not count as throttled
    assert throttle["power_capped"] and throttle["thermal"]
    assert s["throttle"]["throttled"] and s["throttle"]["power_capped"] and s["throttle"]["thermal"]
    assert dev["sm_clock_mhz"]["min"] == 1410 and dev["sm_clock_mhz"]["max"] == 1980
    # Slow fields are read at both boundaries and on every 13th sample: t = 0, 1.3 and 2.0 s.
    assert dev["temperature_c"]["n"] == 3 and dev["temperature_c"]["mean"] == (40 + 53 + 60) / 3

    # The unsupported field is recorded with its reason, asked once, and sampling went on.
    assert dev["unavailable"] == {"gpu_util_pct": "NVMLError_NotSupported: Not Supported"}
    assert dev["gpu_util_pct"] is None
    assert nvml.calls["nvmlDeviceGetUtilizationRates"] == 1
    assert nvml.calls["nvmlDeviceGetTotalEnergyConsumption"] == 2  # at the two boundaries only
    assert nvml.calls["nvmlDeviceGetFieldValues"] == 22

    row = result.samples[6]  # after the 6th call: t = 0.6 s, in the throttle episode
    assert row["t_rel_s"] == pytest.approx(0.6) and row["device"] == 0
    assert row["clocks_event_reasons"] == 0x44 and row["clocks_event_names"] == "SwPowerCap|HwThermalSlowdown"
    assert row["power_instant_w"] == 160.0 and row["energy_counter_mj"] is None and row["boundary"] is False
    assert result.samples[0]["boundary"] and result.samples[-1]["boundary"]
    assert result.samples[-1]["energy_counter_mj"] - result.samples[0]["energy_counter_mj"] == 400_000
    tele.close()
    assert nvml.calls["nvmlShutdown"] == 1


def test_counter_reset_between_reads_falls_back_to_integration() -> None:
    clock = fake.FakeClock()
    tele, _ = _open(clock, energy_key="energy_mj_reloaded")
    s = tele.measure_energy(lambda: clock.advance(STEP_S), lambda: None, min_duration_s=2.0).summary
    (dev,) = s["devices"]
    assert s["method"] == dev["method"] == "integrated_power"
    assert dev["counter_energy_j"] is None
    assert s["energy_j"] == pytest.approx(400.0, rel=1e-12)
    assert any("decreased" in n and "15050718 -> 239875" in n and "fell back" in n for n in dev["notes"])


def test_instant_field_not_supported_uses_averaged_power_labelled_as_such() -> None:
    clock = fake.FakeClock()
    tele, _ = _open(clock, instant_return=pynvml.NVML_ERROR_NOT_SUPPORTED, energy_key="energy_mj_reloaded")
    s = tele.measure_energy(lambda: clock.advance(STEP_S), lambda: None, min_duration_s=2.0).summary
    (dev,) = s["devices"]
    assert dev["unavailable"]["power_instant_w"] == "NVMLError_NotSupported: Not Supported"
    assert dev["power_field"] == "power_usage_w"
    assert "1 s average" in dev["power_fields"]["power_usage_w"]
    # power_usage: 100 W until 1.0 s, then +10 W per 0.1 s up to 200 W at 2.0 s.
    assert s["energy_j"] == pytest.approx(100.0 + 150.0, rel=1e-12)
    assert dev["power_w"]["power_instant_w"] is None


def test_missing_energy_counter_integrates_power() -> None:
    clock = fake.FakeClock()
    tele, _ = _open(clock, raise_on={"nvmlDeviceGetTotalEnergyConsumption": pynvml.NVML_ERROR_NOT_SUPPORTED})
    s = tele.measure_energy(lambda: clock.advance(STEP_S), lambda: None, min_duration_s=2.0).summary
    assert s["method"] == "integrated_power"
    assert s["energy_j"] == pytest.approx(400.0, rel=1e-12)
    assert s["devices"][0]["integral_vs_counter_rel"] is None
    assert any("Not Supported" in n for n in s["devices"][0]["notes"])


def test_transient_error_is_retried_and_recorded() -> None:
    clock = fake.FakeClock()
    tele, nvml = _open(clock, raise_on={"nvmlDeviceGetClockInfo": pynvml.NVML_ERROR_UNKNOWN})
    s = tele.measure_energy(lambda: clock.advance(STEP_S), lambda: None, min_duration_s=0.5).summary
    assert s["method"] == "counter"
    assert s["devices"][0]["sm_clock_mhz"] is None
    assert "Unknown" in s["devices"][0]["unavailable"]["sm_clock_mhz"]
    assert nvml.calls["nvmlDeviceGetClockInfo"] == 2 * 7  # SM and memory clock, every one of 7 samples


def test_clock_event_reasons_fall_back_to_throttle_reasons() -> None:
    clock = fake.FakeClock()
    tele, nvml = _open(
        clock, raise_on={"nvmlDeviceGetCurrentClocksEventReasons": pynvml.NVML_ERROR_FUNCTION_NOT_FOUND}
    )
    s = tele.measure_energy(lambda: clock.advance(STEP_S), lambda: None, min_duration_s=2.0).summary
    dev = s["devices"][0]
    assert dev["clocks_event_api"] == "nvmlDeviceGetCurrentClocksThrottleReasons"
    assert dev["throttle"]["share"]["SwPowerCap"] == 5 / 22
    assert nvml.calls["nvmlDeviceGetCurrentClocksEventReasons"] == 1


def test_idle_baseline_with_fake_clock() -> None:
    clock = fake.FakeClock()
    tele, _ = _open(clock)
    base = tele.idle_baseline(duration_s=0.5)
    json.dumps(base, allow_nan=False)
    assert base["available"] is True and base["source"] == "nvml"
    (dev,) = base["devices"]
    assert dev["method"] == "counter"
    # Counter over 0..0.5 s: 10000*5 + 500*25 mJ = 62.5 J, so 125 W on average.
    assert base["duration_s"] == 0.5
    assert dev["energy_j"] == 62.5 and dev["mean_power_w"] == 125.0 == base["mean_power_w"]
    assert dev["sm_clock_mhz"] is not None and dev["temperature_c"] is not None
    assert dev["throttle_reasons_seen"] == ["GpuIdle", "SwPowerCap", "HwThermalSlowdown"]


def test_nvml_library_missing_is_unavailable_and_still_calls_fn() -> None:
    clock = fake.FakeClock()
    tele, _ = _open(clock, init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    assert tele.available is False and tele.source == "unavailable"
    assert tele.reason == "pynvml: NVML Shared Library Not Found"
    calls = []
    result = tele.measure_energy(lambda: calls.append(1), lambda: None, work={"tokens": 3})
    assert calls == [1]
    s = result.summary
    assert s["available"] is False and s["reason"] == tele.reason
    assert s["energy_j"] is None and s["energy_per_call_j"] is None and s["method"] is None
    assert s["per_unit"] == {"j_per_token": None, "tokens_per_j": None}
    assert result.samples == []


def test_pynvml_not_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    tele = open_telemetry([CUDA0])
    assert tele.available is False and tele.reason.startswith("pynvml is not importable")


def test_device_beyond_nvml_count_is_unavailable() -> None:
    clock = fake.FakeClock()
    nvml = fake.make_module(clock)
    tele = open_telemetry([torch.device("cuda", 3)], nvml=nvml, clock=clock, inline=True)
    assert tele.available is False and "no NVML device matches cuda:3" in tele.reason
    assert nvml.calls["nvmlShutdown"] == 1


def test_two_devices_sum_energy_and_list_both() -> None:
    clock = fake.FakeClock()
    nvml = fake.make_module(clock, device_count=2)
    devices = [torch.device("cuda", 0), torch.device("cuda", 1), torch.device("cuda", 1)]
    tele = open_telemetry(devices, nvml=nvml, clock=clock, sleep=clock.advance, inline=True)
    s = tele.measure_energy(lambda: clock.advance(STEP_S), lambda: None, min_duration_s=2.0).summary
    assert [d["index"] for d in s["devices"]] == [0, 1]  # the duplicate is measured once
    assert s["energy_j"] == 800.0 and s["peak_power_w"] == 600.0 and s["method"] == "counter"


def test_a_case_counts_only_the_devices_it_runs_on() -> None:
    """A run samples every visible GPU; a case on cuda:1 counts cuda:1's energy only, and says
    what the others drew meanwhile."""
    clock = fake.FakeClock()
    nvml = fake.make_module(clock, device_count=2)
    tele = open_telemetry([torch.device("cuda", 0), torch.device("cuda", 1)], nvml=nvml, clock=clock,
                          sleep=clock.advance, inline=True)
    assert tele.device_indices == [0, 1] and tele.uncovered([1, 2]) == [2]
    assert [s.budget for s in tele.samplers] == [0.01, 0.01]  # 2% of one core, shared
    s = tele.measure_energy(lambda: clock.advance(STEP_S), lambda: None, min_duration_s=2.0, devices=[1]).summary
    assert [d["index"] for d in s["devices"]] == [1]
    assert s["energy_j"] == 400.0 and s["peak_power_w"] == 300.0
    assert s["other_devices"] == [{"index": 0, "avg_power_w": pytest.approx(200.0), "energy_j": 400.0}]
    with pytest.raises(ValueError, match=r"not \[5\]"):  # part of the energy is never reported as all of it
        tele.measure_energy(lambda: clock.advance(STEP_S), lambda: None, min_duration_s=2.0, devices=[1, 5])


def test_nvml_index_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake.make_module(fake.FakeClock(), device_count=4)
    monkeypatch.setattr(nvml_module, "_torch_uuid", lambda index: None)  # as on a machine without CUDA
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert nvml_index_for(2, nvml, 4) == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert nvml_index_for(1, nvml, 4) == 3
    # UUIDs win over positions: torch's UUID has no "GPU-" prefix.
    assert nvml_index_for(1, nvml, 4, torch_uuid="0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9") == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-00000002-aaaa")
    assert nvml_index_for(0, nvml, 4) == 2
    # A torch UUID that NVML does not list falls back to CUDA_VISIBLE_DEVICES.
    assert nvml_index_for(0, nvml, 4, torch_uuid="ffffffff-0000") == 2
