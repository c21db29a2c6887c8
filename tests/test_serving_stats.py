"""The serving arithmetic both llm.serve backends share (aibench.core.serving_stats), exactly on hand
values, and the two backends agreeing on the same timestamps."""

from __future__ import annotations

import math

import pytest

from aibench.core import serving_stats as ss
from aibench.models import serving_metrics as engine_metrics
from aibench.serving import metrics as http_metrics
from aibench.serving.outcome import RequestOutcome


def test_distribution_keys_and_values() -> None:
    # [1, 2, 3, 10]: mean 4, median 2.5, population std sqrt(((-3)^2 + 2^2 + 1^2 + 6^2) / 4) = sqrt(12.5);
    # numpy-linear p90 = 3 + 0.7 * 7 (rank 2.7), p99 = 3 + 0.97 * 7 (rank 2.97), p50 = median.
    d = ss.distribution("x", [3.0, 1.0, 10.0, 2.0])
    assert list(d) == ss.distribution_keys("x") == ["x_mean_s", "x_median_s", "x_std_s", "x_p50_s", "x_p90_s",
                                                    "x_p99_s"]
    assert d["x_mean_s"] == 4.0 and d["x_median_s"] == 2.5 and d["x_p50_s"] == 2.5
    assert d["x_std_s"] == pytest.approx(math.sqrt(12.5), rel=1e-15)
    assert d["x_p90_s"] == pytest.approx(3 + 0.7 * 7, rel=1e-15)
    assert d["x_p99_s"] == pytest.approx(3 + 0.97 * 7, rel=1e-15)
    assert ss.distribution("x", []) == {}  # no samples: no keys, never 0
    assert list(ss.distribution("y", [1.0], (99.9,))) == ["y_mean_s", "y_median_s", "y_std_s", "y_p99.9_s"]


def test_tpot_and_interactivity() -> None:
    assert ss.tpot(0.5, 1.0, 3) == 0.25
    assert ss.tpot(0.5, 0.5, 1) is None and ss.tpot(0.5, 0.5, 0) is None
    assert ss.interactivity(0.02) == pytest.approx(50.0, rel=1e-15)
    for unknown in (None, 0.0, -1.0, math.inf, math.nan):
        assert ss.interactivity(unknown) is None


def test_throughputs_and_per_gpu() -> None:
    t = ss.throughputs(3, 30, 12, 2.0, num_gpus=4)
    assert t == {"completed": 3.0, "duration_s": 2.0, "total_input_tokens": 30.0, "total_output_tokens": 12.0,
                 "request_throughput_rps": 1.5, "output_tokens_per_s": 6.0, "total_tokens_per_s": 21.0,
                 "throughput_per_gpu_tokens_per_s": 5.25, "output_tokens_per_s_per_gpu": 1.5}
    for bad in ({"duration_s": 0.0}, {"duration_s": math.nan}, {"num_gpus": 0}):
        with pytest.raises(ValueError):
            ss.throughputs(1, 1, 1, **{"duration_s": 1.0, "num_gpus": 1, **bad})


def test_both_backends_write_the_same_figures_for_the_same_timestamps() -> None:
    timings = [((0.0, (0.5, 0.6, 0.8, 1.0)), 10), ((0.2, (0.7,)), 5), ((0.4, (3.0, 3.5)), 20)]
    engine = engine_metrics.summarize([engine_metrics.RequestTiming(s, t, n) for (s, t), n in timings],
                                      duration_s=4.0, num_gpus=2)
    http, _ = http_metrics.calculate([RequestOutcome(i, True, s, t, prompt_len=n, output_tokens=len(t))
                                      for i, ((s, t), n) in enumerate(timings)], 4.0, num_gpus=2)
    shared = [*ss.throughputs(1, 1, 1, 1.0), "interactivity_tok_s_user",
              *(k for name in ("ttft", "tpot", "itl", "e2el") for k in ss.distribution_keys(name))]
    assert {k: engine[k] for k in shared} == {k: http[k] for k in shared}
    assert engine["output_tokens_per_s_per_gpu"] == 7 / 4.0 / 2  # the in-process engine has it too now
