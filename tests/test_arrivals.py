"""Request generation: seeded gamma arrivals (vLLM convention), lengths, dataset files."""

from __future__ import annotations

import math
import statistics
from itertools import pairwise
from pathlib import Path

import pytest

from aibench.core.errors import UsageError
from aibench.models import arrivals


def test_infinite_rate_sends_all_at_zero() -> None:
    assert arrivals.arrival_times(5, math.inf) == [0.0] * 5
    assert arrivals.arrival_times(0, 3.0) == []


def test_gamma_arrivals_are_seeded_and_have_the_right_mean() -> None:
    a = arrivals.arrival_times(2000, rate=4.0, burstiness=1.0, seed=7)
    assert a == arrivals.arrival_times(2000, rate=4.0, burstiness=1.0, seed=7)
    assert a != arrivals.arrival_times(2000, rate=4.0, burstiness=1.0, seed=8)
    assert a[0] == 0.0  # first request at t = 0, as in vLLM
    gaps = [b - x for x, b in pairwise(a)]
    assert all(g >= 0 for g in gaps)
    assert statistics.fmean(gaps) == pytest.approx(1 / 4.0, rel=0.08)
    # Poisson (burstiness 1): exponential gaps, coefficient of variation 1.
    assert statistics.stdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_burstiness_changes_spread_not_mean(burstiness: float) -> None:
    a = arrivals.arrival_times(3000, rate=10.0, burstiness=burstiness, seed=1)
    gaps = [b - x for x, b in pairwise(a)]
    # gamma(shape k, scale 1/(rate k)): mean 1/rate, coefficient of variation 1/sqrt(k).
    assert statistics.fmean(gaps) == pytest.approx(0.1, rel=0.1)
    cv = statistics.stdev(gaps) / statistics.fmean(gaps)
    assert cv == pytest.approx(1 / math.sqrt(burstiness), rel=0.12)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (1.0, math.inf)])
def test_bad_arrival_parameters(rate: float, burst: float) -> None:
    with pytest.raises(UsageError):
        arrivals.arrival_times(3, rate, burst)


def test_lengths_fixed_and_ranged() -> None:
    assert arrivals.lengths(3, 7) == [7, 7, 7]
    assert arrivals.lengths(3, 7, 7) == [7, 7, 7]
    ranged = arrivals.lengths(500, 3, 9, seed=2)
    assert min(ranged) == 3 and max(ranged) == 9
    assert ranged == arrivals.lengths(500, 3, 9, seed=2)
    with pytest.raises(UsageError):
        arrivals.lengths(3, 9, 3)
    with pytest.raises(UsageError):
        arrivals.lengths(3, 0)


def test_make_requests_is_deterministic() -> None:
    kw = dict(vocab_size=50, input_len=4, output_len=3, input_len_max=8, rate=2.0, seed=3)
    a = arrivals.make_requests(20, **kw)
    assert a == arrivals.make_requests(20, **kw)
    assert [r.id for r in a] == list(range(20))
    assert all(4 <= r.input_len <= 8 and r.output_len == 3 for r in a)
    assert all(0 <= t < 50 for r in a for t in r.prompt)
    assert arrivals.max_total_len(a) == max(r.input_len for r in a) + 3
    # Changing the output range leaves prompts and arrivals alone.
    b = arrivals.make_requests(20, **{**kw, "output_len_max": 6})
    assert [r.prompt for r in a] == [r.prompt for r in b]
    assert [r.arrival_s for r in a] == [r.arrival_s for r in b]


def test_dataset_jsonl_and_csv(tmp_path: Path) -> None:
    jl = tmp_path / "reqs.jsonl"
    jl.write_text('{"input_len": 5, "output_len": 2}\n\n{"input_len": 3, "output_len": 1, "x": 0}\n')
    csv = tmp_path / "reqs.csv"
    csv.write_text("input_len,output_len\n5,2\n3,1\n")
    assert arrivals.load_lengths(jl) == [(5, 2), (3, 1)]
    assert arrivals.load_lengths(csv) == [(5, 2), (3, 1)]
    reqs = arrivals.make_requests(5, vocab_size=10, input_len=1, output_len=1, dataset=str(csv))
    assert [(r.input_len, r.output_len) for r in reqs] == [(5, 2), (3, 1), (5, 2), (3, 1), (5, 2)]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.jsonl", "{not json\n", "not JSON"),
        ("a.jsonl", "[1, 2]\n", "expected an object"),
        ("a.jsonl", '{"input_len": 0, "output_len": 2}\n', ">= 1"),
        ("a.jsonl", "", "no requests"),
        ("a.csv", "prompt,output_len\n1,2\n", "missing"),
        ("a.csv", "input_len,output_len\nx,2\n", ":2:"),
    ],
)
def test_bad_datasets(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        arrivals.load_lengths(path)


def test_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        arrivals.load_lengths(tmp_path / "nope.jsonl")
