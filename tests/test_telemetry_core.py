"""Telemetry as the runner sees it: unavailable paths, the real sampler thread, CSV, amdsmi."""

from __future__ import annotations

import csv
import json
import time
import types
from pathlib import Path

import pytest
import torch

from aibench.results.samples_csv import write_samples_csv
from aibench.telemetry import Telemetry, open_telemetry, unavailable_summary
from aibench.telemetry import sampler as sampler_mod
from aibench.telemetry.sampler import Sampler


class ConstantReader:
    """A device drawing 250 W whose counter counts mJ of real time; can be made to fail."""

    power_fields = ("power_instant_w",)
    counter_field = "energy_counter_mj"
    counter_per_j = 1000
    counter_max = None

    def __init__(self, fail: bool = False) -> None:
        self.info = {"index": 0, "name": "constant", "uuid": None}
        self.unavailable: dict[str, str] = {}
        self.fail = fail
        self.closed = False

    def read(self, t: float, full: bool, counter: bool) -> dict[str, object]:
        if self.fail:
            raise RuntimeError("sensor fell off")
        return {"power_instant_w": 250.0, "energy_counter_mj": round(t * 250_000), "clocks_event_reasons": 0}

    def close(self) -> None:
        self.closed = True


def test_unavailable_summary_shape() -> None:
    assert unavailable_summary("no RAPL domains") == {"available": False, "reason": "no RAPL domains"}


def test_nothing_to_measure_on_this_machine(tmp_path: Path) -> None:
    # No NVML library here (or a stand-in that says so) and no RAPL: available False with the reason.
    tele = open_telemetry([torch.device("cpu")], rapl_root=tmp_path)
    assert tele.available is False and tele.source == "unavailable" and "no RAPL domains" in tele.reason
    calls = []
    syncs = []
    result = tele.measure_energy(lambda: calls.append(1), lambda: syncs.append(1), min_duration_s=5.0)
    assert calls == [1] and len(syncs) == 2  # fn still runs, between two syncs, once
    s = result.summary
    json.dumps(s, allow_nan=False)
    assert s["available"] is False and s["reason"] == tele.reason and s["source"] == "unavailable"
    assert s["energy_j"] is None and s["energy_per_call_j"] is None  # never 0
    assert s["devices"] == [] and s["method"] is None
    assert tele.idle_baseline(0.5) == {"available": False, "reason": tele.reason, "source": "unavailable"}
    assert tele.overhead()["cpu_share_of_one_core"] is None
    tele.close()
    tele.close()  # idempotent


def test_open_never_raises() -> None:
    broken = types.ModuleType("pynvml")

    def explode() -> None:
        raise RuntimeError("driver/library version mismatch")

    broken.NVMLError = type("NVMLError", (Exception,), {})  # type: ignore[attr-defined]
    broken.nvmlInit = explode  # type: ignore[attr-defined]
    tele = open_telemetry([torch.device("cuda", 0)], nvml=broken)
    assert tele.available is False and "RuntimeError: driver/library version mismatch" in tele.reason
    assert open_telemetry([]).reason == "no devices to measure"
    assert "must be positive" in open_telemetry([torch.device("cpu")], interval_s=0.0).reason


def test_thread_samples_in_background_and_reports_overhead() -> None:
    reader = ConstantReader()
    tele = Telemetry("nvml", [reader], interval_s=0.002)
    result = tele.measure_energy(lambda: time.sleep(0.001), lambda: None, min_duration_s=0.06)
    s = result.summary
    assert s["calls"] >= 1 and s["duration_s"] >= 0.06
    (dev,) = s["devices"]
    assert dev["n_samples"] >= 4  # two boundary reads and some from the thread
    assert s["method"] == "counter"
    # The stand-in counter is 250 W of clock time, so the energy matches the window to a mJ per end.
    assert s["energy_j"] == pytest.approx(250.0 * s["duration_s"], abs=2e-3)
    over = tele.overhead()
    assert over["interval_s"] == 0.002 and over["budget"] == 0.02
    assert over["cpu_share_of_one_core"] is not None and over["cpu_share_of_one_core"] >= 0
    (per,) = over["devices"]
    assert per["jitter"]["n"] >= 1 and per["thread_wall_s"] > 0 and per["errors"] == 0
    assert not tele.samplers[0].running
    tele.close()
    assert reader.closed


def test_thread_keeps_going_when_a_reader_raises() -> None:
    sampler = Sampler(ConstantReader(fail=True), interval_s=0.001)
    sampler.start()
    deadline = time.monotonic() + 5.0
    while sampler.errors < 3 and time.monotonic() < deadline:
        time.sleep(0.002)
    sampler.stop()
    assert sampler.errors >= 3
    assert all("RuntimeError: sensor fell off" in r["error"] for r in sampler.rows)


def test_fn_exception_stops_the_threads() -> None:
    tele = Telemetry("nvml", [ConstantReader()], interval_s=0.002)

    def boom() -> None:
        raise ValueError("kernel failed")

    with pytest.raises(ValueError):
        tele.measure_energy(boom, lambda: None, min_duration_s=1.0)
    assert not tele.samplers[0].running


