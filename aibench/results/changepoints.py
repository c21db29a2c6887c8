"""Change points in a benchmark's history: E-divisive means with a permutation test.

Why E-divisive (Matteson & James 2014, "A nonparametric approach for multiple change point
analysis of multivariate data"; the method MongoDB runs over its CI performance history,
Daly et al. 2020) rather than a penalised piecewise-constant fit: it assumes no noise model
and needs no penalty to tune. The energy statistic compares every pair of points, so a
heavy-tailed or bimodal series (a GPU's clocks, a shared runner) does not make steps out of
outliers the way a least-squares fit with a fixed penalty does, and the permutation test
gives each change point a p-value whose meaning does not depend on the series' scale.

The procedure, as MongoDB's signal-processing does it: split the series where the energy
statistic is largest; test that split by recomputing the largest statistic over random
permutations of the same segment (p = (1 + #permuted >= observed) / (1 + permutations));
keep it when p < alpha and repeat on every segment, taking the strongest candidate first,
until a candidate is not significant. Seeded: the same series always gives the same answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ChangePoint:
    index: int  # the first point of the new level (0-based)
    p_value: float
    before: float  # median of the segment that ends at index
    after: float  # median of the segment that starts at index

    @property
    def relative_step(self) -> float:
        """after / before - 1: +0.10 is a 10% larger value (for a time, 10% slower)."""
        return self.after / self.before - 1 if self.before else float("inf")


def _best_split(dist: Any, min_size: int) -> tuple[int, float]:
    """(split, energy statistic) maximising the statistic over a segment's distance matrix.

    Splitting n points at t into X (t points) and Y (n - t): q = t(n-t)/n * (2 E|X-Y| - E|X-X'|
    - E|Y-Y'|), every sum read off one 2-D prefix sum: O(n^2) for all t together.
    """
    import numpy as np

    n = dist.shape[0]
    prefix = np.zeros((n + 1, n + 1))
    prefix[1:, 1:] = dist.cumsum(0).cumsum(1)
    t = np.arange(min_size, n - min_size + 1)
    within_x = prefix[t, t]  # both points in X (each pair twice, the diagonal is 0)
    cross = prefix[t, n] - within_x  # one point in X, one in Y
    within_y = prefix[n, n] - 2 * cross - within_x
    u = n - t
    q = t * u / n * (2 * cross / (t * u) - within_x / (t * (t - 1)) - within_y / (u * (u - 1)))
    best = int(np.argmax(q))
    return int(t[best]), float(q[best])


def _significance(values: Any, observed: float, min_size: int, permutations: int, rng: Any) -> float:
    import numpy as np

    exceed = 0
    for _ in range(permutations):
        shuffled = rng.permutation(values)
        _, q = _best_split(np.abs(shuffled[:, None] - shuffled[None, :]), min_size)
        exceed += q >= observed
    return (exceed + 1) / (permutations + 1)


def e_divisive(series: Sequence[float], *, alpha: float = 0.01, permutations: int = 199, min_size: int = 3,
               seed: int = 0) -> list[ChangePoint]:
    """Change points of `series`, sorted by index. Pure and deterministic for a given seed.

    `alpha`: largest permutation p-value a change point may have (0.01: a flat series of any
    length gives a false step about once in a hundred histories, not once in twenty);
    `min_size`: fewest points a segment may have (2 is the least the statistic is defined for;
    3 keeps a single outlier pair from becoming a level of its own).
    """
    import numpy as np

    if min_size < 2:
        raise ValueError(f"min_size must be >= 2, got {min_size}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    values = np.asarray(series, dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError("series contains NaN")
    rng = np.random.default_rng(seed)
    bounds = [0, len(values)]  # segment edges, sorted
    rejected: set[tuple[int, int]] = set()  # segments whose best split was not significant
    p_values: dict[int, float] = {}
    while True:
        candidates = []
        for lo, hi in itertools.pairwise(bounds):
            if hi - lo >= 2 * min_size and (lo, hi) not in rejected:
                segment = values[lo:hi]
                split, q = _best_split(np.abs(segment[:, None] - segment[None, :]), min_size)
                candidates.append((q, lo, hi, split))
        if not candidates:
            break
        q, lo, hi, split = max(candidates)
        p = _significance(values[lo:hi], q, min_size, permutations, rng)
        if p >= alpha:
            rejected.add((lo, hi))
            continue
        bounds = sorted([*bounds, lo + split])
        p_values[lo + split] = p
    out = []
    for lo, at, hi in zip(bounds, bounds[1:], bounds[2:]):
        out.append(ChangePoint(at, p_values[at], float(np.median(values[lo:at])), float(np.median(values[at:hi]))))
    return out
