"""A benchmark history in SQLite: every run's measurements, and the change points over them.

`add_run` stores one LoadedRun (a directory or a verified bundle, read by the caller) under its
run id: adding the same run again changes nothing, so a CI job may retry freely. `trends` reads
the series of one measurement's medians in run order (the run's creation time) and finds where
it stepped with E-divisive means (changepoints.py).

The raw samples are stored beside the median: a later, better statistic can be computed from
the history itself instead of from run directories that CI artifacts no longer keep.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aibench.core import stats
from aibench.core.errors import AibenchError, UsageError
from aibench.results.changepoints import ChangePoint, e_divisive
from aibench.results.compare import record_key
from aibench.results.runs import LoadedRun

# Version of the tables below, kept in PRAGMA user_version. A change to them bumps it and adds a
# migration step in `_migrate`; a database newer than this code is refused, never rewritten.
# 1: runs + measurements (median, n, CI of the median, raw samples, the headline metrics).
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    git_commit TEXT,            -- NULL: the run did not know (not run from a git checkout)
    device TEXT,
    suite TEXT,
    preview INTEGER NOT NULL,
    source TEXT NOT NULL,
    added_at TEXT NOT NULL
);
CREATE TABLE measurements (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    key TEXT NOT NULL,          -- compare's record key: suite entry :: measurement id
    entry TEXT,
    workload TEXT NOT NULL,
    backend TEXT NOT NULL,
    metric TEXT NOT NULL,       -- what `median` is: the time of one call, in seconds
    median REAL NOT NULL,
    n INTEGER NOT NULL,
    ci_low REAL,                -- 95% CI of the median as the record holds it (NULL if absent)
    ci_high REAL,
    samples TEXT NOT NULL,      -- JSON list of the raw samples
    metrics TEXT NOT NULL,      -- JSON object of the record's derived metrics (TFLOP/s, GB/s, ...)
    PRIMARY KEY (run_id, key)
);
CREATE INDEX measurements_key ON measurements(key);
"""

METRIC = "time_s"


@dataclass(frozen=True)
class AddResult:
    run_id: str
    added: bool  # False: the run was already in the history
    measurements: int  # stored now (0 when already there)
    skipped: int  # records without timing samples (failed, skipped, invalid): nothing to trend


@dataclass(frozen=True)
class Point:
    run_id: str
    created_at: str
    git_commit: str | None
    median: float
    n: int


@dataclass(frozen=True)
class Step:
    """A change point named by the run and commit that first showed the new level."""

    run_id: str
    git_commit: str | None
    created_at: str
    before: float
    after: float
    relative: float  # after / before - 1 (+0.05: 5% slower)
    p_value: float


@dataclass(frozen=True)
class Trend:
    key: str
    workload: str
    backend: str
    device: str | None  # one series per device: a step between two GPUs is no regression
    points: list[Point]
    steps: list[Step]

    @property
    def median(self) -> float:
        return stats.median([p.median for p in self.points])

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "workload": self.workload, "backend": self.backend, "device": self.device,
                "metric": METRIC,
                "runs": len(self.points), "first": self.points[0].median, "last": self.points[-1].median,
                "median": self.median, "points": [p.__dict__ for p in self.points],
                "steps": [s.__dict__ for s in self.steps]}


