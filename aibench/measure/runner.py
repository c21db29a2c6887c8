"""The runner: one workload x backend x params -> one Record.

Order of work for each case: availability -> setup (not timed) -> correctness check against the
reference -> timing -> derived metrics -> energy window (telemetry). A wrong result makes the
record `invalid` and it is never timed; an exception makes it `failed`; an unsupported
combination makes it `skipped`. Nothing here raises for a workload's own failure: the caller
(a suite) always gets a record and goes on.
"""

from __future__ import annotations

import gc
import json
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from aibench.core import stats
from aibench.core.deadline import Deadline, case_ended, case_started
from aibench.core.errors import CheckFailed, Unsupported, first_line
from aibench.device import devices
from aibench.measure.case import Backend, Case, CustomMeasurement, Workload
from aibench.measure.records import Outcome, Record, now_iso, record_key
from aibench.measure.timer import TimerConfig, Timing, graph_replay, measure
from aibench.telemetry import calc


@dataclass(frozen=True)
class RunOptions:
    timer: TimerConfig = field(default_factory=TimerConfig)
    telemetry: bool = False
    energy_min_s: float = 2.0  # energy windows are stretched to this (counter granularity, methods.md)
    preview: bool | None = None  # None: preview exactly when running on a CPU
    case_timeout_s: float | None = 900.0  # a case still running after this is recorded as failed
    environment: str = ""  # sha256 of the environment fingerprint these records refer to


def is_preview(device: torch.device, options: RunOptions) -> bool:
    return device.type == "cpu" if options.preview is None else options.preview


