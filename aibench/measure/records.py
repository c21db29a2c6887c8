"""Measurement records: one versioned schema (schemas/record.schema.json), written as JSON Lines.

Schema changelog:
  1 (aibench 0.1.0): first version. Later, still 1: an optional `rank` (the per-rank records of a
    case every rank of a launched job ran at once; the aggregate beside them has none), so every
    earlier record stays valid.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import orjson

from aibench import __version__
from aibench.core.jsonutil import float_range_int, json_safe, jsonable_params

RECORD_KIND = "aibench.record"
SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "skipped", "invalid")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def not_checked(detail: str | None = None) -> dict[str, Any]:
    return {"checked": False, "passed": None, "detail": detail}


@dataclass(frozen=True)
class Record:
    id: str
    workload: str
    backend: str
    params: dict[str, Any]
    device: dict[str, Any]
    status: str
    reason: str | None = None
    baseline: str | None = None
    entry: str | None = None
    preview: bool = False
    interpreted: bool = False
    correctness: dict[str, Any] = field(default_factory=not_checked)
    timing: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    work: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    telemetry: dict[str, Any] = field(default_factory=lambda: {"available": False, "reason": "not requested"})
    environment: str = ""
    started_at: str = ""
    finished_at: str = ""
    duration_s: float = 0.0
    aibench_version: str = __version__
    rank: int | None = None  # a per-rank record of a launched job (aibench.suite.node_load); None otherwise

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        for name, value in self.metrics.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"metric {name!r} must be a finite number >= 0, got {value!r}")

    @property
    def median_s(self) -> float | None:
        return None if self.timing is None else self.timing.get("median")

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "kind": RECORD_KIND,
            "schema_version": SCHEMA_VERSION,
            "id": self.id,
            "entry": self.entry,
            "workload": self.workload,
            "backend": self.backend,
            "baseline": self.baseline,
            "params": jsonable_params(self.params),
            "device": self.device,
            "preview": self.preview,
            "interpreted": self.interpreted,
            "status": self.status,
            "reason": self.reason,
            "correctness": self.correctness,
            "timing": self.timing,
            "metrics": self.metrics,
            "unavailable": self.unavailable,
            "work": self.work,
            "details": self.details,
            "telemetry": self.telemetry,
            "environment": self.environment,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
            "aibench_version": self.aibench_version,
            # Only where set: a record of one process reads byte for byte as before.
            **({"rank": self.rank} if self.rank is not None else {}),
        })

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        validate(data)
        fields = {k: v for k, v in data.items() if k not in ("kind", "schema_version")}
        return cls(**fields)


@dataclass
class Outcome:
    """One record and the raw telemetry samples of its energy window (the run directory writes both)."""

    record: Record
    telemetry_samples: list[dict[str, Any]] = field(default_factory=list)


@cache
def record_schema() -> dict[str, Any]:
    text = resources.files("aibench.schemas").joinpath("record.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


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


def bad_sample(rec: dict[str, Any]) -> int | None:
    """Index of the first samples_s item that breaks the schema's items rule (a number > 0)."""
    timing = rec.get("timing")
    samples = timing.get("samples_s") if isinstance(timing, dict) else None
    if not isinstance(samples, list) or not samples or not _fast_record_schema()[1]:
        return None
    # set(map(type)) and min() run in C; type(), not isinstance: JSON true is not a number
    if set(map(type, samples)) <= {int, float} and min(samples) > 0:
        return None
    return next(i for i, x in enumerate(samples) if type(x) not in (int, float) or x <= 0)


