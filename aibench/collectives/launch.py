"""The parent side: a pool of rank processes that stays alive between commands.

Why a persistent pool: the runner checks a case, times it and then calls its `fn` over and over
for the energy window. Spawning a process group per call would cost seconds (interpreter start,
torch import, NCCL communicator setup) and measure the start-up, not the collective. So the
workload's setup starts one pool, and check / measure / fn are commands sent to its ranks; the
pool is torn down by `close()` or, at the latest, by a `weakref.finalize` when the last
reference (the Case's closures) goes away or the interpreter exits.

Never hang the caller: every wait has a deadline and watches the processes; a rank that reports
an error, dies or does not answer in time fails the whole pool (stragglers are terminated, then
killed) with a `RankError` that says which rank, during what, and why.
"""

from __future__ import annotations

import contextlib
import math
import queue
import socket
import time
import weakref
from dataclasses import asdict
from typing import Any, NoReturn

import torch.multiprocessing as mp

from aibench.collectives.worker import OpSpec, Plan, worker_main
from aibench.core.errors import WorkloadError

# Test hook: "corrupt" (the last rank alters one output element after the check's collective),
# "raise" (the last rank raises at measure), "exit" (it exits without a word), "hang" (it sleeps
# at measure, its peers blocked in a collective); "KIND@BYTES" only at that message size.
# Tests set it with monkeypatch; spawned ranks cannot see the parent's monkeypatches, so it
# travels as an argument.
FAULT_INJECTION = ""

START_TIMEOUT_S = 300.0  # interpreter + torch import + NCCL communicator on 8 GPUs
PREPARE_TIMEOUT_S = 300.0  # allocating and filling up to tens of GiB per rank
CHECK_TIMEOUT_S = 600.0  # the reference is recomputed chunk by chunk on each rank
STOP_GRACE_S = 10.0  # destroy_process_group may take seconds with NCCL


class RankError(WorkloadError):
    """A rank of a collective benchmark failed, died or hung; the pool is gone."""


class _RemoteTraceback(Exception):
    """Carries a rank's formatted traceback as the cause of a RankError (as concurrent.futures does)."""

    def __str__(self) -> str:
        return str(self.args[0])


def free_port() -> int:
    """A TCP port free right now on the loopback (bind to port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _shutdown(procs: list[Any], commands: list[Any], results: Any, grace_s: float = STOP_GRACE_S) -> None:
    """Ask each rank to stop, wait `grace_s`, then terminate and kill what is left."""
    for proc, cmd in zip(procs, commands):
        if proc.is_alive():
            with contextlib.suppress(Exception):  # a broken queue: terminated below
                cmd.put_nowait((-1, "stop", None))
    deadline = time.monotonic() + grace_s
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=2.0)
    for q in [*commands, results]:
        q.cancel_join_thread()  # never block on a feeder thread whose reader is gone
        q.close()


class RankCommands:
    """The collective commands every rank runs, over a pool's `request` (this node's spawned ranks,
    or a launcher's: collectives/ranked.py)."""

    def request(self, cmd: str, arg: Any, timeout_s: float) -> list[Any]:
        raise NotImplementedError

    def prepare(self, spec: OpSpec) -> dict[str, Any]:
        """Allocate the buffers of one collective; rank 0's layout and the slowest estimate."""
        replies = self.request("prepare", spec, PREPARE_TIMEOUT_S)
        return {**replies[0], "iteration_s": max(r["iteration_s"] for r in replies)}

    def check(self) -> list[dict[str, Any]]:
        return self.request("check", None, CHECK_TIMEOUT_S)

    def measure(self, plan: Plan) -> list[dict[str, Any]]:
        # The count is capped by max_time_s, but min_samples is a hard floor past it: be generous.
        timeout = 120.0 + 4.0 * (plan.warmup_s + plan.max_time_s)
        return self.request("measure", plan, timeout)

    def transport(self) -> list[dict[str, Any]]:
        """What carried each rank's data, by rank (NCCL's own report; unavailable on gloo)."""
        return self.request("transport", None, 60.0)

    def burst(self, iterations: int, per_iter_s: float) -> float:
        """Run `iterations` more collectives; the slowest rank's wall time."""
        timeout = 120.0 + 10.0 * iterations * per_iter_s
        return max(r["seconds"] for r in self.request("burst", iterations, timeout))


