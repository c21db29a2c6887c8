"""safejson's orjson fast path gives exactly the reference parser's verdict: the same value (types,
float bits, key order) or the same refusal (code and message), on hostile input above all."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from bundle_helpers import record, timing_for

from aibench.bundle import safejson
from aibench.bundle.safejson import JsonRejected, loads


def _exact(value: Any) -> Any:
    """`value` with every type spelled out and floats as bits: 1 == 1.0 == True and 0.0 == -0.0
    in Python, never here."""
    if isinstance(value, dict):
        return ("dict", [(k, _exact(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_exact(v) for v in value])
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)


def _verdict(parse: Any, data: bytes | bytearray, max_depth: int = safejson.MAX_DEPTH) -> tuple[Any, ...]:
    try:
        return ("value", _exact(parse(data, max_depth)))
    except JsonRejected as e:
        return ("rejected", e.code, str(e))


def _reference(data: bytes | bytearray, max_depth: int = safejson.MAX_DEPTH) -> tuple[Any, ...]:
    return _verdict(safejson._strict_loads, data, max_depth)


def _fast_answers(data: bytes | bytearray, max_depth: int = safejson.MAX_DEPTH) -> bool:
    return safejson._fast_loads(data, max_depth) is not safejson._NO_FAST_ANSWER


def _record_line(**changes: Any) -> bytes:
    return json.dumps(record(entry="copy", id="copy-0", **changes)).encode()


SAMPLES = [1e-3 + 1e-7 * random.Random(15).random() for _ in range(10_000)]
BIG_RECORD = _record_line(timing=timing_for(SAMPLES))

# Documents both parsers read alike: the fast path answers, with the reference's value.
ACCEPTED = [
    BIG_RECORD,
    b'{"a": [1, 2.5, null, true, false], "b": {"c": "d"}, "": {}}',
    b'{"a\\"b": 1, "a\\\\": 2, "\\"": 3}',  # keys with escaped quotes and backslashes, all different
    b'{"a": "x\\":", "b": "\\":\\"", "c": [":", "\\":", " : "]}',  # strings holding `":`
    b'{"a": "\\": 1, \\"a"}',  # a string value that reads like a repeated key
    b'{"k": "\\\\", "k2": "\\\\\\""}',  # backslashes right before the closing quote
    b'[-0.0, 0.0, -0, 0, 0e0, -0e0, 1e-400, -1e-400]',  # signed zeros; underflow to zero
    b'[18446744073709551615, -9223372036854775808, 9223372036854775807]',  # the 64-bit ends: ints
    b'[4.6e18, 5e-324, 2.2250738585072011e-308, 0.1, 1E5, 1.5e+03, -123456789012345.678]',
    b'["\\ud83d\\ude00", "\\u00e9", "\xc3\xa9", "\\u0000", "\\/", "a\x7fb", "\xe2\x80\xa8"]',
    b' \t\r\n{"a" :\n1 }\r\n ',  # JSON's four whitespace characters, around a colon too
    b'"top-level string"', b"42", b"null",
    b"[" * 64 + b"]" * 64,
]

# Documents the fast path hands to the reference parser (which accepts or refuses each as before).
HANDED_BACK = [
    _record_line(timing=dict(timing_for(SAMPLES), median=0.001)).replace(b'"median": 0.001', b'"median": 0.001, "median": 0.001'),
    _record_line().replace(b'"tflops": 12.5', b'"tflops": 12.5, "tflops": 12.5'),  # deep in a record
    b'{"a": {"b": {"c": [1, {"d": 1, "d": 2}]}}}',  # in a nested object
    b'[{"a": 1}, {"a": 1, "a": 1}]',  # same key, same value: still refused
    b'{"a": 1, "\\u0061": 2}',  # the same key once unescaped
    b'{"a\\"b": 1, "a\\"b": 2}',  # a repeated key with an escaped quote
    b'{"k": "\\"k\\": 1", "k": 2}',  # a string holding `"k":` beside a real repeat
    b'{"a": {"s": "x", "t": ["y"]}, "a": 1}',  # the repeat drops strings with it
    b'{"x": NaN}', b'[Infinity]', b'[-Infinity]', b'{"a": [1.0, NaN]}',
    b"1e999", b"[-1e999]", b"[1e400]", b"[1.7976931348623159e308]", b"[1.7976931348623157e308]", _record_line().replace(b'"tflops": 12.5', b'"tflops": 1e999'),
    b"[18446744073709551616]", b"[-9223372036854775809]", b"[" + b"1" * 30 + b"]", b"[" + b"1" * 400 + b"]",
    b"[" + b"9" * 10_000 + b"]",  # int() refuses > 4300 digits: malformed
    b"[0.001, 0.002, 18446744073709551616]",  # a >64-bit int in a long number list
    b"[1e19, -1e19]",  # floats past 2**62: handed back, though orjson reads them right
    b'"\\ud800"', b'"\\udc00"', b'["\\ud83d"]', b'{"\\ud800": 1}',  # lone surrogates: json accepts them
    b'"\xff"', b'"\xed\xa0\x80"', b'"\xc0\xaf"', b'"\xe2\x82"', b'"\xf4\x90\x80\x80"', b"\xff\xfe{}",  # not UTF-8
    b"\xef\xbb\xbf{}", b'"a\x00b"', b'"a\x1fb"', b"\x0c1", b"1 2", b"[1]x", b"", b"  ", b"[1,]", b'{"a":1,}', b"01",
    b"[" * 65 + b"]" * 65, b"[" * 1000 + b"]" * 1000, b"[" * 1025 + b"]" * 1025, b"[" * 200_000 + b"]" * 200_000,
]


@pytest.mark.parametrize("data", ACCEPTED, ids=range(len(ACCEPTED)))
def test_fast_path_answers_with_the_reference_value(data: bytes) -> None:
    assert _fast_answers(data)
    assert _fast_answers(bytearray(data))  # records.jsonl's lines are bytearray slices
    assert _verdict(safejson.loads, data) == _reference(data)
    assert _reference(data)[0] == "value"


@pytest.mark.parametrize("data", HANDED_BACK, ids=range(len(HANDED_BACK)))
def test_fast_path_hands_back_what_it_cannot_vouch_for(data: bytes) -> None:
    assert not _fast_answers(data)
    assert _verdict(safejson.loads, data) == _reference(data)
    assert _verdict(safejson.loads, bytearray(data)) == _reference(data)


@pytest.mark.parametrize(("data", "code", "words"), [
    (_record_line().replace(b'"tflops": 12.5', b'"tflops": 12.5, "tflops": 12.5'), "json_malformed", "duplicate key 'tflops'"),
    (b'{"a": {"b": {"c": [1, {"d": 1, "d": 2}]}}}', "json_malformed", "duplicate key 'd'"),
    (b'{"a\\"b": 1, "a\\"b": 2}', "json_malformed", "duplicate key 'a\"b'"),
    (b'{"a": 1, "\\u0061": 2}', "json_malformed", "duplicate key 'a'"),
    (b'{"x": NaN}', "json_nonfinite", "NaN"),
    (b"[Infinity]", "json_nonfinite", "Infinity"),
    (b"[1e999]", "json_nonfinite", "overflows to inf"),
    (b"[-1e999]", "json_nonfinite", "overflows to -inf"),
    (b'"\xed\xa0\x80"', "json_malformed", "not UTF-8"),
    (b"[" * 1025 + b"]" * 1025, "json_too_deep", "deeper than 64"),
])
def test_refusals_are_named_as_before(data: bytes, code: str, words: str) -> None:
    with pytest.raises(JsonRejected) as info:
        loads(data)
    assert info.value.code == code and words in str(info.value)


def test_values_the_fast_path_would_get_wrong_come_from_the_reference() -> None:
    assert _exact(loads(b"[18446744073709551616, -9223372036854775809]")) == _exact([2 ** 64, -(2 ** 63) - 1])
    assert loads(b'["\\ud800"]') == ["\ud800"]
    assert loads(b'{"a": 1e19}') == {"a": 1e19}


def test_max_depth_is_the_callers() -> None:
    nested = b"[" * 5 + b"]" * 5
    assert not _fast_answers(nested, max_depth=4)
    assert _verdict(safejson.loads, nested, 4) == _reference(nested, 4) == (
        "rejected", "json_too_deep", "nested deeper than 4 levels")
    assert _fast_answers(nested, max_depth=5)


def test_a_raised_max_depth_leaves_deep_documents_to_the_reference() -> None:
    """json refuses ~1000 levels whatever max_depth says (the interpreter's recursion limit);
    orjson would read them."""
    for depth in (201, 1000, 1024):
        nested = b"[" * depth + b"]" * depth
        assert not _fast_answers(nested, max_depth=5000)
        assert _verdict(safejson.loads, nested, 5000) == _reference(nested, 5000)
    assert _fast_answers(b"[" * 200 + b"]" * 200, max_depth=5000)


def test_str_input_takes_the_reference_path() -> None:
    assert loads('{"a": [1, "\\ud800"]}') == {"a": [1, "\ud800"]}
    with pytest.raises(JsonRejected):
        loads('{"a": 1, "a": 2}')


def _number_literal(rng: random.Random) -> bytes:
    sign = rng.choice(["", "-"])
    whole = rng.choice(["0", str(rng.randrange(1, 10)) + "".join(rng.choices("0123456789", k=rng.randrange(0, 25)))])
    frac = rng.choice(["", "." + "".join(rng.choices("0123456789", k=rng.randrange(1, 30)))])
    exp = rng.choice(["", f"{rng.choice('eE')}{rng.choice(['', '+', '-'])}{rng.randrange(0, 400):0{rng.randrange(1, 4)}d}"])
    return (sign + whole + frac + exp).encode()


def test_random_number_literals_parse_to_the_same_bits() -> None:
    """orjson's own float parser against Python's float(): the same double, or handed back."""
    rng = random.Random(1515)
    literals = [_number_literal(rng) for _ in range(20_000)]
    literals += [repr(rng.uniform(-1e-3, 2e-3)).encode() for _ in range(5_000)]
    literals += [repr(rng.random() * 10.0 ** rng.randrange(-320, 300)).encode() for _ in range(5_000)]
    doc = b"[" + b", ".join(literals) + b"]"
    assert _verdict(safejson.loads, doc) == _reference(doc)
    answered = 0
    for literal in literals:  # one at a time too: one literal handed back sends the whole list back
        assert _verdict(safejson.loads, literal) == _reference(literal), literal
        answered += _fast_answers(literal)
    assert answered > len(literals) // 2  # the fast path's own floats were compared, not only the reference's


def test_random_damage_to_a_record_gets_the_reference_verdict() -> None:
    """Bytes flipped, dropped or repeated anywhere in a record line, and keys repeated: the same
    value or the same refusal, every time."""
    rng = random.Random(15)
    line = _record_line()
    keys = [m.group() for m in safejson._STRING_TOKEN.finditer(line)]
    alphabet = b'"\\:,{}[]0123456789.eE-+ aNIn\xff\xc3\x00'
    verdicts = {"value": 0, "rejected": 0}
    for _ in range(3_000):
        damaged = bytearray(line)
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(damaged))
            kind = rng.randrange(4)
            if kind == 0:
                damaged[at] = rng.choice(alphabet)
            elif kind == 1:
                del damaged[at]
            elif kind == 2:
                damaged[at:at] = damaged[at:at + rng.randrange(1, 12)]
            else:
                key = rng.choice(keys)
                damaged = bytearray(bytes(damaged).replace(key + b": ", key + b": 0, " + key + b": ", 1))
        verdict = _verdict(safejson.loads, damaged)
        assert verdict == _reference(damaged), bytes(damaged)
        verdicts[verdict[0]] += 1
    assert min(verdicts.values()) > 100  # both outcomes were exercised
