"""The stopping rule (aibench.measure.timer.should_stop) exactly at its edges, and the TimerConfig values
it cannot work with. Samples are binary fractions, so that sums land exactly on the limits."""

from __future__ import annotations

import math

import pytest

from aibench.measure import timer
from aibench.measure.timer import TimerConfig, should_stop

CFG = TimerConfig(warmup_s=0.0, min_samples=4, min_time_s=0.5, max_time_s=8.0, target_rel_se=0.01,
                  max_samples=64)
QUIET = 0.125  # four of them are exactly min_time_s
NOISY = [0.0625, 0.125, 0.25, 0.5]


def test_min_samples_edge() -> None:
    assert should_stop([0.25] * 3, elapsed_s=1.0, config=CFG) == (False, False, "")
    stop, converged, reason = should_stop([0.25] * 4, elapsed_s=1.0, config=CFG)
    assert stop and converged and "<=" in reason


def test_min_time_edge_is_inclusive() -> None:
    assert should_stop([QUIET] * 4, elapsed_s=1.0, config=CFG)[:2] == (True, True)  # 0.5 s == min_time_s
    below = [QUIET] * 3 + [QUIET - 2**-20]
    assert should_stop(below, elapsed_s=1.0, config=CFG)[0] is False


def test_max_time_edge_is_inclusive_with_and_without_convergence() -> None:
    few_short = [2**-10] * 4  # far under min_time_s: only the timeout can stop it
    assert should_stop(few_short, elapsed_s=8.0 - 2**-10, config=CFG)[0] is False
    stop, converged, reason = should_stop(few_short, elapsed_s=8.0, config=CFG)
    assert (stop, converged, reason) == (True, True, "converged at timeout")
    stop, converged, reason = should_stop(NOISY, elapsed_s=8.0, config=CFG)
    assert stop and not converged and reason.startswith("timeout after 8.0 s")


def test_timeout_never_cuts_under_min_samples() -> None:
    assert should_stop([QUIET] * 3, elapsed_s=1e6, config=CFG)[0] is False


def test_max_samples_edge_with_and_without_convergence() -> None:
    noisy = NOISY * 16  # 64 samples that never reach the target
    assert should_stop(noisy[:63], elapsed_s=1.0, config=CFG)[0] is False
    stop, converged, reason = should_stop(noisy, elapsed_s=1.0, config=CFG)
    assert stop and not converged and "max_samples=64" in reason
    tiny = [2**-20] * 64  # quiet but far under min_time_s
    assert should_stop(tiny, elapsed_s=1.0, config=CFG)[:2] == (True, True)


def test_target_edge_is_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timer.stats, "rel_stderr_median", lambda _s: CFG.target_rel_se)
    assert should_stop([QUIET] * 4, elapsed_s=1.0, config=CFG)[:2] == (True, True)
    monkeypatch.setattr(timer.stats, "rel_stderr_median", lambda _s: math.nextafter(CFG.target_rel_se, 1))
    assert should_stop([QUIET] * 4, elapsed_s=1.0, config=CFG)[0] is False


@pytest.mark.parametrize("value", [0.0, -QUIET])
def test_zero_or_negative_samples_never_converge(value: float) -> None:
    samples = [value] * 10
    assert should_stop(samples, elapsed_s=1.0, config=CFG)[0] is False
    stop, converged, _ = should_stop(samples, elapsed_s=8.0, config=CFG)
    assert stop and not converged


def test_a_nan_sample_is_an_error_not_a_verdict() -> None:
    with pytest.raises(ValueError, match="NaN"):
        should_stop([QUIET] * 4 + [math.nan], elapsed_s=1.0, config=CFG)


def test_min_time_counts_every_call_of_a_graph_replay() -> None:
    """A cuda_graph sample is one replay of N calls divided by N: the GPU spent N times the sample
    on it. nvbench's 0.5 s floor is time measured, so 20-call replays reach it 20 times sooner
    (counting per-call time would ask for 10 s of replays and run every graph case to the timeout)."""
    per_call = [2**-7] * 4  # 4 replays of 16 calls of 1/128 s: 0.5 s of replays, 1/32 s per call
    assert should_stop(per_call, elapsed_s=1.0, config=CFG)[0] is False
    assert should_stop(per_call, elapsed_s=1.0, config=CFG, calls_per_sample=16)[:2] == (True, True)
    assert should_stop(per_call, elapsed_s=1.0, config=CFG, calls_per_sample=15)[0] is False


@pytest.mark.parametrize("kwargs", [
    {"min_samples": 10, "max_samples": 9},  # min_samples is a hard floor: max_samples may not undercut it
    {"graph_calls": 0},  # a replay of no calls: a division by zero
    {"max_time_s": math.nan},  # never times out
    {"max_time_s": math.inf},
    {"min_time_s": math.nan},  # `sampled < nan` is False: the floor silently gone
    {"min_time_s": -1.0},
    {"warmup_s": math.nan},
    {"warmup_s": -1.0},
])
def test_config_rejects_values_the_rule_cannot_honour(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TimerConfig(**kwargs)


def test_config_accepts_its_own_edges() -> None:
    TimerConfig(min_samples=10, max_samples=10, min_time_s=0.0, max_time_s=0.0, warmup_s=0.0, graph_calls=1)
