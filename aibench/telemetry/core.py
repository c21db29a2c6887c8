"""The runner's view of telemetry: open once, take an idle baseline, measure energy windows.

    tele = open_telemetry([device])              # never raises; tele.available says if it measures
    result = tele.measure_energy(case.fn, lambda: synchronize(device), work=case.work)
    record["telemetry"] = result.summary         # JSON-safe; energy_j None (never 0) when unknown
    write_samples_csv(run_dir / "telemetry.csv", result.samples)  # aibench.results.samples_csv

An energy window calls fn repeatedly for at least `min_duration_s` (default 2 s) between two
device syncs: the NVML counter updates every 20-100 ms and the power sensor sees only part of
the time (shared/reference/hardware.md; Yang et al., arXiv 2312.02741), so short windows lie.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aibench.core.jsonutil import json_safe
from aibench.telemetry import calc
from aibench.telemetry.reader import Reader, Row, TelemetryUnavailable
from aibench.telemetry.sampler import OVERHEAD_BUDGET, Sampler
from aibench.telemetry.window import combine_throttle, device_window, window_rows

SOURCES = ("nvml", "amdsmi", "rapl", "unavailable")
DEFAULT_INTERVAL_S = 0.015
IDLE_MEANS = ("temperature_c", "sm_clock_mhz", "mem_clock_mhz", "gpu_util_pct")


def unavailable_summary(reason: str) -> dict[str, Any]:
    """What a record's `telemetry` says when nothing could be measured."""
    return {"available": False, "reason": reason}


@dataclass(frozen=True)
class TelemetryResult:
    """One energy window: `summary` goes into record["telemetry"]; `samples` are the raw rows."""

    summary: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)


