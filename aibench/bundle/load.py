"""Open a run for `compare` and `report`: a run directory as it is, a `.tar.gz` bundle only after
`verify` found no error in it (read in memory, never extracted to disk)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from aibench.bundle.findings import Finding, shown
from aibench.bundle.layout import RECORDS
from aibench.bundle.verify import Keys, keyring, verify_and_read
from aibench.core.errors import AibenchError, BundleError, UsageError
from aibench.results.recompute import REFUSING_CODES, invalidated
from aibench.results.rundir import RECORDS as RUN_RECORDS
from aibench.results.runs import LoadedRun, load_dir, refuse_untrustworthy, split_ranks


def load_run(path: str | Path, pubkey: Keys = None) -> LoadedRun:
    """A run directory or a `.tar.gz` bundle. Raises AibenchError naming what is wrong.
    `pubkey`: the trusted key or keys (a bundle must be signed by one of them)."""
    p = Path(path)
    if p.is_dir():
        return load_dir(p, bool(pubkey))
    if p.is_file():
        return _load_bundle(p, pubkey)
    raise UsageError(f"{path}: no such run directory or bundle")


# Below this much input, reading runs in parallel costs more than it saves (a forked worker and
# its records pickled back: ~20 ms); 50 runs x 1,000 records are ~80 MB.
PARALLEL_MIN_BYTES = 16 * 2**20


def load_runs(paths: Sequence[str | Path], pubkey: Keys = None, workers: int | None = None) -> list[LoadedRun]:
    """load_run of each path, in order, and the same first error. Many runs are read by one forked
    process per core (`workers`: how many; default one per usable core once the input is large):
    parsing, checking and recomputing 50 runs x 1,000 records is CPU work that parallelises."""
    if workers is None:
        workers = _default_workers(paths)
    if workers <= 1 or len(paths) <= 1:
        return [load_run(p, pubkey) for p in paths]
    # fork: the workers start with this process's modules (no re-import) and its collector setting
    with ProcessPoolExecutor(min(workers, len(paths)), mp_context=get_context("fork")) as pool:
        return list(pool.map(load_run, paths, [pubkey] * len(paths)))


def _default_workers(paths: Sequence[str | Path]) -> int:
    if sys.platform != "linux" or len(paths) <= 1:  # fork is safe on Linux only
        return 1
    total = 0
    for path in paths:
        p = Path(path)
        with contextlib.suppress(OSError):
            total += (p / RUN_RECORDS).stat().st_size if p.is_dir() else p.stat().st_size
    return len(os.sched_getaffinity(0)) if total >= PARALLEL_MIN_BYTES else 1


def _load_bundle(path: Path, pubkey: Keys) -> LoadedRun:
    try:
        trusted = keyring(pubkey)
    except BundleError as exc:  # the user's own key file: a usage error (exit 2), not a bad bundle
        raise UsageError(str(exc)) from None
    report, docs = verify_and_read(path, trusted)
    # A record whose own samples, work or device refute its numbers is refused, not the bundle:
    # the report lists it as invalid with the reason (verify still exits 1 on it).
    blocking = [f for f in report.errors if not (f.code in REFUSING_CODES and f.member == RECORDS)]
    if blocking or docs is None or docs.manifest is None:
        first = "; ".join(f"{f.code}: {f.message}" for f in blocking[:3]) or "no run inside"
        raise AibenchError(f"{path}: bundle does not verify ({first}); `aibench bundle verify` lists every finding")
    records, refusals = _refuse_named(report.findings, docs.records, docs.manifest)
    warnings = [f"{f.code}: {f.message}" for f in report.warnings] + refusals
    records, per_rank = split_ranks(records)
    return LoadedRun(str(path), docs.manifest, records, warnings, _signature(report.summary, bool(trusted)),
                     rank_records=per_rank)


def _refuse_named(findings: tuple[Finding, ...], records: list[dict[str, Any]], manifest: dict[str, Any]
                  ) -> tuple[list[dict[str, Any]], list[str]]:
    """The records verify named in a refusing finding turned invalid, without recomputing them
    (verify already did; the bootstrap CI is the costliest part). Where verify's findings
    cannot name every record (a code capped at 100 findings, ids not unique), recompute instead."""
    ids = [shown(rec.get("id")) for rec in records]
    named: dict[str, list[str]] = {}
    for f in findings:
        if f.code in REFUSING_CODES and f.member == RECORDS:
            if f.record is None:  # "... and N more": the rest are not named
                return refuse_untrustworthy(records, manifest)
            named.setdefault(f.record, []).append(f"{f.code}: {f.message}")
    if named and len(set(ids)) != len(ids):
        return refuse_untrustworthy(records, manifest)
    out, notes = [], []
    for rec, rid in zip(records, ids):
        if rid in named:
            rec = invalidated(rec, named[rid])
            notes.append(f"record {rec['id']} refused ({'; '.join(named[rid])})")
        out.append(rec)
    return out, notes


def _signature(summary: dict[str, Any], checked: bool) -> str:
    """A reader's one-line answer to "who vouches for these numbers?"."""
    signer = summary.get("signer")
    if not summary.get("signed"):
        return "unsigned"
    if checked and signer:
        return f"verified: {signer}"
    if signer:
        return f"not checked: the key carried in the bundle, {signer} (pass --pubkey)"
    return "not checked (pass --pubkey)"
