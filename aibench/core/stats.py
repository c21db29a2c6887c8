"""Statistics over timing samples, as small pure functions (the pyperf way).

Every function takes a sequence of floats and returns a float (or a pair); none mutates
its input. Sample sets are small (tens to thousands), so clarity wins over speed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

# Consistency constant: 1.4826 * MAD estimates the standard deviation of a normal
# distribution (1 / Phi^-1(3/4)).
MAD_TO_SIGMA = 1.4826

# Asymptotic efficiency of the median: SE(median) = sqrt(pi / 2) * sigma / sqrt(n) for
# normal samples, i.e. about 1.2533 sigma / sqrt(n).
MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2)


def _require(samples: Sequence[float], at_least: int = 1) -> list[float]:
    values = list(map(float, samples))
    if len(values) < at_least:
        raise ValueError(f"need at least {at_least} sample(s), got {len(values)}")
    # A NaN makes the sum NaN: one C-speed sum spares the per-element scan, which runs only when the
    # sum is NaN (a NaN, or +inf beside -inf). Readers recompute ~15 statistics per record this way.
    total = sum(values)
    if total != total and any(math.isnan(x) for x in values):
        raise ValueError("samples contain NaN")
    return values


def mean(samples: Sequence[float]) -> float:
    """Arithmetic mean."""
    values = _require(samples)
    return math.fsum(values) / len(values)


def median(samples: Sequence[float]) -> float:
    """Median: the middle value, or the mean of the two middle values."""
    return percentile(samples, 50.0)


def stdev(samples: Sequence[float]) -> float:
    """Sample standard deviation (Bessel-corrected, n - 1); 0.0 for a single sample."""
    values = _require(samples)
    if len(values) == 1:
        return 0.0
    m = mean(values)
    return math.sqrt(math.fsum((x - m) ** 2 for x in values) / (len(values) - 1))


def percentile(samples: Sequence[float], q: float) -> float:
    """q-th percentile (0..100) with linear interpolation between order statistics.

    This is numpy's default ("linear", type 7 of Hyndman and Fan).
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    return _of_sorted(sorted(_require(samples)), q)


def _of_sorted(values: Sequence[float], q: float) -> float:
    """percentile() of values already sorted and checked (or with at least the two order
    statistics it reads, _order_stats, in place)."""
    pos = (len(values) - 1) * q / 100.0
    lo, hi = _order_stats(len(values), q)
    frac = pos - lo
    if frac == 0 or values[lo] == values[hi]:
        # An order statistic itself: interpolating with weight 0 towards an infinite neighbour
        # would give inf * 0 = nan.
        return values[lo]
    return values[lo] + (values[hi] - values[lo]) * frac


def mad(samples: Sequence[float]) -> float:
    """Median absolute deviation from the median (unscaled)."""
    values = _require(samples)
    m = median(values)
    return median([abs(x - m) for x in values])


def robust_sigma(samples: Sequence[float]) -> float:
    """MAD scaled to estimate a normal standard deviation (insensitive to outliers)."""
    return MAD_TO_SIGMA * mad(samples)


def rel_stderr_median(samples: Sequence[float]) -> float:
    """Relative standard error of the median: sqrt(pi/2) * sigma / sqrt(n) / median.

    sigma is the larger of the MAD-based estimate and a quarter of the sample standard
    deviation, so that a few large outliers still slow convergence a little but cannot
    stall it, and quantised timers (MAD = 0) still report some noise when samples differ.
    Returns inf for fewer than two samples (no estimate of spread yet).
    """
    values = _require(samples)
    n = len(values)
    if n < 2:
        return math.inf
    m = median(values)
    if m <= 0:
        return math.inf
    sigma = max(robust_sigma(values), 0.25 * stdev(values))
    return MEDIAN_SE_FACTOR * sigma / math.sqrt(n) / m


def rel_noise(samples: Sequence[float]) -> float:
    """Relative spread of individual samples: robust sigma / median (0 when all equal)."""
    values = _require(samples)
    m = median(values)
    if m <= 0:
        return math.inf
    return robust_sigma(values) / m