class BurningReader(ConstantReader):
    """A reader whose every read costs `cpu_s` of this thread's CPU (a slow driver call)."""

    def __init__(self, cpu_s: float) -> None:
        super().__init__()
        self.cpu_s = cpu_s

    def read(self, t: float, full: bool, counter: bool) -> dict[str, object]:
        end = time.thread_time() + self.cpu_s
        while time.thread_time() < end:
            pass
        return super().read(t, full, counter)


@pytest.mark.parametrize(("cpu_s", "capped"), [(0.0005, False), (0.005, True)])
def test_sampler_over_its_cpu_budget_stretches_its_interval(
    monkeypatch: pytest.MonkeyPatch, cpu_s: float, capped: bool
) -> None:
    """0.5 ms reads every 10 ms cost ~5% of a core: the interval grows until they cost ~1%.
    5 ms reads would need 0.5 s: the interval stops at MAX_INTERVAL_S and the record says so."""
    monkeypatch.setattr(sampler_mod, "BUDGET_CHECK_S", 0.15)
    sampler = Sampler(BurningReader(cpu_s), interval_s=0.01)
    sampler.start()
    deadline = time.monotonic() + 5.0
    while not sampler.stretches and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    over = sampler.overhead()
    assert over["requested_interval_s"] == 0.01
    (first, *_) = over["stretches"]
    assert first["cpu_share"] > sampler_mod.OVERHEAD_BUDGET
    if capped:
        assert over["interval_s"] == sampler_mod.MAX_INTERVAL_S
    else:
        # The stretch aims at half the budget: the interval grows by share / 1%. (The measured share
        # depends on how busy this machine is; the rule applied to it does not.)
        expected = 0.01 * first["cpu_share"] / (sampler_mod.OVERHEAD_BUDGET / 2)
        assert first["interval_s"] == pytest.approx(min(expected, sampler_mod.MAX_INTERVAL_S))
        assert 0.01 < over["interval_s"] <= sampler_mod.MAX_INTERVAL_S


def test_cheap_sampler_keeps_its_interval() -> None:
    sampler = Sampler(ConstantReader(), interval_s=0.01)
    sampler._keep_within_budget(0.019, 1.0)  # under 2%: nothing changes
    assert sampler.interval_s == 0.01 and sampler.stretches == []
    sampler._keep_within_budget(0.04, 2.0)  # 4%: the interval grows 4x, where the same cost is 1%
    assert sampler.interval_s == pytest.approx(0.04) and sampler.stretches[0]["at_s"] == 2.0


def test_sampler_rejects_bad_interval() -> None:
    with pytest.raises(ValueError):
        Sampler(ConstantReader(), interval_s=0)


