"""Is the suite of a bundle the one this aibench ships, unchanged? (MLPerf's closed/open divisions.)

A vendor names a shipped suite (gigafactory, ci, smoke) but packs the manifest itself, so its suite
block, run rules and entry list are checked against the suite file in this aibench's package data:
another version is `suite_unknown_version`, another hash or other run rules `suite_modified`, a
shipped entry absent from the recorded plan `suite_entry_missing` (coverage_findings then sees the
records of the plan the vendor kept). Any other suite is the open division: allowed, and said.
"""

from __future__ import annotations

from typing import Any

from aibench.bundle.findings import Finding, error, shown
from aibench.bundle.layout import MANIFEST
from aibench.core.errors import AibenchError
from aibench.suite.shipped import shipped_names, shipped_suite


def division(manifest: dict[str, Any]) -> str:
    """'closed' for a shipped suite, 'open' for any other (errors say whether closed holds)."""
    suite = manifest.get("suite")
    return "closed" if isinstance(suite, dict) and suite.get("name") in shipped_names() else "open"


def suite_findings(manifest: dict[str, Any], records: list[dict[str, Any]]) -> list[Finding]:
    suite = manifest.get("suite")
    if not isinstance(suite, dict):
        return []
    name = suite.get("name")
    if name not in shipped_names():
        return []  # the open division: allowed; verify's summary and the report say `division: open`
    try:
        shipped = shipped_suite(str(name))  # the facts alone: loading the suite would import torch
    except AibenchError as exc:  # pragma: no cover - the package data is ours
        return [error("suite_unknown_version", f"the shipped suite {name!r} cannot be read: {exc}", member=MANIFEST)]
    if suite.get("version") != shipped.version:
        return [error("suite_unknown_version", f"suite {name!r} version {shown(str(suite.get('version')))!r} is not "
                      f"the one this aibench ships ({shipped.version})", member=MANIFEST)]
    out: list[Finding] = []
    if suite.get("sha256") != shipped.sha256:
        out.append(error("suite_modified", f"suite {name!r} {shipped.version} was not the shipped file (sha256 "
                         f"{shown(str(suite.get('sha256')))[:12]}, shipped {shipped.sha256[:12]})", member=MANIFEST))
    mode = suite.get("mode")
    rules = shipped.rules_for(str(mode))
    expected = rules.as_dict() if rules is not None else None
    recorded = manifest.get("run_rules")
    if expected is not None and isinstance(recorded, dict):
        changed = sorted(k for k in expected if recorded.get(k) != expected[k])
        if changed:
            out.append(error("suite_modified", "run rules differ from the shipped suite's " + ", ".join(
                f"{k} = {recorded.get(k)!r} (shipped {expected[k]!r})" for k in changed), member=MANIFEST))
    # A planned case names its suite entry in `entry`; its `id` is the entry's only when the entry
    # plans one case (a sweep or a shape set plans "entry/m=...,n=..." cases)
    planned = {e.get(k) for e in suite.get("entries") or [] if isinstance(e, dict) for k in ("id", "entry")}
    planned |= {r.get("entry") for r in records if r.get("status") == "skipped"}  # a skip record accounts for it
    for entry_id in shipped.entry_ids:
        if entry_id not in planned:
            out.append(error("suite_entry_missing", f"shipped suite entry {entry_id!r} is not in the recorded plan "
                             "and has no skip record", member=MANIFEST))
    return out
