"""How often `compare`'s rule calls a change: seeded Monte Carlo trials of synthetic timings.

A trial draws `n` base samples around 1.0 and `n` new samples around `1 + change`, each with
Gaussian relative noise `noise` (the rel. spread of a GPU kernel's timings), and asks `judge`
for a verdict. With `change = 0` (A/A) the called fraction is the false-alarm rate; with a real
change it is the power. Shared by tests/test_compare_simulation.py and
benchmarks/bench_compare_rule.py, so that the documented rates are the tested ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from aibench.results.compare import CompareOptions, judge


@dataclass(frozen=True)
class SimulationResult:
    change: float    # true relative change of the new run's time (0.05 = 5% slower)
    noise: float     # relative standard deviation of one sample
    n: int           # samples a side
    trials: int
    called: int      # trials whose verdict was slower or faster (any change called)
    slower: int      # trials whose verdict was slower

    @property
    def called_rate(self) -> float:
        return self.called / self.trials

    @property
    def slower_rate(self) -> float:
        return self.slower / self.trials


def simulate(change: float, *, noise: float = 0.02, n: int = 30, trials: int = 1000, seed: int = 0,
             options: CompareOptions | None = None) -> SimulationResult:
    """Run `trials` seeded comparisons of a true `change` and count the verdicts that call one."""
    options = options or CompareOptions()
    rng = random.Random(seed)
    called = slower = 0
    for _ in range(trials):
        base = [1.0 + rng.gauss(0.0, noise) for _ in range(n)]
        new = [(1.0 + change) * (1.0 + rng.gauss(0.0, noise)) for _ in range(n)]
        verdict = judge(base, new, options)[0]
        called += verdict in ("slower", "faster")
        slower += verdict == "slower"
    return SimulationResult(change, noise, n, trials, called, slower)
