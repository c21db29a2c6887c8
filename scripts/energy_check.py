"""GPU check of aibench.telemetry (the telemetry issue's cross-check): NVML call costs, the energy
counter's update period, an idle baseline, a long bf16 matmul energy window (counter energy
against integrated power: they should agree within 5%), clocks, throttle reasons and the sampler's
own overhead (budget: 2% of one core).

    python scripts/energy_check.py [--seconds 30]      # writes summary.json, samples.csv to $OUT or /tmp
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time

import pynvml
import torch

from aibench.telemetry import open_telemetry, write_samples_csv

out = os.environ.get("OUT", "/tmp")
dev = torch.device("cuda", 0)
print("torch", torch.__version__, torch.cuda.get_device_name(0), "props uuid:", torch.cuda.get_device_properties(0).uuid)

# Raw NVML: units and counter update period.
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
fv = pynvml.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_POWER_INSTANT])[0]
print("instant field ret", fv.nvmlReturn, "type", fv.valueType, "uiVal", fv.value.uiVal, "usage mW", pynvml.nvmlDeviceGetPowerUsage(h))
cost = {}
for name, call in [
    ("field_instant", lambda: pynvml.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_POWER_INSTANT])),
    ("power_usage", lambda: pynvml.nvmlDeviceGetPowerUsage(h)),
    ("energy", lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h)),
    ("clock_sm", lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
    ("reasons", lambda: pynvml.nvmlDeviceGetCurrentClocksEventReasons(h)),
    ("temp", lambda: pynvml.nvmlDeviceGetTemperature(h, 0)),
    ("util", lambda: pynvml.nvmlDeviceGetUtilizationRates(h)),
    ("meminfo", lambda: pynvml.nvmlDeviceGetMemoryInfo(h)),
]:
    t = time.perf_counter()
    for _ in range(200):
        call()
    cost[name] = (time.perf_counter() - t) / 200 * 1e6
print("NVML call cost us:", {k: round(v, 1) for k, v in cost.items()})
changes, last, t_end = [], pynvml.nvmlDeviceGetTotalEnergyConsumption(h), time.perf_counter() + 0.5
while time.perf_counter() < t_end:
    e = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    if e != last:
        changes.append(time.perf_counter())
        last = e
gaps = [round((b - a) * 1e3, 1) for a, b in itertools.pairwise(changes)]
print("energy counter update gaps ms (idle):", gaps[:20])
pynvml.nvmlShutdown()

tele = open_telemetry([dev])
print("available", tele.available, tele.source, tele.reason)
base = tele.idle_baseline(2.0)
print("idle:", json.dumps(base)[:1500])
print("overhead after idle:", json.dumps(tele.overhead()))

n = 8192
a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
for _ in range(20):
    a @ b
torch.cuda.synchronize()
seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 30.0
res = tele.measure_energy(lambda: a @ b, lambda: torch.cuda.synchronize(dev), min_duration_s=seconds,
                          work={"flops": 2 * n**3})
s = res.summary
d = s["devices"][0]
keys = ["method", "energy_j", "calls", "duration_s", "energy_per_call_j", "avg_power_w", "peak_power_w", "per_unit", "throttle", "notes"]
print("matmul:", json.dumps({k: s[k] for k in keys}))
print("device:", json.dumps({k: d[k] for k in ["counter_energy_j", "integrated_energy_j", "integral_vs_counter_rel", "power_field", "n_samples", "sm_clock_mhz", "temperature_c", "gpu_util_pct", "unavailable", "power_limit_w", "name", "uuid"]}))
print("TFLOP/s:", 2 * n**3 * s["calls"] / s["duration_s"] / 1e12)
print("overhead total:", json.dumps(tele.overhead()))
write_samples_csv(os.path.join(out, "samples.csv"), res.samples)
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump({"idle": base, "matmul": s, "overhead": tele.overhead()}, f, indent=1, allow_nan=False)
tele.close()
sys.exit(0)