def run_backends(
    wl: Workload,
    overrides: dict[str, Any] | None = None,
    device: torch.device | None = None,
    backends: Iterable[str] | None = None,
    options: RunOptions | None = None,
    telemetry: Any = None,
    entry: str | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run every (or the named) backend of a workload, baseline first; each gets its speedup.
    `on_outcome` sees each outcome as it is made (a run directory writes it at once)."""
    options = options or RunOptions()
    device = device or devices.resolve("auto")
    # A sweep parameter (a collective's `sizes`) stands for several cases: each is checked first,
    # so that a bad size is a usage error before anything runs.
    cases = [wl.resolve_params(o, preview=is_preview(device, options)) for o in wl.expand_overrides(overrides)]
    # A backend named twice is measured once: two records with one id would make a run ambiguous.
    chosen = [wl.get_backend(b) for b in dict.fromkeys(backends)] if backends else wl.ordered_backends()
    chosen.sort(key=lambda b: not b.baseline)
    outcomes: list[Outcome] = []
    for params in cases:
        baseline: Record | None = None
        for backend in chosen:
            outcome = run_case(wl, backend, params, device, options, telemetry=telemetry, entry=entry,
                               baseline=baseline)
            if backend.baseline:
                baseline = outcome.record
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    return outcomes


def run_case(
    wl: Workload,
    backend: Backend,
    params: dict[str, Any],
    device: torch.device,
    options: RunOptions,
    *,
    telemetry: Any = None,
    entry: str | None = None,
    baseline: Record | None = None,
) -> Outcome:
    started = now_iso()
    t0 = time.perf_counter()
    base = Record(
        id=record_key(wl.name, params, backend.name),
        entry=entry,
        workload=wl.name,
        backend=backend.name,
        baseline=wl.baseline_name,
        params=dict(params),
        device=devices.describe(device).as_dict(),
        status="skipped",
        preview=is_preview(device, options),
        # Every Triton backend ("triton", "triton.tma", ...) runs in the interpreter on a CPU.
        interpreted=backend.name.split(".")[0] == "triton" and devices.is_interpreted(device),
        environment=options.environment,
        started_at=started,
    )

    def done(**changes: Any) -> Record:
        return replace(base, finished_at=now_iso(), duration_s=time.perf_counter() - t0, **changes)

    try:
        ok, why = backend.available(device)
    except Exception as exc:  # a probe that crashes (a driver query) fails this backend, not the suite
        return Outcome(done(status="failed", reason=f"availability check: {type(exc).__name__}: {first_line(exc)}"))
    if not ok:
        return Outcome(done(status="skipped", reason=why or "backend not available"))
    case: Case | None = None
    deadline = Deadline(options.case_timeout_s)
    case_started(deadline)
    try:
        with deadline:
            case = backend.setup(params, device)
            outcome = _measure_case(case, backend, device, options, telemetry, baseline, done)
    except KeyboardInterrupt:
        if not deadline.fired:
            raise  # a real Ctrl-C: the suite stops and keeps what it finished
        return Outcome(done(status="failed", reason=f"timeout: still running after {options.case_timeout_s:.0f} s"))
    except Unsupported as exc:
        return Outcome(done(status="skipped", reason=str(exc)))
    except CheckFailed as exc:  # the domain error of a wrong result: invalid, never a throughput
        return Outcome(done(status="invalid", reason=f"correctness check failed: {first_line(exc)}",
                            correctness={"checked": True, "passed": False, "detail": first_line(exc)}))
    except torch.OutOfMemoryError as exc:
        return Outcome(done(status="failed", reason=f"out of memory: {first_line(exc)}"))
    except (Exception, SystemExit) as exc:  # a workload's failure (a library's sys.exit too) is recorded
        tb = traceback.format_exc(limit=6)
        return Outcome(done(status="failed", reason=f"{type(exc).__name__}: {first_line(exc)}",
                            details={"traceback": tb[-4000:]}))
    finally:
        case_ended(deadline)
        del case
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return _writable(outcome, done)


def _writable(outcome: Outcome, done: Callable[..., Record]) -> Outcome:
    """The outcome, or a failed record when the workload put something JSON cannot hold in it
    (a torch.dtype in details): the run directory's write would otherwise stop the suite."""
    try:
        json.dumps(outcome.record.to_dict(), allow_nan=False)
    except (TypeError, ValueError) as exc:
        return Outcome(done(status="failed", reason=f"the workload's record is not JSON-serializable: "
                                                    f"{first_line(exc)}"))
    return outcome


def _measure_case(case: Case, backend: Backend, device: torch.device, options: RunOptions, telemetry: Any,
                  baseline: Record | None, done: Callable[..., Record]) -> Outcome:
    """Check, time, derive metrics, measure energy: the body of `run_case` once set up."""
    correctness = _check(case)
    if correctness.get("passed") is False:
        return Outcome(done(status="invalid", reason=f"correctness check failed: {correctness.get('detail')}",
                            correctness=correctness, details=dict(case.details)))
    used = _used(case, device)
    blocked = _no_energy_window(options, telemetry, used)
    window = _RunWindow(None if blocked else telemetry, lambda: devices.synchronize(device),
                        used if device.type == "cuda" else None)
    custom: CustomMeasurement | None = None
    if case.measure is not None:
        # Self-timed (a serving loop): its samples are request latencies, not calls of fn, so
        # it owns its rates; nothing is derived from the median here.
        custom = case.measure(options.timer, window) if case.energy_of_run else case.measure(options.timer)
        timing = _custom_timing(custom)
        metrics = {k: float(v) for k, v in custom.metrics.items() if v is not None}
        unavailable = dict(custom.unavailable)
        details = {**case.details, **custom.details}
    else:
        timer_cfg = options.timer if case.cuda_graph_ok else replace(options.timer, cuda_graph=False)
        timing = measure(case.fn, device, timer_cfg).as_dict()
        metrics, unavailable = derive_metrics(case, timing["median"], device)
        details = dict(case.details)
    if case.metrics is not None:
        metrics.update(case.metrics(timing["median"]))
    unavailable.update({k: why for k, why in case.unavailable.items() if k not in metrics})
    if baseline is not None and not backend.baseline:
        speedup, reason = speedup_against(baseline, timing["median"])
        if speedup is not None:
            metrics["speedup"] = speedup
        else:
            unavailable["speedup"] = reason
    work = {k: float(v) for k, v in {"flops": case.flops, "bytes": case.bytes, **case.work}.items()
            if v is not None}
    run_energy = case.energy_of_run and custom is not None
    if run_energy and custom is not None:
        work = dict(custom.work)  # the work its run did: what its energy per unit is per
    samples: list[dict[str, Any]] = []
    if blocked is not None:
        tel_summary = blocked
    elif run_energy:
        tel_summary, samples = window.summary(work)
    else:
        # Energy needs long windows (counter granularity, methods.md): fn back to back, no flush.
        # Only the devices the case runs on count; the others' samples are kept beside them.
        fn, per_fn, how = _energy_fn(case, device, timing, options.timer)
        result = telemetry.measure_energy(fn, lambda: devices.synchronize(device),
                                          min_duration_s=options.energy_min_s, work=work,
                                          devices=used if device.type == "cuda" else None, calls_per_fn=per_fn)
        tel_summary, samples = {**result.summary, "execution": how}, list(result.samples)
    record = done(status="ok", correctness=correctness, timing=timing, metrics=metrics,
                  unavailable=unavailable, work=work, details=details, telemetry=tel_summary)
    return Outcome(record, samples)


def _no_energy_window(options: RunOptions, telemetry: Any, used: list[int]) -> dict[str, Any] | None:
    """The record's telemetry summary when no energy can be measured for this case, else None."""
    if not options.telemetry or telemetry is None:
        return {"available": False, "reason": "telemetry off (--no-telemetry)"}
    if not telemetry.available:
        return {"available": False, "reason": telemetry.reason}
    if missing := telemetry.uncovered(used):
        # One GPU's energy is not the energy of work spread over several: say so, give no number.
        return {"available": False, "reason": f"this case runs on devices {used}; the run's "
                f"telemetry does not cover {missing}"}
    return None


class _RunWindow:
    """The EnergyWindow a case with `energy_of_run` gets: telemetry sampled around the one stretch
    of its run it hands over (called once, between device syncs), or a plain call without telemetry."""

    def __init__(self, telemetry: Any, sync: Callable[[], None], devices: list[int] | None) -> None:
        self.telemetry, self.sync, self.devices = telemetry, sync, devices
        self.result: Any = None
        self.opened = False

    def __call__(self, fn: Callable[[], Any]) -> Any:
        if self.opened:  # two windows summed as one would count the time between them
            raise RuntimeError("a case opens one energy window over its run")
        self.opened = True
        if self.telemetry is None:
            return fn()
        held: list[Any] = []
        # min_duration_s 0: fn (the run) is called exactly once; the window is as long as the run.
        self.result = self.telemetry.measure_energy(lambda: held.append(fn()), self.sync, min_duration_s=0.0,
                                                    devices=self.devices)
        return held[0]

    def summary(self, work: dict[str, float]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(the record's telemetry, the raw samples): energy per unit of the work done in the window."""
        if self.result is None:
            return {"available": False, "reason": "the workload opened no energy window over its run"}, []
        s = self.result.summary
        return ({**s, "per_unit": calc.per_unit(s.get("energy_per_call_j"), work), "work_per_call": dict(work),
                 "execution": "one window over the measured run itself"}, list(self.result.samples))


def _energy_fn(case: Case, device: torch.device, timing: dict[str, Any],
               timer: TimerConfig) -> tuple[Callable[[], Any], int, str]:
    """(what the energy window calls, operations per call, how it runs): the execution the timer
    measured. A case timed as CUDA-graph replays (decode-sized kernels) is replayed the same way:
    launched one by one, its window would hold launch gaps at idle power, and its J per token and
    average W would describe another execution than its tokens/s."""
    if timing.get("method") != "cuda_graph":
        return case.fn, 1, "back-to-back calls"
    calls = int(timing.get("calls_per_sample") or timer.graph_calls)  # as the timing recorded it
    try:
        return graph_replay(case.fn, device, calls), calls, f"CUDA-graph replays of {calls} calls, as timed"
    except Exception as exc:  # the timer captured it, so this is unexpected: say it, measure eagerly
        return case.fn, 1, f"back-to-back calls (graph capture failed: {first_line(exc)})"


def _used(case: Case, device: torch.device) -> list[int]:
    """torch indices of the GPUs a case runs on: its own device, or for a case spanning
    `case.devices` GPUs (the collectives' rank pool) cuda:0 .. cuda:N-1. On a CPU: none to check."""
    if device.type != "cuda":
        return []
    if case.devices > 1:
        return list(range(case.devices))
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _check(case: Case) -> dict[str, Any]:
    if case.check is None:
        return {"checked": False, "passed": None, "detail": "this workload has no reference check"}
    return case.check().as_dict()


def _custom_timing(custom: CustomMeasurement) -> dict[str, Any]:
    positive = [s for s in custom.samples_s if s > 0]
    if not positive:
        raise ValueError("self-timed workload returned no positive samples")
    return Timing(
        method="custom", samples_s=positive, warmup_s=0.0, warmup_calls=custom.warmup_calls, total_s=sum(positive),
        converged=custom.converged, stop_reason=custom.stop_reason, l2_flush=False,
        stats=stats.summarize(positive),
    ).as_dict()


def derive_metrics(case: Case, median_s: float, device: torch.device) -> tuple[dict[str, float], dict[str, str]]:
    """TFLOP/s, GB/s, % of datasheet peak and units per second from the median time of one call."""
    metrics: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    spec = devices.spec_for(device)
    if case.flops is not None:
        metrics["tflops"] = case.flops / median_s / 1e12
        peak = spec.peak_for(case.dtype) if (spec and case.dtype) else None
        if peak:
            metrics["pct_peak_tflops"] = 100.0 * metrics["tflops"] / peak
        else:
            unavailable["pct_peak_tflops"] = devices.no_peak_reason(device, spec, f"{case.dtype} TFLOP/s")
    if case.bytes is not None:
        metrics["gbps"] = case.bytes / median_s / 1e9
        if spec and spec.bandwidth_gbps:
            metrics["pct_peak_bandwidth"] = 100.0 * metrics["gbps"] / spec.bandwidth_gbps
        else:
            unavailable["pct_peak_bandwidth"] = devices.no_peak_reason(device, spec, "memory bandwidth")
    for unit, amount in case.work.items():
        metrics[f"{unit}_per_s"] = amount / median_s
    return metrics, unavailable


def speedup_against(baseline: Record, median_s: float) -> tuple[float | None, str]:
    """Baseline median / this median (> 1 means faster than the vendor library)."""
    if baseline.status != "ok" or not baseline.median_s:
        return None, f"baseline {baseline.backend!r} has no valid timing ({baseline.status})"
    return baseline.median_s / median_s, ""
