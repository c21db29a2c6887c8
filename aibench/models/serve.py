"""An in-process LLM serving engine: continuous batching over a static, slotted KV cache.

The model follows `aibench.models.Transformer`'s contract: `model.setup_cache(max_batch, max_seq)`
was called, and `model(tokens[B, S], input_pos=[B, S], slots=[B]) -> logits[B, S, V]` writes row b
into cache slot `slots[b]` at positions `input_pos[b]` (rows may be at different positions);
`slots=None` means slots 0..B-1, read as a view of the cache (no gather), and
`model.move_cache_slot(src, dst, length)` copies a slot's first `length` positions to another;
`kv_len=` bounds the keys attention reads (every row's last position + 1).

One engine step, as in vLLM/TGI-style continuous batching without chunked prefill:
  1. requests that have arrived are sent, up to the client's max-concurrency cap;
  2. sent requests take free cache slots; each is prefilled alone (one forward of its prompt into
     its slot) and its greedy next token is its first token (TTFT);
  3. one batched decode step feeds every running request's last token ([B, 1], per-row position)
     and emits one token per request; finished requests free their slot, and the request in the
     highest slot moves into it: running requests always hold slots 0..B-1.
A token is "emitted" when the host holds it: its timestamp is taken right after `.tolist()`,
which waits for the device (the sync point). The clock and sleep are arguments, so tests can run
the engine on a virtual clock. Metrics: aibench.models.serving_metrics (methods.md).
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from aibench.core.checks import Check
from aibench.core.errors import UsageError, WorkloadError
from aibench.models import serving_metrics as sm
from aibench.models.arrivals import Request

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Completion:
    """One finished request: its send time, tokens and each token's emission time (s from start)."""

    request: Request
    sent_s: float
    tokens: tuple[int, ...]
    token_times_s: tuple[float, ...]
    # Top-1 minus top-2 logit over max(|top-1|, 1) per token, when the engine records them: tells a
    # near-tie (where rounding may legitimately flip greedy argmax) from a real divergence.
    margins: tuple[float, ...] | None = None

    def timing(self) -> sm.RequestTiming:
        return sm.RequestTiming(self.sent_s, self.token_times_s, self.request.input_len)


@dataclass(frozen=True)
class ServeRun:
    """Everything one run of the engine produced, completions in request-id order."""

    completions: tuple[Completion, ...]
    duration_s: float
    decode_steps: int
    max_running: int

    def timings(self) -> list[sm.RequestTiming]:
        return [c.timing() for c in self.completions]

    def metrics(self, slo: sm.SLO | None = None, num_gpus: int = 1) -> dict[str, float]:
        return sm.summarize(self.timings(), self.duration_s, slo, num_gpus)


@dataclass
class _Active:
    request: Request
    slot: int
    sent_s: float
    pos: int  # cache position the next fed token is written to
    tokens: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)

    def done(self) -> bool:
        return len(self.tokens) >= self.request.output_len

    def completion(self, with_margins: bool) -> Completion:
        return Completion(
            self.request,
            self.sent_s,
            tuple(self.tokens),
            tuple(self.times),
            tuple(self.margins) if with_margins else None,
        )


