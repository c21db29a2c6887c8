"""The collective workloads end to end on the CPU: spawned ranks, gloo, world sizes 2 and 3.

Each test starts one process group (~1-3 s on a 2-core CPU); the timing rules are tiny. Faults are
injected through launch.FAULT_INJECTION, which travels to the spawned ranks as an argument (they
cannot see a monkeypatch of the parent).
"""

from __future__ import annotations

import multiprocessing
import time
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from aibench.collectives import launch
from aibench.collectives.busbw import busbw
from aibench.collectives.launch import RankError, RankPool
from aibench.collectives.worker import OpSpec, Plan
from aibench.core import stats
from aibench.measure import runner
from aibench.measure.records import validate
from aibench.measure.runner import RunOptions
from aibench.measure.timer import TimerConfig
from aibench.workloads import collectives as wl
from aibench.workloads.run import run_workload

CPU = torch.device("cpu")
TINY = Plan(warmup_s=0.0, min_samples=3, min_time_s=0.005, max_time_s=0.2)
FAST = RunOptions(timer=TimerConfig(warmup_s=0.0, min_samples=4, min_time_s=0.005, max_time_s=0.2,
                                    target_rel_se=0.5))


class _FakeTelemetry:
    """Calls fn like the energy window does, without a power counter; covers devices 0..n-1."""

    available = True
    reason = None

    def __init__(self, device_count: int = 2) -> None:
        self.calls = 0
        self.device_count = device_count
        self.counted: list[Any] = []

    def uncovered(self, indices: list[int]) -> list[int]:
        return [i for i in indices if i >= self.device_count]

    def measure_energy(self, fn: Any, sync: Any, *, min_duration_s: float, work: Any, devices: Any = None,
                       calls_per_fn: int = 1) -> Any:
        self.counted.append(devices)
        for _ in range(2):
            fn()
            self.calls += 1
        sync()
        return SimpleNamespace(summary={"available": False, "reason": "fake telemetry"}, samples=[])


def test_every_op_and_dtype_is_exact_on_three_ranks() -> None:
    """One pool serves every collective in turn; odd sizes are rounded to whole chunks."""
    with RankPool(3, "cpu", fault="") as pool:
        assert pool.backend == "gloo"
        for op in wl.OPS:
            for dtype in ("float32", "bfloat16"):
                info = pool.prepare(OpSpec(op, 4 * 1000 + 3, dtype))
                elements = 999 if dtype == "float32" else 2001  # 4003 B: 1000 fp32 / 2001 bf16
                assert info["size_bytes"] == elements * (4 if dtype == "float32" else 2)
                checks = pool.check()
                assert all(c["passed"] for c in checks), (op, dtype, checks)
                assert all(c["elements"] == info["output_elements"] for c in checks)
            per_rank = pool.measure(TINY)
            counts = {len(r["samples_s"]) for r in per_rank}
            assert len(counts) == 1 and counts.pop() >= 3  # every rank ran the same count
            assert all(s > 0 for r in per_rank for s in r["samples_s"])
            assert pool.burst(2, 1e-3) > 0
    assert not pool.alive
    assert all(not p.is_alive() for p in pool._procs)


def test_all_reduce_end_to_end_through_the_runner() -> None:
    telemetry = _FakeTelemetry()
    [outcome] = run_workload("collective.all_reduce", {"size_mib": 1}, CPU,
                             options=RunOptions(timer=FAST.timer, telemetry=True), telemetry=telemetry)
    rec = outcome.record
    assert rec.status == "ok", rec.reason
    validate(rec.to_dict())
    assert rec.correctness["passed"] is True and rec.correctness["tolerance"] == 0.0
    samples = rec.timing["samples_s"]
    assert len(samples) >= 4 and all(s > 0 for s in samples)
    size = rec.details["size_bytes"]
    assert size == 1 << 20 and rec.details["ranks"] == 2 and rec.details["backend"] == "gloo"
    assert rec.details["op"] == "all_reduce" and "not comparable" in rec.details["note"]
    assert rec.metrics["busbw_gbps"] == pytest.approx(busbw("all_reduce", 2, size, rec.timing["median"]))
    assert rec.metrics["algbw_gbps"] == pytest.approx(size / rec.timing["median"] / 1e9)
    assert telemetry.calls == 2  # fn ran bursts of the collective in the ranks
    assert rec.work["collectives"] >= 1
    # The ranks' own loop is described as it ran, not as a serving run's fixed request set.
    timing = rec.timing
    assert timing["stop_reason"].startswith("the ranks' plan") and timing["warmup_calls"] >= 3
    assert timing["converged"] is (len(samples) >= FAST.timer.min_samples
                                   and stats.rel_stderr_median(samples) <= FAST.timer.target_rel_se)


