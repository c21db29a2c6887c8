"""Running a suite: plan -> one record per case and backend -> run directory, resumable.

Every finished record is durable before the next case starts (records.jsonl is fsynced line by
line), so Ctrl-C or a kill leaves a valid partial run whose manifest says `complete: false`;
`resume` runs only the (case, backend) pairs that have no record yet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aibench.collectives.group import current
from aibench.core.errors import AibenchError, UsageError
from aibench.core.interrupts import CtrlC
from aibench.core.jsonutil import jsonable_params
from aibench.measure.records import Outcome, Record, now_iso, record_key
from aibench.measure.runner import run_case
from aibench.results.node_spread import is_rank_record
from aibench.results.rundir import RunDir
from aibench.suite import node_load
from aibench.suite.session import Session, timer_config
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
    """Open an interrupted run of this suite, in this mode, on this device, to finish it."""
    run = RunDir.open_existing(run_path)
    recorded = run.manifest.get("suite")
    if not isinstance(recorded, dict):
        raise UsageError(f"{run_path} is a run of `aibench run` (one workload, no suite): "
                         "only a suite's run directory can be resumed")
    then = f"suite {recorded.get('name')!r} {recorded.get('version')}"
    if recorded.get("sha256") != suite.sha256:
        raise UsageError(
            f"{run_path} was run with {then} (sha256 {str(recorded.get('sha256'))[:12]}); this is suite "
            f"{suite.name!r} {suite.version} (sha256 {suite.sha256[:12]}): a resumed run takes the same suite file"
        )
    if recorded.get("mode") != mode:
        raise UsageError(f"{run_path} was run in {recorded.get('mode')} mode, this would be {mode}: "
                         f"{_mode_hint(str(recorded.get('mode')), mode)}")
    _same_machine(run, session, run_path)
    if run.manifest.get("environment_sha256") != session.environment_sha256:
        run.log("warning: resumed in a different environment (fingerprint changed)")
    session.run_dir = run
    run.log("resumed")
    return run


def _mode_hint(then: str, now: str) -> str:
    if then == "preview" or now == "preview":
        where = "a CPU (preview)" if then == "preview" else "a GPU"
        return f"it ran on {where}; resume it on the same kind of device (--device)"
    return "add --quick" if then == "quick" else "leave out --quick"


def _same_machine(run: RunDir, session: Session, run_path: Path) -> None:
    """A run's manifest names one device; records of another (or of a node with another GPU
    count, whose plan differs) must not be appended under it."""
    then = run.manifest.get("device") or {}
    now = session.device_info.as_dict()
    if (then.get("kind"), then.get("name")) != (now["kind"], now["name"]):
        raise UsageError(f"{run_path} was measured on {then.get('name')} ({then.get('kind')}), this device is "
                         f"{now['name']} ({now['kind']}): its records cannot join that run; start a new one")
    gpus_then = (run.manifest.get("environment") or {}).get("gpus")
    gpus_now = session.environment.get("gpus")
    if isinstance(gpus_then, list) and isinstance(gpus_now, list) and len(gpus_then) != len(gpus_now):
        raise UsageError(f"{run_path} was measured with {len(gpus_then)} GPU(s) visible, {len(gpus_now)} are "
                         "visible now: the plan (multi-GPU entries) differs; start a new run")


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
    plan = suite.plan(mode, node_load.plan_context(session))
    # Per-rank records stand beside their aggregate: what is done is what has an aggregate (a
    # case killed between its per-rank records and its aggregate runs again on resume).
    existing = [r for r in run.records() if not is_rank_record(r)]
    done = {(r.get("entry"), r.get("backend")) for r in existing}
    by_key = {(r.get("entry"), r.get("backend")): r for r in existing}
    if run.manifest.get("complete"):
        if not any(_pending(case, done) for case in plan):
            run.log("already complete: nothing to run")  # its manifest (finished_at) stays as it was
            return run
        run.update(complete=False, finished_at=None)  # a kill from here on leaves it marked incomplete
    run.update(suite={**run.manifest["suite"], "entries": [
        {"id": c.case_id, "entry": c.entry_id, "workload": c.workload, "params": jsonable_params(c.params),
         "backends": list(c.backends) if c.backends else None, "skip_reason": c.skip_reason,
         "timer": dict(c.timer)} for c in plan
    ]})
    if not existing:
        session.idle_baseline()
    notify = on_progress or (lambda _p: None)
    per_entry = Counter(c.entry_id for c in plan)
    entry_done: Counter[str] = Counter()
    try:
        with CtrlC() as ctrl_c:
            for i, case in enumerate(plan):
                e = case.entry_id
                notify(Progress(i, len(plan), case.case_id, "start", e, entry_done[e], per_entry[e]))
                written = _run_planned(session, suite, case, options, done, by_key, ctrl_c)
                entry_done[e] += 1
                notify(Progress(i + 1, len(plan), case.case_id, "end", e, entry_done[e], per_entry[e],
                                tuple(written)))
    except BaseException:
        session.record_overhead()
        run.finish(complete=False)
        raise
    session.record_overhead()
    run.finish(complete=True)
    return run


def _backend_names(case: Any) -> list[str] | None:
    """The backends a planned case measures; None when the whole case is one skip record."""
    if case.skip_reason or case.workload not in REGISTRY:
        return None
    return case.backend_names()


def _pending(case: Any, done: set) -> bool:
    names = _backend_names(case)
    return (case.case_id, "*") not in done if names is None else any((case.case_id, n) not in done for n in names)


def _run_planned(session: Session, suite: Any, case: Any, options: Any, done: set, by_key: dict,
                 ctrl_c: CtrlC) -> list[dict[str, Any]]:
    run = session.run_dir
    assert run is not None
    wl = REGISTRY.get(case.workload)
    names = _backend_names(case)
    if names is None or wl is None:
        if (case.case_id, "*") in done:
            return []
        reason = case.skip_reason or f"workload {case.workload!r} is not available in this build"
        written = [run.append(_skipped(session, case, reason))]
        ctrl_c.check()
        return written
    backends = sorted((wl.get_backend(n) for n in names), key=lambda b: not b.baseline)
    params = wl.resolve_params(case.params, preview=session.preview)
    options = node_load.case_options(options, case)
    group = current()
    everywhere = group is not None and group.world > 1 and node_load.is_per_gpu(suite, case)
    written: list[dict[str, Any]] = []
    baseline: Record | None = None
    for backend in backends:
        key = (case.case_id, backend.name)
        if key in done:  # resumed: recorded before the interruption
            if backend.baseline:
                baseline = Record.from_dict(by_key[key])
            continue
        if everywhere:  # under a launcher: on every GPU at once, then the aggregate (node_load)
            assert group is not None
            outcomes, own = node_load.run_everywhere(group, session, case, backend, params, options, baseline)
            per_rank = [run.append(o) for o in outcomes]
            missing = node_load.missing_ranks(group, outcomes)
            written += [*per_rank, run.append(node_load.aggregate_outcome(per_rank, group.world, missing))]
        else:
            outcome = run_case(wl, backend, params, session.device, options, telemetry=session.telemetry,
                               entry=case.case_id, baseline=baseline)
            own = outcome.record
            written.append(run.append(outcome))
        if backend.baseline:
            baseline = own
        done.add(key)
        ctrl_c.check()  # a Ctrl-C swallowed during that backend stops the suite here, its record kept
    return written


def _skipped(session: Session, case: Any, reason: str) -> Outcome:
    stamp = now_iso()
    return Outcome(Record(
        id=record_key(case.workload, case.params, "*"), entry=case.case_id, workload=case.workload,
        backend="*", params=dict(case.params), device=session.device_info.as_dict(), status="skipped",
        reason=reason, preview=session.preview, environment=session.environment_sha256,
        started_at=stamp, finished_at=stamp,
    ))