class Telemetry:
    """Samplers over the devices of one run, and the energy windows measured with them."""

    def __init__(
        self,
        source: str,
        readers: Sequence[Reader] = (),
        *,
        reason: str | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        inline: bool = False,
        closer: Callable[[], None] | None = None,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown telemetry source {source!r}")
        self.available = bool(readers) and source != "unavailable"
        self.source = source if self.available else "unavailable"
        self.reason = None if self.available else (reason or "no telemetry source")
        self.interval_s = interval_s
        self.clock = clock
        self.sleep = sleep
        # inline: sample after each call of fn instead of in threads (deterministic, for tests).
        self.inline = inline
        self.readers = list(readers)
        # The 2% of one core is for all samplers together: eight GPUs get a quarter percent each.
        share = OVERHEAD_BUDGET / max(1, len(self.readers))
        self.samplers = [Sampler(r, interval_s, clock, budget=share) for r in self.readers]
        self._closer = closer
        self._closed = False

    @property
    def device_count(self) -> int:
        """How many devices these samplers cover."""
        return len(self.readers)

    @property
    def device_indices(self) -> list[int | None]:
        """torch's index of each covered device (None for a CPU package)."""
        return [r.info.get("index") for r in self.readers]  # type: ignore[misc]

    def uncovered(self, indices: Sequence[int]) -> list[int]:
        """The devices of `indices` that no sampler of this telemetry reads."""
        have = set(self.device_indices)
        return [i for i in indices if i not in have]

    # -- windows ---------------------------------------------------------------------------------
    def _sample_all(self, t: float | None = None, boundary: bool = False) -> None:
        for sampler in self.samplers:
            sampler.sample_once(t, boundary)

    def _run_window(
        self, fn: Callable[[], object] | None, sync: Callable[[], None] | None, min_duration_s: float
    ) -> tuple[float, float, int]:
        for sampler in self.samplers:
            sampler.reset()
        if sync is not None:
            sync()  # work queued before the window must not be counted in it
        t0 = self.clock()
        self._sample_all(t0, boundary=True)  # reads the energy counter, after the sync
        calls = 0
        if not self.inline:
            for sampler in self.samplers:
                sampler.start()
        try:
            if fn is None:
                if self.inline:
                    while (left := min_duration_s - (self.clock() - t0)) > 0:
                        self.sleep(min(self.interval_s, left))
                        self._sample_all()
                else:
                    self.sleep(min_duration_s)
            else:
                while True:
                    fn()
                    calls += 1
                    if self.inline:
                        self._sample_all()
                    if self.clock() - t0 >= min_duration_s:
                        break
                if sync is not None:
                    sync()  # the window ends when the device has finished, not when the host has queued
            t1 = self.clock()
            self._sample_all(t1, boundary=True)
        finally:
            for sampler in self.samplers:
                sampler.stop()
        return t0, t1, calls

    def _devices(self, t0: float, t1: float) -> list[dict[str, Any]]:
        out = []
        for reader, sampler in zip(self.readers, self.samplers):
            figures = device_window(
                sampler.rows,
                t0=t0,
                t1=t1,
                power_fields=reader.power_fields,
                counter_field=reader.counter_field,
                counter_per_j=reader.counter_per_j,
                counter_max=reader.counter_max,
                unavailable=reader.unavailable,
            )
            out.append({**reader.info, **figures})
        return out

    def _samples(self, t0: float, t1: float) -> list[dict[str, Any]]:
        samples: list[dict[str, Any]] = []
        for reader, sampler in zip(self.readers, self.samplers):
            for row in window_rows(sampler.rows, t0, t1):
                out: Row = {"device": reader.info.get("index"), "t_rel_s": float(row["t"]) - t0, **row}
                mask = row.get("clocks_event_reasons")
                if isinstance(mask, int):
                    out["clocks_event_names"] = "|".join(calc.decode_reasons(mask))
                samples.append(out)
        return samples

    def measure_energy(
        self,
        fn: Callable[[], object],
        sync: Callable[[], None],
        *,
        min_duration_s: float = 2.0,
        work: dict[str, float] | None = None,
        devices: Sequence[int] | None = None,
        calls_per_fn: int = 1,
    ) -> TelemetryResult:
        """Energy of fn: called repeatedly between two syncs for at least min_duration_s.
        `calls_per_fn`: calls of the measured operation one fn call makes (a graph replay of
        several): energy per call and per unit of work are per operation, `work` is per operation.

        `devices`: the torch indices of the devices fn runs on; only their energy, power and
        throttling are counted (every device's samples are kept). None: every covered device.
        Without telemetry fn is still called once (between syncs) and every energy is None.
        """
        if not self.available:
            sync()
            fn()
            sync()
            summary = {
                **unavailable_summary(self.reason or "no telemetry source"),
                "source": self.source,
                "devices": [],
                "method": None,
                "energy_j": None,
                "calls": 1,
                "duration_s": None,
                "energy_per_call_j": None,
                "avg_power_w": None,
                "peak_power_w": None,
                "per_unit": calc.per_unit(None, work),
                "work_per_call": dict(work or {}),
                "throttle": None,
                "notes": [],
            }
            return TelemetryResult(summary, [])
        wanted = None if devices is None else set(devices)
        if wanted is not None and (missing := sorted(wanted - set(self.device_indices))):
            # Summing the devices that are covered would report part of the energy as all of it.
            raise ValueError(f"telemetry covers devices {self.device_indices}, not {missing}: check uncovered() first")
        t0, t1, calls = self._run_window(fn, sync, min_duration_s)
        calls *= calls_per_fn
        every = self._devices(t0, t1)
        devices = [d for d in every if wanted is None or d.get("index") in wanted]  # counted
        others = [d for d in every if wanted is not None and d.get("index") not in wanted]
        energies = [d["energy_j"] for d in devices]
        energy_j = sum(energies) if all(e is not None for e in energies) else None
        methods = {d["method"] for d in devices}
        method = None if energy_j is None else (methods.pop() if len(methods) == 1 else "mixed")
        peaks = [d["peak_power_w"] for d in devices]
        duration = t1 - t0
        per_call = energy_j / calls if energy_j is not None and calls else None
        summary: dict[str, Any] = {
            "available": True,
            "reason": None,
            "source": self.source,
            "devices": devices,
            "method": method,
            "energy_j": energy_j,
            "calls": calls,
            "duration_s": duration,
            "min_duration_s": min_duration_s,
            "energy_per_call_j": per_call,
            "avg_power_w": energy_j / duration if energy_j is not None and duration > 0 else None,
            # Several devices: the sum of each one's peak, an upper bound of the joint peak.
            "peak_power_w": sum(peaks) if peaks and all(p is not None for p in peaks) else None,
            "per_unit": calc.per_unit(per_call, work),
            "work_per_call": dict(work or {}),
            "throttle": combine_throttle([d["throttle"] for d in devices]),
            "interval_s": self.interval_s,
            "notes": [f"device {d.get('index')}: {note}" for d in devices for note in d["notes"]],
            # Sampled but not counted: what the rest of the node drew meanwhile (idle GPUs, a
            # neighbour's job), so a report can tell a quiet node from a busy one.
            "other_devices": [{"index": d.get("index"), "avg_power_w": d["avg_power_w"],
                               "energy_j": d["energy_j"]} for d in others],
        }
        return TelemetryResult(json_safe(summary), self._samples(t0, t1))

    def idle_baseline(self, duration_s: float = 2.0) -> dict[str, Any]:
        """Mean power, temperature and clocks of the devices left alone for duration_s."""
        if not self.available:
            return {**unavailable_summary(self.reason or "no telemetry source"), "source": self.source}
        t0, t1, _ = self._run_window(None, None, duration_s)
        devices = []
        for d in self._devices(t0, t1):
            mean = {k: (d[k] or {}).get("mean") for k in IDLE_MEANS}
            throttle = d["throttle"] or {}
            devices.append(
                {
                    **{k: d.get(k) for k in ("index", "name", "uuid", "power_limit_w", "default_power_limit_w")},
                    "mean_power_w": d["avg_power_w"],
                    "energy_j": d["energy_j"],
                    "method": d["method"],
                    "power_field": d["power_field"],
                    **mean,
                    "throttle_reasons_seen": throttle.get("reasons_seen"),
                    "notes": d["notes"],
                }
            )
        powers = [d["mean_power_w"] for d in devices]
        summary = {
            "available": True,
            "reason": None,
            "source": self.source,
            "duration_s": t1 - t0,
            "mean_power_w": sum(powers) if all(p is not None for p in powers) else None,
            "devices": devices,
        }
        return json_safe(summary)

    def overhead(self) -> dict[str, Any]:
        """The samplers' own cost: CPU time of their threads per wall second, and interval jitter."""
        per = [s.overhead() for s in self.samplers]
        cpu = sum(float(p["thread_cpu_s"]) for p in per)
        wall = max((float(p["thread_wall_s"]) for p in per), default=0.0)
        share = cpu / wall if wall > 0 else None
        return json_safe(
            {
                "interval_s": self.interval_s,
                "interval_stretched": any(p["stretches"] for p in per),  # over budget at some point
                "cpu_share_of_one_core": share,
                "budget": OVERHEAD_BUDGET,
                "within_budget": share < OVERHEAD_BUDGET if share is not None else None,
                "devices": per,
            }
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sampler in self.samplers:
            sampler.stop()
        for reader in self.readers:
            reader.close()
        if self._closer is not None:
            self._closer()

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_telemetry(
    devices: list[torch.device],
    interval_s: float = DEFAULT_INTERVAL_S,
    *,
    nvml: object = None,
    amdsmi: object = None,
    rapl_root: str | Path | None = None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    inline: bool = False,
) -> Telemetry:
    """Telemetry for the given devices; never raises (an unavailable Telemetry says why).

    CUDA devices are read through NVML (amdsmi on ROCm builds of torch), CPU devices through RAPL.
    `nvml`, `amdsmi` and `rapl_root` replace the real library or /sys/class/powercap in tests;
    `clock`, `sleep` and `inline` (sample after each call instead of in threads) make tests exact.
    """

    def make(source: str, readers: Sequence[Reader] = (), reason: str | None = None, closer: Any = None) -> Telemetry:
        return Telemetry(
            source, readers, reason=reason, interval_s=interval_s, clock=clock, sleep=sleep, inline=inline, closer=closer
        )

    if not interval_s > 0:
        return make("unavailable", reason=f"sampling interval must be positive, got {interval_s}")
    try:
        unique = list(dict.fromkeys((d.type, d.index) for d in devices))
        gpus = [torch.device(t, i) for t, i in unique if t == "cuda"]
        if gpus:
            if amdsmi is not None or (nvml is None and getattr(torch.version, "hip", None)):
                from aibench.telemetry.amd import close_amdsmi, open_amdsmi

                smi, amd_readers = open_amdsmi(gpus, amdsmi)
                return make("amdsmi", amd_readers, closer=lambda: close_amdsmi(smi))
            from aibench.telemetry.nvml import close_nvml, open_nvml

            lib, nv_readers = open_nvml(gpus, nvml)
            return make("nvml", nv_readers, closer=lambda: close_nvml(lib))
        if any(t == "cpu" for t, _ in unique):
            from aibench.telemetry.rapl import open_rapl

            return make("rapl", [open_rapl(rapl_root)])
        raise TelemetryUnavailable("no devices to measure")
    except TelemetryUnavailable as exc:
        return make("unavailable", reason=str(exc))
    except Exception as exc:  # a telemetry failure must never stop a benchmark
        return make("unavailable", reason=f"telemetry failed to open: {type(exc).__name__}: {exc}")
