"""The run rules a buyer checks: is every suite entry measured, long enough, quietly enough, correctly?

Works on a schema-valid manifest and schema-valid records (documents.py), so fields the schemas
require are read directly; optional ones with .get(). Errors make a bundle invalid; warnings are
what a reader of the results must know (a skipped entry, a noisy or throttled measurement).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from aibench.bundle.findings import Finding, error, shown, warning
from aibench.bundle.layout import MANIFEST, RECORDS, RUN_PREFIX
from aibench.bundle.suite_check import suite_findings
from aibench.bundle.system_check import system_findings
from aibench.core.jsonutil import canonical_sha256
from aibench.results.recompute import manifest_problems, record_problems


def _rid(rec: dict[str, Any]) -> str:
    return shown(rec["id"])


def manifest_findings(manifest: dict[str, Any]) -> list[Finding]:
    out = [error(code, why, member=MANIFEST) for code, why in manifest_problems(manifest)]
    if not manifest["complete"]:
        out.append(error("run_incomplete", "the run did not finish (manifest complete = false): "
                         "entries may be missing; resume it and pack again", member=MANIFEST))
    if manifest["preview"]:
        out.append(warning("preview", "a preview run (CPU or shrunk sizes): numbers are not comparable",
                           member=MANIFEST))
    if not manifest["comparable"]:
        out.append(warning("not_comparable", "the run marks itself not comparable with other runs",
                           member=MANIFEST))
    if canonical_sha256(manifest["environment"]) != manifest["environment_sha256"]:
        out.append(error("environment_hash_mismatch", "environment_sha256 is not the hash of the recorded "
                         "environment: the fingerprint was edited after the run", member=MANIFEST))
    if not _has_torch_version(manifest["environment"]):
        out.append(warning("versions_missing", "the environment fingerprint records no torch version",
                           member=MANIFEST))
    return out


def _has_torch_version(env: dict[str, Any]) -> bool:
    """The fingerprint's layout is open: accept torch / torch_version at the top or under `versions`."""
    for scope in (env, env.get("versions"), env.get("packages"), env.get("software")):
        if not isinstance(scope, dict):
            continue
        for key in ("torch", "torch_version"):
            value = scope.get(key)
            if isinstance(value, str) and value:
                return True
            if isinstance(value, dict) and isinstance(value.get("version"), str) and value["version"]:
                return True
    return False


def coverage_findings(manifest: dict[str, Any], records: list[dict[str, Any]]) -> list[Finding]:
    """Every suite entry (and each backend it names) has a record; records name known entries."""
    suite = manifest["suite"]
    if suite is None:
        return []
    by_entry: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_entry[rec.get("entry") or ""].append(rec)
    out: list[Finding] = []
    known = set()
    for entry in suite["entries"]:
        eid = entry["id"]
        known.add(eid)
        got = by_entry.get(eid, [])
        if not got:
            out.append(error("entry_missing", f"suite entry {shown(eid)!r} has no record at all", member=RECORDS))
            continue
        if any(rec["backend"] == "*" and rec["status"] == "skipped" for rec in got):
            continue  # the whole entry was skipped (e.g. preview.skip): one record stands for all backends
        backends = entry.get("backends") or []
        measured = {rec["backend"] for rec in got}
        for backend in backends:
            if backend not in measured:
                out.append(error("entry_missing", f"suite entry {shown(eid)!r}: no record for backend "
                                 f"{shown(backend)!r}", member=RECORDS))
    for eid, recs in by_entry.items():
        if eid not in known:
            for rec in recs:
                out.append(warning("unknown_entry", f"record belongs to no entry of suite "
                                   f"{shown(suite['name'])!r} (entry {shown(eid or None)})",
                                   member=RECORDS, record=_rid(rec)))
    return out


def _status_findings(rec: dict[str, Any]) -> list[Finding]:
    status, reason, rid = rec["status"], rec["reason"], _rid(rec)
    if status == "ok":
        return []
    if not reason:
        return [error("unexplained_status", f"status {status} without a reason", member=RECORDS, record=rid)]
    text = {"skipped": "skipped", "failed": "failed", "invalid": "invalid (wrong result: no valid measurement)"}
    return [warning(f"record_{status}", f"{text[status]}: {shown(reason)}", member=RECORDS, record=rid)]