class Engine:
    """Continuous batching over `max_batch` cache slots of a model whose cache is already set up."""

    def __init__(
        self,
        model: Any,
        *,
        max_batch: int,
        max_seq: int,
        device: torch.device | None = None,
        clock: Clock = time.perf_counter,
        sleep: Sleep = time.sleep,
        record_margins: bool = False,
    ) -> None:
        if max_batch < 1 or max_seq < 2:
            raise UsageError(f"engine needs max_batch >= 1 and max_seq >= 2, got {max_batch}, {max_seq}")
        self.model = model
        self.max_batch = max_batch
        self.max_seq = max_seq
        self.device = device if device is not None else next(model.parameters()).device
        self.clock = clock
        self.sleep = sleep
        self.record_margins = record_margins
        self._t0 = 0.0  # clock reading at the start of the current run

    # -- forward passes -------------------------------------------------------------------------

    def _emit(self, logits: torch.Tensor) -> tuple[list[int], list[float]]:
        """Greedy next token per row (from the last position) and, if asked, its top-2 margin."""
        last = logits[:, -1, :]
        tokens: list[int] = last.argmax(dim=-1).tolist()  # the host waits for the device here
        if not self.record_margins:
            return tokens, []
        top = last.float().topk(2, dim=-1).values
        margins = ((top[:, 0] - top[:, 1]) / top[:, 0].abs().clamp(min=1.0)).tolist()
        return tokens, margins

    def _prefill(self, active: _Active) -> None:
        prompt = torch.tensor([active.request.prompt], dtype=torch.long, device=self.device)
        pos = torch.arange(active.request.input_len, device=self.device).unsqueeze(0)
        slots = torch.tensor([active.slot], dtype=torch.long, device=self.device)
        tokens, margins = self._emit(self.model(prompt, input_pos=pos, slots=slots))
        self._record(active, tokens[0], margins[0] if margins else None)

    def _decode(self, running: list[_Active]) -> None:
        # Running requests hold slots 0..B-1 (`_compact`): row b is slot b, and the model reads a
        # view of the cache. Gathering scattered slots would copy every running request's cache
        # in every layer at every step, traffic a serving engine's paged attention does not have.
        running.sort(key=lambda a: a.slot)
        assert [a.slot for a in running] == list(range(len(running))), "running slots must be dense"
        tokens = torch.tensor([[a.tokens[-1]] for a in running], dtype=torch.long, device=self.device)
        pos = torch.tensor([[a.pos] for a in running], dtype=torch.long, device=self.device)
        # Attention reads keys up to the longest row's position, not the whole cache.
        new, margins = self._emit(self.model(tokens, input_pos=pos, kv_len=max(a.pos for a in running) + 1))
        now = None
        for i, a in enumerate(running):
            a.pos += 1
            now = self._record(a, new[i], margins[i] if margins else None, now)

    def _compact(self, running: list[_Active], holes: list[int]) -> None:
        """After the requests in slots `holes` ended (and left `running`): the running requests in
        the highest slots move into the holes, lowest hole first (each cache once, [0, pos)), so
        that the running slots stay 0..B-1. Finished requests are never moved."""
        for hole in sorted(holes):
            last = max(running, key=lambda a: a.slot, default=None)
            if last is not None and last.slot > hole:
                self.model.move_cache_slot(last.slot, hole, last.pos)
                last.slot = hole

    def _record(self, a: _Active, token: int, margin: float | None, now: float | None = None) -> float:
        # Every token of one batched step reaches the host at the same moment: one timestamp.
        now = self.clock() - self._t0 if now is None else now
        a.tokens.append(token)
        a.times.append(now)
        if margin is not None:
            a.margins.append(margin)
        return now

    def decode_step_fn(self, batch: int | None = None) -> Callable[[], torch.Tensor]:
        """A zero-argument batched decode step (`batch` rows, slots 0..batch-1, mid-cache position),
        for a timer or an energy window. It overwrites one cache position per slot."""
        b = min(batch or self.max_batch, self.max_batch)
        tokens = torch.zeros(b, 1, dtype=torch.long, device=self.device)
        pos = torch.full((b, 1), self.max_seq // 2, dtype=torch.long, device=self.device)

        def step() -> torch.Tensor:  # slots 0..b-1 and keys up to the rows' position, as the loop reads them
            with torch.no_grad():
                return self.model(tokens, input_pos=pos, kv_len=self.max_seq // 2 + 1)[:, -1, :].argmax(dim=-1)

        return step

    # -- the serving loop -----------------------------------------------------------------------

    def run(self, requests: Sequence[Request], max_concurrency: float = math.inf) -> ServeRun:
        """Serve `requests` (arrival times relative to the start of this call) to completion."""
        if not requests:
            raise UsageError("no requests to serve")
        if not max_concurrency >= 1:
            raise UsageError(f"max_concurrency must be >= 1, got {max_concurrency}")
        for r in requests:
            if r.output_len < 1 or r.input_len < 1:
                raise UsageError(f"request {r.id}: input and output lengths must be >= 1")
            if r.input_len + r.output_len > self.max_seq:
                raise UsageError(
                    f"request {r.id} needs {r.input_len + r.output_len} cache positions; "
                    f"the cache holds {self.max_seq}"
                )
        with torch.no_grad():
            return self._loop(requests, max_concurrency)

    def _loop(self, requests: Sequence[Request], cap: float) -> ServeRun:
        pending = deque(sorted(requests, key=lambda r: (r.arrival_s, r.id)))
        queue: deque[tuple[Request, float]] = deque()  # sent, waiting for a cache slot
        running: list[_Active] = []  # in slots 0..len(running)-1: a new request takes the next
        done: dict[int, Completion] = {}
        # The client's concurrency cap as a FIFO semaphore: the times at which each unit became
        # free. A request is sent at max(its arrival, the earliest free unit), as vLLM's client
        # sends it when `asyncio.Semaphore` lets it through (its latency starts there).
        units: list[float] = [] if math.isinf(cap) else [-math.inf] * int(cap)
        steps = max_running = 0
        self._t0 = self.clock()

        def finish(a: _Active) -> None:
            done[a.request.id] = a.completion(self.record_margins)
            if not math.isinf(cap):
                heapq.heappush(units, a.times[-1])

        while pending or queue or running:
            now = self.clock() - self._t0
            while pending and pending[0].arrival_s <= now and (math.isinf(cap) or units):
                r = pending.popleft()
                sent = r.arrival_s if math.isinf(cap) else max(r.arrival_s, heapq.heappop(units))
                queue.append((r, sent))
            while queue and len(running) < self.max_batch:
                r, sent = queue.popleft()
                a = _Active(r, len(running), sent, pos=r.input_len)
                self._prefill(a)
                if a.done():
                    finish(a)
                else:
                    running.append(a)
            if running:
                max_running = max(max_running, len(running))
                self._decode(running)
                steps += 1
                ended = [a for a in running if a.done()]
                for a in ended:  # all of them out first: a finished request is never moved
                    running.remove(a)
                    finish(a)
                self._compact(running, [a.slot for a in ended])
            elif not queue and pending:
                wait = pending[0].arrival_s - (self.clock() - self._t0)
                if wait > 0:
                    self.sleep(wait)
        duration = self.clock() - self._t0
        order = sorted(done)
        return ServeRun(tuple(done[i] for i in order), duration, steps, max_running)

    def generate_alone(self, request: Request) -> Completion:
        """The request served with nothing else in flight: the reference for batching checks."""
        return self.run([replace(request, arrival_s=0.0)]).completions[0]


def sweep_concurrency(
    engine: Engine,
    make_requests: Callable[[int], Sequence[Request]],
    levels: Sequence[int],
    slo: sm.SLO | None = None,
    num_gpus: int = 1,
) -> list[sm.SweepPoint]:
    """Run the engine once per concurrency level (requests from `make_requests(level)`), giving
    throughput per GPU against tokens/s per user: the InferenceX curve (methods.md)."""
    points = []
    for level in levels:
        if level < 1:
            raise UsageError(f"concurrency levels must be >= 1, got {level}")
        run = engine.run(make_requests(level), max_concurrency=level)
        points.append(sm.SweepPoint.from_metrics(level, run.metrics(slo, num_gpus)))
    return points


def parse_levels(text: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16]; '' -> []."""
    try:
        levels = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise UsageError(f"concurrency sweep must be integers separated by commas, got {text!r}") from None
    if any(level < 1 for level in levels):
        raise UsageError(f"concurrency levels must be >= 1, got {text!r}")
    return levels


def check_isolation(engine: Engine, requests: Sequence[Request], tie_tolerance: float) -> Check:
    """Greedy tokens of requests served together equal those of each request served alone.

    A batched run and a lone run may round differently (other GEMM shapes), which can flip the
    argmax where the top two logits nearly tie; a first divergence where the relative top-2
    margin of either run is <= `tie_tolerance` is accepted (the rest of that request is then not
    comparable). Any other divergence means cache slots leak into each other.
    """
    if not requests:
        raise UsageError("no requests to check")
    saved = engine.record_margins
    engine.record_margins = True
    try:
        batched = engine.run([replace(r, arrival_s=0.0) for r in requests])
        alone = [engine.generate_alone(r) for r in requests]
    finally:
        engine.record_margins = saved
    ties = 0
    for b, a in zip(batched.completions, alone):
        rid = a.request.id
        if len(b.tokens) != len(a.tokens):
            return Check(False, detail=f"request {rid}: {len(b.tokens)} tokens batched, {len(a.tokens)} alone")
        k = next((i for i, (x, y) in enumerate(zip(b.tokens, a.tokens)) if x != y), None)
        if k is None:
            continue
        margin = min(b.margins[k], a.margins[k]) if b.margins and a.margins else math.inf
        if margin > tie_tolerance:
            detail = (
                f"request {rid}: token {k} is {b.tokens[k]} batched but {a.tokens[k]} alone "
                f"(top-2 margin {margin:.2e} > tie tolerance {tie_tolerance:.1e}): KV-cache slots interfere"
            )
            return Check(False, tolerance=tie_tolerance, detail=detail)
        ties += 1
    detail = (
        f"{len(requests)} requests served together (max {batched.max_running} at once) match their lone runs"
        + (f"; {ties} diverged at a near-tie" if ties else "")
    )
    return Check(True, tolerance=tie_tolerance, detail=detail)


def require_tokens(run: ServeRun, requests: Sequence[Request]) -> None:
    """Every request completed with exactly its output length (an engine invariant)."""
    if len(run.completions) != len(requests):
        raise WorkloadError(f"{len(run.completions)} of {len(requests)} requests completed")
    for c in run.completions:
        if len(c.tokens) != c.request.output_len:
            raise WorkloadError(f"request {c.request.id}: {len(c.tokens)} tokens, expected {c.request.output_len}")