def bootstrap_ci_median(
    samples: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median.

    Deterministic for a given seed, so that a record can be re-derived from its raw samples.
    Resamples draw indices into the sorted samples, so a resample's median is found with a
    partial sort of integers (numpy, in chunks of bounded memory): a record of 10,000 samples
    takes 0.3 s instead of the 3.3 s a pure-Python loop took (2-core CPU).
    """
    values = _require(samples)  # says why samples cannot be bootstrapped
    (ci,) = bootstrap_ci_median_many([values], confidence, resamples, seed)
    assert ci is not None  # values passed _require: only such rows are refused
    return ci


def bootstrap_ci_median_many(
    rows: Sequence[Sequence[float]],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> list[tuple[float, float] | None]:
    """bootstrap_ci_median of each row, bit for bit, with the rows of one length resampled together
    (one numpy call for a thousand records instead of a thousand): a reader of 50,000 records pays
    the per-call overhead once per chunk. None for a row that bootstrap_ci_median would refuse
    (empty, NaN, not numbers): its caller asks the single-row function, which says why."""
    import numpy as np

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    out: list[tuple[float, float] | None] = [None] * len(rows)
    by_length: dict[int, list[tuple[int, list[float]]]] = {}
    for i, row in enumerate(rows):
        try:
            values = _require(row)
        except (TypeError, ValueError):
            continue
        if len(values) == 1:
            out[i] = (values[0], values[0])
        else:
            by_length.setdefault(len(values), []).append((i, values))
    alpha = (1.0 - confidence) / 2.0
    qs = (100.0 * alpha, 100.0 * (1.0 - alpha))
    for n, group in by_length.items():
        pick_low, pick_high, counts = _resample_pairs(n, resamples, seed)
        per_chunk = max(1, 2_000_000 // max(n, len(counts)))  # rows at a time: tens of MB at most
        for start in range(0, len(group), per_chunk):
            chunk = group[start : start + per_chunk]
            ordered = np.sort(np.array([values for _, values in chunk], dtype=np.float64), axis=1)  # [R, n]
            # Each distinct resample median once (a few hundred, not 2,000), as bootstrap_ci_median
            # computes it, then sorted with how many resamples share it: the k-th smallest of all
            # the resample medians is read off the running count.
            with np.errstate(over="ignore"):  # two samples near the float maximum: their mean is inf, as ever
                medians = (ordered[:, pick_low] + ordered[:, pick_high]) / 2  # [R, P]
            order = np.argsort(medians, axis=1, kind="stable")
            medians = np.take_along_axis(medians, order, axis=1)
            at_or_below = np.cumsum(counts[order], axis=1)  # [R, P]
            ends = [_percentile_of_counted(medians, at_or_below, resamples, q).tolist() for q in qs]
            for (i, _), lo, hi in zip(chunk, ends[0], ends[1]):
                out[i] = (lo, hi)
    return out


def _percentile_of_counted(values: Any, at_or_below: Any, total: int, q: float) -> Any:
    """_of_sorted(q) of each row's multiset: sorted distinct values [R, P], the running count of
    how many of the `total` members are at or below each. The same two order statistics and the
    same operations as _of_sorted, so the same bits."""
    import numpy as np

    def kth(k: int) -> Any:  # the k-th smallest member (0-based): the first value counted past k
        return values[np.arange(len(values)), (at_or_below <= k).sum(axis=1)]

    pos = (total - 1) * q / 100.0
    lo, hi = _order_stats(total, q)
    frac = pos - lo
    a = kth(lo)
    if frac == 0:
        return a
    b = kth(hi)
    with np.errstate(invalid="ignore"):  # inf - inf where a == b == inf: np.where keeps a there
        return np.where(a == b, a, a + (b - a) * frac)


@functools.lru_cache(maxsize=64)
def _resample_pairs(n: int, resamples: int, seed: int) -> tuple[Any, Any, Any]:
    """The distinct (low, high) index pairs of _resample_order_indices and how many resamples
    have each: a resample's median of 30 samples is one of a few hundred pairs' means."""
    import numpy as np

    low, high = _resample_order_indices(n, resamples, seed)
    pairs, counts = np.unique(np.stack([low, high]), axis=1, return_counts=True)
    return pairs[0], pairs[1], counts


def _order_stats(n: int, q: float) -> tuple[int, int]:
    """The two order statistics (0-based) that the q-th percentile of n values interpolates."""
    lo = math.floor((n - 1) * q / 100.0)
    return lo, min(lo + 1, n - 1)


@functools.lru_cache(maxsize=64)
def _resample_order_indices(n: int, resamples: int, seed: int) -> tuple[Any, Any]:
    """For each resample (with replacement) of n sorted values, the two indices whose values'
    mean is its median. They depend on n and the seed only, not on the values: computed once per
    n, a reader recomputing the CI of 50,000 records of 30 samples pays the draw and the partial
    sort once instead of 50,000 times (1.3 ms a record before)."""
    import numpy as np

    lo, hi = (n - 1) // 2, n // 2  # the order statistics whose mean is the median
    rng = np.random.default_rng(seed)
    low, high = np.empty(resamples, dtype=np.intp), np.empty(resamples, dtype=np.intp)
    chunk = max(1, 2_000_000 // n)  # at most ~16 MB of indices at a time
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        idx = np.partition(rng.integers(0, n, size=(rows, n)), (lo, hi), axis=1)
        low[start : start + rows], high[start : start + rows] = idx[:, lo], idx[:, hi]
    low.flags.writeable = high.flags.writeable = False  # shared by every caller: read-only
    return low, high


def describe(samples: Sequence[float]) -> dict[str, float]:
    """Every statistic a record keeps but the bootstrap interval, from one sorted copy: each equals
    the function of its name bit for bit (the same operations on the same order statistics; fsum
    is exact whatever the order). Readers recompute these for every record they load."""
    values = _require(samples)
    ordered = sorted(values)
    n = len(ordered)
    m = _of_sorted(ordered, 50.0)
    average = math.fsum(ordered) / n
    sd = 0.0 if n == 1 else math.sqrt(math.fsum((x - average) ** 2 for x in ordered) / (n - 1))
    spread = _of_sorted(sorted([abs(x - m) for x in ordered]), 50.0)  # mad()
    sigma = MAD_TO_SIGMA * spread  # robust_sigma()
    return {
        "n": n, "median": m, "mean": average, "stdev": sd, "min": ordered[0], "max": ordered[-1],
        "p5": _of_sorted(ordered, 5.0), "p25": _of_sorted(ordered, 25.0), "p75": _of_sorted(ordered, 75.0),
        "p95": _of_sorted(ordered, 95.0), "mad": spread,
        "rel_noise": math.inf if m <= 0 else sigma / m,
        "rel_stderr_median": (math.inf if n < 2 or m <= 0 else
                              MEDIAN_SE_FACTOR * max(sigma, 0.25 * sd) / math.sqrt(n) / m),
    }


def summarize(samples: Sequence[float], *, seed: int = 0) -> dict[str, float | list[float]]:
    """All the statistics a record keeps, computed from raw samples (seconds)."""
    described = describe(samples)
    lo, hi = bootstrap_ci_median(samples, seed=seed)
    out: dict[str, float | list[float]] = {}
    for name, value in described.items():
        if name == "rel_noise":  # the record's order of keys, as it always was
            out["ci95_median"] = [lo, hi]
        out[name] = value
    return out


def geomean(values: Sequence[float]) -> float:
    """Geometric mean of positive values (used for speedups over a shape set)."""
    vals = _require(values)
    if any(v <= 0 for v in vals):
        raise ValueError("geometric mean needs positive values")
    return math.exp(math.fsum(math.log(v) for v in vals) / len(vals))


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given the average of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test: (U of `a`, p-value).

    The normal approximation with tie and continuity corrections (scipy's "asymptotic" method),
    which asv and Google Benchmark's compare.py use to call a change real (methods.md); it is
    accurate from about 8 samples a side, and timing records keep at least 10.
    """
    xa, xb = _require(a), _require(b)
    n1, n2 = len(xa), len(xb)
    r = ranks(xa + xb)
    u1 = math.fsum(r[:n1]) - n1 * (n1 + 1) / 2
    n = n1 + n2
    counts: dict[float, int] = {}
    for v in xa + xb:
        counts[v] = counts.get(v, 0) + 1
    tie_term = math.fsum(t**3 - t for t in counts.values()) / (n * (n - 1)) if n > 1 else 0.0
    var = n1 * n2 / 12 * ((n + 1) - tie_term)
    if var <= 0:  # every value equal: no evidence of a difference
        return u1, 1.0
    z = max(abs(u1 - n1 * n2 / 2) - 0.5, 0.0) / math.sqrt(var)
    return u1, min(1.0, math.erfc(z / math.sqrt(2)))


def mann_whitney_min_p(n1: int, n2: int) -> float:
    """The smallest p-value `mann_whitney_u` can return for samples of sizes n1 and n2.

    Reached at complete separation with each side constant (the tie correction then shrinks the
    variance most). When it is not below a significance bound, no data of these sizes can pass
    it: the test has no power there, whatever the change.
    """
    if n1 < 1 or n2 < 1:
        raise ValueError(f"need at least 1 sample a side, got {n1} and {n2}")
    return mann_whitney_u([0.0] * n1, [1.0] * n2)[1]


def mann_whitney_samples_needed(alpha: float) -> int:
    """The fewest samples a side with which `mann_whitney_u` can give p < `alpha` on distinct
    timings (timings rarely tie): reached at complete separation. A suite that takes fewer can
    never have a change called, however large."""
    for k in range(2, 10_000):
        if mann_whitney_u([float(i) for i in range(k)], [float(k + i) for i in range(k)])[1] < alpha:
            return k
    raise ValueError(f"no sample count up to 10,000 reaches p < {alpha}")
