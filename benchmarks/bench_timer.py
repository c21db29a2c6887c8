"""The CPU timer's own cost per sample, at n = 100 .. 10,000 samples (issue 15).

A sample's cost is the call itself plus the timer's bookkeeping (two clock reads, the append and
the stopping rule; the summary made once at the end is shown apart). The bookkeeping must not grow with n: a rule that re-sums or re-sorts all
samples at every sample makes a 10,000-sample measurement slow and inflates nothing but the wall
time. Printed per n: wall time per sample of `aibench.measure.timer.measure` with its noise target
out of reach (so it runs to exactly n samples), the same function timed by `timeit` (the floor: a
bare loop), and their ratio. Target: the ratio at n = 10,000 within 1.10, and flat in n.

    python benchmarks/bench_timer.py [--work-us 20]
"""

from __future__ import annotations

import argparse
import time
import timeit
from collections.abc import Callable

import torch

from aibench.core import stats
from aibench.measure.timer import TimerConfig, measure


def busy(us: float) -> Callable[[], None]:
    """A function that spins for about `us` microseconds (a CPU-side stand-in for a kernel)."""
    ns = int(us * 1000)

    def fn() -> None:
        end = time.perf_counter_ns() + ns
        while time.perf_counter_ns() < end:
            pass

    return fn


def per_sample_s(fn: Callable[[], None], n: int) -> tuple[float, float]:
    """(wall seconds per sample of the sampling loop, seconds of the summary made once at the end).

    The summary (median, percentiles, a bootstrap CI of the median) is computed once per
    measurement, not per sample: it is timed apart, on the same samples, and taken out of the loop's.
    """
    config = TimerConfig(warmup_s=0.0, min_samples=n, max_samples=n, min_time_s=0.0, max_time_s=3600.0,
                         target_rel_se=1e-12)  # unreachable: runs to max_samples
    start = time.perf_counter()
    timing = measure(fn, torch.device("cpu"), config)
    wall = time.perf_counter() - start
    assert len(timing.samples_s) == n, len(timing.samples_s)
    t0 = time.perf_counter()
    stats.summarize(timing.samples_s)
    summary = time.perf_counter() - t0
    return (wall - summary) / n, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-us", type=float, default=20.0, help="length of the timed call (us)")
    args = parser.parse_args()
    fn = busy(args.work_us)
    print(f"{'n':>7} {'timer us/sample':>16} {'timeit us/call':>15} {'ratio':>6} {'summary ms (once)':>18}")
    ratios = {}
    for n in (100, 1_000, 10_000):
        ours, summary = min(per_sample_s(fn, n) for _ in range(3))
        floor = min(timeit.repeat(fn, number=n, repeat=3)) / n
        ratios[n] = ours / floor
        print(f"{n:>7} {ours * 1e6:>16.2f} {floor * 1e6:>15.2f} {ratios[n]:>6.3f} {summary * 1e3:>18.1f}")
    verdict = "meets" if ratios[10_000] <= 1.10 else "MISSES"
    print(f"n=10,000: {ratios[10_000]:.3f}x timeit's cost per call ({verdict} the 1.10 target); "
          f"growth from n=100 to n=10,000: {ratios[10_000] / ratios[100]:.3f}x")


if __name__ == "__main__":
    main()
