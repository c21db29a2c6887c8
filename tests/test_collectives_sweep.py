"""Collective size sweeps (nccl-tests' -b/-e/-f): sizes, one record per size, the spread across
ranks, the transport and the busbw floor; end to end on 2 spawned gloo ranks on the CPU."""

from __future__ import annotations

import socket
import textwrap
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from aibench.cli import cli
from aibench.collectives import launch
from aibench.collectives.busbw import busbw
from aibench.collectives.floors import busbw_floor, floor_verdict
from aibench.collectives.sweep import parse_size, size_list, sweep_sizes
from aibench.collectives.transport import GLOO_TRANSPORT, merge_transports
from aibench.core import stats
from aibench.core.errors import UsageError
from aibench.measure.records import validate
from aibench.measure.runner import RunOptions
from aibench.measure.timer import TimerConfig
from aibench.suite.load import load_suite
from aibench.suite.model import PlanContext
from aibench.workloads import collectives as wl
from aibench.workloads.registry import get
from aibench.workloads.run import run_workload

CPU = torch.device("cpu")
FAST = RunOptions(timer=TimerConfig(warmup_s=0.0, min_samples=4, min_time_s=0.005, max_time_s=0.2,
                                    target_rel_se=0.5))


# ----------------------------------------------------------------------------- pure


def test_sizes_step_as_nccl_tests_does() -> None:
    assert parse_size("8") == 8 and parse_size("64K") == 65536 and parse_size("1GiB") == 1 << 30
    assert sweep_sizes("8:64:2") == [8, 16, 32, 64]
    assert sweep_sizes("8:100:4") == [8, 32]  # MAX is a bound, not a member
    assert len(sweep_sizes("8:8G:2")) == 31
    assert size_list("1M,8,8,64K") == [1 << 20, 8, 65536]  # a list keeps its order, once each
    for bad in ("8:1", "64:8:2", "8:64:1", "8:64:x", "", "8,,-1", "1Q"):
        with pytest.raises(UsageError):
            size_list(bad)


def test_a_sweep_expands_into_one_case_per_size() -> None:
    assert wl.expand_sizes({"dtype": "float32"}) == [{"dtype": "float32"}]
    cases = wl.expand_sizes({"sizes": "8:32:2", "dtype": "float32"})
    assert [c["size_bytes"] for c in cases] == [8, 16, 32] and all(c["sizes"] == "8:32:2" for c in cases)
    params = get("collective.all_reduce").resolve_params({"sizes": "8:32:2", "size_bytes": 16}, preview=True)
    assert wl.total_bytes(params) == 16 and not wl.last_of_sweep(params)
    assert wl.last_of_sweep({**params, "size_bytes": 32})
    assert wl.total_bytes({**params, "size_bytes": 0}) == 1 << 20  # size_mib=1 in preview


def test_across_ranks_is_min_avg_max_of_each_ranks_median() -> None:
    out = wl.across_ranks("all_reduce", 2, 1000, [[1.0, 2.0, 3.0], [4.0, 4.0, 5.0]])
    assert out["per_rank_median_s"] == [2.0, 4.0]
    assert out["time_s"] == {"min": 2.0, "avg": 3.0, "max": 4.0}
    assert out["busbw_gbps"] == {"min": busbw("all_reduce", 2, 1000, 4.0), "avg": busbw("all_reduce", 2, 1000, 3.0),
                                 "max": busbw("all_reduce", 2, 1000, 2.0)}


def test_merge_transports() -> None:
    gloo = merge_transports([dict(GLOO_TRANSPORT)] * 2, ["a", "a"])
    assert gloo["available"] is False and gloo["reason"] == GLOO_TRANSPORT["reason"]
    nvl = {"backend": "nccl", "available": True, "transport": "P2P/CUMEM over NVLink within a node",
           "nccl_version": "2.21.5", "network": None, "nvls": True}
    ib = {**nvl, "transport": "NET/IB/GDRDMA between nodes"}
    lost = {"backend": "nccl", "available": False, "reason": "NCCL wrote no log"}
    same = merge_transports([nvl, nvl], ["a", "a"])
    assert same["transport"] == nvl["transport"] and "per_rank" not in same and same["ranks_reporting"] == 2
    mixed = merge_transports([nvl, ib, lost], ["a", "b", "c"])
    assert mixed["transport"] == f"{nvl['transport']} | {ib['transport']}"
    assert [r["host"] for r in mixed["per_rank"]] == ["a", "b"]
    assert mixed["unreported"] == [{"rank": 2, "host": "c", "reason": "NCCL wrote no log"}]


def test_floors() -> None:
    assert busbw_floor("all_reduce", 2, 1, "cpu", 0.0) is None
    assert busbw_floor("all_reduce", 16, 2, "NVIDIA H100 80GB HBM3", 0.0) is None  # no inter-node floor
    built_in = busbw_floor("all_reduce", 8, 1, "NVIDIA H100 80GB HBM3", 0.0)
    assert built_in is not None and built_in["floor_gbps"] == pytest.approx(0.8 * 460.0)
    assert floor_verdict(built_in, 1 << 20, 10.0, ["n1"])["below"] is None  # below 1 GiB: not judged
    low = floor_verdict(built_in, 1 << 30, 300.0, ["n2", "n1", "n1"])
    assert low["below"] is True and "n1, n2" in low["note"]
    assert floor_verdict(built_in, 1 << 30, 400.0, ["n1"])["below"] is False
    configured = busbw_floor("all_gather", 16, 2, "x", 40.0)
    assert configured["floor_gbps"] == 40.0 and "configured" in configured["source"]


