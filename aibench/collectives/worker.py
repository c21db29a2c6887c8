"""The per-rank side of a collective benchmark: one process per GPU (or per CPU rank).

`worker_main` is the target of each spawned process. It joins the process group (NCCL/RCCL on
GPUs, gloo on the CPU) and then serves commands from the parent (aibench.collectives.launch)
until told to stop:

    prepare(OpSpec)   allocate the buffers (random data, never zeros), run two warm iterations
    check             fill known values, run the collective once, compare every output element
    measure(Plan)     calibrate on rank 0, broadcast (warm-up, iterations), time each iteration
    burst(k)          k more iterations (the energy window's unit of work)
    transport         what carried the data: NCCL's own report (NCCL_DEBUG=INFO); unavailable on gloo

Every reply goes to one result queue as (status, rank, seq, payload, traceback). After an error
the rank stops serving: the group is out of step (a peer is blocked inside a collective), so the
parent tears the whole pool down.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from aibench.collectives.transport import GLOO_TRANSPORT, nccl_transport, prepare_nccl_debug
from aibench.core.errors import first_line

# A rank blocked in a collective gives up after this (the parent kills it well before).
GROUP_TIMEOUT = timedelta(minutes=10)
ORPHAN_POLL_S = 0.5  # how often a rank looks whether its parent is still there
CHECK_CHUNK = 1 << 24  # elements per reference chunk: bounds the check's temporary memory
_PRIME = 2_147_483_647  # 2^31 - 1: the modulus of the MINSTD generator used for check patterns
_MINSTD = 48_271
# Integers up to 2^digits are exact in a float type: bf16 8, fp16 11, fp32 24 significand bits.
_DIGITS = {torch.bfloat16: 8, torch.float16: 11, torch.float32: 24, torch.float64: 53}
_REDUCING = ("all_reduce", "reduce_scatter")


@dataclass(frozen=True)
class OpSpec:
    """What to run: the collective, S (total array size in bytes, nccl-tests' convention), dtype."""

    op: str
    total_bytes: int
    dtype: str


@dataclass(frozen=True)
class Plan:
    """The run rules a measurement follows (the fields of aibench.measure.timer.TimerConfig it uses)."""

    warmup_s: float
    min_samples: int
    min_time_s: float
    max_time_s: float
    max_samples: int = 10_000


def plan_iterations(per_iter_s: float, plan: Plan) -> tuple[int, int]:
    """(warm-up iterations, timed iterations) for one iteration of `per_iter_s` seconds.

    Timed: enough for min_time_s, no more than max_time_s allows, but never fewer than
    min_samples (a hard floor of the run rules, as in aibench.measure.timer) nor more than max_samples.
    """
    t = max(per_iter_s, 1e-7)
    warmup = min(math.ceil(plan.warmup_s / t), 100_000)
    count = min(math.ceil(plan.min_time_s / t), math.floor(plan.max_time_s / t))
    count = min(max(count, plan.min_samples), max(plan.max_samples, plan.min_samples))
    return warmup, count


def more_iterations(samples: list[float], elapsed_s: float, plan: Plan) -> int:
    """Iterations still needed to reach min_time_s of samples, within max_time_s and max_samples."""
    sampled = sum(samples)
    if sampled >= plan.min_time_s or not samples:
        return 0
    t = max(sorted(samples)[len(samples) // 2], 1e-7)
    wanted = math.ceil((plan.min_time_s - sampled) / t)
    allowed = min(math.floor((plan.max_time_s - elapsed_s) / t), plan.max_samples - len(samples))
    return max(0, min(wanted, allowed))


def burst_iterations(per_iter_s: float, target_s: float = 0.05) -> int:
    """Iterations per energy-window call: ~50 ms of work, so queue round trips stay negligible."""
    return max(1, min(10_000, math.ceil(target_s / max(per_iter_s, 1e-7))))


def layout(op: str, total_bytes: int, dtype: torch.dtype, n: int) -> tuple[int, int, int]:
    """(input elements, output elements, chunk) per rank for S = total_bytes on n ranks.

    S is rounded down to a multiple of n elements so that every rank's chunk is whole.
    """
    elements = (total_bytes // dtype.itemsize) // n * n
    if elements < n:
        raise ValueError(f"{total_bytes} bytes of {dtype} is less than one element per rank ({n} ranks)")
    chunk = elements // n
    if op == "all_gather":
        return chunk, elements, chunk
    if op == "reduce_scatter":
        return elements, chunk, chunk
    if op in ("all_reduce", "all_to_all", "broadcast"):
        return elements, elements, chunk
    raise ValueError(f"unknown collective {op!r}")


def amplitude(op: str, dtype: torch.dtype, n: int) -> int:
    """Largest |value| of the check pattern: a sum over n ranks must stay an exact integer."""
    if op not in _REDUCING:
        return 8
    return max(1, min(8, (1 << _DIGITS.get(dtype, 8)) // n))


def pattern(seed: int, start: int, length: int, amp: int, device: torch.device) -> torch.Tensor:
    """Pseudo-random integers in [-amp, amp] at positions [start, start + length) (int64).

    Two MINSTD rounds over (position, seed): any rank can recompute any other rank's input
    without an RNG (a CUDA generator's stream may differ between device models) and without
    periodicity that a misplaced chunk could hide behind.
    """
    idx = torch.arange(start, start + length, dtype=torch.int64, device=device) % _PRIME
    h = (idx * _MINSTD + (seed * 69_621 + 12_345) % _PRIME) % _PRIME
    h = (h * _MINSTD) % _PRIME
    return h % (2 * amp + 1) - amp


class _Rank:
    """One rank's buffers and loops for one OpSpec."""

    def __init__(self, spec: OpSpec, rank: int, n: int, device: torch.device, fault: str,
                 on_sync: Callable[[], None] | None = None) -> None:
        # A test fault "KIND@BYTES" strikes only at that message size (mid-sweep).
        kind, _, at = fault.partition("@")
        fault = kind if not at or spec.total_bytes == int(at) else ""
        self.spec, self.rank, self.n, self.device, self.fault = spec, rank, n, device, fault
        self.on_sync = on_sync  # counts this rank's sync points (a launched job's hang diagnosis)
        self.dtype = getattr(torch, spec.dtype)
        n_in, n_out, self.chunk = layout(spec.op, spec.total_bytes, self.dtype, n)
        gen = torch.Generator(device=device).manual_seed(1000 + rank)
        # Random data, never zeros (zeros hide unwritten outputs). all_reduce works in place and
        # multiplies magnitudes by up to n per call, so it is refilled from `pristine` (outside
        # the timed windows) before the values could overflow.
        self.inp = torch.randn(n_in, generator=gen, device=device, dtype=self.dtype)
        self.out = self.inp if spec.op in ("all_reduce", "broadcast") else torch.full(
            (n_out,), float("nan"), device=device, dtype=self.dtype)
        self.pristine = self.inp.clone() if spec.op == "all_reduce" else None
        limit = torch.finfo(self.dtype).max / 8.0  # |randn| < 8 in practice
        self.refill_every = max(1, min(64, int(math.log(limit) / math.log(n)))) if n > 1 else 64
        self.since_refill = 0
        self.collective = self._bind()

    def _bind(self) -> Any:
        op, inp, out = self.spec.op, self.inp, self.out
        if op == "all_reduce":
            return lambda: dist.all_reduce(inp)
        if op == "broadcast":
            return lambda: dist.broadcast(inp, src=0)
        if op == "all_gather":  # all_gather_single is the new name (torch 2.13), *_into_tensor the old
            fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
            return lambda: fn(out, inp)
        if op == "reduce_scatter":
            fn = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
            return lambda: fn(out, inp)
        if op == "all_to_all":
            return lambda: dist.all_to_all_single(out, inp)
        raise ValueError(f"unknown collective {op!r}")

    # ------------------------------------------------------------------ timing

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _barrier(self) -> None:
        self._sync()
        if self.on_sync is not None:
            self.on_sync()
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()
        self._sync()

    def _maybe_refill(self) -> None:
        if self.pristine is None:
            return
        if self.since_refill >= self.refill_every:
            self.inp.copy_(self.pristine)
            self.since_refill = 0
        self.since_refill += 1

    def iterate(self, count: int) -> list[float]:
        """Time `count` iterations after a barrier: CUDA events on a GPU, perf_counter on a CPU."""
        self._barrier()
        if self.device.type == "cuda":
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                      for _ in range(count)]
            for start, end in events:
                self._maybe_refill()
                start.record()
                self.collective()  # synchronous op: the current stream waits for the NCCL stream
                end.record()
            self._sync()
            return [start.elapsed_time(end) / 1e3 for start, end in events]
        samples = []
        for _ in range(count):
            self._maybe_refill()
            t0 = time.perf_counter()
            self.collective()  # gloo collectives return when complete on this rank
            samples.append(time.perf_counter() - t0)
        return samples

    def _agree(self, values: tuple[int, ...]) -> tuple[int, ...]:
        """Rank 0's values on every rank, so that all ranks run the same number of collectives."""
        decided = torch.tensor(values, dtype=torch.int64, device=self.device)
        dist.broadcast(decided, src=0)
        return tuple(int(v) for v in decided.tolist())

    def measure(self, plan: Plan) -> dict[str, Any]:
        if self.fault == "raise" and self.rank == self.n - 1:
            raise RuntimeError("injected fault (test hook)")
        if self.fault == "exit" and self.rank == self.n - 1:
            os._exit(3)
        if self.fault == "hang" and self.rank == self.n - 1:
            time.sleep(3600.0)  # its peers block in the first collective: a hung rank
        calibration = self.iterate(3)
        warmup, count = self._agree(plan_iterations(sorted(calibration)[1], plan))
        if warmup:
            self.iterate(warmup)
        samples: list[float] = []
        started = time.perf_counter()
        for _ in range(8):  # the calibration may have been pessimistic: top up to min_time_s
            samples += self.iterate(count)
            (count,) = self._agree((more_iterations(samples, time.perf_counter() - started, plan),))
            if not count:
                break
        return {"samples_s": samples, "warmup_iterations": warmup + 3, "iterations": len(samples)}

    # ------------------------------------------------------------------ check

    def _segments(self, total: int) -> list[tuple[int, int]]:
        """[start, length) pieces of at most CHECK_CHUNK that never cross a chunk boundary."""
        out: list[tuple[int, int]] = []
        for block in range(0, total, self.chunk):
            end = min(total, block + self.chunk)
            out.extend((s, min(CHECK_CHUNK, end - s)) for s in range(block, end, CHECK_CHUNK))
        return out

    def _input_values(self, rank: int, start: int, length: int, amp: int) -> torch.Tensor:
        """Rank `rank`'s check input at [start, start + length) (within one chunk)."""
        if self.spec.op == "all_to_all":  # chunk d of rank r goes to rank d: seed per (r, d)
            block = start // self.chunk
            return pattern(rank * self.n + block, start - block * self.chunk, length, amp, self.device)
        return pattern(rank, start, length, amp, self.device)

    def _expected(self, start: int, length: int, amp: int) -> torch.Tensor:
        op, r, c, n = self.spec.op, self.rank, self.chunk, self.n
        if op in _REDUCING:  # all_reduce: the whole sum; reduce_scatter: rank r keeps chunk r of it
            offset = start if op == "all_reduce" else r * c + start
            total = self._input_values(0, offset, length, amp)
            for j in range(1, n):
                total += self._input_values(j, offset, length, amp)
            return total
        if op == "broadcast":
            return self._input_values(0, start, length, amp)
        block = start // c
        if op == "all_gather":  # chunk j of the output is rank j's whole input
            return self._input_values(block, start - block * c, length, amp)
        # all_to_all: chunk s of the output is chunk r of rank s's input
        return self._input_values(block, r * c + (start - block * c), length, amp)

    def check(self) -> dict[str, Any]:
        amp = amplitude(self.spec.op, self.dtype, self.n)
        for start, length in self._segments(self.inp.numel()):
            self.inp[start:start + length].copy_(self._input_values(self.rank, start, length, amp))
        if self.out is not self.inp:
            self.out.fill_(float("nan"))  # poisoned: every element must be written
        self._barrier()
        self.collective()
        self._sync()
        if self.fault == "corrupt" and self.rank == self.n - 1:
            self.out.view(-1)[0] += 1
        wrong, max_abs, err_sq, ref_sq, first = 0, 0.0, 0.0, 0.0, None
        for start, length in self._segments(self.out.numel()):
            got = self.out[start:start + length].double()
            want = self._expected(start, length, amp).double()
            diff = (got - want).abs().nan_to_num(nan=math.inf)
            bad = diff != 0
            count = int(bad.sum())
            if count:
                if first is None:
                    i = int(bad.nonzero()[0, 0])
                    first = f"index {start + i}: got {float(got[i]):g}, expected {float(want[i]):g}"
                wrong += count
                max_abs = max(max_abs, float(diff.max()))
                err_sq += float((diff[diff.isfinite()] ** 2).sum())
            ref_sq += float((want**2).sum())
        self.restore()
        return {"passed": wrong == 0, "wrong": wrong, "elements": self.out.numel(),
                "max_abs_error": max_abs, "err_sq": err_sq, "ref_sq": ref_sq, "first": first}

    def restore(self) -> None:
        """Random data again for timing (the check left small integers behind)."""
        gen = torch.Generator(device=self.device).manual_seed(2000 + self.rank)
        self.inp.normal_(generator=gen)  # in place: no second buffer-sized temporary
        if self.pristine is not None:
            self.pristine.copy_(self.inp)
            self.since_refill = 0


def transport(device: torch.device) -> dict[str, Any]:
    """The transport this rank's collectives used: NCCL's own report; unavailable on gloo."""
    if device.type != "cuda":
        return dict(GLOO_TRANSPORT)
    return nccl_transport()


def _serve(rank: int, world: int, device: torch.device, cmd: str, arg: Any, state: _Rank | None,
           fault: str, on_sync: Callable[[], None] | None = None) -> tuple[Any, _Rank | None]:
    if cmd == "transport":
        return transport(device), state
    if cmd == "prepare":  # the caller has dropped the previous op's buffers
        if device.type == "cuda":
            torch.cuda.empty_cache()
        state = _Rank(arg, rank, world, device, fault, on_sync)
        state.iterate(1)  # connection setup / NCCL lazy init happens on the first call
        estimate = state.iterate(2)
        return {"iteration_s": max(estimate), "size_bytes": state.chunk * world * state.dtype.itemsize,
                "input_elements": state.inp.numel(), "output_elements": state.out.numel()}, state
    if state is None:
        raise RuntimeError(f"command {cmd!r} before prepare")
    if cmd == "check":
        return state.check(), state
    if cmd == "measure":
        return state.measure(arg), state
    if cmd == "burst":
        t0 = time.perf_counter()
        state.iterate(int(arg))
        state._sync()
        return {"seconds": time.perf_counter() - t0}, state
    raise RuntimeError(f"unknown command {cmd!r}")


def _exit_when_orphaned(parent: int) -> None:
    """End this rank at once when its parent is gone (kill -9, a crash, a SIGTERM).

    The command loop notices a dead parent only between commands; a rank can be blocked where it
    never looks: inside a collective whose peer hung (until GROUP_TIMEOUT), or at exit, its queue's
    feeder thread writing a large reply (10,000 samples) into a pipe nobody reads any more (for
    ever). So a thread watches, and os._exit skips every clean-up that could block.
    """
    def watch() -> None:
        while True:
            time.sleep(ORPHAN_POLL_S)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="aibench-orphan-watch", daemon=True).start()


def worker_main(rank: int, world: int, port: int, device_type: str, commands: Any, results: Any,
                fault: str = "") -> None:
    """Entry point of one spawned rank (see the module docstring for the protocol)."""
    # The pid the parent gave us, not getppid() now: a parent that died during our start-up
    # would otherwise leave us watching its reaper.
    spawner = multiprocessing.parent_process()
    parent = spawner.pid if spawner is not None and spawner.pid is not None else os.getppid()
    # A terminal's Ctrl-C reaches the whole foreground process group. Stopping the ranks is the
    # parent's job (stop, then terminate): a rank dying of it on its own printed a traceback per
    # rank and broke its peers' collectives before the parent had decided anything.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_when_orphaned(parent)
    seq = 0
    try:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        # Under torchrun (a one-rank job: a larger one runs its ranks in place, aibench.collectives.ranked)
        # the spawned ranks inherited the agent's store flag: env:// would then make even rank 0
        # a client of a store nobody serves on this port, and every rank waited for it.
        os.environ.pop("TORCHELASTIC_USE_AGENT_STORE", None)
        if device_type == "cuda":
            prepare_nccl_debug(Path(tempfile.gettempdir()) / f"aibench-nccl-{port}")
            torch.cuda.set_device(rank)
            device, backend = torch.device("cuda", rank), "nccl"  # RCCL on ROCm builds
        else:
            # Ranks share the cores: one rank's intra-op threads must not starve the others.
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
            device, backend = torch.device("cpu"), "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=GROUP_TIMEOUT)
        results.put(("ok", rank, 0, {"backend": backend}, None))
        state: _Rank | None = None
        while True:
            try:
                seq, cmd, arg = commands.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent:  # orphaned: the parent died without stopping us
                    return
                continue
            if cmd == "stop":
                return
            if cmd == "prepare":
                state = None  # free the previous op's buffers before allocating the next
            payload, state = _serve(rank, world, device, cmd, arg, state, fault)
            results.put(("ok", rank, seq, payload, None))
    except Exception as exc:
        message = f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__
        results.put(("error", rank, seq, message, traceback.format_exc()))
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
