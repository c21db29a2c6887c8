"""Serving metrics checked exactly on hand-made token timestamps (methods.md definitions)."""

from __future__ import annotations

import math

import pytest

from aibench.models import serving_metrics as sm


def _requests() -> list[sm.RequestTiming]:
    return [
        sm.RequestTiming(0.0, (0.5, 0.6, 0.8, 1.0), input_len=10),  # TTFT .5, TPOT (1-.5)/3
        sm.RequestTiming(0.2, (0.7,), input_len=5),  # one token: no TPOT, no ITL
        sm.RequestTiming(0.4, (3.0, 3.5), input_len=20),  # TTFT 2.6, TPOT .5
    ]


def test_per_request_formulas() -> None:
    r1, r2, r3 = _requests()
    assert sm.ttft(r1) == pytest.approx(0.5)
    assert sm.e2el(r1) == pytest.approx(1.0)
    assert sm.tpot(r1) == pytest.approx(0.5 / 3)
    assert sm.itls(r1) == pytest.approx([0.1, 0.2, 0.2])
    assert sm.ttft(r2) == pytest.approx(0.5)
    assert sm.e2el(r2) == pytest.approx(0.5)
    assert sm.tpot(r2) is None
    assert sm.itls(r2) == []
    assert sm.tpot(r3) == pytest.approx(0.5)
    assert r1.output_len == 4 and r2.output_len == 1


def test_tpot_equals_mean_itl_of_a_request() -> None:
    r = sm.RequestTiming(1.0, (1.3, 1.4, 1.45, 1.9, 2.0), input_len=3)
    assert sm.tpot(r) == pytest.approx(sum(sm.itls(r)) / len(sm.itls(r)))


def test_summary_throughputs_and_distributions() -> None:
    m = sm.summarize(_requests())
    assert m["duration_s"] == pytest.approx(3.5)  # first send (0) to last token (3.5)
    assert m["completed"] == 3
    assert m["total_input_tokens"] == 35 and m["total_output_tokens"] == 7
    assert m["request_throughput_rps"] == pytest.approx(3 / 3.5)
    assert m["output_tokens_per_s"] == pytest.approx(7 / 3.5)
    assert m["total_tokens_per_s"] == pytest.approx(42 / 3.5)
    assert m["throughput_per_gpu_tokens_per_s"] == pytest.approx(42 / 3.5)
    # TTFT [0.5, 0.5, 2.6]: numpy-linear percentiles.
    assert m["ttft_mean_s"] == pytest.approx(3.6 / 3)
    assert m["ttft_p50_s"] == pytest.approx(0.5)
    assert m["ttft_p90_s"] == pytest.approx(0.5 + 2.1 * 0.8)
    assert m["ttft_p99_s"] == pytest.approx(0.5 + 2.1 * 0.98)
    # TPOT over the two multi-token requests only (the one-token request is excluded).
    assert m["tpot_mean_s"] == pytest.approx((1 / 6 + 0.5) / 2)
    assert m["tpot_p50_s"] == pytest.approx((1 / 6 + 0.5) / 2)
    # ITL pooled over requests: [0.1, 0.2, 0.2, 0.5].
    assert m["itl_mean_s"] == pytest.approx(1.0 / 4)
    assert m["itl_p50_s"] == pytest.approx(0.2)
    assert m["e2el_mean_s"] == pytest.approx((1.0 + 0.5 + 3.1) / 3)
    assert m["e2el_p99_s"] == pytest.approx(1.0 + 2.1 * 0.98)
    # Interactivity = 1000 / TPOT_ms of the mean TPOT (1/3 s) = 3 tok/s/user.
    assert m["interactivity_tok_s_user"] == pytest.approx(3.0)


def test_goodput_counts_requests_meeting_every_slo() -> None:
    reqs = _requests()
    # Default SLO (TTFT <= 2 s, TPOT <= 100 ms): r1 fails TPOT, r3 fails TTFT; r2 passes (no TPOT).
    default = sm.summarize(reqs)
    assert default["goodput_rps"] == pytest.approx(1 / 3.5)
    assert default["slo_attainment"] == pytest.approx(1 / 3)
    loose = sm.summarize(reqs, slo=sm.SLO(ttft_s=3.0, tpot_s=0.2))
    assert loose["goodput_rps"] == pytest.approx(2 / 3.5)  # r3's TPOT 0.5 still fails
    assert sm.meets_slo(reqs[2], sm.SLO(ttft_s=3.0, tpot_s=0.5))  # bounds are inclusive


def test_explicit_duration_and_gpus() -> None:
    m = sm.summarize(_requests(), duration_s=7.0, num_gpus=2)
    assert m["request_throughput_rps"] == pytest.approx(3 / 7)
    assert m["throughput_per_gpu_tokens_per_s"] == pytest.approx(42 / 7 / 2)
    assert m["total_tokens_per_s"] == pytest.approx(42 / 7)


def test_no_tpot_is_left_out_not_zero() -> None:
    m = sm.summarize([sm.RequestTiming(0.0, (0.25,), 4), sm.RequestTiming(0.0, (0.5,), 4)])
    assert "tpot_mean_s" not in m and "itl_p50_s" not in m
    assert "interactivity_tok_s_user" not in m
    assert m["goodput_rps"] == pytest.approx(2 / 0.5)
    assert sm.interactivity(0.0) is None and sm.interactivity(None) is None
    assert sm.interactivity(0.02) == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("sent", "times"),
    [(0.0, ()), (1.0, (0.5,)), (0.0, (0.2, 0.1))],
)
def test_invalid_timings_rejected(sent: float, times: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        sm.RequestTiming(sent, times, 1)


def test_summary_errors() -> None:
    with pytest.raises(ValueError):
        sm.summarize([])
    with pytest.raises(ValueError):
        sm.summarize(_requests(), num_gpus=0)
    with pytest.raises(ValueError):
        sm.summarize(_requests(), duration_s=0.0)


def test_sweep_points() -> None:
    m = sm.summarize(_requests())
    p = sm.SweepPoint.from_metrics(4, m)
    assert p.interactivity_tok_s_user == pytest.approx(3.0)
    low = sm.SweepPoint.from_metrics(1, sm.summarize([sm.RequestTiming(0.0, (1.0,), 2)]))
    assert low.tpot_mean_s is None and low.interactivity_tok_s_user is None
    table = sm.sweep_table([p, low])
    assert [row["concurrency"] for row in table] == [1, 4]
    assert all(not (isinstance(v, float) and math.isnan(v)) for row in table for v in row.values())


@pytest.mark.parametrize(("ttft_s", "tpot_s"), [(0.0, 0.1), (-1.0, 0.1), (2.0, 0.0), (2.0, -0.5), (math.nan, 0.1)])
def test_slo_bounds_must_be_positive(ttft_s: float, tpot_s: float) -> None:
    # A bound no request can meet gives goodput 0: a number that measures the parameter, not the system.
    with pytest.raises(ValueError, match="SLO"):
        sm.SLO(ttft_s=ttft_s, tpot_s=tpot_s)
    assert sm.SLO(ttft_s=math.inf, tpot_s=0.05).tpot_s == 0.05  # no bound on TTFT is allowed
