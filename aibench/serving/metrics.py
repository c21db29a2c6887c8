"""Serving metrics exactly as vLLM's `vllm bench serve` computes them, as pure functions.

Source: vllm-project/vllm, vllm/benchmarks/serve.py `calculate_metrics` and
vllm/benchmarks/lib/endpoint_request_func.py `async_request_openai_completions` (read for this
module; also /work/shared/reference/methods.md, "LLM serving metrics"):

- only successful requests count; failed ones are counted in `failed` and nowhere else;
- TTFT = first token-bearing chunk - send; ITL = each gap between consecutive token-bearing
  chunks, pooled over requests; E2EL ("latency") = last token-bearing chunk - send;
- output_len = the server's `usage.completion_tokens` (when the server sent none: the tokenizer's
  count of the generated text when a tokenizer is given; vLLM then falls back to 1, which is a
  number nobody measured, so here it is the count of token-bearing chunks and the record says so);
- TPOT = (E2EL - TTFT) / (output_len - 1), only for output_len > 1 (in the statistics);
  for goodput a request with output_len <= 1 has TPOT 0;
- goodput = requests meeting every given SLO (TTFT, TPOT, E2EL; `slo >= value`) / duration;
- mean = np.mean, std = np.std (population, ddof 0), median = np.median, percentiles =
  np.percentile (linear interpolation);
- throughputs: completed / duration, sum(output_len) / duration, (sum(prompt_len) +
  sum(output_len)) / duration; duration is the benchmark's wall span (its start to the last response).

Differences, on purpose: where vLLM prints 0 for a metric with no samples (`np.mean(x or 0)`),
the metric is absent here and `unavailable` says why. Added (InferenceX): interactivity =
1 / mean TPOT (tok/s/user), throughput per GPU = total and output token throughput / GPUs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aibench.core import stats
from aibench.serving.outcome import RequestOutcome

# vLLM's default --metric-percentiles is "99"; methods.md asks for median, p90 and p99 too.
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0)
METRICS: tuple[str, ...] = ("ttft", "tpot", "itl", "e2el")


@dataclass(frozen=True)
class Goodput:
    """SLOs in seconds (None: that metric is not constrained), after DistServe as vLLM's --goodput."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2el_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_s", "tpot_s", "e2el_s"):
            bound = getattr(self, name)
            if bound is not None and not bound > 0:
                raise ValueError(f"SLO {name} must be a positive time, got {bound}")

    @property
    def empty(self) -> bool:
        return self.ttft_s is None and self.tpot_s is None and self.e2el_s is None

    def as_dict(self) -> dict[str, float]:
        return {k: v * 1e3 for k, v in (("ttft_ms", self.ttft_s), ("tpot_ms", self.tpot_s),
                                        ("e2el_ms", self.e2el_s)) if v is not None}


def output_len(o: RequestOutcome, count_tokens: Callable[[str], int] | None = None) -> int:
    """Tokens generated: usage first, then the tokenizer, then the token-bearing chunks."""
    if o.output_tokens:
        return o.output_tokens
    if count_tokens is not None:
        return count_tokens(o.generated_text)
    return len(o.chunk_times_s)


def tpot(o: RequestOutcome, n_out: int) -> float | None:
    """(E2EL - TTFT) / (output_len - 1); None for one output token."""
    if n_out <= 1:
        return None
    return (o.latency_s - o.ttft_s) / (n_out - 1)


def pstd(values: Sequence[float]) -> float:
    """Population standard deviation (numpy's np.std default, ddof = 0), as vLLM reports it."""
    m = stats.mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def distribution(name: str, values: Sequence[float],
                 percentiles: Sequence[float] = PERCENTILES) -> dict[str, float]:
    """`{name}_mean_s`, `_median_s`, `_std_s` and `_p{q}_s` for each percentile; {} when empty."""
    if not values:
        return {}
    out = {f"{name}_mean_s": stats.mean(values), f"{name}_median_s": stats.median(values),
           f"{name}_std_s": pstd(values)}
    for q in percentiles:
        out[f"{name}_p{q:g}_s"] = stats.percentile(values, q)
    return out


def peak_concurrency(outcomes: Sequence[RequestOutcome]) -> int:
    """Most requests in flight at once (vLLM's sweep over half-open [send, last chunk) intervals)."""
    events = sorted([(o.sent_s, 1) for o in outcomes] + [(o.sent_s + o.latency_s, -1) for o in outcomes])
    peak = cur = 0
    for _, delta in events:
        cur += delta
        peak = max(peak, cur)
    return peak


def calculate(
    outcomes: Sequence[RequestOutcome],
    duration_s: float,
    goodput: Goodput | None = None,
    *,
    num_gpus: int = 1,
    percentiles: Sequence[float] = PERCENTILES,
    count_tokens: Callable[[str], int] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, unavailable: metric -> why) of one benchmark run."""
    if not duration_s > 0:
        raise ValueError(f"benchmark duration must be positive, got {duration_s}")
    if num_gpus < 1:
        raise ValueError(f"num_gpus must be >= 1, got {num_gpus}")
    ok = [o for o in outcomes if o.success]
    lens = [output_len(o, count_tokens) for o in ok]
    tpots_all = [tpot(o, n) for o, n in zip(ok, lens)]
    tpots = [t for t in tpots_all if t is not None]
    total_in = sum(o.prompt_len for o in ok)
    total_out = sum(lens)
    m: dict[str, float] = {
        "completed": float(len(ok)),
        "failed": float(len(outcomes) - len(ok)),
        "duration_s": float(duration_s),
        "total_input_tokens": float(total_in),
        "total_output_tokens": float(total_out),
        "request_throughput_rps": len(ok) / duration_s,
        "output_tokens_per_s": total_out / duration_s,
        "total_tokens_per_s": (total_in + total_out) / duration_s,
        "throughput_per_gpu_tokens_per_s": (total_in + total_out) / duration_s / num_gpus,
        "output_tokens_per_s_per_gpu": total_out / duration_s / num_gpus,
    }
    reasoning = [o.reasoning_tokens for o in ok if o.reasoning_tokens is not None]
    if reasoning:
        m["total_reasoning_tokens"] = float(sum(reasoning))
    why: dict[str, str] = {}
    if ok:
        m["max_concurrent_requests"] = float(peak_concurrency(ok))
    series = {"ttft": [o.ttft_s for o in ok], "tpot": tpots,
              "itl": [gap for o in ok for gap in o.itl_s], "e2el": [o.latency_s for o in ok]}
    for name in METRICS:
        dist = distribution(name, series[name], percentiles)
        m.update(dist)
        if not dist:
            why[f"{name}_mean_s"] = ("no request completed" if not ok else
                                     f"no {name.upper()} samples: no request produced more than one token chunk")
    if tpots and stats.mean(tpots) > 0:
        m["interactivity_tok_s_user"] = 1.0 / stats.mean(tpots)
    else:
        why["interactivity_tok_s_user"] = "no TPOT samples (or TPOT 0): 1 / TPOT is undefined"
    if goodput is not None and not goodput.empty:
        good = 0
        for o, t in zip(ok, tpots_all):
            values = ((goodput.ttft_s, o.ttft_s), (goodput.tpot_s, t or 0.0), (goodput.e2el_s, o.latency_s))
            if all(slo >= v for slo, v in values if slo is not None):
                good += 1
        m["goodput_rps"] = good / duration_s
        if ok:
            m["slo_attainment"] = good / len(ok)
    else:
        why["goodput_rps"] = "no SLO given"
    return m, why
