"""aibench's engine (aibench.models.serve.Engine) served online: requests join while others run.

`Engine.run` serves a fixed request list; a server gets requests one by one, over time. This loop
runs the same steps on a thread of its own (the model's forwards block; the HTTP event loop must
not): new requests take free cache slots and are prefilled alone, then one batched decode step
emits a token for every running request; finished or cancelled requests leave and the running
ones stay in slots 0..B-1 (`Engine._compact`). Each token is handed to the request's callback as
soon as the host holds it. The step methods are the engine's own, so the online server decodes
exactly what `llm.serve`'s in-process run decodes.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from aibench.models import serve
from aibench.models.arrivals import Request

OnToken = Callable[[int], None]
OnDone = Callable[[str | None], None]  # None: finished; else the error


@dataclass
class Job:
    prompt: tuple[int, ...]
    max_tokens: int
    on_token: OnToken
    on_done: OnDone
    id: int = 0
    cancelled: bool = False
    active: serve._Active | None = field(default=None, repr=False)

    def cancel(self) -> None:
        self.cancelled = True  # read by the engine thread at its next step


class OnlineEngine:
    def __init__(self, engine: serve.Engine) -> None:
        self.engine = engine
        self._inbox: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._ids = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aibench-engine", daemon=True)
        self.steps = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def submit(self, prompt: tuple[int, ...], max_tokens: int, on_token: OnToken, on_done: OnDone) -> Job:
        job = Job(prompt, max_tokens, on_token, on_done, id=next(self._ids))
        self._inbox.put(job)
        return job

    # -- the engine thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        eng = self.engine
        eng._t0 = eng.clock()
        waiting: deque[Job] = deque()
        running: list[Job] = []
        with torch.no_grad():
            while not self._stop.is_set():
                if not waiting and not running:
                    try:
                        waiting.append(self._inbox.get(timeout=0.05))
                    except queue.Empty:
                        continue
                while True:
                    try:
                        waiting.append(self._inbox.get_nowait())
                    except queue.Empty:
                        break
                try:
                    self._step(waiting, running)
                except Exception as exc:  # a failed forward fails the requests in flight, not the server
                    why = f"engine error: {type(exc).__name__}: {exc}"
                    for job in [*running, *waiting]:
                        job.on_done(why)
                    running.clear()
                    waiting.clear()

    def _step(self, waiting: deque[Job], running: list[Job]) -> None:
        eng = self.engine
        while waiting and len(running) < eng.max_batch:
            job = waiting.popleft()
            if job.cancelled:
                job.on_done("cancelled")
                continue
            job.active = serve._Active(Request(job.id, 0.0, job.prompt, job.max_tokens), len(running), 0.0,
                                       pos=len(job.prompt))
            eng._prefill(job.active)
            job.on_token(job.active.tokens[-1])
            if job.active.done():
                job.on_done(None)
            else:
                running.append(job)
        if not running:
            return
        actives = [j.active for j in running]
        eng._decode(actives)  # type: ignore[arg-type]
        self.steps += 1
        ended = []
        for job in running:
            job.on_token(job.active.tokens[-1])  # type: ignore[union-attr]
            if job.active.done() or job.cancelled:  # type: ignore[union-attr]
                ended.append(job)
        for job in ended:
            running.remove(job)
            job.on_done("cancelled" if job.cancelled and not job.active.done() else None)  # type: ignore[union-attr]
        eng._compact([j.active for j in running], [j.active.slot for j in ended])  # type: ignore[misc,union-attr]
