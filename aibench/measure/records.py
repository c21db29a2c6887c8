"""Measurement records: one versioned schema (schemas/record.schema.json), written as JSON Lines.

Schema changelog:
  1 (aibench 0.1.0): first version.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from aibench import __version__
from aibench.core.jsonutil import json_safe, jsonable_params

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


def validate(data: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError when `data` is not a valid version-1 record."""
    if data.get("schema_version") != SCHEMA_VERSION:
        raise jsonschema.ValidationError(
            f"unknown record schema_version {data.get('schema_version')!r} (this aibench reads {SCHEMA_VERSION})"
        )
    jsonschema.Draft202012Validator(record_schema()).validate(data)


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


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read records; a truncated final line (interrupted write) is ignored, other bad lines raise."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    out: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1 and not line.endswith("\n"):
                break  # the write of this line was interrupted
            raise ValueError(f"{path}:{i + 1}: not valid JSON") from None
    return out