# Every keyword the record schema uses (type, properties, required, additionalProperties, items as
# one schema, enum, const, anyOf/oneOf, minimum/maximum/exclusiveMinimum, min/maxItems,
# min/maxLength) means the same in draft-07, which fastjsonschema compiles, as in draft 2020-12
# (tests/test_record_validator.py checks the list and the verdicts on valid and broken records).
# The compiled check only answers valid or not, ~50x faster than jsonschema's interpreter on a
# record; jsonschema, the authority, runs only on what it rejects, to name the errors.
DRAFT7_SAFE_KEYWORDS = frozenset({
    "$id", "$schema", "title", "description", "type", "properties", "required", "additionalProperties", "items",
    "enum", "const", "anyOf", "oneOf", "minimum", "maximum", "exclusiveMinimum", "minItems", "maxItems",
    "minLength", "maxLength"})


def schema_keywords(schema: Any) -> set[str]:
    """The JSON Schema keywords used anywhere in `schema` (property names excluded)."""
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            if key == "properties" and isinstance(value, dict):
                for sub in value.values():
                    found |= schema_keywords(sub)
            else:
                found |= schema_keywords(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= schema_keywords(item)
    return found


@cache
def _compiled_record_check() -> Callable[[Any], Any] | None:
    """fastjsonschema's compiled record check, or None when the schema uses a keyword outside
    DRAFT7_SAFE_KEYWORDS (then jsonschema checks every record)."""
    schema = dict(_fast_record_schema()[0])
    if not schema_keywords(schema) <= DRAFT7_SAFE_KEYWORDS:
        return None
    schema.pop("$schema", None)  # compiled as draft-07: see DRAFT7_SAFE_KEYWORDS
    return fastjsonschema.compile(schema)


def passes_compiled_schema(data: Any) -> bool:
    """The compiled check alone (the samples rule is bad_sample's): for a caller that needs
    bad_sample's index anyway and would otherwise scan 10k samples twice."""
    check = _compiled_record_check()
    if check is None:
        return False
    try:
        check(data)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def passes_record_schema(data: Any) -> bool:
    """True when the compiled check accepts `data` (and the samples rule holds); False means
    "ask jsonschema", which names the errors, or finds none where the drafts differ in a corner."""
    return passes_compiled_schema(data) and bad_sample(data) is None


def validate(data: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError when `data` is not a valid version-1 record."""
    if data.get("schema_version") != SCHEMA_VERSION:
        raise jsonschema.ValidationError(
            f"unknown record schema_version {data.get('schema_version')!r} (this aibench reads {SCHEMA_VERSION})"
        )
    if passes_record_schema(data):
        return
    record_validator().validate(data)  # raises the best-matching error, as jsonschema.validate does
    bad = bad_sample(data)
    if bad is not None:
        raise jsonschema.ValidationError(f"timing.samples_s[{bad}] = {data['timing']['samples_s'][bad]!r} "
                                         "is not a number > 0")


def record_key(workload: str, params: dict[str, Any], backend: str) -> str:
    """A stable id for one measurement: `workload[k=v,...]/backend`, params in declared order."""
    inner = ",".join(f"{k}={v}" for k, v in params.items())
    return f"{workload}[{inner}]/{backend}"


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one record and make it durable before returning (flush + fsync).

    A kill after this returns cannot lose the record; a kill during the write leaves at most one
    truncated last line, which `read_jsonl` skips.
    """
    line = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _loads(line: bytes) -> Any:
    """orjson parses records' float-heavy lines ~3x faster than json (issue 15: 50 runs x 1,000
    records). It is stricter: NaN, Infinity and integers past 64 bits go to json, which reads them
    as before (a run directory's NaN is then reported unavailable, not refused), except an integer
    past the float range: ValueError (float_range_int), as for a line that is not JSON."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line, parse_int=float_range_int)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read records; a truncated final line (interrupted write) is ignored, other bad lines raise."""
    if not path.exists():
        return []
    data = path.read_bytes()
    data.decode("utf-8")  # raises UnicodeDecodeError on bad bytes, as read_text did
    lines = data.splitlines(keepends=True)
    out: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(_loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1 and not line.endswith(b"\n"):
                break  # the write of this line was interrupted
            raise ValueError(f"{path}:{i + 1}: not valid JSON") from None
    return out
