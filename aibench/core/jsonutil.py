"""JSON helpers shared by records, the registry and the CLI (no torch import: bundle verification
stays fast)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def finite_number(value: Any) -> bool:
    """A JSON number a reader can compute with: int or float, not bool (JSON true), finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def past_float_range(text: str, value: int) -> str | None:
    """Why the integer literal `text` (read as `value`) cannot be a record's number, or None.
    Python reads any integer literal exactly, and every reader of a record's numbers (statistics,
    rates, math.isclose, format specs) converts it to a float: 10**400 raised OverflowError deep
    inside verify, report and compare. No measured number is that large."""
    try:
        float(value)
    except OverflowError:
        return f"an integer of {len(text.lstrip('-'))} digits is past the float range"
    return None


def float_range_int(text: str) -> int:
    """json's parse_int for a run directory: the integer, or ValueError past the float range."""
    value = int(text)
    why = past_float_range(text, value)
    if why is not None:
        raise ValueError(why)
    return value


def json_safe(value: Any) -> Any:
    """Recursively replace non-finite floats with None: strict JSON has no NaN or Infinity."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def jsonable(value: Any) -> Any:
    """A parameter value as JSON can hold it: infinite floats (request_rate=inf) become "inf",
    which `Param.parse` reads back."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def jsonable_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: jsonable(v) for k, v in params.items()}


def canonical_sha256(data: Any) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace) of `data`: how a run's
    environment fingerprint is hashed, and re-hashed by a verifier."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as strict JSON (no NaN) so that a reader, or a kill, finds the old file or the
    new one, never half of one: a temporary beside it, flushed to disk, renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