@contextmanager
def open_history(path: Path) -> Iterator[sqlite3.Connection]:
    """The database at `path` (created with its tables when absent), committed on success."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path)
    except (OSError, sqlite3.Error) as exc:
        raise AibenchError(f"{path}: cannot open the history database ({exc})") from None
    try:
        _migrate(db, path)
        with db:  # one transaction: a run is stored whole or not at all
            yield db
    except sqlite3.DatabaseError as exc:
        raise AibenchError(f"{path}: not a usable history database ({exc})") from None
    finally:
        db.close()


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise AibenchError(f"{path}: history schema version {version} is newer than this aibench's "
                           f"{SCHEMA_VERSION}; upgrade aibench")
    if version == 0:
        if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise AibenchError(f"{path}: an SQLite database that is not an aibench history")
        with db:
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _commit_of(run: LoadedRun) -> str | None:
    env = run.manifest.get("environment")
    section = env.get("aibench") if isinstance(env, dict) else None
    commit = section.get("git_commit") if isinstance(section, dict) else None
    return commit if isinstance(commit, str) else None


def add_run(db: sqlite3.Connection, run: LoadedRun, git_commit: str | None = None) -> AddResult:
    """Store `run`'s timed measurements. `git_commit` overrides the commit the run recorded
    (CI knows the commit it built even when aibench was installed from a wheel)."""
    run_id = run.manifest.get("run_id")
    created = run.manifest.get("created_at")
    if not isinstance(run_id, str) or not isinstance(created, str):
        raise AibenchError(f"{run.source}: the manifest has no run_id or created_at to file it under")
    try:
        _parse_time(created, f"{run.source}: created_at")
    except UsageError as exc:  # the run's own data, not the user's command line: exit 1, not 2
        raise AibenchError(str(exc)) from None
    if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
        return AddResult(run_id, False, 0, 0)
    suite = run.manifest.get("suite")
    suite_name = suite.get("name") if isinstance(suite, dict) else None
    db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (run_id, created, git_commit or _commit_of(run), run.device_name, suite_name,
                int(bool(run.manifest.get("preview"))), run.source, datetime.now(timezone.utc).isoformat()))
    rows: dict[str, tuple[Any, ...]] = {}
    skipped = 0
    for rec in run.records:
        timing = rec.get("timing") or {}
        samples = timing.get("samples_s") or []
        key = record_key(rec)
        if rec.get("status") != "ok" or not samples or key in rows:
            # Of a key recorded twice the first counts, as in compare and report.
            skipped += key not in rows
            continue
        ci = timing.get("ci95_median")
        low, high = (ci if isinstance(ci, list) and len(ci) == 2 else (None, None))
        rows[key] = (run_id, key, rec.get("entry"), rec["workload"], rec["backend"], METRIC,
                     stats.median(samples), len(samples), low, high, json.dumps(samples),
                     json.dumps(rec.get("metrics") or {}))
    db.executemany("INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows.values())
    return AddResult(run_id, True, len(rows), skipped)


def _parse_time(text: str, what: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not an ISO date or time (e.g. 2026-01-31)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)  # a bare date means UTC


def trends(db: sqlite3.Connection, workload: str | None = None, since: str | None = None,
           alpha: float = 0.01, seed: int = 0) -> list[Trend]:
    """One Trend per measurement key and device, its points in run order, with the steps found in them.
    `workload`: only that workload (or a suite entry of that name); `since`: runs created then or later."""
    after = _parse_time(since, "--since") if since else None
    query = ("SELECT m.key, m.workload, m.backend, r.device, r.run_id, r.created_at, r.git_commit, m.median, m.n "
             "FROM measurements m JOIN runs r USING (run_id)")
    args: tuple[str, ...] = ()
    if workload:
        query += " WHERE m.workload = ? OR m.entry = ?"
        args = (workload, workload)
    series: dict[tuple[str, str], tuple[str, str, str | None, list[tuple[datetime, Point]]]] = {}
    for key, wl, backend, device, run_id, created, commit, med, n in db.execute(query, args):
        when = _parse_time(created, f"run {run_id}: created_at")
        if after is not None and when < after:
            continue
        series.setdefault((key, device or ""), (wl, backend, device, []))[3].append(
            (when, Point(run_id, created, commit, med, n)))
    out = []
    for key, device_key in sorted(series):
        wl, backend, device, timed = series[key, device_key]
        points = [p for _, p in sorted(timed, key=lambda tp: (tp[0], tp[1].run_id))]
        found = e_divisive([p.median for p in points], alpha=alpha, seed=seed)
        out.append(Trend(key, wl, backend, device, points, [_step(points, c) for c in found]))
    return out


def _step(points: list[Point], change: ChangePoint) -> Step:
    at = points[change.index]
    return Step(at.run_id, at.git_commit, at.created_at, change.before, change.after, change.relative_step,
                change.p_value)
