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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aibench.core import serving_stats as ss
from aibench.core import stats
from aibench.serving.outcome import RequestOutcome

# The latency blocks and throughputs are aibench.core.serving_stats', shared with the in-process engine.
PERCENTILES = ss.PERCENTILES
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
    return ss.tpot(o.ttft_s, o.latency_s, n_out)


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
    ok = [o for o in outcomes if o.success]
    lens = [output_len(o, count_tokens) for o in ok]
    tpots_all = [tpot(o, n) for o, n in zip(ok, lens)]
    tpots = [t for t in tpots_all if t is not None]
    m = ss.throughputs(len(ok), sum(o.prompt_len for o in ok), sum(lens), duration_s, num_gpus)
    m["failed"] = float(len(outcomes) - len(ok))
    reasoning = [o.reasoning_tokens for o in ok if o.reasoning_tokens is not None]
    if reasoning:
        m["total_reasoning_tokens"] = float(sum(reasoning))
    why: dict[str, str] = {}
    if ok:
        m["max_concurrent_requests"] = float(peak_concurrency(ok))
    series = {"ttft": [o.ttft_s for o in ok], "tpot": tpots,
              "itl": [gap for o in ok for gap in o.itl_s], "e2el": [o.latency_s for o in ok]}
    for name in METRICS:
        dist = ss.distribution(name, series[name], percentiles)
        m.update(dist)
        if not dist:
            why[f"{name}_mean_s"] = ("no request completed" if not ok else
                                     f"no {name.upper()} samples: no request produced more than one token chunk")
    inter = ss.interactivity(stats.mean(tpots) if tpots else None)
    if inter is not None:
        m["interactivity_tok_s_user"] = inter
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
