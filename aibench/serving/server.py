"""`aibench serve`: aibench's engine as an OpenAI-compatible HTTP server (aiohttp.web).

Endpoints: GET /health, GET /v1/models, POST /v1/completions and /v1/chat/completions, streamed
(Server-Sent Events: one `data:` chunk per token, the last one with finish_reason, then a chunk
with `usage` and empty choices when `stream_options.include_usage` is set, then `data: [DONE]`)
or not (one JSON body with `usage`). Decoding is greedy (temperature is accepted and ignored) and
the engine has no end-of-sequence token, so every request generates exactly max_tokens
(`ignore_eos` is accepted; it changes nothing). Prompts are a token-id list, or text encoded by
the model's tokenizer: `tokenizer.json` beside real weights (the `tokenizers` package), else bytes
(UTF-8 byte b is token b mod vocab_size; token t prints as one ASCII character).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from aibench.serving.engine import OnlineEngine


@dataclass(frozen=True)
class ByteTokenizer:
    vocab_size: int
    name: str = "bytes"

    def encode(self, text: str) -> list[int]:
        return [b % self.vocab_size for b in text.encode("utf-8")]

    def decode_one(self, token: int) -> str:
        return chr(32 + token % 95)


class HFTokenizer:
    """A Hugging Face `tokenizer.json` through the `tokenizers` package."""

    def __init__(self, path: str) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(path)
        self.name = path

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=True).ids)

    def decode_one(self, token: int) -> str:
        return self._tok.decode([token], skip_special_tokens=False)


class BadRequest(Exception):
    pass


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": status}, "object": "error"}
    return web.json_response(body, status=status)


def chat_prompt(messages: Any) -> str:
    """Messages as one prompt text ("role: content" lines, then "assistant:"): the tiny model has no
    chat template; a real checkpoint's template is not applied either (the token counts in `usage`
    are those of this text)."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list")
    lines = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest("each message needs a role and content")
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            raise BadRequest("message content must be text")
        lines.append(f"{m['role']}: {content}")
    return "\n".join([*lines, "assistant:"])


class App:
    def __init__(self, online: OnlineEngine, model_name: str, tokenizer: Any, vocab_size: int, max_seq: int) -> None:
        self.online = online
        self.model_name = model_name
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.max_seq = max_seq

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def health(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model_name, "object": "model", "created": 0, "owned_by": "aibench",
             "root": self.model_name, "max_model_len": self.max_seq}]})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    def _parse(self, body: Any, chat: bool) -> tuple[list[int], int, bool, bool]:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        if body.get("model") not in (None, self.model_name):
            raise BadRequest(f"model {body.get('model')!r} is not served here (serving {self.model_name!r})")
        if chat:
            prompt: Any = self.tokenizer.encode(chat_prompt(body.get("messages")))
            max_tokens = body.get("max_completion_tokens", body.get("max_tokens", 16))
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
                prompt = prompt[0]  # a batch of one
            if isinstance(prompt, str):
                prompt = self.tokenizer.encode(prompt)
            if not (isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)):
                raise BadRequest("prompt must be a string or a list of token ids (one prompt per request)")
            if any(not 0 <= t < self.vocab_size for t in prompt):
                raise BadRequest(f"token ids must be in [0, {self.vocab_size})")
            max_tokens = body.get("max_tokens", 16)
        if not prompt:
            raise BadRequest("the prompt is empty")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise BadRequest("max_tokens must be an integer >= 1")
        if len(prompt) + max_tokens > self.max_seq:
            raise BadRequest(f"prompt ({len(prompt)} tokens) + max_tokens ({max_tokens}) exceeds the "
                             f"server's max_seq of {self.max_seq}")
        stream = bool(body.get("stream", False))
        options = body.get("stream_options") or {}
        usage = bool(options.get("include_usage", False)) if isinstance(options, dict) else False
        return prompt, max_tokens, stream, usage

    async def _serve(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "the body is not JSON")
        try:
            prompt, max_tokens, stream, include_usage = self._parse(body, chat)
        except BadRequest as exc:
            return _error(400, str(exc))
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def on_token(t: int) -> None:
            loop.call_soon_threadsafe(q.put_nowait, ("token", t))

        def on_done(err: str | None) -> None:
            loop.call_soon_threadsafe(q.put_nowait, ("done", err))

        job = self.online.submit(tuple(prompt), max_tokens, on_token, on_done)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:16]
        created = int(time.time())
        kind = "chat.completion" if chat else "text_completion"
        usage = {"prompt_tokens": len(prompt), "completion_tokens": 0, "total_tokens": len(prompt),
                 "completion_tokens_details": {"reasoning_tokens": 0}}
        try:
            if stream:
                return await self._stream(request, q, rid, created, kind, chat, max_tokens, usage, include_usage)
            return await self._whole(q, rid, created, kind, chat, usage)
        finally:
            job.cancel()  # a no-op once it finished; stops the work of a client that went away

    def _choice(self, chat: bool, text: str, finish: str | None, stream: bool) -> dict[str, Any]:
        if chat:
            key = "delta" if stream else "message"
            return {"index": 0, key: {"role": "assistant", "content": text}, "finish_reason": finish}
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

    async def _stream(self, request: web.Request, q: asyncio.Queue, rid: str, created: int, kind: str, chat: bool,
                      max_tokens: int, usage: dict[str, Any], include_usage: bool) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        obj = kind + ".chunk" if chat else kind
        n = 0

        def event(payload: dict[str, Any]) -> bytes:
            return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

        while True:
            what, value = await q.get()
            if what == "token":
                n += 1
                finish = "length" if n == max_tokens else None
                await resp.write(event({"id": rid, "object": obj, "created": created, "model": self.model_name,
                                        "choices": [self._choice(chat, self.tokenizer.decode_one(value), finish, True)]}))
                continue
            if value is not None:  # the engine failed this request mid-stream: say so in the stream
                await resp.write(event({"error": {"message": value, "type": "server_error", "code": 500}}))
                await resp.write_eof()
                return resp
            break
        usage.update(completion_tokens=n, total_tokens=usage["prompt_tokens"] + n)
        if include_usage:
            await resp.write(event({"id": rid, "object": obj, "created": created, "model": self.model_name,
                                    "choices": [], "usage": usage}))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _whole(self, q: asyncio.Queue, rid: str, created: int, kind: str, chat: bool,
                     usage: dict[str, Any]) -> web.Response:
        text = []
        while True:
            what, value = await q.get()
            if what == "token":
                text.append(self.tokenizer.decode_one(value))
                continue
            if value is not None:
                return _error(500, value)
            break
        usage.update(completion_tokens=len(text), total_tokens=usage["prompt_tokens"] + len(text))
        return web.json_response({"id": rid, "object": kind, "created": created, "model": self.model_name,
                                  "choices": [self._choice(chat, "".join(text), "length", False)], "usage": usage})


