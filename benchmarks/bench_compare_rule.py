"""How often `aibench compare`'s rule catches a change, and how often it raises a false alarm.

    python benchmarks/bench_compare_rule.py [--noise 0.02] [--n 30] [--trials 4000] [--threshold 0.03]

Prints, for true changes from 0% (A/A: the false-alarm rate) to 10%, the fraction of seeded
trials that `compare` calls slower (aibench/results/compare_simulation.py; the same function
tests/test_compare_simulation.py holds to >= 95% at 5% and <= 1% at 0%). A change exactly at the
threshold is caught about half the time: the threshold is the smallest change that counts.
"""

from __future__ import annotations

import argparse

from aibench.results.compare import CompareOptions
from aibench.results.compare_simulation import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, default=0.02, help="relative spread of one sample")
    parser.add_argument("--n", type=int, default=30, help="samples a side")
    parser.add_argument("--trials", type=int, default=4000)
    parser.add_argument("--threshold", type=float, default=CompareOptions.threshold)
    parser.add_argument("--alpha", type=float, default=CompareOptions.alpha)
    args = parser.parse_args()
    options = CompareOptions(threshold=args.threshold, alpha=args.alpha)
    print(f"noise {args.noise:.1%}, {args.n} samples a side, {args.trials} trials, "
          f"threshold {args.threshold:g}, alpha {args.alpha:g}")
    print(f"{'true change':>12} {'called slower':>14} {'called any':>11}")
    for change in (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.10):
        r = simulate(change, noise=args.noise, n=args.n, trials=args.trials, seed=1, options=options)
        print(f"{change:>12.0%} {r.slower_rate:>14.2%} {r.called_rate:>11.2%}")


if __name__ == "__main__":
    main()
