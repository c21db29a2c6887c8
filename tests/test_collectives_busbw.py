"""Pure parts of the collective benchmarks: nccl-tests formulas, iteration planning, check patterns,
availability. No process is spawned here."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from aibench.collectives import busbw as bw
from aibench.collectives.worker import (
    Plan,
    amplitude,
    burst_iterations,
    layout,
    more_iterations,
    pattern,
    plan_iterations,
)
from aibench.core.errors import Unsupported, UsageError
from aibench.workloads import collectives as wl
from aibench.workloads.registry import get

# ---------------------------------------------------------------- formulas (hardware.md, Collectives)

def test_algbw_is_bytes_over_seconds_in_decimal_gb() -> None:
    assert bw.algbw(2e9, 1.0) == 2.0
    assert bw.algbw(1 << 30, 0.5) == (1 << 30) / 0.5 / 1e9
    assert bw.algbw(0, 1.0) == 0.0
    with pytest.raises(ValueError):
        bw.algbw(1.0, 0.0)
    with pytest.raises(ValueError):
        bw.algbw(-1.0, 1.0)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 16])
def test_bus_factor_for_every_op(n: int) -> None:
    expected = {
        "all_reduce": Fraction(2 * (n - 1), n),
        "reduce_scatter": Fraction(n - 1, n),
        "all_gather": Fraction(n - 1, n),
        "all_to_all": Fraction(n - 1, n),
        "broadcast": Fraction(1),
        "reduce": Fraction(1),
    }
    assert set(expected) == set(bw.OPS)
    for op, factor in expected.items():
        assert bw.bus_factor(op, n) == float(factor), op


def test_busbw_is_algbw_times_factor() -> None:
    # 8 ranks, 16 GiB all_reduce in 0.0625 s: algbw 274.9 GB/s, busbw x 7/4
    size, t = 16 * (1 << 30), 0.0625
    assert bw.busbw("all_reduce", 8, size, t) == bw.algbw(size, t) * 1.75
    assert bw.busbw("all_gather", 4, size, t) == bw.algbw(size, t) * 0.75
    assert bw.busbw("broadcast", 5, size, t) == bw.algbw(size, t)


def test_bad_op_or_world() -> None:
    with pytest.raises(ValueError, match="unknown collective"):
        bw.bus_factor("allreduce", 2)
    with pytest.raises(ValueError, match="at least 1"):
        bw.bus_factor("all_reduce", 0)


def test_reference_only_for_8_gpu_nvswitch_all_reduce() -> None:
    assert bw.reference_busbw("all_reduce", 8, "NVIDIA H200") == (482.0, "8xH200 NVSwitch")
    assert bw.reference_busbw("all_reduce", 8, "NVIDIA H100 80GB HBM3")[0] == 460.0
    assert bw.reference_busbw("all_reduce", 4, "NVIDIA H200") is None
    assert bw.reference_busbw("all_gather", 8, "NVIDIA H200") is None
    assert bw.reference_busbw("all_reduce", 8, "NVIDIA H100 PCIe") is None
    assert bw.reference_busbw("all_reduce", 8, "NVIDIA H200 NVL") is None
    assert bw.reference_busbw("all_reduce", 8, "NVIDIA A100-SXM4-80GB") is None


def test_shortfall_note_only_beyond_20_percent() -> None:
    big = 1 << 30
    assert bw.shortfall_note("all_reduce", 8, "NVIDIA H200", big, 482 * 0.81) is None
    note = bw.shortfall_note("all_reduce", 8, "NVIDIA H200", big, 300.0)
    assert note is not None and "38% below" in note and "482" in note
    assert bw.shortfall_note("all_reduce", 8, "NVIDIA H200", big - 1, 10.0) is None  # not saturated
    assert bw.shortfall_note("all_reduce", 2, "NVIDIA H200", big, 10.0) is None


# ---------------------------------------------------------------- iteration planning

PLAN = Plan(warmup_s=0.25, min_samples=10, min_time_s=0.5, max_time_s=5.0, max_samples=10_000)


def test_plan_iterations_meets_min_time_and_min_samples() -> None:
    assert plan_iterations(0.01, PLAN) == (25, 50)  # 0.5 s of 10 ms iterations
    assert plan_iterations(1.0, PLAN) == (1, 10)  # min_samples is a hard floor past max_time_s
    assert plan_iterations(1e-6, PLAN)[1] == 10_000  # capped by max_samples
    warm, count = plan_iterations(0.003, Plan(0.0, 3, 0.02, 0.3))
    assert warm == 0 and count == 7


def test_plan_iterations_respects_max_time() -> None:
    plan = Plan(warmup_s=0.0, min_samples=2, min_time_s=10.0, max_time_s=1.0)
    assert plan_iterations(0.1, plan) == (0, 10)


def test_more_iterations_tops_up_to_min_time() -> None:
    plan = Plan(warmup_s=0.0, min_samples=3, min_time_s=0.5, max_time_s=4.0)
    assert more_iterations([0.0625] * 8, 0.5, plan) == 0
    assert more_iterations([0.0625] * 4, 0.25, plan) == 4
    assert more_iterations([0.0625] * 4, 3.9, plan) == 1  # only what max_time_s leaves
    assert more_iterations([0.0625] * 4, 4.0, plan) == 0  # out of time
    assert more_iterations([], 0.0, plan) == 0


def test_burst_iterations() -> None:
    assert burst_iterations(0.01) == 5
    assert burst_iterations(1.0) == 1
    assert burst_iterations(0.0) == 10_000


# ---------------------------------------------------------------- layout and check values

@pytest.mark.parametrize("op", wl.OPS)
def test_layout_rounds_to_whole_chunks(op: str) -> None:
    n_in, n_out, chunk = layout(op, 4 * 1000 + 3, torch.float32, 3)  # 1000 elements -> 999
    assert chunk == 333
    sizes = {"all_gather": (333, 999), "reduce_scatter": (999, 333)}
    assert (n_in, n_out) == sizes.get(op, (999, 999))
    with pytest.raises(ValueError, match="less than one element per rank"):
        layout(op, 4, torch.float32, 2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("n", [2, 3, 8, 64, 256])
def test_reduction_values_are_exact(dtype: torch.dtype, n: int) -> None:
    amp = amplitude("all_reduce", dtype, n)
    assert amp >= 1
    worst = torch.tensor(float(n * amp), dtype=torch.float64)
    assert float(worst.to(dtype)) == n * amp  # the largest partial sum is representable
    assert float((worst - 1).to(dtype)) == n * amp - 1


def test_pattern_is_deterministic_bounded_and_rank_dependent() -> None:
    cpu = torch.device("cpu")
    a = pattern(3, 1000, 5000, 8, cpu)
    assert torch.equal(a, pattern(3, 1000, 5000, 8, cpu))
    assert torch.equal(a[10:20], pattern(3, 1010, 10, 8, cpu))  # position-addressable
    assert int(a.abs().max()) <= 8 and len(set(a.tolist())) == 17
    assert not torch.equal(a, pattern(4, 1000, 5000, 8, cpu))
    assert not torch.equal(a[:-7], a[7:])  # no short period a misplaced chunk could hide behind
    huge = pattern(0, 1 << 34, 4, 8, cpu)  # indices past 2^32 (16 GiB buffers) do not overflow
    assert int(huge.abs().max()) <= 8


def test_merge_checks() -> None:
    good = {"passed": True, "wrong": 0, "elements": 10, "max_abs_error": 0.0, "err_sq": 0.0,
            "ref_sq": 4.0, "first": None}
    bad = {"passed": False, "wrong": 1, "elements": 10, "max_abs_error": 1.0, "err_sq": 1.0,
           "ref_sq": 12.0, "first": "index 0: got 4, expected 3"}
    ok = wl.merge_checks([good, good])
    assert ok.passed and ok.tolerance == 0.0
    failed = wl.merge_checks([good, bad])
    assert not failed.passed and failed.rel_error == 0.25 and failed.max_abs_error == 1.0
    assert "rank 1: 1 of 10" in (failed.detail or "")
    nan = wl.merge_checks([{**bad, "max_abs_error": math.inf}])
    assert not nan.passed and nan.max_abs_error is None


# ---------------------------------------------------------------- availability and world size

def test_every_collective_is_registered() -> None:
    for op in wl.OPS:
        assert get(f"collective.{op}").baseline_name == "torch"


def test_availability_with_fewer_than_two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = get("collective.all_reduce").get_backend("torch")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert backend.available(torch.device("cuda")) == (False, "needs 2 or more GPUs, 1 visible")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert backend.available(torch.device("cuda", 0)) == (False, "needs 2 or more GPUs, 0 visible")
    assert backend.available(torch.device("cpu")) == (True, None)
    assert backend.available(torch.device("meta"))[0] is False


def test_world_size(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert wl.world_size(0, cpu) == 2 and wl.world_size(3, cpu) == 3
    with pytest.raises(UsageError):
        wl.world_size(1, cpu)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    cuda = torch.device("cuda")
    assert wl.world_size(0, cuda) == 4 and wl.world_size(2, cuda) == 2
    with pytest.raises(Unsupported, match="ranks=8 needs 8 GPUs, 4 visible"):
        wl.world_size(8, cuda)


def test_preview_defaults_are_cpu_friendly() -> None:
    params = get("collective.all_gather").resolve_params({}, preview=True)
    assert params == {"size_mib": 1, "dtype": "float32", "ranks": 2, "sizes": "", "size_bytes": 0, "floor_gbps": 0.0}
    full = get("collective.all_gather").resolve_params({}, preview=False)
    assert full == {"size_mib": 1024, "dtype": "bfloat16", "ranks": 0, "sizes": "", "size_bytes": 0, "floor_gbps": 0.0}
