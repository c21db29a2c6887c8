"""What the serving tests share: `aibench serve` (tiny model) as a real subprocess on 127.0.0.1, and
a small aiohttp stub server in a thread for the faults a real engine will not produce on demand."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web

from aibench.serving import launch

SERVE_ARGS = ["--device", "cpu", "--max-batch", "4", "--max-seq", "128"]


@contextlib.contextmanager
def aibench_server() -> Iterator[launch.Server]:
    with launch.running("aibench", "tiny", SERVE_ARGS, timeout_s=120) as server:
        yield server


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN_CHUNK = b'data: {"choices":[{"index":0,"text":"x"}]}\n\n'


async def stream_completion(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """A well-formed streamed /v1/completions answer to `body` (the request's JSON): one chunk a
    token for max_tokens tokens, then the usage a real server reports, then [DONE]."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for _ in range(body["max_tokens"]):
        await resp.write(TOKEN_CHUNK)
    usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": body["max_tokens"]}
    await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\ndata: [DONE]\n\n")
    return resp


@contextlib.contextmanager
def stub_server(routes: dict[str, Handler]) -> Iterator[str]:
    """Serve POST `routes` (path -> handler) on 127.0.0.1 from a thread; yields the base URL."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, object] = {}

    async def main() -> None:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_post(path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        state["stop"] = asyncio.Event()
        ready.set()
        await state["stop"].wait()  # type: ignore[attr-defined]
        await runner.cleanup()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert ready.wait(10), "stub server did not start"
    try:
        yield str(state["url"])
    finally:
        loop.call_soon_threadsafe(state["stop"].set)  # type: ignore[attr-defined]
        thread.join(10)
        loop.close()