def build(model: str, weights: str, device_spec: str, dtype_name: str, max_batch: int, max_seq: int,
          seed: int) -> tuple[App, OnlineEngine, Callable[[], str]]:
    """Load the model (random weights of a named configuration, or a checkpoint) and its engine."""
    import os

    import torch

    from aibench.core.errors import UsageError
    from aibench.device.devices import resolve
    from aibench.models import serve
    from aibench.models.config import ModelArgs
    from aibench.models.loader import from_pretrained, random_model, read_config

    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype_name not in dtypes:
        raise UsageError(f"dtype must be one of {', '.join(dtypes)}, got {dtype_name!r}")
    device = resolve(device_spec)
    try:
        args = read_config(weights) if weights else ModelArgs.from_name(model)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    max_seq = min(max_seq, args.block_size)
    if max_batch < 1 or max_seq < 2:
        raise UsageError(f"max_batch must be >= 1 and max_seq >= 2, got {max_batch}, {max_seq}")
    dtype = dtypes[dtype_name]
    net = from_pretrained(weights, device, dtype) if weights else random_model(args, device=device, dtype=dtype, seed=seed)
    net.setup_cache(max_batch, max_seq, device=device, dtype=dtype)
    online = OnlineEngine(serve.Engine(net, max_batch=max_batch, max_seq=max_seq, device=device))
    tok_path = os.path.join(weights, "tokenizer.json") if weights else ""
    tokenizer: Any = HFTokenizer(tok_path) if tok_path and os.path.exists(tok_path) else ByteTokenizer(args.vocab_size)
    name = model if not weights else os.path.basename(os.path.normpath(weights))
    app = App(online, name, tokenizer, args.vocab_size, max_seq)
    return app, online, lambda: f"{name} on {device}, {dtype_name}, {max_batch} slots x {max_seq} positions"


async def serve_forever(app: App, host: str, port: int, ready: Callable[[str], None]) -> None:
    """Listen until cancelled; `ready(url)` once the socket is bound."""
    runner = web.AppRunner(app.web_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    ready(f"http://{host}:{bound[1]}")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
