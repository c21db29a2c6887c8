"""Strict JSON for untrusted members: each refusal has its own code."""

from __future__ import annotations

import pytest

from aibench.bundle.layout import path_problem
from aibench.bundle.safejson import JsonRejected, loads


def test_plain_documents_parse() -> None:
    assert loads(b'{"a": [1, 2.5, null, true], "b": {"c": "d"}}') == {"a": [1, 2.5, None, True], "b": {"c": "d"}}


@pytest.mark.parametrize(("text", "code"), [
    (b'{"x": NaN}', "json_nonfinite"),
    (b'{"x": -Infinity}', "json_nonfinite"),
    (b"[1e400]", "json_nonfinite"),
    (b"1e400", "json_nonfinite"),
    (b'{"a": {"b": [1.0, 2.0, -1e400]}}', "json_nonfinite"),
    (b'[{"x": 1}, "s", [1e999]]', "json_nonfinite"),
    (b'{"a": 1, "a": 2}', "json_malformed"),
    (b'{"a": 1', "json_malformed"),
    (b"\xff\xfe{}", "json_malformed"),
    (b"[" + b"9" * 10_000 + b"]", "json_malformed"),  # int() refuses > 4300 digits
    (b"[" * 65 + b"]" * 65, "json_too_deep"),
    (b"[" * 200_000 + b"]" * 200_000, "json_too_deep"),  # past the interpreter's recursion limit
])
def test_refusals(text: bytes, code: str) -> None:
    with pytest.raises(JsonRejected) as info:
        loads(text)
    assert info.value.code == code


def test_large_finite_numbers_pass() -> None:
    assert loads(b"[1e308, 1e308, 1e308]") == [1e308] * 3  # their sum overflows; they do not
    assert loads(b"[" + b"1" * 308 + b"]") == [int("1" * 308)]  # an integer a float can hold
    assert loads(b"[-" + b"1" * 308 + b"]") == [-int("1" * 308)]


@pytest.mark.parametrize("digits", [b"9" * 309, b"-" + b"9" * 309, b"1" * 400])
def test_integers_past_the_float_range_are_refused_like_1e999(digits: bytes) -> None:
    # Every reader converts a record's numbers to floats: 10**400 was an OverflowError in verify.
    with pytest.raises(JsonRejected) as info:
        loads(b'{"x": [' + digits + b"]}")
    assert info.value.code == "json_nonfinite"


def test_depth_limit_is_inclusive() -> None:
    assert loads(b"[" * 64 + b"]" * 64, max_depth=64) is not None
    with pytest.raises(JsonRejected):
        loads(b"[" * 5 + b"]" * 5, max_depth=4)


@pytest.mark.parametrize(("name", "code"), [
    ("run/../x", "path_traversal"), ("..", "path_traversal"), ("run\\..\\x", "path_traversal"),
    ("/etc/passwd", "absolute_path"), ("C:/x", "absolute_path"), ("\\\\server\\x", "absolute_path"),
    ("./run/x", "bad_path"), ("run//x", "bad_path"), ("run/x/", "bad_path"), ("run/a\\b", "bad_path"),
    ("run/\x07bell", "bad_path"), ("", "bad_path"), (".", "bad_path"), ("run/\udcff", "bad_path"),
])
def test_unsafe_member_names(name: str, code: str) -> None:
    problem = path_problem(name)
    assert problem is not None and problem[0] == code


def test_safe_member_names() -> None:
    for name in ("bundle.json", "run/manifest.json", "run/telemetry/0001-gemm[m=64]_torch.csv", "run/ünï.log"):
        assert path_problem(name) is None
