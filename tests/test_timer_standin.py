"""The timer's CUDA paths and its warm-up, run here on stand-ins: a virtual clock that host calls
and "GPU work" advance, CUDA events that stamp it, and CUDA graphs that record the work of the
calls captured and replay it. Work runs when it is launched (a GPU that is never behind the
host), so a sample holds exactly the work between its two events: what it should and should not
hold is then a matter of equality, not of timing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from aibench.measure import timer
from aibench.measure.timer import FLUSH_MIN_BYTES, TimerConfig, measure
from aibench.workloads import coldcache
from aibench.workloads.coldcache import rotation

CUDA = torch.device("cuda", 0)  # a device object only: nothing here touches a GPU
L2 = 50 * 2**20
MS = 2**-10  # about a millisecond, exactly representable


class FakeGPU:
    """The clock (host and device alike), the work launched, and torch.cuda's timing API."""

    def __init__(self, first_replay_s: float = 0.0) -> None:
        self.now = 0.0
        self.capturing: list[tuple[float, Any]] | None = None
        self.reads: list[Any] = []  # what each executed call read, in execution order
        self.flushes = 0
        self.syncs = 0
        self.spins: list[tuple[float, int]] = []  # (GPU time, cycles) of each torch.cuda._sleep
        self.first_replay_s = first_replay_s  # a graph's first replay uploads it: slow
        self.flush_bytes = 0

    # --- work
    def launch(self, seconds: float, reads: Any = None) -> None:
        if self.capturing is not None:
            self.capturing.append((seconds, reads))
            return
        self.now += seconds
        self.reads.append(reads)

    # --- time.perf_counter / perf_counter_ns
    def perf_counter(self) -> float:
        return self.now

    def perf_counter_ns(self) -> int:
        return round(self.now * 1e9)

    # --- torch.empty (the L2 flush buffer) and torch.cuda
    def empty(self, n: int, dtype: torch.dtype, device: torch.device) -> SimpleNamespace:
        self.flush_bytes = n * dtype.itemsize
        gpu = self

        def zero_() -> None:
            gpu.flushes += 1
            gpu.now += 5 * MS  # a flush far longer than the call: it must stay out of the sample

        return SimpleNamespace(zero_=zero_)

    def cuda(self) -> SimpleNamespace:
        gpu = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                assert enable_timing
                self.t: float | None = None

            def record(self) -> None:
                self.t = gpu.now

            def synchronize(self) -> None:
                gpu.syncs += 1

            def elapsed_time(self, end: Event) -> float:
                assert self.t is not None and end.t is not None
                return (end.t - self.t) * 1e3

        class CUDAGraph:
            def __init__(self) -> None:
                self.work: list[tuple[float, Any]] = []
                self.replays = 0

            def replay(self) -> None:
                if self.replays == 0:
                    gpu.now += gpu.first_replay_s
                self.replays += 1
                for seconds, reads in self.work:
                    gpu.launch(seconds, reads)

        @contextlib.contextmanager
        def graph(g: CUDAGraph) -> Iterator[None]:
            gpu.capturing = g.work
            try:
                yield
            finally:
                gpu.capturing = None

        def sync() -> None:
            gpu.syncs += 1

        def spin(cycles: int) -> None:
            gpu.spins.append((gpu.now, cycles))

        stream = SimpleNamespace(wait_stream=lambda _other: None)
        return SimpleNamespace(
            Event=Event, CUDAGraph=CUDAGraph, graph=graph, synchronize=sync, _sleep=spin,
            device=lambda _d: contextlib.nullcontext(), Stream=lambda: stream,
            stream=lambda _s: contextlib.nullcontext(), current_stream=lambda: stream,
        )


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> FakeGPU:
    fake = FakeGPU(first_replay_s=1.0)
    monkeypatch.setattr(timer, "torch", SimpleNamespace(cuda=fake.cuda(), empty=fake.empty, int32=torch.int32))
    monkeypatch.setattr(timer, "time", SimpleNamespace(perf_counter=fake.perf_counter,
                                                       perf_counter_ns=fake.perf_counter_ns))
    monkeypatch.setattr(timer.devices, "cache_bytes", lambda _d: L2)
    return fake


QUIET = TimerConfig(warmup_s=0.0, min_samples=10, min_time_s=0.0, max_time_s=100.0, target_rel_se=0.01)


def test_event_samples_hold_the_call_and_not_the_flush(gpu: FakeGPU) -> None:
    timing = measure(lambda: gpu.launch(MS), CUDA, QUIET)
    assert timing.method == "cuda_event" and timing.l2_flush and timing.calls_per_sample == 1
    assert timing.samples_s == [MS] * len(timing.samples_s)
    assert gpu.flushes >= len(timing.samples_s)  # one before every sample
    assert gpu.flush_bytes >= max(FLUSH_MIN_BYTES, 2 * L2)
    assert timing.as_dict()["median"] == MS and timing.as_dict()["l2_flush"] is True


def test_event_samples_without_flush_say_so(gpu: FakeGPU) -> None:
    from dataclasses import replace

    timing = measure(lambda: gpu.launch(MS), CUDA, replace(QUIET, flush_l2=False))
    assert gpu.flushes == 0 and timing.l2_flush is False and timing.samples_s[0] == MS