class RankPool(RankCommands):
    """`world_size` spawned ranks in one process group (NCCL on "cuda", gloo on "cpu").

        with RankPool(2, "cpu") as pool:
            info = pool.prepare(OpSpec("all_reduce", 1 << 20, "float32"))
            per_rank_check = pool.check()
            per_rank_samples = pool.measure(plan)
    """

    def __init__(self, world_size: int, device_type: str, *, fault: str | None = None,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        if world_size < 2:
            raise ValueError(f"a collective needs at least 2 ranks, got {world_size}")
        if device_type not in ("cuda", "cpu"):
            raise ValueError(f"collectives run on 'cuda' or 'cpu', not {device_type!r}")
        self.world_size = world_size
        self.device_type = device_type
        self._seq = 0
        ctx = mp.get_context("spawn")  # fork after CUDA init is unsafe; spawn starts clean
        self._results = ctx.Queue()
        self._commands = [ctx.Queue() for _ in range(world_size)]
        port = free_port()
        fault = FAULT_INJECTION if fault is None else fault
        self._procs = [
            ctx.Process(target=worker_main, name=f"aibench-rank{rank}", daemon=True,
                        args=(rank, world_size, port, device_type, self._commands[rank], self._results, fault))
            for rank in range(world_size)
        ]
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._commands, self._results)
        try:
            for proc in self._procs:
                proc.start()
            self.backend = self._gather(0, "start-up", start_timeout_s)[0]["backend"]
        except BaseException:
            self.close(grace_s=0.0)
            raise

    @property
    def alive(self) -> bool:
        return self._finalizer.alive

    def close(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop the ranks (idempotent)."""
        detached = self._finalizer.detach()
        if detached is not None:
            _, func, args, _ = detached
            func(*args, grace_s=grace_s)

    def __enter__(self) -> RankPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ commands

    def request(self, cmd: str, arg: Any, timeout_s: float) -> list[Any]:
        """Send one command to every rank; their payloads, by rank."""
        if not self.alive:
            raise RankError(f"{cmd}: the rank pool is closed")
        self._seq += 1
        for q in self._commands:
            q.put((self._seq, cmd, arg))
        return self._gather(self._seq, cmd, timeout_s)

    # ------------------------------------------------------------------ replies

    def _gather(self, seq: int, what: str, timeout_s: float) -> list[Any]:
        try:
            return self._wait(seq, what, timeout_s)
        except BaseException:  # a rank error, a timeout, or the runner's deadline (KeyboardInterrupt)
            self.close(grace_s=0.5)
            raise

    def _wait(self, seq: int, what: str, timeout_s: float) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        got: dict[int, Any] = {}
        dead_seen = False
        while len(got) < self.world_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = [r for r in range(self.world_size) if r not in got]
                raise RankError(f"{what}: rank(s) {missing} of {self.world_size} did not answer within "
                                f"{timeout_s:.0f} s (a hung collective?) on host {socket.gethostname()}; "
                                "the ranks were stopped")
            try:
                status, rank, msg_seq, payload, tb = self._results.get(timeout=min(0.5, remaining))
            except queue.Empty:
                silent = self._silent_deaths(got)
                if silent and dead_seen:  # a second look: its last words had time to arrive
                    raise RankError(self._death_message(silent[0], what)) from None
                dead_seen = bool(silent)
                continue
            if msg_seq != seq:
                continue  # a stale reply to an earlier command
            if status == "error":
                self._raise_root_cause(seq, what, {rank: (payload, tb)}, got)
            got[rank] = payload
        return [got[r] for r in range(self.world_size)]

    def _silent_deaths(self, answered: dict[int, Any], reported: Any = ()) -> list[tuple[int, int]]:
        """Ranks that exited with a non-zero code without a reply or an error report."""
        return [(r, p.exitcode) for r, p in enumerate(self._procs)
                if r not in answered and r not in reported and p.exitcode not in (None, 0)]

    def _death_message(self, death: tuple[int, int], what: str) -> str:
        rank, code = death
        return (f"rank {rank} of {self.world_size} exited with code {code} during {what} without "
                f"reporting an error (killed? out of host memory?) on host {socket.gethostname()}")

    def _raise_root_cause(self, seq: int, what: str, errors: dict[int, tuple[str, str]],
                          answered: dict[int, Any]) -> NoReturn:
        """Raise for the rank that failed first, not for the peers its failure broke.

        A rank that dies (os._exit, a signal) says nothing, and its peers then report a
        "connection reset": wait briefly for every rank's fate and blame a silent death first.
        """
        settle = time.monotonic() + 1.0
        while time.monotonic() < settle and len(errors) + len(answered) < self.world_size:
            try:
                status, rank, msg_seq, payload, tb = self._results.get(timeout=0.1)
            except queue.Empty:
                if len(self._silent_deaths(answered, errors)) + len(errors) + len(answered) >= self.world_size:
                    break
                continue
            if msg_seq == seq and status == "error":
                errors.setdefault(rank, (payload, tb))
        first_rank, (message, tb) = next(iter(errors.items()))
        text = f"rank {first_rank} of {self.world_size} failed during {what}: {message}"
        silent = self._silent_deaths(answered, errors)
        if silent:
            text = f"{self._death_message(silent[0], what)}; then {text}"
        else:
            text += f" (on host {socket.gethostname()})"
        raise RankError(text[:2000]) from _RemoteTraceback(tb)


def plan_from_timer(config: Any) -> Plan:
    """The fields of a TimerConfig that a collective measurement follows."""
    defaults = asdict(Plan(warmup_s=0.25, min_samples=10, min_time_s=0.5, max_time_s=15.0))
    values = {k: getattr(config, k, v) for k, v in defaults.items()}
    if not math.isfinite(values["max_time_s"]):
        raise ValueError("max_time_s must be finite")
    return Plan(**values)
