"""The Pareto frontier of a serving sweep: pure, so the chart's marked points can be checked exactly.

A concurrency sweep trades interactivity (tokens/s one user sees, 1000 / TPOT) for throughput
(output tokens/s per GPU); InferenceX draws each system's points and marks the ones no other point
of the same system beats on both axes. Both coordinates are higher-is-better.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

Point = tuple[float, float]  # (x, y): (interactivity, throughput per GPU)


def dominates(a: Point, b: Point) -> bool:
    """Whether `a` is at least as good as `b` on both axes and better on one."""
    return a[0] >= b[0] and a[1] >= b[1] and a != b


def pareto_frontier(points: Iterable[Point]) -> list[Point]:
    """The points no other point dominates, sorted by x ascending (so y descends strictly).

    A point given twice is one position on the frontier and appears once; of two points with the
    same x only the higher y stays (the lower is dominated), and likewise for the same y.
    Non-finite coordinates raise ValueError: a NaN compares false both ways and would sit on any
    frontier, an infinity would dominate every real measurement.
    """
    pts = list(points)
    for x, y in pts:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"a frontier point must have finite coordinates, got ({x}, {y})")
    # Best x first (ties: best y first): a point is on the frontier when its y beats every y seen,
    # that is, every point with at least its x.
    frontier: list[Point] = []
    best_y = -math.inf
    for x, y in sorted(set(pts), key=lambda p: (-p[0], -p[1])):
        if y > best_y:
            frontier.append((x, y))
            best_y = y
    frontier.reverse()
    return frontier
