"""Strict, bounded JSON for untrusted bundle members.

Python's `json` accepts NaN, Infinity, `1e999` (-> inf), duplicate keys (last one wins, where
another reader may take the first) and nests until the interpreter's recursion limit. A bundle is
hostile input, so each of these is refused with its own reason.

Two parsers, one verdict: `_strict_loads` (stdlib json with hooks) is the reference and names
every refusal; orjson, ~8x faster on records' float-heavy lines (issue 15: `bundle verify` of
100 MB of records), answers first, and its value is used only when it is provably the value
`_strict_loads` returns (`_fast_loads`). Anything else, refusals included, goes to the reference.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from aibench.core.jsonutil import past_float_range

MAX_DEPTH = 64  # records nest 3-4 levels; 64 leaves room for `details` without inviting stack games


class JsonRejected(ValueError):
    """The bytes are not acceptable JSON; `code` says why (a finding code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _no_constant(name: str) -> Any:
    raise JsonRejected("json_nonfinite", f"non-finite number literal {name} (strict JSON has no NaN/Infinity)")


def _bounded_int(text: str) -> int:
    """An integer literal past the float range is the integer twin of 1e999 (core/jsonutil.py:
    past_float_range); orjson never passes one: it goes to this reference parser."""
    value = int(text)  # past 4300 digits int() refuses: ValueError, json_malformed as before
    why = past_float_range(text, value)
    if why is not None:
        raise JsonRejected("json_nonfinite", why)
    return value


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


# One JSON string token (the "unrolled loop" form: no backtracking between its alternatives). In
# JSON a quote occurs only as a string's delimiter or escaped inside one, so scanning valid JSON
# left to right with this finds every string token, keys and values, and nothing else.
_STRING_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# orjson reads an integer literal outside [-2**63, 2**64 - 1] as the nearest float (json: the exact
# int); such a float is at least 2**63 in magnitude. Values from 2**62 up leave a margin for the
# rounding of math.hypot, the bound used on long lists; they only take the reference parser.
_FLOAT_BOUND = 2.0 ** 62
# json's C scanner counts against the interpreter's recursion limit (~1000 frames, the caller's
# included) and refuses deeper documents as too deep whatever max_depth says; orjson nests to 1024.
# A caller's max_depth past this (--limit max_json_depth=...) leaves the deeper ones to json.
_FAST_MAX_DEPTH = 200
_NO_FAST_ANSWER = object()


def _numbers_only_and_small(items: list[Any]) -> bool:
    """True when every item is an int or float (bool included) with magnitude below _FLOAT_BOUND
    (so finite). hypot runs in C, raises on any non-number, is inf or nan when an item is, and is
    at least the largest magnitude: the records' 10k-sample lists cost ~50 µs each."""
    try:
        return math.hypot(*items) < _FLOAT_BOUND
    except (TypeError, OverflowError):
        return False


def _clean_strings(value: Any, max_depth: int) -> int | None:
    """The number of strings in `value` (dict keys and string values) when nothing in it asks for
    the reference parser: every float finite and below _FLOAT_BOUND, no container deeper than
    max_depth. None otherwise."""
    strings = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            strings += 1
        elif isinstance(item, float):
            if not abs(item) < _FLOAT_BOUND:  # `not <`: nan compares false
                return None
        elif isinstance(item, (dict, list)):
            if depth > max_depth:
                return None
            if isinstance(item, dict):
                strings += len(item)
                children = item.values()
            elif _numbers_only_and_small(item):
                continue
            else:
                children = item
            stack.extend((v, depth + 1) for v in children if isinstance(v, (str, float, dict, list)))
    return strings


def _fast_loads(data: bytes | bytearray, max_depth: int) -> Any:
    """orjson's value, when it is exactly what _strict_loads returns for `data`; else _NO_FAST_ANSWER.

    Where the two parsers differ, orjson refuses (NaN, Infinity, 1e999, lone surrogate escapes,
    nesting past 1024) or gives a float for a >64-bit integer; _clean_strings sends every such
    float, every non-finite number and any nesting past max_depth (or _FAST_MAX_DEPTH) back. Duplicate keys: orjson keeps
    the last, json's hook refuses. A document has none exactly when its text holds as many string
    tokens as its value holds keys and string values: a repeated key drops at least itself.
    """
    try:
        data.decode("utf-8")  # the reference's UTF-8 verdict, not orjson's (~10 µs per 200 kB of ASCII)
        value = orjson.loads(data)
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        return _NO_FAST_ANSWER
    strings = _clean_strings(value, min(max_depth, _FAST_MAX_DEPTH))
    if strings is None or strings != sum(1 for _ in _STRING_TOKEN.finditer(data)):
        return _NO_FAST_ANSWER
    return value


def loads(data: bytes | bytearray | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one JSON document or raise JsonRejected (codes: json_malformed, json_nonfinite, json_too_deep)."""
    if isinstance(data, (bytes, bytearray)):
        value = _fast_loads(data, max_depth)
        if value is not _NO_FAST_ANSWER:
            return value
    return _strict_loads(data, max_depth)


def _strict_loads(data: bytes | bytearray | str, max_depth: int) -> Any:
    """The reference parser: stdlib json, every refusal named (see loads)."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as e:
        raise JsonRejected("json_malformed", f"not UTF-8: {e.reason} at byte {e.start}") from None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int, object_pairs_hook=_unique_keys)
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
