"""The arithmetic both serving benchmarks share: vLLM `bench serve`'s latency and throughput blocks.

aibench.models.serving_metrics (the in-process engine's per-token timestamps) and
aibench.serving.metrics (the HTTP client's per-chunk timestamps) differ in what a request is and
which requests count; what they report of those requests is computed here, once, so that the two
backends of llm.serve write the same keys with the same definitions (vllm/benchmarks/serve.py
`calculate_metrics`; /work/shared/reference/methods.md, "LLM serving metrics"):

- a latency metric's mean = np.mean, median = np.median, std = np.std (population, ddof 0),
  percentiles = np.percentile (linear interpolation); no samples: no keys (never 0);
- TPOT = (E2EL - TTFT) / (output_len - 1), undefined for a single output token;
- interactivity (tok/s per user, InferenceX's x-axis) = 1 / mean TPOT (= 1000 / TPOT in ms);
- throughputs over the benchmark's duration, and per GPU (InferenceX's y-axis).

Pure and torch-free (core): the HTTP client runs where no GPU stack is installed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from aibench.core import stats

# vLLM's default --metric-percentiles is "99"; methods.md asks for median, p90 and p99 too.
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0)


def pstd(values: Sequence[float]) -> float:
    """Population standard deviation (numpy's np.std default, ddof = 0), as vLLM reports it."""
    m = stats.mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def distribution_keys(name: str, percentiles: Sequence[float] = PERCENTILES) -> list[str]:
    """The keys `distribution(name, ...)` writes, in order."""
    return [f"{name}_{stat}_s" for stat in ("mean", "median", "std", *(f"p{q:g}" for q in percentiles))]


def distribution(name: str, values: Sequence[float],
                 percentiles: Sequence[float] = PERCENTILES) -> dict[str, float]:
    """`{name}_mean_s`, `_median_s`, `_std_s` and `_p{q}_s` for each percentile; {} when empty."""
    if not values:
        return {}
    figures = [stats.mean(values), stats.median(values), pstd(values),
               *(stats.percentile(values, q) for q in percentiles)]
    return dict(zip(distribution_keys(name, percentiles), figures))


def tpot(ttft_s: float, e2el_s: float, output_len: int) -> float | None:
    """Time per output token after the first (s); None for one output token (or none)."""
    if output_len <= 1:
        return None
    return (e2el_s - ttft_s) / (output_len - 1)


def interactivity(mean_tpot_s: float | None) -> float | None:
    """Tokens per second one user sees: 1 / mean TPOT; None when TPOT is unknown, 0 or infinite."""
    if mean_tpot_s is None or not mean_tpot_s > 0 or math.isinf(mean_tpot_s):
        return None
    return 1.0 / mean_tpot_s


def throughputs(completed: int, total_input: int, total_output: int, duration_s: float,
                num_gpus: int = 1) -> dict[str, float]:
    """Counts and rates of the completed requests over the benchmark's duration, and per GPU."""
    if not duration_s > 0:
        raise ValueError(f"benchmark duration must be positive, got {duration_s}")
    if num_gpus < 1:
        raise ValueError(f"num_gpus must be >= 1, got {num_gpus}")
    return {
        "completed": float(completed),
        "duration_s": float(duration_s),
        "total_input_tokens": float(total_input),
        "total_output_tokens": float(total_output),
        "request_throughput_rps": completed / duration_s,
        "output_tokens_per_s": total_output / duration_s,
        "total_tokens_per_s": (total_input + total_output) / duration_s,
        "throughput_per_gpu_tokens_per_s": (total_input + total_output) / duration_s / num_gpus,
        "output_tokens_per_s_per_gpu": total_output / duration_s / num_gpus,
    }
