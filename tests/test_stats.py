"""Statistics on known samples, exactly."""

from __future__ import annotations

import math
import random

import pytest

from aibench.core import stats

SAMPLES = [4.0, 1.0, 3.0, 2.0, 10.0]  # sorted: 1 2 3 4 10


def test_mean_median_stdev_exact() -> None:
    assert stats.mean(SAMPLES) == 4.0
    assert stats.median(SAMPLES) == 3.0
    assert stats.median([1.0, 2.0, 3.0, 4.0]) == 2.5
    # sum of squared deviations: 9 + 4 + 1 + 0 + 36 = 50; / (n - 1) = 12.5
    assert stats.stdev(SAMPLES) == pytest.approx(math.sqrt(12.5), rel=1e-15)
    assert stats.stdev([7.0]) == 0.0


def test_percentile_linear_interpolation_matches_numpy_default() -> None:
    np = pytest.importorskip("numpy")
    for q in (0, 5, 25, 50, 75, 90, 95, 99, 100):
        assert stats.percentile(SAMPLES, q) == pytest.approx(float(np.percentile(SAMPLES, q)), rel=1e-15)
    assert stats.percentile(SAMPLES, 25) == 2.0
    assert stats.percentile(SAMPLES, 90) == pytest.approx(7.6)  # 4 + 0.6 * (10 - 4)


def test_mad_and_robust_noise() -> None:
    # |x - 3| = 1 2 0 1 7 -> median 1
    assert stats.mad(SAMPLES) == 1.0
    assert stats.robust_sigma(SAMPLES) == pytest.approx(1.4826)
    assert stats.rel_noise(SAMPLES) == pytest.approx(1.4826 / 3.0)
    assert stats.rel_noise([2.0, 2.0, 2.0]) == 0.0


def test_rel_stderr_median_formula() -> None:
    # sigma = max(1.4826 * MAD, stdev / 4) = max(1.4826, 0.8839) = 1.4826
    expected = math.sqrt(math.pi / 2) * 1.4826 / math.sqrt(5) / 3.0
    assert stats.rel_stderr_median(SAMPLES) == pytest.approx(expected, rel=1e-12)
    assert stats.rel_stderr_median([1.0]) == math.inf
    # quantised timer: MAD 0 but samples differ -> a quarter of stdev still counts
    quantised = [1.0] * 9 + [2.0]
    assert stats.mad(quantised) == 0.0
    assert stats.rel_stderr_median(quantised) > 0


def test_rel_stderr_shrinks_with_more_samples() -> None:
    few = [1.0, 1.1, 0.9, 1.05, 0.95]
    assert stats.rel_stderr_median(few * 16) < stats.rel_stderr_median(few)


def test_bootstrap_ci_is_deterministic_and_brackets_the_median() -> None:
    data = [1.0 + 0.01 * ((i * 37) % 11) for i in range(50)]
    lo, hi = stats.bootstrap_ci_median(data, seed=3)
    assert (lo, hi) == stats.bootstrap_ci_median(data, seed=3)
    assert lo <= stats.median(data) <= hi
    assert min(data) <= lo and hi <= max(data)
    assert stats.bootstrap_ci_median([5.0]) == (5.0, 5.0)
    wide = stats.bootstrap_ci_median(data, confidence=0.99, seed=3)
    assert wide[0] <= lo and wide[1] >= hi


def test_summarize_has_every_statistic() -> None:
    s = stats.summarize(SAMPLES)
    assert s["n"] == 5 and s["median"] == 3.0 and s["min"] == 1.0 and s["max"] == 10.0
    assert s["p25"] == 2.0 and s["p75"] == 4.0 and s["mad"] == 1.0
    assert len(s["ci95_median"]) == 2