def test_graph_samples_are_per_call_and_skip_the_first_replay(gpu: FakeGPU) -> None:
    cfg = TimerConfig(warmup_s=0.0, min_samples=10, min_time_s=0.0, max_time_s=100.0, cuda_graph=True)
    timing = measure(lambda: gpu.launch(MS), CUDA, cfg)
    assert timing.method == "cuda_graph" and timing.calls_per_sample == cfg.graph_calls
    assert timing.l2_flush is False  # no flush between the calls of a replay: the record must not claim one
    assert timing.samples_s == [MS] * len(timing.samples_s)  # the 1 s upload of the first replay is not in
    d = timing.as_dict()
    assert d["method"] == "cuda_graph" and d["calls_per_sample"] == cfg.graph_calls and d["median"] == MS
    assert d["total_s"] == sum(timing.samples_s)  # what bundle verify recomputes from the samples


def test_each_graph_sample_is_queued_behind_a_spin(gpu: FakeGPU) -> None:
    """The GPU idles after each sample's sync: without a spin queued first, the replay's launch
    latency would be timed as part of the calls."""
    cfg = TimerConfig(warmup_s=0.0, min_samples=10, min_time_s=0.0, max_time_s=100.0, cuda_graph=True)
    timing = measure(lambda: gpu.launch(MS), CUDA, cfg)
    assert len(gpu.spins) == len(timing.samples_s) and all(c >= 50_000 for _, c in gpu.spins)


def test_a_call_that_enqueues_no_gpu_work_is_not_timed_as_instant(gpu: FakeGPU) -> None:
    with pytest.raises(RuntimeError, match="enqueued no GPU work"):
        measure(lambda: None, CUDA, QUIET)  # events 0 ms apart: it ran elsewhere, or nowhere


def test_graph_timing_stops_once_its_replays_cover_min_time(gpu: FakeGPU) -> None:
    """min_time_s is GPU time measured: 20 calls of ~1 ms a replay reach 0.5 s in 25 replays, not 500."""
    cfg = TimerConfig(warmup_s=0.0, min_samples=10, min_time_s=0.5, max_time_s=100.0, cuda_graph=True)
    timing = measure(lambda: gpu.launch(MS), CUDA, cfg)
    replays_needed = -(-cfg.min_time_s // (cfg.graph_calls * MS))
    assert len(timing.samples_s) == max(cfg.min_samples, replays_needed)


def test_warm_up_time_starts_after_a_slow_first_call(gpu: FakeGPU) -> None:
    """A first call that compiles or autotunes for longer than warmup_s is not the warm-up: warm
    calls must still run for warmup_s (clocks back up after the idle compile, lazy work of later
    calls such as a CUDA-graph recording kept out of the samples), as do_bench warms up after
    its first call."""
    calls: list[float] = []

    def fn() -> None:
        seconds = 10.0 if not calls else MS
        calls.append(seconds)
        gpu.launch(seconds)

    cfg = TimerConfig(warmup_s=0.25, min_samples=10, min_time_s=0.0, max_time_s=100.0)
    timing = measure(fn, torch.device("cpu"), cfg)
    assert timing.warmup_calls - 1 >= cfg.warmup_s / MS  # warm calls after the first fill warmup_s
    assert timing.warmup_s >= 10.0 + cfg.warmup_s  # the record's warm-up time is all of it
    assert timing.samples_s == pytest.approx([MS] * len(timing.samples_s), abs=1e-9)  # whole ns
    gpu.syncs = 0
    calls.clear()
    events = measure(fn, CUDA, cfg)
    assert events.warmup_calls - 1 >= cfg.warmup_s / MS
    # Batches sized from the warm calls (~50 ms of work each), not from the 10 s first call
    # (one sync per sample): the warm-up calls sync once each.
    assert gpu.syncs - events.warmup_calls < len(events.samples_s)


def _min_bytes_between_uses(reads: list[Any], nbytes: int) -> float:
    last: dict[int, int] = {}
    gaps = []
    for i, item in enumerate(reads):
        if id(item) in last:
            gaps.append((i - last[id(item)] - 1) * nbytes)
        last[id(item)] = i
    return min(gaps) if gaps else float("inf")


@pytest.mark.parametrize("kib", [16.8, 12.0, 34.0, 50.3, 6.5, 6.0])
def test_graph_replays_over_a_rotation_read_what_the_record_claims(gpu: FakeGPU, monkeypatch: pytest.MonkeyPatch,
                                                                   kib: float) -> None:
    """A decode KV cache of 16.8 MB against an H200's 60 MB L2 (scaled down 1024 times): the
    record says every call is cold only if, replay after replay, at least twice the L2 is read
    between two uses of one copy, across the replay boundary too."""
    l2 = 60 * 1024
    monkeypatch.setattr(coldcache.devices, "cache_bytes", lambda _d: l2)
    operand = torch.randn(int(kib * 1024) // 4)
    rot, details = rotation((operand,), torch.device("cpu"))  # CPU tensors, a GPU's cache size
    fn = coldcache.rotating(lambda x: gpu.launch(MS, reads=x), rot)
    cfg = TimerConfig(warmup_s=0.0, min_samples=10, min_time_s=0.0, max_time_s=100.0, cuda_graph=True)
    gpu.reads.clear()
    measure(fn, CUDA, cfg)
    replayed = gpu.reads[-5 * cfg.graph_calls:]  # the last five replays
    gap = _min_bytes_between_uses(replayed, details["operand_bytes"])
    if details["cold_l2_every_call"]:
        assert gap >= 2 * l2
    if 1 + -(-2 * l2 // details["operand_bytes"]) <= coldcache.MAX_COPIES:  # copies enough can be had
        assert details["cold_l2_every_call"]


def test_cpu_timing_never_flushes_and_counts_every_call(gpu: FakeGPU) -> None:
    seen: list[str] = []
    timing = measure(lambda: seen.append("call"), torch.device("cpu"), QUIET)
    assert gpu.flushes == 0 and timing.method == "perf_counter" and not timing.l2_flush
    assert len(seen) == timing.warmup_calls + len(timing.samples_s)
