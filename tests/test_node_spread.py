"""The node under full load: per-rank records folded into the aggregate (slowest rank, spread)."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from aibench.measure.records import Record, validate
from aibench.results.node_spread import aggregate, is_rank_record, spread
from aibench.results.runs import split_ranks


def _rec(rank: int, median_s: float | None, status: str = "ok", reason: str | None = None) -> dict[str, Any]:
    timing = None if median_s is None else {
        "method": "perf_counter", "samples_s": [median_s], "n": 1, "median": median_s, "converged": True,
        "stop_reason": "converged", "total_s": median_s}
    return Record(id="memory.copy[mib=8]/torch", workload="memory.copy", backend="torch", params={"mib": 8},
                  device={"spec": "cpu", "kind": "cpu", "name": "cpu", "index": None}, status=status,
                  reason=reason, entry="copy", timing=timing,
                  metrics={"gbps": 1.0 / median_s} if median_s else {}, rank=rank,
                  details={"bytes": 16, "launched_rank": {"rank": rank, "local_rank": rank, "host": f"h{rank // 2}",
                                                          "world_size": 4}}).to_dict()


def test_slowest_rank_names_the_node_and_the_spread_is_exact() -> None:
    ranks = [_rec(0, 2.0), _rec(1, 5.0), _rec(2, 4.0), _rec(3, 3.0)]
    agg = aggregate(list(reversed(ranks)), world=4)
    block = agg["details"]["node_load"]
    assert (block["slowest_rank"], block["slowest_host"]) == (1, "h0")
    assert (block["min_s"], block["median_s"], block["max_s"]) == (2.0, 3.5, 5.0)
    assert block["spread"] == pytest.approx((5.0 - 2.0) / 5.0)
    assert [row["rank"] for row in block["per_rank"]] == [0, 1, 2, 3]
    assert [row["median_s"] for row in block["per_rank"]] == [2.0, 5.0, 4.0, 3.0]
    # The aggregate's numbers are the slowest rank's; it is no per-rank record itself.
    assert agg["timing"]["median"] == 5.0 and agg["metrics"] == {"gbps": pytest.approx(0.2)}
    assert "rank" not in agg and "launched_rank" not in agg["details"] and agg["details"]["bytes"] == 16
    validate(agg)


def test_a_tie_goes_to_the_lowest_rank_and_one_rank_has_no_spread() -> None:
    assert spread([_rec(2, 3.0), _rec(1, 3.0), _rec(0, 1.0)], world=3)["slowest_rank"] == 1
    one = spread([_rec(0, 2.0)], world=1)
    assert (one["slowest_rank"], one["min_s"], one["max_s"], one["spread"]) == (0, 2.0, 2.0, 0.0)


def test_a_failed_rank_makes_the_aggregate_fail_naming_it() -> None:
    agg = aggregate([_rec(0, 1.0), _rec(1, None, "failed", "out of memory"), _rec(2, 9.0)], world=3)
    assert agg["status"] == "failed" and agg["reason"] == "rank 1 on host h0: out of memory"
    block = agg["details"]["node_load"]
    assert block["ranks_measured"] == [0, 2] and block["slowest_rank"] == 2  # among those that measured it
    validate(agg)


def test_every_rank_skipping_is_one_skip_unchanged() -> None:
    agg = aggregate([_rec(0, None, "skipped", "no fp8"), _rec(1, None, "skipped", "no fp8")], world=2)
    assert (agg["status"], agg["reason"]) == ("skipped", "no fp8")
    block = agg["details"]["node_load"]
    assert block["slowest_rank"] is None and block["spread"] is None and block["unavailable"]


def test_a_rank_that_never_answered_fails_the_aggregate() -> None:
    lost = [{"rank": 1, "host": "h0", "reason": "rank 1 (local rank 1 on host h0) died during copy"}]
    agg = aggregate([_rec(0, 2.0)], world=2, missing=lost)
    assert agg["status"] == "failed"
    assert agg["reason"] == "not every rank measured this case: rank 1 (local rank 1 on host h0) died during copy"
    assert agg["details"]["node_load"]["missing"] == lost
    with pytest.raises(ValueError):
        aggregate([], world=2)


def test_aggregate_leaves_its_inputs_alone() -> None:
    ranks = [_rec(0, 2.0), _rec(1, 5.0)]
    before = copy.deepcopy(ranks)
    aggregate(ranks, world=2)
    assert ranks == before


def test_rank_field_is_optional_and_readers_split_it_off() -> None:
    plain = Record(id="x", workload="w", backend="b", params={}, device={"spec": "cpu", "kind": "cpu", "name": "c"},
                   status="skipped", reason="r").to_dict()
    assert "rank" not in plain  # a one-process record is written exactly as before
    validate(plain)
    per_rank = _rec(1, 2.0)
    assert Record.from_dict(per_rank).rank == 1 and is_rank_record(per_rank) and not is_rank_record(plain)
    with pytest.raises(jsonschema.ValidationError):
        validate({**per_rank, "rank": -1})
    agg = aggregate([per_rank], world=1)
    assert split_ranks([per_rank, agg, plain]) == ([agg, plain], [per_rank])
