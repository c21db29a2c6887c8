"""The benchmark client: drives any OpenAI-compatible endpoint as vLLM `bench serve` does.

asyncio + aiohttp (one session, a connection pool the size of the concurrency cap). Requests are
sent at the times of `schedule.send_times`; a semaphore of `max_concurrency` holds a request back
until a slot frees (its latency starts when it is actually sent, as in vLLM). Streamed responses
are parsed as Server-Sent Events (`sse.SSEParser`); each network read is timestamped once, when
its bytes arrive, before any parsing, and every event in it that carries a choice is one token
chunk at that time. Token counts come from the final chunk's `usage` (`stream_options.include_usage`).

A request that fails (HTTP error status, a malformed SSE line or JSON, a stream that ends before
`[DONE]`, a lost connection, a timeout) is a failed `RequestOutcome` with the reason; the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from aibench.core.errors import UsageError
from aibench.serving import metrics as sm
from aibench.serving.datasets import Prompt, as_text
from aibench.serving.outcome import RequestOutcome
from aibench.serving.schedule import RampUp, send_times
from aibench.serving.sse import SSEParser

APIS = ("completions", "chat")


@dataclass(frozen=True)
class BenchConfig:
    base_url: str  # http://host:port (no /v1)
    model: str
    prompts: tuple[Prompt, ...]
    api: str = "completions"
    stream: bool = True
    request_rate: float = math.inf
    burstiness: float = 1.0
    ramp_up: RampUp | None = None
    max_concurrency: int | None = None
    warmup_requests: int = 0
    request_timeout_s: float = 600.0
    ignore_eos: bool = True
    seed: int = 0
    extra_body: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.api not in APIS:
            raise UsageError(f"api must be one of {', '.join(APIS)}, got {self.api!r}")
        if not self.prompts:
            raise UsageError("no prompts to send")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise UsageError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.warmup_requests < 0:
            raise UsageError(f"warmup_requests must be >= 0, got {self.warmup_requests}")
        if not self.request_timeout_s > 0:
            raise UsageError(f"request timeout must be > 0 s, got {self.request_timeout_s}")
        if not self.base_url.startswith(("http://", "https://")):
            raise UsageError(f"endpoint must be an http(s) URL, got {self.base_url!r}")

    @property
    def url(self) -> str:
        path = "/v1/completions" if self.api == "completions" else "/v1/chat/completions"
        return self.base_url.rstrip("/") + path


@dataclass(frozen=True)
class BenchResult:
    outcomes: tuple[RequestOutcome, ...]
    duration_s: float
    warmup_failed: int

    def metrics(self, goodput: sm.Goodput | None = None, num_gpus: int = 1,
                count_tokens: Any = None) -> tuple[dict[str, float], dict[str, str]]:
        return sm.calculate(self.outcomes, self.duration_s, goodput, num_gpus=num_gpus, count_tokens=count_tokens)

    def failures(self) -> dict[str, int]:
        """Failure reason (its first line) -> how many requests failed so."""
        out: dict[str, int] = {}
        for o in self.outcomes:
            if not o.success:
                key = o.error.splitlines()[0][:200] if o.error else "unknown"
                out[key] = out.get(key, 0) + 1
        return out


def payload(config: BenchConfig, p: Prompt) -> dict[str, Any]:
    """The request body (vLLM's openai / openai-chat backends: greedy, stream with usage)."""
    body: dict[str, Any] = {"model": config.model, "stream": config.stream, "temperature": 0.0}
    if config.api == "completions":
        body["prompt"] = list(p.prompt) if isinstance(p.prompt, tuple) else p.prompt
        body["max_tokens"] = p.output_len
    else:
        text = as_text(p.prompt) if isinstance(p.prompt, tuple) else p.prompt
        body["messages"] = [{"role": "user", "content": text}]
        body["max_completion_tokens"] = p.output_len
    if config.stream:
        body["stream_options"] = {"include_usage": True}
    if config.ignore_eos:
        body["ignore_eos"] = True
    body.update(config.extra_body)
    return body


def _text_of(choice: dict[str, Any], api: str) -> str:
    if api == "completions":
        return choice.get("text") or ""
    delta = choice.get("delta") or choice.get("message") or {}
    return (delta.get("content") or "") + (delta.get("reasoning_content") or "")


def _usage(usage: Any) -> tuple[int | None, int | None, int | None]:
    """(prompt_tokens, completion_tokens, reasoning_tokens) of a usage object (None: absent)."""
    if not isinstance(usage, dict):
        return None, None, None
    details = usage.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return usage.get("prompt_tokens"), usage.get("completion_tokens"), reasoning


async def send(session: aiohttp.ClientSession, config: BenchConfig, p: Prompt, t0: float) -> RequestOutcome:
    """One request; never raises (a failure is an outcome with its reason)."""
    body = payload(config, p)
    clock = time.perf_counter
    sent = clock()
    times: list[float] = []
    text: list[str] = []
    prompt_tokens = completion_tokens = reasoning = None
    common = {"id": p.id, "sent_s": sent - t0, "prompt_len": p.prompt_len, "expected_output_len": p.output_len}
    try:
        async with session.post(config.url, json=body) as resp:
            if resp.status != 200:
                detail = (await resp.text())[:300].replace("\n", " ")
                return RequestOutcome(success=False, error=f"HTTP {resp.status} {resp.reason}: {detail}", **common)
            if not config.stream:
                data = await resp.json(content_type=None)
                times.append(clock())
                choices = data.get("choices") or []
                text.append(_text_of(choices[0], config.api) if choices else "")
                prompt_tokens, completion_tokens, reasoning = _usage(data.get("usage"))
                done = bool(choices)
            else:
                parser = SSEParser()
                done = False
                async for chunk in resp.content.iter_any():
                    now = clock()  # when these bytes arrived: one timestamp per network read
                    for event in parser.feed(chunk):
                        if event.data == "[DONE]":
                            done = True
                            continue
                        try:
                            data = json.loads(event.data)
                        except json.JSONDecodeError:
                            return RequestOutcome(success=False, error=f"malformed SSE data: {event.data[:120]!r}",
                                                  chunk_times_s=tuple(t - t0 for t in times), **common)
                        if not isinstance(data, dict):
                            return RequestOutcome(success=False, error=f"SSE data is not a JSON object: "
                                                  f"{event.data[:120]!r}", **common)
                        if "error" in data and not data.get("choices"):
                            return RequestOutcome(success=False, error=f"server error in stream: {data['error']}",
                                                  **common)
                        if choices := data.get("choices"):
                            times.append(now)
                            text.append(_text_of(choices[0], config.api))
                        if data.get("usage"):
                            prompt_tokens, completion_tokens, reasoning = _usage(data["usage"])
                if not done:
                    why = "stream ended without [DONE]" + (" (in the middle of an event)" if parser.partial else "")
                    return RequestOutcome(success=False, error=why, chunk_times_s=tuple(t - t0 for t in times), **common)
    except (asyncio.TimeoutError, TimeoutError):
        return RequestOutcome(success=False, error=f"timeout after {config.request_timeout_s:g} s", **common)
    except (aiohttp.ClientError, UnicodeDecodeError, ValueError) as exc:
        return RequestOutcome(success=False, error=f"{type(exc).__name__}: {exc}", **common)
    if not times:
        return RequestOutcome(success=False, error="no chunk with a choice: TTFT undefined", **common)
    if prompt_tokens is not None:
        common["prompt_len"] = int(prompt_tokens)
    return RequestOutcome(success=True, chunk_times_s=tuple(t - t0 for t in times),
                          output_tokens=int(completion_tokens) if completion_tokens is not None else None,
                          reasoning_tokens=int(reasoning) if reasoning is not None else None,
                          generated_text="".join(text), **common)


def _session(config: BenchConfig) -> aiohttp.ClientSession:
    limit = config.max_concurrency or 0  # 0: aiohttp's "no limit"
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, keepalive_timeout=60)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=config.request_timeout_s))