def _timing_findings(rec: dict[str, Any], rules: dict[str, Any]) -> list[Finding]:
    rid, timing = _rid(rec), rec["timing"]
    if timing is None:
        return [error("timing_missing", "status ok but no timing", member=RECORDS, record=rid)]
    out: list[Finding] = []
    # The rules judge the raw samples, not the n and total_s written next to them: the timer
    # derives both from the samples, so a record whose claims disagree with them was edited.
    samples = timing["samples_s"]
    n, total_s, converged = len(samples), sum(samples), timing["converged"]
    if timing["n"] != n or not math.isclose(timing["total_s"], total_s, rel_tol=1e-9):
        out.append(error("timing_inconsistent", f"timing states {timing['n']} samples over "
                         f"{timing['total_s']:.6g} s, but its raw samples are {n} over {total_s:.6g} s",
                         member=RECORDS, record=rid))
    # A CUDA-graph sample is one replay of k calls divided by k: the time measured is k times its
    # value (as the timer's stopping rule counts it).
    per_sample = timing.get("calls_per_sample")
    measured = total_s * (per_sample if isinstance(per_sample, int) and per_sample >= 1 else 1)
    long_enough = measured >= rules["min_time_s"] or converged
    if n < rules["min_samples"] or not long_enough:
        out.append(error("min_duration", f"{n} samples over {measured:.3g} s: the rules ask for at least "
                         f"{rules['min_samples']} samples and {rules['min_time_s']} s (or convergence)",
                         member=RECORDS, record=rid))
    target, rse = rules["target_rel_se"], timing.get("rel_stderr_median")
    if not converged:
        out.append(warning("not_converged", f"did not reach the noise target: {shown(timing['stop_reason'])}",
                           member=RECORDS, record=rid))
    elif target is not None and rse is not None and rse > target:
        out.append(warning("noisy", f"relative standard error of the median {rse:.3g} above the target "
                           f"{target:.3g}", member=RECORDS, record=rid))
    return out


def _correctness_findings(rec: dict[str, Any]) -> list[Finding]:
    rid, check = _rid(rec), rec["correctness"]
    if not check["checked"]:
        return [warning("correctness_unchecked", "result not checked against a reference"
                        + (f": {shown(check['detail'])}" if check.get("detail") else ""),
                        member=RECORDS, record=rid)]
    if check["passed"] is not True:
        return [error("correctness_failed", "status ok but the correctness check did not pass",
                      member=RECORDS, record=rid)]
    return []


def _throttle_reasons(telemetry: dict[str, Any]) -> list[str]:
    """The clock-event reasons that limited the measurement (record schema: telemetry.throttle);
    GpuIdle only says the GPU waited, so it explains nothing."""
    flags = telemetry.get("throttle")
    if not isinstance(flags, dict) or not flags.get("throttled"):
        return []
    return [str(r) for r in flags.get("reasons_seen") or [] if r != "GpuIdle"]


def record_findings(rec: dict[str, Any], rules: dict[str, Any], members: Iterable[str],
                    manifest: dict[str, Any]) -> list[Finding]:
    out = _status_findings(rec)
    rid = _rid(rec)
    # Derived numbers recomputed from the raw samples, claims checked against the device and the
    # environment: a vendor signing its own bundle must not be able to print a number its samples
    # do not give (issue 14). The report refuses such a record (bundle.load, results.runs).
    out += [error(code, why, member=RECORDS, record=rid) for code, why in record_problems(rec, manifest)]
    if rec["status"] == "ok":
        out += _timing_findings(rec, rules) + _correctness_findings(rec)
        if rec.get("interpreted"):
            out.append(warning("interpreted", "Triton ran in its CPU interpreter: timing is meaningless",
                               member=RECORDS, record=rid))
    reasons = _throttle_reasons(rec["telemetry"])
    if reasons:
        out.append(warning("throttled", "the device throttled during the measurement: "
                           + ", ".join(shown(r) for r in reasons[:10]), member=RECORDS, record=rid))
    samples_file = rec["telemetry"].get("samples_file")
    if isinstance(samples_file, str) and RUN_PREFIX + samples_file not in members:
        out.append(warning("telemetry_missing", f"telemetry file {shown(samples_file)!r} is not in the bundle",
                           member=RECORDS, record=rid))
    if rec["environment"] != manifest["environment_sha256"]:
        out.append(warning("environment_mismatch", "record was measured in another environment than the "
                           "manifest's fingerprint", member=RECORDS, record=rid))
    if rec["aibench_version"] != manifest["aibench_version"]:
        out.append(warning("version_mismatch", f"record made by aibench {shown(rec['aibench_version'])}, "
                           f"manifest by {shown(manifest['aibench_version'])}", member=RECORDS, record=rid))
    return out


def run_findings(manifest: dict[str, Any], records: list[dict[str, Any]], members: Iterable[str]) -> list[Finding]:
    """All run-rule findings for a schema-valid manifest and its schema-valid records."""
    members = set(members)
    out = manifest_findings(manifest) + system_findings(manifest) + suite_findings(manifest, records)
    out += coverage_findings(manifest, records)
    seen: set[tuple[str | None, str, int | None]] = set()
    for rec in records:
        # A launched job's per-GPU case has one record per rank (`rank`) beside its aggregate
        # (none): the same case on other GPUs, not measured again.
        key = (rec.get("entry"), rec["id"], rec.get("rank"))
        if key in seen:  # a resumed run may measure a case again: visible, so not an error
            out.append(warning("duplicate_record", "measured more than once for the same entry",
                               member=RECORDS, record=_rid(rec)))
        seen.add(key)
        out += record_findings(rec, manifest["run_rules"], members, manifest)
    return out
