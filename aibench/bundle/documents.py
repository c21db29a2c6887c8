"""Parse and schema-check the run's manifest.json and records.jsonl taken from a bundle.

Only these two are validated against JSON Schema (telemetry CSVs and logs are only hashed), which
keeps verification of a large bundle bound by hashing speed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from aibench.bundle import safejson
from aibench.bundle.findings import Finding, error, shown
from aibench.bundle.layout import MANIFEST, RECORDS
from aibench.measure.records import SCHEMA_VERSION as RECORD_SCHEMA_VERSION
from aibench.measure.records import bad_sample as _bad_sample
from aibench.measure.records import passes_compiled_schema, record_validator

MANIFEST_SCHEMA_VERSION = 1
_MAX_SCHEMA_ERRORS = 5  # per document: one broken record must not bury the report in findings


@cache
def manifest_validator() -> jsonschema.Draft202012Validator:
    text = resources.files("aibench.schemas").joinpath("manifest.schema.json").read_text(encoding="utf-8")
    return jsonschema.Draft202012Validator(json.loads(text))


@dataclass
class RunDocuments:
    manifest: dict[str, Any] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)  # only schema-valid ones
    record_lines: int = 0
    findings: list[Finding] = field(default_factory=list)


def _schema_findings(validator: jsonschema.Draft202012Validator, doc: dict[str, Any], what: str,
                     member: str, record: str | None = None) -> list[Finding]:
    found = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    out = [error("schema_invalid", f"{what} at {shown(e.json_path)}: {shown(e.message)}", member=member,
                 record=record) for e in found[:_MAX_SCHEMA_ERRORS]]
    if len(found) > _MAX_SCHEMA_ERRORS:
        out.append(error("schema_invalid", f"{what}: {len(found) - _MAX_SCHEMA_ERRORS} more schema errors",
                         member=member, record=record))
    return out


def _version_problem(doc: Any, kind: str, version: int, member: str, record: str | None = None) -> Finding | None:
    if not isinstance(doc, dict):
        return error("schema_invalid", f"{kind} is not a JSON object", member=member, record=record)
    if doc.get("schema_version") != version:
        return error("unknown_schema_version", f"{kind} schema_version {shown(doc.get('schema_version'))}: "
                     f"this aibench reads version {version}", member=member, record=record)
    return None


def _metric_findings(rec: dict[str, Any], rid: str) -> list[Finding]:
    metrics = rec.get("metrics")
    if not isinstance(metrics, dict):
        return []
    return [error("bad_metric", f"metric {shown(name)!r} is {shown(value)}: metrics are finite numbers >= 0",
                  member=RECORDS, record=rid)
            for name, value in metrics.items()
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) and value >= 0)]


def parse_manifest(blob: bytes | bytearray, max_depth: int) -> tuple[dict[str, Any] | None, list[Finding]]:
    try:
        doc = safejson.loads(blob, max_depth)
    except safejson.JsonRejected as e:
        return None, [error(e.code, f"manifest.json: {e}", member=MANIFEST)]
    bad = _version_problem(doc, "manifest", MANIFEST_SCHEMA_VERSION, MANIFEST)
    if bad is not None:
        return None, [bad]
    findings = _schema_findings(manifest_validator(), doc, "manifest", MANIFEST)
    return (None if findings else doc), findings


def _lines(blob: bytes | bytearray) -> Iterator[bytes | bytearray]:
    """The lines of `blob` one at a time: split() would copy all of a 100 MB file at once."""
    start = 0
    while start < len(blob):
        end = blob.find(b"\n", start)
        if end < 0:
            end = len(blob)
        yield blob[start:end]
        start = end + 1


def parse_records(blob: bytes | bytearray, max_depth: int) -> tuple[list[dict[str, Any]], int, list[Finding]]:
    """(schema-valid records, lines that hold a record, findings). Blank lines are ignored."""
    records: list[dict[str, Any]] = []
    findings: list[Finding] = []
    lines = 0
    for number, line in enumerate(_lines(blob), start=1):
        if not line.strip():
            continue
        lines += 1
        where = f"line {number}"
        try:
            rec = safejson.loads(line, max_depth)
        except safejson.JsonRejected as e:
            findings.append(error(e.code, f"records.jsonl {where}: {e}", member=RECORDS, record=where))
            continue
        bad = _version_problem(rec, "record", RECORD_SCHEMA_VERSION, RECORDS, where)
        if bad is not None:
            findings.append(bad)
            continue
        rid = rec["id"] if isinstance(rec.get("id"), str) else where
        what = f"record {shown(rid)!r}"
        problems = _metric_findings(rec, rid)
        bad = _bad_sample(rec)  # once: passes_record_schema would scan the samples a second time
        if bad is not None or not passes_compiled_schema(rec):  # jsonschema names the errors
            problems += _schema_findings(record_validator(), rec, what, RECORDS, rid)
        if bad is not None:
            problems.append(error("schema_invalid", f"{what} at $.timing.samples_s[{bad}]: "
                                  f"{shown(rec['timing']['samples_s'][bad])} is not a number > 0",
                                  member=RECORDS, record=rid))
        findings.extend(problems)
        if not problems:
            records.append(rec)
    return records, lines, findings


def parse_run(blobs: dict[str, bytes | bytearray], max_depth: int) -> RunDocuments:
    docs = RunDocuments()
    if MANIFEST in blobs:
        docs.manifest, found = parse_manifest(blobs[MANIFEST], max_depth)
        docs.findings.extend(found)
    if RECORDS in blobs:
        docs.records, docs.record_lines, found = parse_records(blobs[RECORDS], max_depth)
        docs.findings.extend(found)
    return docs
