"""Faults the client must survive: each a failed request with its reason, the run goes on.

A 500, a malformed SSE line, a stream cut before [DONE] and a hung server come from a small aiohttp
stub server in this process (a real engine will not produce them on demand); the server dying in
the middle of a run is the real `aibench serve` subprocess, killed."""

from __future__ import annotations

import asyncio
import itertools
import threading

from aiohttp import web

from aibench.serving import client
from aibench.serving.datasets import random_prompts
from tests.serving_helpers import aibench_server, stub_server

TOKEN = b'data: {"choices":[{"index":0,"text":"x","finish_reason":null}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\n'


async def _sse(request: web.Request, *parts: bytes) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for part in parts:
        await resp.write(part)
    await resp.write_eof()
    return resp


def _run(url: str, n: int = 4, **kw) -> client.BenchResult:
    return client.run(client.BenchConfig(url, "stub", tuple(random_prompts(n, 4, 2, 100)), **kw))


def test_a_500_fails_that_request_only() -> None:
    counter = itertools.count()

    async def handler(request: web.Request) -> web.StreamResponse:
        if next(counter) % 2:
            return web.Response(status=500, text="engine exploded")
        return await _sse(request, TOKEN, TOKEN, USAGE, b"data: [DONE]\n\n")

    with stub_server({"/v1/completions": handler}) as url:
        result = _run(url, max_concurrency=1)
    assert [o.success for o in result.outcomes] == [True, False, True, False]
    assert result.failures() == {"HTTP 500 Internal Server Error: engine exploded": 2}
    m, _ = result.metrics()
    assert (m["completed"], m["failed"], m["total_output_tokens"]) == (2, 2, 4)


def test_malformed_sse_line_and_cut_stream_are_failures_with_reasons() -> None:
    async def malformed(request: web.Request) -> web.StreamResponse:
        return await _sse(request, TOKEN, b"data: {not json\n\n", USAGE, b"data: [DONE]\n\n")

    async def cut(request: web.Request) -> web.StreamResponse:
        return await _sse(request, TOKEN, b'data: {"choices":[{"te')  # ends inside an event, no [DONE]

    async def ping_then_ok(request: web.Request) -> web.StreamResponse:  # comments and CRLF are fine
        return await _sse(request, b": keep-alive\r\n\r\n", TOKEN.replace(b"\n", b"\r\n"), TOKEN, USAGE,
                          b"data: [DONE]\n\n")

    with stub_server({"/v1/completions": malformed, "/v1/chat/completions": cut}) as url:
        bad = _run(url, n=2)
        short = _run(url, n=2, api="chat")
    assert all(not o.success for o in bad.outcomes)
    assert list(bad.failures()) == ["malformed SSE data: '{not json'"]
    assert short.failures() == {"stream ended without [DONE] (in the middle of an event)": 2}
    with stub_server({"/v1/completions": ping_then_ok}) as url:
        ok = _run(url, n=2)
    assert ok.failures() == {} and all(len(o.chunk_times_s) == 2 and o.output_tokens == 2 for o in ok.outcomes)


def test_a_hung_server_times_out() -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return await _sse(request, TOKEN, b"data: [DONE]\n\n")

    with stub_server({"/v1/completions": hang}) as url:
        result = _run(url, n=2, request_timeout_s=0.3)
    assert result.failures() == {"timeout after 0.3 s": 2} and result.duration_s < 3


def test_server_killed_mid_run() -> None:
    with aibench_server() as server:
        prompts = tuple(random_prompts(12, 8, 100, 512))
        config = client.BenchConfig(server.url, "tiny", prompts, max_concurrency=4)
        first = client.run(client.BenchConfig(server.url, "tiny", prompts[:1]))  # it works before the kill
        # Kill it while the second wave of requests streams.
        killer = threading.Timer(max(0.3, 1.5 * first.duration_s), server.process.kill)
        killer.start()
        result = client.run(config)
        killer.join()
    assert first.failures() == {}
    m, _ = result.metrics()  # the run still summarises what finished
    assert m["failed"] >= 4 and m["completed"] + m["failed"] == 12
    for reason in result.failures():
        assert any(word in reason for word in ("Payload", "Disconnected", "Connect", "[DONE]")), reason
