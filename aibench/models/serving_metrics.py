"""LLM serving metrics as pure functions over per-request token timestamps.

Definitions follow vLLM `vllm bench serve`, NVIDIA AIPerf and InferenceX
(/work/shared/reference/methods.md, "LLM serving metrics"):

- TTFT  = first token time - send time.
- E2EL  = last token time - send time.
- TPOT  = (E2EL - TTFT) / (output_len - 1); a request with one output token has no TPOT and is
  left out of the TPOT statistics (vLLM counts it as 0, which would flatter the mean).
- ITL   = every gap between consecutive tokens of a request, pooled over all requests.
- Goodput = requests per second meeting every SLO (DistServe): TTFT <= slo.ttft_s and
  TPOT <= slo.tpot_s (the TPOT bound is vacuous for a one-token request).
- Interactivity (tok/s/user) = 1000 / TPOT_ms = 1 / TPOT_s, from the mean TPOT.
- Throughput per GPU = total token throughput / GPUs, and output token throughput / GPUs
  (InferenceX's y-axes).
- Each latency metric: mean, median, std (population) and p50 / p90 / p99 (numpy-linear).

The latency blocks, throughputs, TPOT and interactivity are aibench.core.serving_stats', which the
HTTP client's metrics (aibench.serving.metrics) use too.

Times are seconds on one clock; only differences matter. Nothing here measures anything: what
cannot be derived (no TPOT when every request has one token) is left out, never reported as 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from aibench.core import serving_stats as ss
from aibench.core import stats

# The latency blocks, throughputs and interactivity are aibench.core.serving_stats', shared with the
# HTTP client (aibench.serving.metrics): both backends of llm.serve write the same keys.
interactivity = ss.interactivity


@dataclass(frozen=True)
class RequestTiming:
    """When one request was sent and when each of its output tokens reached the host."""

    sent_s: float
    token_times_s: tuple[float, ...]
    input_len: int

    def __post_init__(self) -> None:
        if not self.token_times_s:
            raise ValueError("a completed request has at least one output token")
        if self.token_times_s[0] < self.sent_s:
            raise ValueError("first token before the request was sent")
        if any(b < a for a, b in pairwise(self.token_times_s)):
            raise ValueError("token timestamps must be non-decreasing")

    @property
    def output_len(self) -> int:
        return len(self.token_times_s)


@dataclass(frozen=True)
class SLO:
    """Service-level objectives for goodput. Defaults: TTFT <= 2 s, TPOT <= 100 ms
    (the order of MLPerf's Llama-2-70B Server bounds, 2000 ms / 200 ms, methods.md)."""

    ttft_s: float = 2.0
    tpot_s: float = 0.1

    def __post_init__(self) -> None:
        # A bound of 0 or less (or NaN) is met by no request: goodput would be a 0 that measures
        # the parameter, not the system. inf (no bound) is allowed.
        for name, bound in (("TTFT", self.ttft_s), ("TPOT", self.tpot_s)):
            if not bound > 0:
                raise ValueError(f"SLO on {name} must be a positive time, got {bound}")


def ttft(r: RequestTiming) -> float:
    """Time to first token (s)."""
    return r.token_times_s[0] - r.sent_s


def e2el(r: RequestTiming) -> float:
    """End-to-end latency: send to last token (s)."""
    return r.token_times_s[-1] - r.sent_s


def tpot(r: RequestTiming) -> float | None:
    """Time per output token after the first: (E2EL - TTFT) / (output_len - 1); None for 1 token."""
    return ss.tpot(ttft(r), e2el(r), r.output_len)


def itls(r: RequestTiming) -> list[float]:
    """Inter-token latencies of one request: each gap between consecutive tokens (s)."""
    t = r.token_times_s
    return [b - a for a, b in pairwise(t)]


def meets_slo(r: RequestTiming, slo: SLO) -> bool:
    """Whether a request meets every SLO (a one-token request has no TPOT to violate)."""
    t = tpot(r)
    return ttft(r) <= slo.ttft_s and (t is None or t <= slo.tpot_s)


def duration_of(requests: Sequence[RequestTiming]) -> float:
    """Benchmark span: first send to last token (s)."""
    if not requests:
        raise ValueError("no requests")
    return max(r.token_times_s[-1] for r in requests) - min(r.sent_s for r in requests)


def summarize(
    requests: Sequence[RequestTiming],
    duration_s: float | None = None,
    slo: SLO | None = None,
    num_gpus: int = 1,
) -> dict[str, float]:
    """All serving metrics of one benchmark run, flattened for a record's `metrics`.

    `duration_s` defaults to `duration_of(requests)`; the engine passes its own wall span (start
    of the run to the last token) as vLLM does.
    """
    if not requests:
        raise ValueError("no completed requests to summarize")
    slo = slo or SLO()
    duration = duration_of(requests) if duration_s is None else float(duration_s)
    tpots = [t for t in (tpot(r) for r in requests) if t is not None]
    out = ss.throughputs(len(requests), sum(r.input_len for r in requests), sum(r.output_len for r in requests),
                         duration, num_gpus)
    good = sum(1 for r in requests if meets_slo(r, slo))
    out["goodput_rps"] = good / duration
    out["slo_attainment"] = good / len(requests)
    out.update(ss.distribution("ttft", [ttft(r) for r in requests]))
    out.update(ss.distribution("tpot", tpots))
    out.update(ss.distribution("itl", [gap for r in requests for gap in itls(r)]))
    out.update(ss.distribution("e2el", [e2el(r) for r in requests]))
    inter = interactivity(stats.mean(tpots) if tpots else None)
    if inter is not None:
        out["interactivity_tok_s_user"] = inter
    return out


@dataclass(frozen=True)
class SweepPoint:
    """One point of the InferenceX curve: throughput per GPU against tokens/s per user."""

    concurrency: int
    throughput_per_gpu_tokens_per_s: float
    interactivity_tok_s_user: float | None
    output_tokens_per_s: float
    request_throughput_rps: float
    ttft_p50_s: float
    tpot_mean_s: float | None

    @classmethod
    def from_metrics(cls, concurrency: int, metrics: dict[str, float]) -> SweepPoint:
        return cls(
            concurrency=concurrency,
            throughput_per_gpu_tokens_per_s=metrics["throughput_per_gpu_tokens_per_s"],
            interactivity_tok_s_user=metrics.get("interactivity_tok_s_user"),
            output_tokens_per_s=metrics["output_tokens_per_s"],
            request_throughput_rps=metrics["request_throughput_rps"],
            ttft_p50_s=metrics["ttft_p50_s"],
            tpot_mean_s=metrics.get("tpot_mean_s"),
        )

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "concurrency": self.concurrency,
            "throughput_per_gpu_tokens_per_s": self.throughput_per_gpu_tokens_per_s,
            "interactivity_tok_s_user": self.interactivity_tok_s_user,
            "output_tokens_per_s": self.output_tokens_per_s,
            "request_throughput_rps": self.request_throughput_rps,
            "ttft_p50_s": self.ttft_p50_s,
            "tpot_mean_s": self.tpot_mean_s,
        }


def sweep_table(points: Iterable[SweepPoint]) -> list[dict[str, float | int | None]]:
    """JSON-safe rows of a concurrency sweep, in concurrency order."""
    return [p.as_dict() for p in sorted(points, key=lambda p: p.concurrency)]