def test_bad_sweeps_are_usage_errors_before_any_rank_starts() -> None:
    result = CliRunner().invoke(cli, ["run", "collective.all_reduce", "--device", "cpu", "-p", "sizes=8:1"])
    assert result.exit_code == 2 and "bad sweep '8:1'" in result.output
    with pytest.raises(UsageError, match="floor_gbps"):
        get("collective.all_reduce").resolve_params({"floor_gbps": -1.0}, preview=True)


def test_a_suite_entry_sweeps_sizes_into_one_case_per_size(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent("""
        [suite]
        name = "sweep"
        version = "0.1"
        [[entry]]
        id = "ar"
        workload = "collective.all_reduce"
        params = { sizes = "8:32:2" }
        preview = { params = { sizes = "64,8K" } }
    """), encoding="utf-8")
    suite = load_suite(path)
    full = suite.plan("full", PlanContext(gpus=8, is_gpu=True))
    assert [c.case_id for c in full] == ["ar/size_bytes=8", "ar/size_bytes=16", "ar/size_bytes=32"]
    assert [c.params["size_bytes"] for c in suite.plan("preview", PlanContext())] == [64, 8192]
    path.write_text(path.read_text().replace('"8:32:2"', '"8:32:1"'), encoding="utf-8")
    with pytest.raises(UsageError, match="FACTOR must be an integer >= 2"):
        load_suite(path)


# ----------------------------------------------------------------------------- end to end


def test_a_sweep_is_one_checked_record_per_size_on_one_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []
    real = launch.RankPool.__init__

    def counting(self: launch.RankPool, *args: object, **kwargs: object) -> None:
        started.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(launch.RankPool, "__init__", counting)
    t0 = time.perf_counter()
    outcomes = run_workload("collective.all_reduce", {"sizes": "8:4K:8", "floor_gbps": 1e6}, CPU, options=FAST)
    assert time.perf_counter() - t0 < 30
    records = [o.record for o in outcomes]
    assert [r.details["size_bytes"] for r in records] == [8, 64, 512, 4096]
    assert len({r.id for r in records}) == 4 and len(started) == 1  # the ranks lived for the whole sweep
    for rec in records:
        assert rec.status == "ok", rec.reason
        validate(rec.to_dict())
        assert rec.correctness["passed"] is True  # every size checked element by element
        size = rec.details["size_bytes"]
        assert rec.metrics["busbw_gbps"] == pytest.approx(busbw("all_reduce", 2, size, rec.timing["median"]))
        spread = rec.details["across_ranks"]
        assert spread["time_s"]["min"] <= spread["time_s"]["avg"] <= spread["time_s"]["max"]
        assert spread["busbw_gbps"]["min"] <= spread["busbw_gbps"]["avg"] <= spread["busbw_gbps"]["max"]
        # every rank's median is no slower than the per-iteration slowest rank's
        assert max(spread["per_rank_median_s"]) <= rec.timing["median"] * (1 + 1e-9)
        assert rec.details["transport"] == {"backend": "gloo", "available": False, "reason": GLOO_TRANSPORT["reason"]}
        assert rec.details["hosts"] == [socket.gethostname()] * 2 and rec.details["sweep"]["sizes"] == "8:4K:8"
    *small, largest = records
    assert all(r.details["floor"]["below"] is None for r in small)  # judged at the largest size only
    assert largest.details["floor"]["below"] is True and "below the floor" in largest.details["busbw_note"]
    assert not wl._SWEEP_POOLS  # the last size took the pool with it


def test_a_size_below_one_element_per_rank_is_skipped_with_the_reason() -> None:
    [outcome] = run_workload("collective.all_gather", {"sizes": "4"}, CPU, options=FAST)
    assert outcome.record.status == "skipped"
    assert "less than one element per rank (2 ranks)" in outcome.record.reason


def test_a_rank_dying_mid_sweep_fails_that_size_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 1 exits at the third size: that record names the rank and the host, the earlier ones
    are kept and the sizes after it run on a fresh pool."""
    monkeypatch.setattr(launch, "FAULT_INJECTION", "exit@512")
    t0 = time.perf_counter()
    outcomes = run_workload("collective.broadcast", {"sizes": "8:4K:8"}, CPU, options=FAST)
    assert time.perf_counter() - t0 < 30
    assert [o.record.status for o in outcomes] == ["ok", "ok", "failed", "ok"]
    assert outcomes[3].record.details["size_bytes"] == 4096
    reason = outcomes[2].record.reason
    assert "rank 1 of 2 exited with code 3" in reason and f"on host {socket.gethostname()}" in reason
    assert not wl._SWEEP_POOLS and stats.median(outcomes[0].record.timing["samples_s"]) > 0
