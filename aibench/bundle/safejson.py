"""Strict, bounded JSON for untrusted bundle members.

Python's `json` accepts NaN, Infinity, `1e999` (-> inf), duplicate keys (last one wins, where
another reader may take the first) and nests until the interpreter's recursion limit. A bundle is
hostile input, so each of these is refused with its own reason.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64  # records nest 3-4 levels; 64 leaves room for `details` without inviting stack games


class JsonRejected(ValueError):
    """The bytes are not acceptable JSON; `code` says why (a finding code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _no_constant(name: str) -> Any:
    raise JsonRejected("json_nonfinite", f"non-finite number literal {name} (strict JSON has no NaN/Infinity)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonRejected("json_malformed", f"duplicate key {key[:80]!r}")
            seen.add(key)
    return out


def _all_finite_numbers(items: list[Any]) -> bool:
    """Fast path for the long number lists of records (10k raw samples): sum() runs in C, fails
    on any non-number, and is inf or nan when any item is. A finite-items list whose sum
    overflows just takes the slow path."""
    try:
        return math.isfinite(sum(items))
    except (TypeError, OverflowError):
        return False


def _check_tree(value: Any, max_depth: int) -> None:
    """Depth and finiteness in one iterative walk: no recursion for hostile nesting to exploit.

    Non-finite numbers are caught here rather than with json's parse_float hook, which costs a
    Python call per number (a second per million samples).
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise JsonRejected("json_nonfinite", f"a number overflows to {item}")
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > max_depth:
            raise JsonRejected("json_too_deep", f"nested deeper than {max_depth} levels")
        if isinstance(item, list) and _all_finite_numbers(item):
            continue
        children = item.values() if isinstance(item, dict) else item
        stack.extend((v, depth + 1) for v in children if isinstance(v, (dict, list, float)))


def loads(data: bytes | bytearray | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one JSON document or raise JsonRejected (codes: json_malformed, json_nonfinite, json_too_deep)."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as e:
        raise JsonRejected("json_malformed", f"not UTF-8: {e.reason} at byte {e.start}") from None
    try:
        value = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except JsonRejected:
        raise
    except RecursionError:
        raise JsonRejected("json_too_deep", f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as e:
        raise JsonRejected("json_malformed", f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except ValueError as e:  # e.g. an integer literal with more digits than int() accepts
        raise JsonRejected("json_malformed", str(e)[:200]) from None
    _check_tree(value, max_depth)
    return value
