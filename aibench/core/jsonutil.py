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


def float_range_int(text: str) -> int:
    """json's parse_int for input from outside: the integer, or ValueError where it lies past the
    float range. Python reads any integer literal exactly, and every reader of a record's numbers
    (statistics, rates, math.isclose, format specs) converts it to a float: 10**400 raised
    OverflowError deep inside verify, report and compare. No measured number is that large."""
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits is past the float range") from None
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
