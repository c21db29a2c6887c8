"""A suite's per-GPU cases on every GPU of a launched job at once: the node under full load.

Under torchrun or srun, rank 0 runs the suite (aibench.suite.run). For a per-GPU case (not a
collective, not a multi-GPU model) it posts the case to every rank, then all ranks meet at a
barrier and run it on their own device (cuda:LOCAL_RANK; the CPU with gloo), each with the
telemetry of its own GPU, so that the measurements overlap: every GPU draws power, heats and
throttles beside the others, as in a production job. Each rank's record comes back to rank 0,
which writes it as a per-rank record (`rank` set, host and device index in its details) and then
the aggregate readers use (aibench.results.node_spread: the slowest rank's numbers, naming it,
and the spread across ranks).

The barrier is before the case's setup, not between setup and timing: the runner's setup (a few
allocations and a correctness check) is short against the timed window, so the windows overlap
for all but their first moments.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aibench.collectives.group import RankFailure, RankGroup
from aibench.collectives.ranked import FAULT_ENV
from aibench.measure.records import Outcome, Record
from aibench.measure.runner import RunOptions, run_case
from aibench.results.node_spread import aggregate
from aibench.suite.model import PlanContext, PlannedCase, Suite
from aibench.suite.session import Session, timer_config
from aibench.workloads.registry import REGISTRY, load_builtin

# Workloads that span ranks themselves (a collective, FSDP training): the whole job runs them as one.
MULTI_RANK = ("collective.", "llm.train")
REPLY_SLACK_S = 60.0  # rank 0 waits this much past the case timeout for a rank's record


def plan_context(session: Session) -> PlanContext:
    return PlanContext.detect() if session.device_info.is_gpu else PlanContext()


def case_options(options: RunOptions, case: PlannedCase) -> RunOptions:
    """The entry's own timing mode (e.g. CUDA-graph replays for decode-sized kernels) over the run's."""
    return replace(options, timer=replace(options.timer, **case.timer)) if case.timer else options


def is_per_gpu(suite: Suite, case: PlannedCase) -> bool:
    """A case one GPU runs by itself: every GPU of the job can run its own copy at once."""
    if case.workload.startswith(MULTI_RANK):
        return False
    entry = next((e for e in suite.entries if e.id == case.entry_id), None)
    return entry is None or entry.requires.gpus <= 1


def mark(record: Record, group: RankGroup) -> Record:
    """This rank's record as a per-rank record: its rank, host and local rank."""
    me = group.me
    return replace(record, rank=me.rank, details={**record.details, "launched_rank": {
        "rank": me.rank, "local_rank": me.local_rank, "host": me.host, "world_size": group.world}})


def run_everywhere(group: RankGroup, session: Session, case: PlannedCase, backend: Any, params: dict[str, Any],
                   options: RunOptions, baseline: Record | None) -> tuple[list[Outcome], Record]:
    """Rank 0: one case and backend on every rank at once. Returns the per-rank outcomes (rank
    order; the caller writes them, then `aggregate_outcome` of what it wrote) and rank 0's own
    record (the baseline of its next backend).

    A rank that fails, dies or hangs is recorded in the job's failures (the manifest's
    `distributed.partial`), the job is ended for the others, and the aggregate says which rank is
    missing; rank 0's own record is kept.
    """
    wl = REGISTRY[case.workload]
    followers = list(range(1, group.world))
    what = f"{case.case_id} [{backend.name}] on every rank"
    failures: list[dict[str, Any]] = list(group.failures) if group.broken else []
    step = None
    if not group.broken:
        step = group.next_step()
        group.post(f"cmd/{step}", {"cmd": "case", "arg": {"case_id": case.case_id, "backend": backend.name,
                                                           "barrier": f"case-{step}"}})
        try:
            group.barrier(f"case-{step}")
        except RankFailure as exc:
            failures = exc.failures or group.failure_entries(followers, what, kind="hung")
    own = run_case(wl, backend, params, session.device, options, telemetry=session.telemetry,
                   entry=case.case_id, baseline=baseline)
    outcomes = [Outcome(mark(own.record, group), own.telemetry_samples)]
    if step is not None and not failures:
        timeout = max(group.timeout_s, (options.case_timeout_s or 0.0) + REPLY_SLACK_S)
        got, failures = group.collect(f"reply/{step}", followers, timeout_s=timeout, what=what)
        for r, reply in sorted(got.items()):
            if "error" in reply:
                m = group.members[r]
                failures.append({"rank": r, "local_rank": m.local_rank, "host": m.host, "kind": "error",
                                 "during": what, "reason": f"{m.where()} failed during {what}: {reply['error']}"})
            else:
                payload = reply["payload"]
                outcomes.append(Outcome(Record.from_dict(payload["record"]), payload.get("samples") or []))
        group.delete([f"cmd/{step}", f"reply/{step}/n", *(f"reply/{step}/{r}" for r in followers)])
    if failures and not group.broken:
        group.record_failures(failures)
        group.abort("; ".join(f["reason"] for f in failures))
    return outcomes, own.record


def aggregate_outcome(written: list[dict[str, Any]], world: int, missing: list[dict[str, Any]]) -> Outcome:
    """The aggregate record from the per-rank records as written (their telemetry files named)."""
    return Outcome(Record.from_dict(aggregate(written, world, missing)))


def missing_ranks(group: RankGroup, outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """The job's failures for the ranks with no record of this case."""
    have = {o.record.rank for o in outcomes}
    lost = [f for f in group.failures if f.get("rank") not in have]
    if not lost and len(have) < group.world:  # gone before this case, without an entry of its own
        lost = [{"rank": r, "reason": f"rank {r} is no longer part of the job"} for r in range(group.world)
                if r not in have]
    return lost


def follower_commands(group: RankGroup, session: Session, suite: Suite, mode: str
                      ) -> dict[str, Callable[[Any], Any]]:
    """What a follower rank serves besides collectives: "case", one per-GPU case on its own device
    at the moment rank 0 does (the barrier), its record and raw telemetry returned."""
    load_builtin()
    rules = suite.rules_for(mode)
    options = session.options(timer_config(rules), rules)
    plan = {c.case_id: c for c in suite.plan(mode, plan_context(session))}
    baselines: dict[str, Record] = {}
    fault = os.environ.get(FAULT_ENV, "")

    def case(arg: dict[str, Any]) -> dict[str, Any]:
        planned = plan.get(arg["case_id"])
        if planned is None or planned.workload not in REGISTRY:
            raise RuntimeError(f"case {arg['case_id']!r} is not in rank {group.rank}'s plan "
                               "(a node with another GPU count or build?)")
        wl = REGISTRY[planned.workload]
        backend = wl.get_backend(arg["backend"])
        params = wl.resolve_params(planned.params, preview=session.preview)
        group.barrier(arg["barrier"])
        if fault == f"exit@{planned.case_id}" and group.rank == group.world - 1:
            os._exit(1)  # test hook (as ranked.FAULT_ENV): the last rank dies mid-case
        outcome = run_case(wl, backend, params, session.device, case_options(options, planned),
                           telemetry=session.telemetry, entry=planned.case_id, baseline=baselines.get(planned.case_id))
        if backend.baseline:
            baselines[planned.case_id] = outcome.record
        return {"record": mark(outcome.record, group).to_dict(), "samples": outcome.telemetry_samples}

    return {"case": case}