def test_geomean() -> None:
    assert stats.geomean([1.0, 4.0, 16.0]) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        stats.geomean([1.0, 0.0])


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")]])
def test_bad_input_raises(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        stats.median(bad)


def test_percentile_range_checked() -> None:
    with pytest.raises(ValueError):
        stats.percentile(SAMPLES, 101)


@pytest.mark.parametrize("n", [101, 2000, 2001, 10_000])
def test_bootstrap_ci_width_matches_the_median_standard_error(n: int) -> None:
    """For normal samples the median's standard error is sqrt(pi/2) * sigma / sqrt(n), so a 95%
    interval spans about 2 * 1.96 of it; odd and even n (one or two middle order statistics)."""
    rng = random.Random(n)
    data = [rng.gauss(10.0, 1.0) for _ in range(n)]
    lo, hi = stats.bootstrap_ci_median(data, seed=1)
    assert lo <= stats.median(data) <= hi
    expected = 2 * 1.96 * stats.MEDIAN_SE_FACTOR / math.sqrt(n)
    assert 0.8 * expected < hi - lo < 1.2 * expected


def test_an_infinite_sample_does_not_turn_the_median_into_nan() -> None:
    """`1e400` in a JSON record reads as inf (the schema's `> 0` lets it through): interpolating
    with a zero weight gave 2 + (inf - 2) * 0 = nan, so the median of [1, 2, inf] was nan and
    every verdict built on it was meaningless."""
    inf = math.inf
    assert stats.median([1.0, 2.0, inf]) == 2.0
    assert stats.percentile([1.0, inf, inf], 50) == inf
    assert stats.percentile([1.0, 2.0, inf], 75) == inf  # halfway to inf is inf
    assert stats.median([1.0, 3.0]) == 2.0


def test_bootstrap_ci_is_the_same_whether_its_resample_indices_are_cached_or_drawn() -> None:
    # The resample indices depend on n and the seed only, so they are drawn once per n: a CI must
    # not depend on which samples of the same n came before it (the cache holds no values).
    a = [1.0 + 0.01 * ((7 * i) % 30) for i in range(30)]
    b = [5.0 - 0.03 * ((11 * i) % 30) for i in range(30)]
    stats._resample_order_indices.cache_clear()
    fresh_b = stats.bootstrap_ci_median(b)
    stats.bootstrap_ci_median(a)
    assert stats.bootstrap_ci_median(b) == fresh_b
    assert min(b) <= fresh_b[0] <= stats.median(b) <= fresh_b[1] <= max(b)
    low, high = stats._resample_order_indices(30, 2000, 0)
    assert not low.flags.writeable and not high.flags.writeable and (low <= high).all()


def _plain_bootstrap(samples: list[float], confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    """The interval the long way: every resample's median, all of them sorted."""
    import numpy as np

    ordered = np.sort(np.asarray(samples, dtype=np.float64))
    low, high = stats._resample_order_indices(len(samples), resamples, seed)
    medians = np.sort((ordered[low] + ordered[high]) / 2)
    alpha = (1.0 - confidence) / 2.0
    return stats._of_sorted(medians, 100 * alpha), stats._of_sorted(medians, 100 * (1 - alpha))


def _odd_rows(seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    rows = []
    for i in range(400):
        n = rng.choice([2, 3, 4, 7, 30, 31, 100, 1001])
        if i % 4 == 0:  # ties: a quantised timer
            rows.append([rng.choice([1e-3, 2e-3, 3e-3]) for _ in range(n)])
        else:
            rows.append([rng.lognormvariate(-7, 0.3) for _ in range(n)])
    return rows


@pytest.mark.parametrize(("confidence", "resamples", "seed"), [(0.95, 2000, 0), (0.9, 999, 5), (0.5, 101, 2)])
def test_the_batched_bootstrap_gives_each_row_the_plain_bootstrap_bit_for_bit(confidence: float, resamples: int,
                                                                               seed: int) -> None:
    rows = _odd_rows(seed)
    many = stats.bootstrap_ci_median_many(rows, confidence, resamples, seed)
    assert many == [_plain_bootstrap(r, confidence, resamples, seed) for r in rows]
    assert [stats.bootstrap_ci_median(r, confidence, resamples, seed) for r in rows[:50]] == many[:50]


def test_the_batched_bootstrap_answers_none_for_rows_it_cannot_read() -> None:
    out = stats.bootstrap_ci_median_many([[], [1.0, math.nan], ["x"], [2.0], [1.0, 3.0]])
    assert out[:3] == [None, None, None]
    assert out[3] == (2.0, 2.0) and out[4] == _plain_bootstrap([1.0, 3.0], 0.95, 2000, 0)
    with pytest.raises(ValueError, match="samples contain NaN"):  # the single-row function says why
        stats.bootstrap_ci_median([1.0, math.nan])


def test_describe_gives_each_statistic_of_its_own_function_bit_for_bit() -> None:
    single = {"median": stats.median, "mean": stats.mean, "stdev": stats.stdev, "mad": stats.mad,
              "rel_noise": stats.rel_noise, "rel_stderr_median": stats.rel_stderr_median,
              "p5": lambda v: stats.percentile(v, 5), "p95": lambda v: stats.percentile(v, 95),
              "min": min, "max": max, "n": len}
    for row in [*_odd_rows(7), [4.0], [2.0, 2.0], [-1.0, 1.0, 3.0]]:  # a single sample; no spread; median <= 0
        described = stats.describe(row)
        assert all(described[name] == fn(row) for name, fn in single.items()), row
        summary = stats.summarize(row)
        assert summary == {**described, "ci95_median": list(stats.bootstrap_ci_median(row))}
        assert list(summary)[-3:] == ["ci95_median", "rel_noise", "rel_stderr_median"]  # the record's key order
