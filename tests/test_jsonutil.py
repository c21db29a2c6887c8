"""JSON helpers: strict JSON out, infinite parameters kept, a canonical hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aibench.core.jsonutil import canonical_sha256, json_safe, jsonable_params
from aibench.measure.case import Param


def test_json_safe_replaces_non_finite() -> None:
    out = json_safe({"a": float("inf"), "b": [1.0, float("nan")], "c": {"d": (2, None)}})
    assert out == {"a": None, "b": [1.0, None], "c": {"d": [2, None]}}
    json.dumps(out, allow_nan=False)


def test_infinite_params_round_trip_through_json() -> None:
    params = jsonable_params({"request_rate": float("inf"), "n": 3})
    assert params == {"request_rate": "inf", "n": 3}
    back = json.loads(json.dumps(params))
    assert Param("request_rate", float, 1.0).parse(back["request_rate"]) == float("inf")


def test_canonical_hash_ignores_key_order_and_whitespace() -> None:
    a = {"x": 1, "y": [1, 2, {"z": "é"}]}
    b = json.loads('{ "y": [1, 2, {"z": "\\u00e9"}], "x": 1 }')
    assert canonical_sha256(a) == canonical_sha256(b)
    assert canonical_sha256(a) != canonical_sha256({**a, "x": 2})
    assert len(canonical_sha256(a)) == 64


def test_write_json_atomic_replaces_whole_files_and_refuses_nan(tmp_path: Path) -> None:
    from aibench.core.jsonutil import write_json_atomic

    path = tmp_path / "summary.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2, "b": [1.5]})
    assert json.loads(path.read_text()) == {"a": 2, "b": [1.5]}
    with pytest.raises(ValueError):  # strict JSON: NaN never reaches a reader
        write_json_atomic(path, {"a": float("nan")})
    assert json.loads(path.read_text()) == {"a": 2, "b": [1.5]}  # the previous file is intact
