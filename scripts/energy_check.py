"""GPU check of aibench.telemetry (the telemetry issue's cross-check): NVML call costs, the energy
counter's update period, an idle baseline, a long bf16 matmul energy window (counter energy
against integrated power: they should agree within 5%), clocks, throttle reasons and the
samplers' own overhead (budget: 2% of one core).

    python scripts/energy_check.py [--seconds 30] [--out DIR]   # summary.json, samples.csv in DIR ($OUT, /tmp)

summary.json is rewritten (atomically) after every stage, "finished": false until the last, so a
kill keeps what was measured; a stage that fails is named under "errors" and the next one still
runs (exit 1 when the matmul window, the cross-check itself, did not complete). The pieces are
functions over an NVML module and a Telemetry, so that the tests drive them with the stand-in
pynvml of tests/fixtures/telemetry (no GPU) before a lease is spent on them.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# What the matmul window reports of each device (every key the telemetry's device figures carry).
DEVICE_KEYS = ("counter_energy_j", "integrated_energy_j", "integral_vs_counter_rel", "power_field", "n_samples",
               "sm_clock_mhz", "temperature_c", "gpu_util_pct", "unavailable", "power_limit_w", "name", "uuid")
WINDOW_KEYS = ("method", "energy_j", "calls", "duration_s", "energy_per_call_j", "avg_power_w", "peak_power_w",
               "per_unit", "throttle", "notes")


def nvml_costs(nvml: Any, handle: Any, repeats: int = 200) -> dict[str, Any]:
    """Microseconds of host time per call of each NVML query the sampler makes. A query that this
    GPU or binding refuses is None, its error under "unavailable" (the other queries still run)."""
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
    cost: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    for name, call in calls.items():
        try:
            t = time.perf_counter()
            for _ in range(repeats):
                call()
            cost[name] = round((time.perf_counter() - t) / repeats * 1e6, 1)
        except Exception as exc:  # NVMLError_NotSupported, or a binding without the function
            cost[name] = None
            unavailable[name] = _why(exc)
    cost["unavailable"] = unavailable
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


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


@contextlib.contextmanager
def _stage(summary: dict[str, Any], name: str) -> Iterator[None]:
    """Run one stage; its failure is written under summary["errors"] and the next stage runs."""
    try:
        yield
    except Exception as exc:
        summary["errors"][name] = _why(exc)
        print(f"{name} failed: {summary['errors'][name]}", flush=True)


def bf16_matmul(device: Any, n: int = 8192) -> tuple[Callable[[], object], Callable[[], None], float]:
    """The measured call (an n^3 bf16 product, warmed up: clocks up, cuBLAS handle and workspace
    ready), its sync, and its FLOPs."""
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(20):
        a @ b
    torch.cuda.synchronize(device)
    return (lambda: a @ b), (lambda: torch.cuda.synchronize(device)), 2.0 * n**3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the matmul energy window")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp")))
    args = ap.parse_args(argv)

    import torch

    from aibench import telemetry
    from aibench.core.jsonutil import json_safe, write_json_atomic
    from aibench.results.samples_csv import write_samples_csv

    if not torch.cuda.is_available():
        print("energy_check: no GPU visible; nothing to check", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda", 0)
    summary: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "seconds": args.seconds,
        "finished": False,
        "errors": {},
    }

    def save() -> None:
        write_json_atomic(args.out / "summary.json", json_safe(summary))  # no NaN: strict JSON

    print("torch", torch.__version__, summary["device"], flush=True)
    save()
    with _stage(summary, "nvml_probe"):
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            summary["nvml_call_us"] = nvml_costs(pynvml, handle)
            print("NVML call cost us:", summary["nvml_call_us"], flush=True)
            summary["counter_update_gaps_ms"] = counter_update_gaps(pynvml, handle)[:50]
            print("energy counter update gaps ms (idle):", summary["counter_update_gaps_ms"][:20], flush=True)
        finally:
            pynvml.nvmlShutdown()
    save()

    tele = telemetry.open_telemetry([dev])  # never raises: an unavailable Telemetry says why
    summary["telemetry"] = {"available": tele.available, "source": tele.source, "reason": tele.reason}
    print("available", tele.available, tele.source, tele.reason, flush=True)
    try:
        with _stage(summary, "idle"):
            summary["idle"] = tele.idle_baseline(2.0)
            print("idle:", json.dumps(summary["idle"])[:1500], flush=True)
        save()
        with _stage(summary, "matmul"):
            fn, sync, flops = bf16_matmul(dev)
            win = matmul_window(tele, fn, sync, args.seconds, flops)
            summary.update(matmul=win["summary"], tflops=win["tflops"])
            print("matmul:", json.dumps(win["window"]), flush=True)
            print("device:", json.dumps(win["device"]), flush=True)
            print("TFLOP/s:", win["tflops"], flush=True)
            save()
            write_samples_csv(args.out / "samples.csv", win["samples"])
        with _stage(summary, "overhead"):
            summary["overhead"] = tele.overhead()
            print("overhead:", json.dumps(summary["overhead"]), flush=True)
    finally:
        tele.close()
    summary["finished"] = True
    save()
    return 0 if "matmul" in summary else 1


if __name__ == "__main__":
    raise SystemExit(main())
