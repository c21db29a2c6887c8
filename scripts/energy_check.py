"""GPU check of aibench.telemetry (the telemetry issue's cross-check): NVML call costs, the energy
counter's update period, an idle baseline, a long bf16 matmul energy window (counter energy
against integrated power: they should agree within 5%), clocks, throttle reasons and the
samplers' own overhead (budget: 2% of one core).

    python scripts/energy_check.py [--seconds 30] [--out DIR]   # summary.json, samples.csv in DIR ($OUT, /tmp)

The pieces are functions over an NVML module and a Telemetry, so that the tests drive them with
the stand-in pynvml of tests/fixtures/telemetry (no GPU) before a lease is spent on them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# What the matmul window reports of each device (every key the telemetry's device figures carry).
DEVICE_KEYS = ("counter_energy_j", "integrated_energy_j", "integral_vs_counter_rel", "power_field", "n_samples",
               "sm_clock_mhz", "temperature_c", "gpu_util_pct", "unavailable", "power_limit_w", "name", "uuid")
WINDOW_KEYS = ("method", "energy_j", "calls", "duration_s", "energy_per_call_j", "avg_power_w", "peak_power_w",
               "per_unit", "throttle", "notes")


def nvml_costs(nvml: Any, handle: Any, repeats: int = 200) -> dict[str, float]:
    """Microseconds of host time per call of each NVML query the sampler makes."""
    calls: dict[str, Callable[[], object]] = {
        "field_instant": lambda: nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT]),
        "power_usage": lambda: nvml.nvmlDeviceGetPowerUsage(handle),
        "energy": lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle),
        "clock_sm": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
        "reasons": lambda: nvml.nvmlDeviceGetCurrentClocksEventReasons(handle),
        "temp": lambda: nvml.nvmlDeviceGetTemperature(handle, 0),
        "util": lambda: nvml.nvmlDeviceGetUtilizationRates(handle),
        "meminfo": lambda: nvml.nvmlDeviceGetMemoryInfo(handle),
    }
    cost = {}
    for name, call in calls.items():
        t = time.perf_counter()
        for _ in range(repeats):
            call()
        cost[name] = round((time.perf_counter() - t) / repeats * 1e6, 1)
    return cost


def counter_update_gaps(nvml: Any, handle: Any, seconds: float = 0.5,
                        clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Milliseconds between successive changes of the energy counter while polling it (idle)."""
    changes, last, end = [], nvml.nvmlDeviceGetTotalEnergyConsumption(handle), clock() + seconds
    while clock() < end:
        energy = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        if energy != last:
            changes.append(clock())
            last = energy
    return [round((b - a) * 1e3, 1) for a, b in itertools.pairwise(changes)]


def matmul_window(tele: Any, fn: Callable[[], object], sync: Callable[[], None], seconds: float,
                  flops_per_call: float) -> dict[str, Any]:
    """One energy window of `fn` repeated for `seconds`: the window's figures, the first device's,
    the achieved TFLOP/s, and the raw samples (key "samples", for the CSV)."""
    result = tele.measure_energy(fn, sync, min_duration_s=seconds, work={"flops": flops_per_call})
    s = result.summary
    device = s["devices"][0] if s.get("devices") else {}
    duration = s.get("duration_s")
    return {
        "window": {k: s.get(k) for k in WINDOW_KEYS},
        "device": {k: device.get(k) for k in DEVICE_KEYS},
        "tflops": flops_per_call * s["calls"] / duration / 1e12 if duration else None,
        "summary": s,
        "samples": result.samples,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the matmul energy window")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp")))
    args = ap.parse_args(argv)

    import pynvml
    import torch

    from aibench.telemetry import open_telemetry, write_samples_csv

    if not torch.cuda.is_available():
        print("energy_check: no GPU visible; nothing to check", file=sys.stderr)
        return 2
    dev = torch.device("cuda", 0)
    print("torch", torch.__version__, torch.cuda.get_device_name(0), flush=True)
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        print("NVML call cost us:", nvml_costs(pynvml, handle), flush=True)
        print("energy counter update gaps ms (idle):", counter_update_gaps(pynvml, handle)[:20], flush=True)
    finally:
        pynvml.nvmlShutdown()

    tele = open_telemetry([dev])
    print("available", tele.available, tele.source, tele.reason, flush=True)
    idle = tele.idle_baseline(2.0)
    print("idle:", json.dumps(idle)[:1500], flush=True)
    n = 8192
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(20):  # clocks up, cuBLAS handle and workspace ready
        a @ b
    torch.cuda.synchronize(dev)
    win = matmul_window(tele, lambda: a @ b, lambda: torch.cuda.synchronize(dev), args.seconds, 2 * n**3)
    print("matmul:", json.dumps(win["window"]), flush=True)
    print("device:", json.dumps(win["device"]), flush=True)
    print("TFLOP/s:", win["tflops"], flush=True)
    overhead = tele.overhead()
    print("overhead:", json.dumps(overhead), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_samples_csv(args.out / "samples.csv", win["samples"])
    summary = {"idle": idle, "matmul": win["summary"], "tflops": win["tflops"], "overhead": overhead}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False))
    tele.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
