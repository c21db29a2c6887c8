"""Running a suite: plan -> one record per case and backend -> run directory, resumable.

Every finished record is durable before the next case starts (records.jsonl is fsynced line by
line), so Ctrl-C or a kill leaves a valid partial run whose manifest says `complete: false`;
`resume` runs only the (case, backend) pairs that have no record yet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aibench.errors import AibenchError, UsageError
from aibench.jsonutil import jsonable_params
from aibench.records import Record, now_iso, record_key
from aibench.rundir import RunDir
from aibench.runner import run_case
from aibench.session import Session, timer_config
from aibench.workloads.registry import REGISTRY, load_builtin


@dataclass(frozen=True)
class Progress:
    """One step of a suite run, for a progress display: `done` of `total` cases finished."""

    done: int
    total: int
    case_id: str
    phase: str  # "start" | "end"
    entry_id: str = ""
    entry_done: int = 0  # cases of this entry finished
    entry_total: int = 0
    records: tuple[dict[str, Any], ...] = ()


def _plan_context(session: Session) -> Any:
    from aibench.suite import PlanContext

    return PlanContext.detect() if session.device_info.is_gpu else PlanContext()


def suite_mode(session: Session, quick: bool) -> str:
    return "preview" if session.preview else ("quick" if quick else "full")


def start_run(session: Session, suite: Any, mode: str, out_root: Path, system: dict[str, Any] | None) -> RunDir:
    rules = suite.rules_for(mode)
    fields = session.manifest_fields(rules, system=system, suite={
        "name": suite.name, "version": suite.version, "sha256": suite.sha256, "source": str(suite.source),
        "mode": mode, "entries": [],
    })
    run = RunDir.create(out_root, suite.name, fields)
    session.run_dir = run
    return run


def resume_run(session: Session, suite: Any, mode: str, run_path: Path) -> RunDir:
    run = RunDir.open_existing(run_path)
    recorded = run.manifest.get("suite") or {}
    if recorded.get("sha256") != suite.sha256 or recorded.get("mode") != mode:
        raise UsageError(
            f"{run_path} was run with suite {recorded.get('name')!r} ({recorded.get('mode')}, "
            f"sha256 {str(recorded.get('sha256'))[:12]}); this is {suite.name!r} ({mode}, {suite.sha256[:12]})"
        )
    if run.manifest.get("environment_sha256") != session.environment_sha256:
        run.log("warning: resumed in a different environment (fingerprint changed)")
    session.run_dir = run
    run.update(complete=False, finished_at=None)
    run.log("resumed")
    return run


def execute(session: Session, suite: Any, mode: str, on_progress: Callable[[Progress], None] | None = None) -> RunDir:
    """Run every planned case that has no record yet. Raises KeyboardInterrupt through, after
    marking the run incomplete."""
    run = session.run_dir
    if run is None:
        raise AibenchError("execute() needs a run directory (start_run or resume_run first)")
    load_builtin()
    rules = suite.rules_for(mode)
    timer = timer_config(rules)
    options = session.options(timer, rules)
    plan = suite.plan(mode, _plan_context(session))
    run.update(suite={**run.manifest["suite"], "entries": [
        {"id": c.case_id, "entry": c.entry_id, "workload": c.workload, "params": jsonable_params(c.params),
         "backends": list(c.backends) if c.backends else None, "skip_reason": c.skip_reason,
         "timer": dict(c.timer)} for c in plan
    ]})
    existing = run.records()
    done = {(r.get("entry"), r.get("backend")) for r in existing}
    by_key = {(r.get("entry"), r.get("backend")): r for r in existing}
    if not existing:
        session.idle_baseline()
    notify = on_progress or (lambda _p: None)
    per_entry = Counter(c.entry_id for c in plan)
    entry_done: Counter[str] = Counter()
    try:
        for i, case in enumerate(plan):
            e = case.entry_id
            notify(Progress(i, len(plan), case.case_id, "start", e, entry_done[e], per_entry[e]))
            written = _run_planned(session, case, options, done, by_key)
            entry_done[e] += 1
            notify(Progress(i + 1, len(plan), case.case_id, "end", e, entry_done[e], per_entry[e], tuple(written)))
    except BaseException:
        session.record_overhead()
        run.finish(complete=False)
        raise
    session.record_overhead()
    run.finish(complete=True)
    return run


def _run_planned(session: Session, case: Any, options: Any, done: set, by_key: dict) -> list[dict[str, Any]]:
    run = session.run_dir
    assert run is not None
    wl = REGISTRY.get(case.workload)
    if case.skip_reason or wl is None:
        if (case.case_id, "*") in done:
            return []
        reason = case.skip_reason or f"workload {case.workload!r} is not available in this build"
        return [run.append(_skipped(session, case, reason))]
    names = list(case.backends) if case.backends else [b.name for b in wl.ordered_backends()]
    backends = sorted((wl.get_backend(n) for n in names), key=lambda b: not b.baseline)
    params = wl.resolve_params(case.params, preview=session.preview)
    if case.timer:  # the entry's own timing mode (e.g. CUDA-graph replays for decode-sized kernels)
        options = replace(options, timer=replace(options.timer, **case.timer))
    written: list[dict[str, Any]] = []
    baseline: Record | None = None
    for backend in backends:
        key = (case.case_id, backend.name)
        if key in done:  # resumed: recorded before the interruption
            if backend.baseline:
                baseline = Record.from_dict(by_key[key])
            continue
        outcome = run_case(wl, backend, params, session.device, options, telemetry=session.telemetry,
                           entry=case.case_id, baseline=baseline)
        if backend.baseline:
            baseline = outcome.record
        written.append(run.append(outcome))
        done.add(key)
    return written


def _skipped(session: Session, case: Any, reason: str) -> Any:
    from aibench.runner import Outcome

    stamp = now_iso()
    return Outcome(Record(
        id=record_key(case.workload, case.params, "*"), entry=case.case_id, workload=case.workload,
        backend="*", params=dict(case.params), device=session.device_info.as_dict(), status="skipped",
        reason=reason, preview=session.preview, environment=session.environment_sha256,
        started_at=stamp, finished_at=stamp,
    ))
