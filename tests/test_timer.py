"""The stopping rule (pure) and the CPU timer."""

from __future__ import annotations

import itertools

import pytest
import torch

from aibench.measure import timer
from aibench.measure.timer import StopRule, TimerConfig, measure, should_stop

CFG = TimerConfig(warmup_s=0.0, min_samples=10, min_time_s=0.5, max_time_s=5.0, target_rel_se=0.01)


def test_needs_min_samples_even_when_quiet() -> None:
    assert should_stop([0.1] * 9, elapsed_s=1.0, config=CFG)[0] is False
    stop, converged, reason = should_stop([0.1] * 10, elapsed_s=1.0, config=CFG)
    assert stop and converged and "<=" in reason


def test_needs_min_time_even_with_many_samples() -> None:
    assert should_stop([0.001] * 400, elapsed_s=0.4, config=CFG)[0] is False  # 0.4 s sampled < 0.5


def test_noisy_samples_keep_sampling_until_timeout() -> None:
    noisy = [0.05, 0.1, 0.2, 0.4] * 5  # 20 samples, 3.75 s, very noisy
    assert should_stop(noisy, elapsed_s=3.75, config=CFG)[0] is False
    stop, converged, reason = should_stop(noisy, elapsed_s=5.0, config=CFG)
    assert stop and not converged and "timeout" in reason


def test_min_samples_is_a_floor_even_past_the_timeout() -> None:
    slow = [2.0, 2.1, 1.9]
    assert should_stop(slow, elapsed_s=6.0, config=CFG)[0] is False
    assert should_stop(slow * 4, elapsed_s=24.0, config=CFG)[0] is True


def test_max_samples_bounds_the_record() -> None:
    cfg = TimerConfig(warmup_s=0.0, min_samples=2, min_time_s=10.0, max_time_s=20.0, max_samples=50)
    stop, _, reason = should_stop([1e-6] * 50, elapsed_s=0.1, config=cfg)
    assert stop and "max_samples" in reason


def test_a_skipped_noise_estimate_never_stops_on_noise_but_the_limits_still_hold() -> None:
    quiet = [0.1] * 10
    assert should_stop(quiet, elapsed_s=1.0, config=CFG, noise_due=False) == (False, False, "")
    assert should_stop(quiet, elapsed_s=1.0, config=CFG, sampled_s=0.2)[0] is False  # the kept sum counts
    assert should_stop(quiet, elapsed_s=9.0, config=CFG, noise_due=False)[0] is True  # max_time_s
    cfg = TimerConfig(warmup_s=0.0, min_samples=2, min_time_s=10.0, max_time_s=20.0, max_samples=10)
    assert should_stop(quiet, elapsed_s=0.1, config=cfg, noise_due=False)[0] is True  # max_samples


def test_stop_rule_keeps_the_sum_and_spends_at_most_its_budget_on_the_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake clock: every noise estimate "costs" 1 ms and every sample 1 us of wall time. With a
    # 2% budget the estimate is due again only 50 ms later, so over 10,000 samples (10 ms) it runs
    # once at min_samples, then not again: cost bounded by the budget, not by n.
    now = [0.0]
    estimates = []

    def clock() -> float:
        return now[0]

    def rse(samples: list[float]) -> float:
        estimates.append(len(samples))
        now[0] += 1e-3
        return 1.0  # never converges
    monkeypatch.setattr(timer.time, "perf_counter", clock)
    monkeypatch.setattr(timer.stats, "rel_stderr_median", rse)
    cfg = TimerConfig(warmup_s=0.0, min_samples=10, min_time_s=0.0, max_time_s=60.0, max_samples=10_000)
    rule = StopRule(cfg)
    for _ in range(9_999):
        now[0] += 1e-6
        assert rule.add(1e-3, elapsed_s=now[0])[0] is False
    assert estimates == [10]  # due at min_samples, then 50 ms of budget never came back
    assert rule.sampled_s == pytest.approx(9.999) and len(rule.samples) == 9_999
    stop, _, reason = rule.add(1e-3, elapsed_s=now[0])
    assert stop and "max_samples" in reason


@pytest.mark.parametrize("kwargs", [{"min_samples": 1}, {"min_time_s": 2, "max_time_s": 1}, {"target_rel_se": 0}])
def test_config_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TimerConfig(**kwargs)


def test_cpu_timer_measures_and_keeps_raw_samples() -> None:
    calls = itertools.count()
    x = torch.randn(64, 64)

    def fn() -> None:
        next(calls)
        x @ x

    cfg = TimerConfig(warmup_s=0.01, min_samples=5, min_time_s=0.01, max_time_s=2.0, target_rel_se=0.5)
    timing = measure(fn, torch.device("cpu"), cfg)
    assert timing.method == "perf_counter"
    assert len(timing.samples_s) == timing.stats["n"] >= 5
    assert all(s > 0 for s in timing.samples_s)
    assert timing.warmup_calls >= 1
    assert next(calls) == timing.warmup_calls + len(timing.samples_s)
    assert timing.stats["min"] <= timing.median_s <= timing.stats["max"]
    d = timing.as_dict()
    assert d["samples_s"] == timing.samples_s and d["method"] == "perf_counter" and d["l2_flush"] is False


@pytest.mark.gpu
def test_cuda_event_timer_flushes_l2() -> None:
    x = torch.randn(4096, 4096, device="cuda")
    timing = measure(lambda: x @ x, torch.device("cuda"), TimerConfig(min_time_s=0.1))
    assert timing.method == "cuda_event" and timing.l2_flush
    graph = measure(lambda: x.add_(1), torch.device("cuda"), TimerConfig(min_time_s=0.1, cuda_graph=True))
    assert graph.method == "cuda_graph" and graph.calls_per_sample == 20


@pytest.mark.gpu
def test_graph_replay_runs_the_captured_calls() -> None:
    from aibench.measure.timer import graph_replay

    x = torch.zeros(1, device="cuda")
    replay = graph_replay(lambda: x.add_(1), torch.device("cuda"), 3)
    before = float(x)  # the capture's own replay ran once
    replay()
    replay()
    torch.cuda.synchronize()
    assert float(x) - before == 6.0
