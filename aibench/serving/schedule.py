"""When each request is sent: vLLM `bench serve`'s `get_request` (vllm/benchmarks/serve.py).

For request i the current rate is the fixed rate, or with a ramp-up the rate at progress
i / (N - 1) between start and end (linear: start + (end - start) * p; exponential:
start * (end / start) ** p). Its gap is 0 at rate inf, 1 / rate at burstiness inf, else
gamma(shape = burstiness, scale = 1 / (rate * burstiness)) (burstiness 1: Poisson). The send time
of request i is the sum of gaps 0..i; without a ramp-up the times are then rescaled so the last is
N / rate exactly (vLLM does this so throughput does not drift 1-2% with the seed). Pure and seeded.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from aibench.core.errors import UsageError


@dataclass(frozen=True)
class RampUp:
    strategy: str  # "linear" or "exponential"
    start_rps: float
    end_rps: float

    def __post_init__(self) -> None:
        if self.strategy not in ("linear", "exponential"):
            raise UsageError(f"ramp-up strategy must be linear or exponential, got {self.strategy!r}")
        if not (0 < self.start_rps < math.inf and 0 < self.end_rps < math.inf):
            raise UsageError(f"ramp-up rates must be positive and finite, got {self.start_rps}, {self.end_rps}")

    @classmethod
    def parse(cls, text: str) -> RampUp | None:
        """'linear:1:20' -> RampUp('linear', 1, 20); '' -> None."""
        if not text:
            return None
        parts = text.split(":")
        try:
            strategy, start, end = parts[0], float(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            raise UsageError(f"ramp_up must be STRATEGY:START_RPS:END_RPS (e.g. linear:1:20), got {text!r}") from None
        if len(parts) != 3:
            raise UsageError(f"ramp_up must be STRATEGY:START_RPS:END_RPS, got {text!r}")
        return cls(strategy, start, end)

    def rate(self, index: int, total: int) -> float:
        progress = index / max(total - 1, 1)
        if self.strategy == "linear":
            return self.start_rps + (self.end_rps - self.start_rps) * progress
        return self.start_rps * (self.end_rps / self.start_rps) ** progress


def send_times(num: int, rate: float, burstiness: float = 1.0, ramp_up: RampUp | None = None,
               seed: int = 0) -> list[float]:
    """Send time (s from the start) of each of `num` requests."""
    if num < 1:
        raise UsageError(f"number of requests must be >= 1, got {num}")
    if not rate > 0:
        raise UsageError(f"request rate must be > 0 (or inf), got {rate}")
    if not burstiness > 0:
        raise UsageError(f"burstiness must be > 0, got {burstiness}")
    rng = random.Random(seed)
    delays: list[float] = []
    for i in range(num):
        r = ramp_up.rate(i, num) if ramp_up is not None else rate
        if math.isinf(r):
            gap = 0.0
        elif math.isinf(burstiness):
            gap = 1.0 / r
        else:
            gap = rng.gammavariate(burstiness, 1.0 / (r * burstiness))
        delays.append(gap if not delays else delays[-1] + gap)
    if ramp_up is None and delays[-1] != 0 and math.isfinite(rate):
        factor = (num / rate) / delays[-1]
        delays = [d * factor for d in delays]
    return delays
