"""scripts/energy_check.py (step 2 of the GPU validation) driven by the stand-in pynvml: every
figure it reports exists and is right, so a short GPU lease is not lost to a KeyError."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from load_helpers import FAKE_PYNVML, SCRIPTS, load_module

from aibench.results.samples_csv import write_samples_csv
from aibench.telemetry import open_telemetry

energy_check = load_module("energy_check", SCRIPTS / "energy_check.py")
fake = load_module("aibench_test_fake_pynvml_ec", FAKE_PYNVML)


def test_matmul_window_reports_every_figure(tmp_path: Path) -> None:
    """The trace's power ramps 100 -> 300 W over 2 s with the counter its exact integral (400 J)."""
    clock = fake.FakeClock()
    nvml = fake.make_module(clock)
    tele = open_telemetry([torch.device("cuda", 0)], nvml=nvml, clock=clock, sleep=clock.advance, inline=True)
    win = energy_check.matmul_window(tele, lambda: clock.advance(0.1), lambda: None, 2.0, flops_per_call=1e12)
    assert set(win["window"]) == set(energy_check.WINDOW_KEYS)
    assert set(win["device"]) == set(energy_check.DEVICE_KEYS)
    assert all(win["device"][k] is not None for k in ("counter_energy_j", "integrated_energy_j", "n_samples", "name"))
    w, d = win["window"], win["device"]
    assert w["method"] == "counter" and w["energy_j"] == pytest.approx(400.0)
    assert d["integrated_energy_j"] == pytest.approx(d["counter_energy_j"], rel=0.05)  # the 5%
    assert win["tflops"] == pytest.approx(1e12 * w["calls"] / w["duration_s"] / 1e12)
    write_samples_csv(tmp_path / "samples.csv", win["samples"])
    json.dumps({"matmul": win["summary"], "overhead": tele.overhead()}, allow_nan=False)  # what main() writes
    tele.close()


def test_nvml_costs_and_counter_gaps_use_only_real_calls() -> None:
    clock = fake.FakeClock()
    nvml = fake.make_module(clock)
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    cost = energy_check.nvml_costs(nvml, handle, repeats=3)
    assert cost.pop("unavailable") == {}
    assert set(cost) == {"field_instant", "power_usage", "energy", "clock_sm", "reasons", "temp", "util", "meminfo"}
    assert all(v >= 0 for v in cost.values())

    ticks = iter(i * 0.01 for i in range(1000))

    def polling_clock() -> float:  # every poll 10 ms later; the fake counter follows the fake clock
        t = next(ticks)
        clock.now_us = int(t * 1e6)
        return t

    gaps = energy_check.counter_update_gaps(nvml, handle, seconds=0.5, clock=polling_clock)
    assert gaps and all(g > 0 for g in gaps)


def test_main_without_a_gpu_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: main() would measure")
    assert energy_check.main(["--seconds", "1", "--out", str(tmp_path)]) == 2
    assert "no GPU visible" in capsys.readouterr().err


def test_a_query_this_gpu_refuses_costs_none_and_the_rest_still_run() -> None:
    """One NVML query a driver or binding lacks must not end the check before its matmul window."""
    nvml = fake.make_module(fake.FakeClock(), raise_on={"nvmlDeviceGetCurrentClocksEventReasons": 3})
    cost = energy_check.nvml_costs(nvml, nvml.nvmlDeviceGetHandleByIndex(0), repeats=2)
    assert cost["reasons"] is None
    assert cost["unavailable"] == {"reasons": "NVMLError_NotSupported: Not Supported"}
    assert cost["meminfo"] is not None and cost["meminfo"] >= 0  # the queries after it ran


@pytest.fixture
def stand_in_gpu(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """main() on the CPU: torch sees a GPU, NVML is the stand-in, the matmul is a step of the
    fake clock (1 TFLOP a call, 0.1 s), the telemetry samples inline on that clock."""
    import aibench.telemetry

    clock = fake.FakeClock()
    nvml = fake.make_module(clock)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _i=0: "NVIDIA H100 80GB HBM3 (stand-in)")
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(energy_check, "counter_update_gaps", lambda _nvml, _handle: [100.0, 100.0])
    monkeypatch.setattr(aibench.telemetry, "open_telemetry", lambda devices: open_telemetry(
        devices, nvml=nvml, clock=clock, sleep=clock.advance, inline=True))

    def use(matmul: Callable[..., Any] | None = None) -> None:
        monkeypatch.setattr(energy_check, "bf16_matmul", matmul or (
            lambda _dev: (lambda: clock.advance(0.1), lambda: None, 1e12)))

    return use


def test_main_writes_every_stage(tmp_path: Path, stand_in_gpu: Callable[..., None]) -> None:
    stand_in_gpu()
    assert energy_check.main(["--seconds", "1", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["finished"] and summary["errors"] == {}
    assert summary["device"] == "NVIDIA H100 80GB HBM3 (stand-in)" and summary["date"]
    assert summary["telemetry"]["available"] and summary["idle"]["available"]
    assert summary["matmul"]["energy_j"] > 0 and summary["tflops"] == pytest.approx(10.0)
    assert set(summary["overhead"]) >= {"cpu_share_of_one_core", "within_budget"}
    assert summary["nvml_call_us"]["unavailable"] == {}
    assert (tmp_path / "samples.csv").read_text().count("\n") > 1


def test_a_failed_matmul_keeps_what_was_measured_before_it(tmp_path: Path, stand_in_gpu: Callable[..., None]) -> None:
    def out_of_memory(_dev: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 128.00 MiB\ndetails")

    stand_in_gpu(out_of_memory)
    assert energy_check.main(["--seconds", "1", "--out", str(tmp_path)]) == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["finished"] and "matmul" not in summary
    assert summary["errors"] == {"matmul": "OutOfMemoryError: CUDA out of memory. Tried to allocate 128.00 MiB"}
    assert summary["idle"]["available"] and "overhead" in summary  # before and after it: kept