@contextlib.contextmanager
def _quiet_gc() -> Iterator[None]:
    """Fewer garbage-collector pauses in the measured run (as vLLM's bench freezes its heap): the
    objects that exist before it are frozen out of collection and the young generation is collected
    less often; a pause lands in some request's TTFT or ITL and inflates the p99."""
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(old[0], 20000), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


async def run_async(config: BenchConfig) -> BenchResult:
    with _quiet_gc():
        return await _run_async(config)


async def _run_async(config: BenchConfig) -> BenchResult:
    times = send_times(len(config.prompts), config.request_rate, config.burstiness, config.ramp_up, config.seed)
    async with _session(config) as session:
        sem: Any = asyncio.Semaphore(config.max_concurrency) if config.max_concurrency else contextlib.nullcontext()

        async def limited(p: Prompt, t0: float) -> RequestOutcome:
            async with sem:
                return await send(session, config, p, t0)

        warm = await asyncio.gather(*(limited(config.prompts[0], time.perf_counter())
                                      for _ in range(config.warmup_requests)))
        t0 = time.perf_counter()
        tasks = []
        for p, at in zip(config.prompts, times):
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(limited(p, t0)))
        outcomes = await asyncio.gather(*tasks)
        duration = time.perf_counter() - t0
    return BenchResult(tuple(outcomes), duration, sum(1 for o in warm if not o.success))


def run(config: BenchConfig) -> BenchResult:
    return asyncio.run(run_async(config))


async def _get_json(url: str, timeout_s: float) -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session, \
            session.get(url) as resp:
        resp.raise_for_status()
        return await resp.json(content_type=None)


def list_models(base_url: str, timeout_s: float = 10.0) -> list[str]:
    """The model ids of an endpoint's /v1/models."""
    try:
        data = asyncio.run(_get_json(base_url.rstrip("/") + "/v1/models", timeout_s))
    except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ValueError) as exc:
        raise UsageError(f"cannot list the models of {base_url}: {type(exc).__name__}: {exc}") from None
    return [m.get("id") for m in data.get("data", []) if isinstance(m, dict)]


def summary(result: BenchResult, goodput: sm.Goodput | None = None, num_gpus: int = 1) -> dict[str, Any]:
    """Metrics, why some are missing, failures by reason: what `serve-bench --json` prints."""
    metrics, unavailable = result.metrics(goodput, num_gpus)
    return {"metrics": metrics, "unavailable": unavailable, "failures": result.failures(),
            "warmup_failed": result.warmup_failed}


def outcomes_table(outcomes: Sequence[RequestOutcome]) -> list[dict[str, Any]]:
    return [o.as_dict() for o in outcomes]