def test_write_samples_csv_roundtrip(tmp_path: Path) -> None:
    rows = [
        {"device": 0, "t_rel_s": 0.0, "power_instant_w": 100.5, "clocks_event_names": ""},
        {"device": 0, "t_rel_s": 0.015, "power_instant_w": None, "temperature_c": 41},
    ]
    path = tmp_path / "run" / "telemetry.csv"
    write_samples_csv(path, rows)
    with path.open(newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["device", "t_rel_s", "power_instant_w", "clocks_event_names", "temperature_c"]
    assert got[0]["power_instant_w"] == "100.5" and got[0]["temperature_c"] == ""
    assert got[1]["power_instant_w"] == "" and got[1]["temperature_c"] == "41"  # missing is empty, not 0
    write_samples_csv(tmp_path / "empty.csv", [])
    assert (tmp_path / "empty.csv").read_text() == ""


def _fake_amdsmi(energy_key: str = "energy_accumulator") -> types.ModuleType:
    mod = types.ModuleType("amdsmi")
    state = {"ticks": 1_000_000}

    class AmdSmiException(Exception):
        pass

    mod.AmdSmiException = AmdSmiException  # type: ignore[attr-defined]
    mod.AmdSmiInitFlags = types.SimpleNamespace(INIT_AMD_GPUS=2)  # type: ignore[attr-defined]
    mod.AmdSmiClkType = types.SimpleNamespace(GFX=0, MEM=1)  # type: ignore[attr-defined]
    mod.AmdSmiTemperatureType = types.SimpleNamespace(EDGE=0, HOTSPOT=1)  # type: ignore[attr-defined]
    mod.AmdSmiTemperatureMetric = types.SimpleNamespace(CURRENT=0)  # type: ignore[attr-defined]
    mod.state = state  # type: ignore[attr-defined]
    mod.amdsmi_init = lambda flags=None: None  # type: ignore[attr-defined]
    mod.amdsmi_shut_down = lambda: None  # type: ignore[attr-defined]
    mod.amdsmi_get_processor_handles = lambda: ["gpu0"]  # type: ignore[attr-defined]
    mod.amdsmi_get_gpu_asic_info = lambda h: {"market_name": "AMD Instinct MI300X"}  # type: ignore[attr-defined]
    mod.amdsmi_get_gpu_device_uuid = lambda h: "1fff74a1-0000-1000-80d8-b7f8d2a0b7a1"  # type: ignore[attr-defined]
    mod.amdsmi_get_power_info = lambda h: {  # type: ignore[attr-defined]
        "current_socket_power": 600,
        "average_socket_power": "N/A",
        "power_limit": 750,
    }
    # 15.3 uJ per tick, as MI300X reports its counter resolution.
    mod.amdsmi_get_energy_count = lambda h: {  # type: ignore[attr-defined]
        energy_key: state["ticks"],
        "counter_resolution": 15.3,
        "timestamp": 0,
    }
    mod.amdsmi_get_clock_info = lambda h, kind: {"clk": 2100 if kind == 0 else 1300}  # type: ignore[attr-defined]

    def temp(h: object, sensor: int, metric: int) -> int:
        raise AmdSmiException("AMDSMI_STATUS_NOT_SUPPORTED")

    mod.amdsmi_get_temp_metric = temp  # type: ignore[attr-defined]
    mod.amdsmi_get_gpu_activity = lambda h: {"gfx_activity": 99, "umc_activity": 30}  # type: ignore[attr-defined]
    return mod


@pytest.mark.parametrize("energy_key", ["energy_accumulator", "power"])  # newer and older amdsmi spelling
def test_amdsmi_stand_in(energy_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)  # set, they make amdsmi match by PCI address
    smi = _fake_amdsmi(energy_key)
    now = [0.0]
    tele = open_telemetry(
        [torch.device("cuda", 0)], amdsmi=smi, clock=lambda: now[0], sleep=lambda s: None, inline=True
    )
    assert tele.available and tele.source == "amdsmi"

    def fn() -> None:
        now[0] += 0.5
        smi.state["ticks"] += 1_000_000  # 15.3 J per call

    s = tele.measure_energy(fn, lambda: None, min_duration_s=1.0).summary
    (dev,) = s["devices"]
    assert dev["name"] == "AMD Instinct MI300X" and dev["uuid"].startswith("1fff74a1")
    assert s["method"] == "counter" and s["calls"] == 2
    assert s["energy_j"] == pytest.approx(30.6, rel=1e-12)
    assert dev["power_field"] == "power_instant_w" and dev["peak_power_w"] == 600.0
    assert dev["power_w"]["power_usage_w"] is None  # "N/A" is missing, never 0
    assert dev["sm_clock_mhz"]["mean"] == 2100 and dev["mem_clock_mhz"]["mean"] == 1300
    assert dev["temperature_c"] is None and "NOT_SUPPORTED" in dev["unavailable"]["temperature_c"]
    assert dev["gpu_util_pct"]["mean"] == 99
    tele.close()


def test_amdsmi_not_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "amdsmi", None)
    monkeypatch.setattr(torch.version, "hip", "6.2", raising=False)
    tele = open_telemetry([torch.device("cuda", 0)])
    assert tele.available is False and tele.reason.startswith("amdsmi is not importable")


@pytest.mark.gpu
def test_real_gpu_energy_window() -> None:
    device = torch.device("cuda", torch.cuda.current_device())
    tele = open_telemetry([device])
    assert tele.available, tele.reason
    a = torch.randn(4096, 4096, device=device, dtype=torch.bfloat16)
    b = torch.randn(4096, 4096, device=device, dtype=torch.bfloat16)
    flops = 2 * 4096**3
    result = tele.measure_energy(lambda: a @ b, lambda: torch.cuda.synchronize(device), work={"flops": flops})
    s = result.summary
    json.dumps(s, allow_nan=False)
    assert s["method"] in ("counter", "integrated_power")
    assert s["energy_j"] > 0 and s["avg_power_w"] > 0 and s["duration_s"] >= 2.0
    assert s["per_unit"]["j_per_tflop"] > 0
    assert s["devices"][0]["uuid"]
    tele.close()


def test_a_gpu_run_samples_every_visible_gpu_its_own_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from aibench.suite.session import telemetry_devices

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert telemetry_devices(torch.device("cuda", 2)) == [torch.device("cuda", i) for i in (2, 0, 1, 3)]
    assert telemetry_devices(torch.device("cpu")) == [torch.device("cpu")]  # RAPL packages


def test_a_graph_replay_of_several_calls_counts_each_call() -> None:
    """An energy window that replays a CUDA graph of 4 calls per fn call: energy per call and per
    unit of work are per operation, as the timer's samples are."""
    tele = Telemetry("nvml", [ConstantReader()], interval_s=0.002)
    fn_calls: list[int] = []
    s = tele.measure_energy(lambda: (time.sleep(0.001), fn_calls.append(1)), lambda: None, min_duration_s=0.03,
                            work={"tokens": 8.0}, calls_per_fn=4).summary
    assert s["calls"] == 4 * len(fn_calls)
    assert s["energy_per_call_j"] == pytest.approx(s["energy_j"] / (4 * len(fn_calls)))
    assert s["per_unit"]["j_per_token"] == pytest.approx(s["energy_per_call_j"] / 8.0)
    tele.close()
