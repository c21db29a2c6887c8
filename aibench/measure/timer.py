"""The timer: warm-up by time, then samples until the median is known well enough.

Stopping rule (nvbench's `stdrel`, ../shared/reference/methods.md, applied to the median): keep
sampling until the relative standard error of the median is under `target_rel_se`, but take at
least `min_samples` samples and `min_time_s` of sampled time, and stop at `max_time_s` whatever
the noise (then the timing says it did not converge). `min_samples` is a hard floor, even past
the timeout: a record with fewer samples would break the suite's run rules, which a verifier checks.
Sampled time is GPU time measured: a CUDA-graph sample (one replay of N calls, divided by N)
counts N times towards `min_time_s`.

On a GPU each sample is bracketed by CUDA events, with the L2 cache flushed before it (a memset
of a buffer at least twice the L2, or 256 MiB as triton.testing.do_bench uses), so that a kernel
is timed from cold cache as it would run inside a model. Samples are collected in batches and the
device is synchronised once per batch, not once per sample. With `cuda_graph=True`, tiny kernels
are captured N times in a CUDA graph and the replay is timed, which removes launch gaps.
Warm-up runs fn once (compilation, autotuning: however long that takes), then warm calls for
`warmup_s`, as triton.testing.do_bench warms up after its first call.
On a CPU, `time.perf_counter_ns` brackets each call under the same stopping rule.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from aibench.core import stats
from aibench.device import devices

FLUSH_MIN_BYTES = 256 * 1024 * 1024  # triton.testing.do_bench's 256 MiB (methods.md)


@dataclass(frozen=True)
class TimerConfig:
    warmup_s: float = 0.25
    min_samples: int = 10
    min_time_s: float = 0.5
    max_time_s: float = 15.0
    target_rel_se: float = 0.01
    max_samples: int = 10_000  # bounds the raw samples kept in a record (~200 kB of JSON)
    flush_l2: bool = True
    cuda_graph: bool = False
    graph_calls: int = 20  # calls captured per graph replay (cuda_graph mode)

    def __post_init__(self) -> None:
        if self.min_samples < 2:
            raise ValueError("min_samples must be at least 2 (one sample has no spread)")
        if self.max_samples < self.min_samples:
            raise ValueError("max_samples must be >= min_samples (min_samples is a hard floor)")
        if self.graph_calls < 1:
            raise ValueError("graph_calls must be at least 1")
        # NaN compares False with everything: a NaN limit would silently never stop or never hold.
        for name in ("warmup_s", "min_time_s", "max_time_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value}")
        if self.max_time_s < self.min_time_s:
            raise ValueError("max_time_s must be >= min_time_s")
        if not 0 < self.target_rel_se < 1:
            raise ValueError("target_rel_se must be in (0, 1)")


@dataclass(frozen=True)
class Timing:
    method: str  # "cuda_event" | "cuda_graph" | "perf_counter"
    samples_s: list[float]
    warmup_s: float
    warmup_calls: int
    total_s: float  # sum of the timed samples
    converged: bool
    stop_reason: str
    l2_flush: bool
    calls_per_sample: int = 1
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def median_s(self) -> float:
        return float(self.stats["median"])

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "samples_s": list(self.samples_s),
            **self.stats,
            "warmup_s": self.warmup_s,
            "warmup_calls": self.warmup_calls,
            "total_s": self.total_s,
            "calls_per_sample": self.calls_per_sample,
            "l2_flush": self.l2_flush,
            "converged": self.converged,
            "stop_reason": self.stop_reason,
        }
        return out


def should_stop(samples: list[float], elapsed_s: float, config: TimerConfig,
                calls_per_sample: int = 1, *, sampled_s: float | None = None,
                noise_due: bool = True) -> tuple[bool, bool, str]:
    """The stopping rule as a pure function: (stop, converged, reason).

    `elapsed_s` is wall time spent sampling (it bounds the run even when samples are tiny).
    Each sample is the time of one call averaged over `calls_per_sample` calls timed together
    (a CUDA-graph replay): min_time_s counts the time measured, all the calls. `sampled_s`: the
    sum of `samples` when the caller keeps it (a sampling loop does, so that a check is O(1));
    `noise_due=False` skips the O(n log n) noise estimate (the loop's budget, `StopRule`).
    """
    n = len(samples)
    sampled = (math.fsum(samples) if sampled_s is None else sampled_s) * calls_per_sample
    if n >= config.max_samples:
        converged = n >= 2 and stats.rel_stderr_median(samples) <= config.target_rel_se
        return True, converged, f"reached max_samples={config.max_samples}"
    if elapsed_s >= config.max_time_s and n >= config.min_samples:
        converged = n >= config.min_samples and stats.rel_stderr_median(samples) <= config.target_rel_se
        reason = "converged at timeout" if converged else f"timeout after {elapsed_s:.1f} s: noise target not met"
        return True, converged, reason
    if n < config.min_samples or sampled < config.min_time_s or not noise_due:
        return False, False, ""
    rse = stats.rel_stderr_median(samples)
    if rse <= config.target_rel_se:
        return True, True, f"rel. std. error of median {rse:.2%} <= {config.target_rel_se:.2%}"
    return False, False, ""


# The noise estimate costs O(n log n) (about 1 us per sample in pure Python: 8 ms at n = 10,000).
# Evaluated after every sample it would cost more than short calls themselves and grow with n;
# evaluated at fixed intervals it would stop late for slow calls. So it runs when the wall time
# since the last estimate is at least 1 / CHECK_BUDGET times what that estimate cost: the rule
# takes at most ~2% of the sampling time, whatever n (benchmarks/bench_timer.py measures it).
CHECK_BUDGET = 0.02


class StopRule:
    """`should_stop` in a sampling loop: a running sum, and the noise estimate within its budget."""

    def __init__(self, config: TimerConfig, calls_per_sample: int = 1) -> None:
        self.config = config
        self.calls_per_sample = calls_per_sample
        self.samples: list[float] = []
        self.sampled_s = 0.0
        self._next_check = 0.0  # perf_counter time from which the noise estimate is due again

    def add(self, sample: float, elapsed_s: float) -> tuple[bool, bool, str]:
        self.samples.append(sample)
        self.sampled_s += sample
        now = time.perf_counter()
        due = now >= self._next_check
        stop = should_stop(self.samples, elapsed_s, self.config, self.calls_per_sample,
                           sampled_s=self.sampled_s, noise_due=due)
        if due and len(self.samples) >= self.config.min_samples \
                and self.sampled_s * self.calls_per_sample >= self.config.min_time_s:
            cost = time.perf_counter() - now  # what the estimate just cost
            self._next_check = now + cost / CHECK_BUDGET
        return stop


def measure(fn: Callable[[], Any], device: torch.device, config: TimerConfig | None = None) -> Timing:
    """Time `fn` (zero arguments; inputs allocated beforehand) on `device`."""
    config = config or TimerConfig()
    if device.type == "cuda":
        if config.cuda_graph:
            return _measure_cuda_graph(fn, device, config)
        return _measure_cuda_events(fn, device, config)
    return _measure_cpu(fn, config)


def _finish(method: str, samples: list[float], warm_s: float, warm_calls: int, converged: bool,
            reason: str, l2_flush: bool, calls_per_sample: int = 1) -> Timing:
    return Timing(
        method=method,
        samples_s=samples,
        warmup_s=warm_s,
        warmup_calls=warm_calls,
        total_s=sum(samples),
        converged=converged,
        stop_reason=reason,
        l2_flush=l2_flush,
        calls_per_sample=calls_per_sample,
        stats=stats.summarize(samples),
    )


def _warm_up(fn: Callable[[], Any], sync: Callable[[], None], warmup_s: float) -> tuple[float, int, float]:
    """Run fn once, then until warmup_s has passed: (seconds in all, calls, seconds per warm call).

    The first call compiles, autotunes or initialises lazily for as long as it needs; it does
    not count towards warmup_s, which warm calls fill (GPU clocks ramp back up after an idle
    compile; work some calls do after the first, such as a CUDA-graph recording, stays out of
    the samples). The time per call excludes the first call too, unless it was the only one."""
    start = time.perf_counter()
    fn()
    sync()
    warm_start = time.perf_counter()
    calls = 1
    while time.perf_counter() - warm_start < warmup_s:
        fn()
        sync()
        calls += 1
    end = time.perf_counter()
    per_call = (end - warm_start) / (calls - 1) if calls > 1 else end - start
    return end - start, calls, per_call


def _measure_cpu(fn: Callable[[], Any], config: TimerConfig) -> Timing:
    warm_s, warm_calls, _ = _warm_up(fn, lambda: None, config.warmup_s)
    rule = StopRule(config)
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter_ns()
        fn()
        t1 = time.perf_counter_ns()
        # perf_counter_ns can repeat a value for sub-resolution calls; 1 ns keeps samples positive.
        stop, converged, reason = rule.add(max(t1 - t0, 1) / 1e9, time.perf_counter() - start)
        if stop:
            return _finish("perf_counter", rule.samples, warm_s, warm_calls, converged, reason, False)


class _L2Flusher:
    """A buffer at least twice the cache (the L2, and an MI300's Infinity Cache; >= 256 MiB)
    whose memset evicts it."""

    def __init__(self, device: torch.device) -> None:
        nbytes = max(FLUSH_MIN_BYTES, 2 * (devices.cache_bytes(device) or 0))
        self.buffer = torch.empty(nbytes // 4, dtype=torch.int32, device=device)

    def __call__(self) -> None:
        self.buffer.zero_()


def _measure_cuda_events(fn: Callable[[], Any], device: torch.device, config: TimerConfig) -> Timing:
    with torch.cuda.device(device):
        sync = torch.cuda.synchronize
        flush = _L2Flusher(device) if config.flush_l2 else None
        warm_s, warm_calls, per_call = _warm_up(fn, sync, config.warmup_s)
        # Batch size: about 50 ms of work per synchronisation, estimated from the warm calls.
        batch = int(min(max(0.05 / max(per_call, 1e-7), 1), 1000))
        rule = StopRule(config)
        start = time.perf_counter()
        while True:
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                      for _ in range(batch)]
            for begin, end in events:
                if flush is not None:
                    flush()
                begin.record()
                fn()
                end.record()
            sync()  # one sync per batch: the events are read only after all of them completed
            for begin, end in events:
                stop, converged, reason = rule.add(_elapsed_s(begin, end), time.perf_counter() - start)
                if stop:
                    return _finish("cuda_event", rule.samples, warm_s, warm_calls, converged, reason,
                                   flush is not None)


# GPU cycles of the spin queued before each graph sample: ~50 us at 2 GHz, more than the host
# needs to enqueue an event, a graph launch and another event.
_GRAPH_LEAD_CYCLES = 100_000


def _elapsed_s(begin: Any, end: Any) -> float:
    """Seconds between two recorded events. Zero means fn put no work on the timed stream (it ran
    on another stream, or on the host): a sample of nothing, which must not pass for a fast one."""
    ms = begin.elapsed_time(end)
    if not ms > 0:
        raise RuntimeError("the timed call enqueued no GPU work on the current stream (0 ms between its "
                           "events): it cannot be timed with CUDA events")
    return ms / 1e3


def _capture(fn: Callable[[], Any], calls: int, warmup_s: float) -> tuple[Any, float, int]:
    """(graph of `calls` calls of fn, warm-up seconds, warm-up calls), replayed once; on the
    current device. Capture happens on a side stream after a warm-up there, so that lazy
    initialisation (cuBLAS handles, autotuning) is not captured."""
    sync = torch.cuda.synchronize
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        warm_s, warm_calls, _ = _warm_up(fn, sync, warmup_s)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    sync()
    return graph, warm_s, warm_calls


def graph_replay(fn: Callable[[], Any], device: torch.device, calls: int) -> Callable[[], None]:
    """A callable replaying a graph of `calls` calls of fn: what a cuda_graph timing measured,
    for an energy window that must run the same execution (no launch gaps at idle power)."""
    with torch.cuda.device(device):
        graph, _, _ = _capture(fn, calls, 0.0)

    def replay() -> None:
        graph.replay()

    return replay


def _measure_cuda_graph(fn: Callable[[], Any], device: torch.device, config: TimerConfig) -> Timing:
    """Capture `graph_calls` calls in one graph (`_capture`); a sample is one replay / graph_calls."""
    with torch.cuda.device(device):
        graph, warm_s, warm_calls = _capture(fn, config.graph_calls, config.warmup_s)
        spin = getattr(torch.cuda, "_sleep", None)  # private (present since torch 1.x): without it, no lead
        rule = StopRule(config, calls_per_sample=config.graph_calls)
        start = time.perf_counter()
        while True:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            # After the last sample's sync the GPU is idle: `begin` would fire at once and the
            # replay's launch latency (several us, against 20 calls of a few us) would fall inside
            # the sample. A spin queued first keeps the GPU busy while the host enqueues begin,
            # the replay and end, as the flush does in event mode (nvbench's blocking kernel).
            if spin is not None:
                spin(_GRAPH_LEAD_CYCLES)
            begin.record()
            graph.replay()
            end.record()
            end.synchronize()
            stop, converged, reason = rule.add(_elapsed_s(begin, end) / config.graph_calls,
                                               time.perf_counter() - start)
            if stop:
                return _finish("cuda_graph", rule.samples, warm_s, warm_calls, converged, reason, False,
                               calls_per_sample=config.graph_calls)
