"""Parse and schema-check the run's manifest.json and records.jsonl taken from a bundle.

Only these two are validated against JSON Schema (telemetry CSVs and logs are only hashed), which
keeps verification of a large bundle bound by hashing speed.
"""

from __future__ import annotations

import copy
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
from aibench.measure.records import record_schema

MANIFEST_SCHEMA_VERSION = 1
_MAX_SCHEMA_ERRORS = 5  # per document: one broken record must not bury the report in findings


@cache
def manifest_validator() -> jsonschema.Draft202012Validator:
    text = resources.files("aibench.schemas").joinpath("manifest.schema.json").read_text(encoding="utf-8")
    return jsonschema.Draft202012Validator(json.loads(text))


# A record keeps up to 10k raw samples (TimerConfig.max_samples). Validated as written, such a
# record costs ~60 ms: jsonschema spends ~5 µs per samples_s item, and the null branch of
# timing's oneOf builds an error message holding repr() of the whole timing object. So the copy
# we validate against differs in two ways that accept exactly the same documents:
#   timing: oneOf [null, object] -> anyOf [object, null] (the branches exclude each other, and
#           anyOf stops at the first branch that matches);
#   samples_s items {"type": "number", "exclusiveMinimum": 0} -> checked by _bad_sample.
# When the record schema changes shape, the rewrite is skipped and the full schema is used.
_SAMPLE_RULE = {"type": "number", "exclusiveMinimum": 0}


@cache
def _fast_record_schema() -> tuple[dict[str, Any], bool]:
    """(schema to validate records with, whether samples_s items must be checked by _bad_sample)."""
    original = record_schema()
    schema = copy.deepcopy(original)
    try:
        timing = schema["properties"]["timing"]
        branches = timing["oneOf"]
        kinds = [b.get("type") for b in branches]
        if sorted(kinds) != ["null", "object"] or len(timing) != 1:
            return original, False
        obj = branches[kinds.index("object")]
        samples = obj["properties"]["samples_s"]
    except (KeyError, TypeError, AttributeError):
        return original, False
    if samples.get("items") != _SAMPLE_RULE:
        return original, False
    del samples["items"]
    schema["properties"]["timing"] = {"anyOf": [obj, {"type": "null"}]}
    return schema, True


@cache
def record_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_fast_record_schema()[0])


def _bad_sample(rec: dict[str, Any]) -> int | None:
    """Index of the first samples_s item that breaks the schema's items rule (a number > 0)."""
    timing = rec.get("timing")
    samples = timing.get("samples_s") if isinstance(timing, dict) else None
    if not isinstance(samples, list) or not samples or not _fast_record_schema()[1]:
        return None
    # set(map(type)) and min() run in C; type(), not isinstance: JSON true is not a number
    if set(map(type, samples)) <= {int, float} and min(samples) > 0:
        return None
    return next(i for i, x in enumerate(samples) if type(x) not in (int, float) or x <= 0)


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
        problems = _metric_findings(rec, rid) + _schema_findings(record_validator(), rec, what, RECORDS, rid)
        bad = _bad_sample(rec)
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
