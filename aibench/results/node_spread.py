"""One node under full load: every rank's record of a case folded into the record a reader uses.

Under torchrun or srun every rank runs a per-GPU case on its own GPU at once (aibench.suite.
node_load). The node is as fast as its slowest GPU (a buyer's job waits for it), so the aggregate
record is the slowest rank's record, naming it, with the spread across ranks in its details. A rank
whose case did not finish, or that never answered, makes the aggregate say so: the node's speed is
then not known, and a number from the other GPUs would overstate it.

Pure functions on record dicts (schemas/record.schema.json): no torch, unit-tested exactly.
"""

from __future__ import annotations

import statistics
from typing import Any

KEY = "timing.median"  # seconds per call: every ok record has it, whatever its metrics are


def _median_s(rec: dict[str, Any]) -> float | None:
    timing = rec.get("timing")
    value = timing.get("median") if isinstance(timing, dict) else None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _where(rec: dict[str, Any]) -> dict[str, Any]:
    who = (rec.get("details") or {}).get("launched_rank") or {}
    return {"rank": rec["rank"], "host": who.get("host"), "local_rank": who.get("local_rank"),
            "device_index": (rec.get("device") or {}).get("index")}


def spread(per_rank: list[dict[str, Any]], world: int, missing: list[dict[str, Any]] | None = None
           ) -> dict[str, Any]:
    """The `node_load` block of the aggregate: per-rank medians, the slowest rank, min/median/max of
    the median time across the ranks whose case was measured, and (max - min) / max. Numbers no
    rank measured are None with `unavailable` saying why (never 0)."""
    rows = [{**_where(r), "status": r["status"], "median_s": _median_s(r)} for r in sorted(per_rank, key=_rank)]
    timed = [row for row in rows if row["status"] == "ok" and row["median_s"] is not None]
    block: dict[str, Any] = {
        "world_size": world, "key": KEY, "ranks_measured": [row["rank"] for row in timed],
        "per_rank": rows, "missing": [dict(m) for m in missing or []],
        "slowest_rank": None, "slowest_host": None, "min_s": None, "median_s": None, "max_s": None,
        "spread": None,
    }
    if not timed:
        block["unavailable"] = "no rank measured this case"
        return block
    # The slowest: the largest median; a tie goes to the lowest rank (a stable, reproducible name).
    slowest = max(timed, key=lambda row: (row["median_s"], -row["rank"]))
    values = [row["median_s"] for row in timed]
    low, high = min(values), max(values)
    block.update(slowest_rank=slowest["rank"], slowest_host=slowest["host"], min_s=low,
                 median_s=statistics.median(values), max_s=high, spread=(high - low) / high)
    return block


def _rank(rec: dict[str, Any]) -> int:
    return int(rec["rank"])


def aggregate(per_rank: list[dict[str, Any]], world: int, missing: list[dict[str, Any]] | None = None
              ) -> dict[str, Any]:
    """The record readers use for a case every rank ran: a copy of the slowest rank's record (or of
    the first rank that did not measure it, or failed if a rank never answered), without `rank`,
    with `details.node_load` (see `spread`)."""
    if not per_rank:
        raise ValueError("aggregate needs at least one rank's record")
    block = spread(per_rank, world, missing)
    ordered = sorted(per_rank, key=_rank)
    not_ok = [r for r in ordered if r["status"] != "ok"]
    changes: dict[str, Any] = {}
    if not_ok and len(not_ok) < len(ordered):  # one GPU of the node failed where the others did not
        base = not_ok[0]
        who = _where(base)
        changes["reason"] = f"rank {who['rank']} on host {who['host']}: {base.get('reason')}"
    elif not_ok:  # every rank: the same skip or failure on every GPU, said once
        base = not_ok[0]
    else:
        base = next(r for r in ordered if r["rank"] == block["slowest_rank"])
    if missing:
        lost = "; ".join(str(m.get("reason") or f"rank {m.get('rank')} did not answer") for m in missing)
        changes["status"] = "failed" if base["status"] == "ok" else base["status"]
        prior = changes.get("reason") or base.get("reason")
        changes["reason"] = f"not every rank measured this case: {lost}" + (f"; {prior}" if prior else "")
    details = {k: v for k, v in (base.get("details") or {}).items() if k != "launched_rank"}
    out = {k: v for k, v in base.items() if k != "rank"}
    return {**out, **changes, "details": {**details, "node_load": block}}


def is_rank_record(rec: dict[str, Any]) -> bool:
    """A per-rank record (readers use the aggregate beside it)."""
    return rec.get("rank") is not None