def test_energy_of_one_device_is_not_attributed_to_two(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on a GPU node: the case runs on cuda:0 and cuda:1, the telemetry covers cuda:0 only.
    monkeypatch.setattr(runner, "_used", lambda case, device: list(range(case.devices)))
    telemetry = _FakeTelemetry(device_count=1)
    [outcome] = run_workload("collective.broadcast", {"size_mib": 1}, CPU,
                             options=RunOptions(timer=FAST.timer, telemetry=True), telemetry=telemetry)
    rec = outcome.record
    assert rec.status == "ok", rec.reason
    assert telemetry.calls == 0
    assert rec.telemetry == {"available": False,
                             "reason": "this case runs on devices [0, 1]; the run's telemetry does not cover [1]"}


def test_cases_count_the_energy_of_the_devices_they_run_on() -> None:
    one, two = SimpleNamespace(devices=1), SimpleNamespace(devices=2)
    assert runner._used(one, torch.device("cuda", 3)) == [3]  # a single-GPU case: its own GPU
    assert runner._used(two, torch.device("cuda", 3)) == [0, 1]  # the rank pool's cuda:0..N-1
    assert runner._used(two, CPU) == []  # CPU ranks share the packages RAPL reads: all of it counts


def test_wrong_result_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "FAULT_INJECTION", "corrupt")
    [outcome] = run_workload("collective.reduce_scatter", {}, CPU, options=FAST)
    rec = outcome.record
    assert rec.status == "invalid"
    assert "rank 1: 1 of" in rec.reason and "index 0" in rec.reason
    assert rec.timing is None and rec.correctness["passed"] is False


def test_a_rank_that_raises_fails_the_record_without_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "FAULT_INJECTION", "raise")
    t0 = time.perf_counter()
    [outcome] = run_workload("collective.all_gather", {}, CPU, options=FAST)
    rec = outcome.record
    assert rec.status == "failed"
    assert "rank 1 of 2 failed during measure: RuntimeError: injected fault" in rec.reason
    assert "injected fault" in rec.details["traceback"]  # the rank's own traceback is chained
    assert time.perf_counter() - t0 < 30  # rank 0, blocked in a collective, was killed


def test_a_rank_that_dies_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "FAULT_INJECTION", "exit")
    pool = RankPool(2, "cpu")
    pool.prepare(OpSpec("broadcast", 4096, "float32"))
    with pytest.raises(RankError, match="rank 1 of 2 exited with code 3"):
        pool.measure(TINY)
    assert not pool.alive
    with pytest.raises(RankError, match="closed"):
        pool.check()


def test_the_case_deadline_stops_the_ranks() -> None:
    """A case past the runner's time limit is failed and its ranks do not outlive it."""
    slow = RunOptions(timer=TimerConfig(warmup_s=0.0, min_samples=3, min_time_s=30.0, max_time_s=30.0),
                      case_timeout_s=1.5)
    t0 = time.perf_counter()
    [outcome] = run_workload("collective.all_to_all", {}, CPU, options=slow)
    assert outcome.record.status == "failed"
    assert outcome.record.reason.startswith("timeout")
    assert time.perf_counter() - t0 < 15
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("aibench-rank")]


@pytest.mark.gpu
def test_every_op_is_exact_with_nccl_on_every_gpu() -> None:
    n = torch.cuda.device_count()
    if n < 2:
        pytest.skip(f"needs 2 or more GPUs, {n} visible")
    with RankPool(n, "cuda", fault="") as pool:
        assert pool.backend == "nccl"
        for op in wl.OPS:
            pool.prepare(OpSpec(op, 8 * (1 << 20) + 6, "bfloat16"))
            assert all(c["passed"] for c in pool.check()), op
            assert all(len(r["samples_s"]) >= 3 for r in pool.measure(TINY))


@pytest.mark.gpu
def test_all_reduce_end_to_end_on_gpus() -> None:
    n = torch.cuda.device_count()
    if n < 2:
        pytest.skip(f"needs 2 or more GPUs, {n} visible")
    [outcome] = run_workload("collective.all_reduce", {"size_mib": 256}, torch.device("cuda"), options=FAST)
    rec = outcome.record
    assert rec.status == "ok", rec.reason
    assert rec.details["backend"] == "nccl" and rec.details["ranks"] == n
    assert rec.details["timing_method"] == "cuda_event" and rec.metrics["busbw_gbps"] > 0
