"""The serving client's own overhead against a raw aiohttp loop, on a stub server on 127.0.0.1 (issue 16).

The stub server (a separate process, so its CPU is not the client's) answers every streamed
completion at once: `tokens` SSE chunks, a usage chunk and [DONE], with no model behind it. Two
clients then send the same requests at the same concurrency, one after the other, alternating
over `rounds`:
- raw: a bare loop over one aiohttp session (post, read the body with iter_any, timestamp the first
  bytes); the floor for any Python client on this machine;
- aibench: aibench.serving.client (schedule, semaphore, SSE parser, JSON per event, outcomes).
Printed per client: requests/s (requests / wall time of the run), TTFT p50 and p99; and the
aibench client's added TTFT p99 (aibench p99 - raw p99, median over rounds). Targets: >= 2,000
requests/s and < 1 ms added to TTFT p99.

    python benchmarks/bench_serve_client.py [--requests 4000] [--concurrency 32] [--tokens 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import socket
import statistics
import time

import aiohttp
from aiohttp import web

from aibench.core import stats
from aibench.serving import client
from aibench.serving.datasets import random_prompts
from aibench.serving.schedule import send_times


def _stub(port: int, tokens: int, ready: multiprocessing.synchronize.Event) -> None:
    chunk = b'data: {"id":"x","object":"text_completion","choices":[{"index":0,"text":"a","finish_reason":null}]}\n\n'
    tail = (b'data: {"id":"x","choices":[],"usage":{"prompt_tokens":8,"completion_tokens":%d}}\n\ndata: [DONE]\n\n'
            % tokens)
    body = chunk * tokens + tail

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(body)
        await resp.write_eof()
        return resp

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def raw_loop(url: str, n: int, concurrency: int, times: list[float] | None = None) -> tuple[float, list[float]]:
    """(wall seconds, TTFTs): the floor, with the same body and pool as the aibench client; sent at
    `times` (s from the start) when given, else all at once."""
    body = {"model": "stub", "prompt": list(range(8)), "max_tokens": 4, "stream": True,
            "stream_options": {"include_usage": True}, "ignore_eos": True, "temperature": 0.0}
    sem = asyncio.Semaphore(concurrency)
    ttfts: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            async with sem:
                t0 = time.perf_counter()
                first = None
                async with session.post(url, json=body) as resp:
                    async for _chunk in resp.content.iter_any():
                        if first is None:
                            first = time.perf_counter()
                ttfts.append((first or math.nan) - t0)

        start = time.perf_counter()
        tasks = []
        for at in times or [0.0] * n:
            delay = start + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        return time.perf_counter() - start, ttfts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=4, help="SSE chunks per response")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=1000.0, help="Poisson request rate of the TTFT comparison")
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_stub, args=(port, a.tokens, ready), daemon=True)
    proc.start()
    assert ready.wait(20), "stub server did not start"
    base = f"http://127.0.0.1:{port}"
    prompts = tuple(random_prompts(a.requests, 8, a.tokens, 100))
    config = client.BenchConfig(base, "stub", prompts, max_concurrency=a.concurrency, warmup_requests=0)
    paced = client.BenchConfig(base, "stub", prompts, max_concurrency=a.concurrency, request_rate=a.rate, seed=1)
    times = send_times(a.requests, a.rate, seed=1)
    rows: dict[str, list[tuple[float, float, float]]] = {"raw": [], "aibench": []}
    paced_rows: dict[str, list[tuple[float, float, float]]] = {"raw": [], "aibench": []}
    try:
        asyncio.run(raw_loop(base + "/v1/completions", 200, a.concurrency))  # warm both ends up
        client.run(client.BenchConfig(base, "stub", prompts[:200], max_concurrency=a.concurrency))
        for _ in range(a.rounds):
            wall, ttfts = asyncio.run(raw_loop(base + "/v1/completions", a.requests, a.concurrency))
            rows["raw"].append((a.requests / wall, stats.percentile(ttfts, 50), stats.percentile(ttfts, 99)))
            result = client.run(config)
            assert not result.failures(), result.failures()
            t = [o.ttft_s for o in result.outcomes]
            rows["aibench"].append((a.requests / result.duration_s, stats.percentile(t, 50), stats.percentile(t, 99)))
            # The same Poisson send times for both: TTFT below saturation, where it means latency.
            wall, ttfts = asyncio.run(raw_loop(base + "/v1/completions", a.requests, a.concurrency, times))
            paced_rows["raw"].append((a.requests / wall, stats.percentile(ttfts, 50), stats.percentile(ttfts, 99)))
            result = client.run(paced)
            assert not result.failures(), result.failures()
            t = [o.ttft_s for o in result.outcomes]
            paced_rows["aibench"].append((a.requests / result.duration_s, stats.percentile(t, 50),
                                          stats.percentile(t, 99)))
    finally:
        proc.terminate()
        proc.join(5)
    print(f"{a.requests} requests x {a.rounds} rounds, concurrency {a.concurrency}, {a.tokens} SSE chunks each; "
          f"stub server in another process on 127.0.0.1")
    for title, table in ((f"all at once (saturated, concurrency {a.concurrency})", rows),
                         (f"Poisson at {a.rate:g} req/s", paced_rows)):
        print(title)
        print(f"  {'client':8s} {'req/s (median)':>15s} {'TTFT p50 ms':>12s} {'TTFT p99 ms':>12s}")
        for name, r in table.items():
            print(f"  {name:8s} {statistics.median(x[0] for x in r):15.0f} "
                  f"{statistics.median(x[1] for x in r) * 1e3:12.3f} {statistics.median(x[2] for x in r) * 1e3:12.3f}")
    added = statistics.median(b[2] - r[2] for b, r in zip(paced_rows["aibench"], paced_rows["raw"]))
    saturated = statistics.median(b[2] - r[2] for b, r in zip(rows["aibench"], rows["raw"]))
    rps = statistics.median(x[0] for x in rows["aibench"])
    print(f"aibench client: {rps:.0f} req/s saturated (target >= 2000); TTFT p99 added vs raw at {a.rate:g} req/s: "
          f"{added * 1e3:+.3f} ms (target < 1); saturated: {saturated * 1e3:+.3f} ms")


if __name__ == "__main__":
    main()
