"""This process as one rank of a launched job (torchrun, srun): the process group and a control plane.

`RankGroup.join(env, device_type)` does env:// rendezvous and opens the process group (NCCL/RCCL
on GPUs, each rank on its LOCAL_RANK device; gloo on CPUs). The same rendezvous store then
carries aibench's own messages between ranks, because a store keeps working when a peer dies
(a collective does not): commands and replies, each rank's records for rank 0, barriers, and a
heartbeat per rank. From the heartbeats, rank 0 tells a rank that died (its heartbeat stopped)
from one that hangs (it beats but reaches fewer sync points than its peers), and names its
rank and host.

Messages are JSON (never pickle: the store is reachable over the network). Timeouts:
    AIBENCH_RANK_TIMEOUT_S      a collective or a wait gives up after this (default gloo 120 s,
                                NCCL 600 s: tens of GiB per rank take seconds per iteration)
    AIBENCH_RANK_DEAD_AFTER_S   a rank whose heartbeat did not move for this long is gone
                                (default 10 s: a loaded host can starve a thread for seconds)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from aibench.collectives.launcher_env import LauncherEnv, LauncherEnvError
from aibench.collectives.transport import prepare_nccl_debug
from aibench.core.errors import WorkloadError

HEARTBEAT_S = 0.5
POLL_S = 0.01
START_TIMEOUT_S = 300.0  # every rank of a multi-node job imports torch and reaches the store
ABORT_GRACE_S = 5.0  # a follower whose leader aborted the run exits this long after, even if stuck


def _poll(waited_s: float) -> float:
    """Sleep between looks at the store: 1 ms at first (a burst of collectives waits on it), then 10 ms."""
    return 0.001 if waited_s < 0.2 else POLL_S


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise LauncherEnvError(f"{name}={text!r} is not a number of seconds") from None
    if not value > 0:
        raise LauncherEnvError(f"{name}={text!r} must be positive")
    return value


def rank_timeout_s(backend: str) -> float:
    return _env_float("AIBENCH_RANK_TIMEOUT_S", 600.0 if backend == "nccl" else 120.0)


def dead_after_s() -> float:
    return _env_float("AIBENCH_RANK_DEAD_AFTER_S", 10.0)


class RankFailure(WorkloadError):
    """A rank of the job died, hung or failed; `failures` says which, where and during what."""

    def __init__(self, message: str, failures: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []


class GroupAborted(RankFailure):
    """Rank 0 ended the run (a peer failed): this rank stops too."""


class Terminated(BaseException):
    """SIGTERM from the launcher (torchrun stops the other ranks when one fails)."""


@dataclass(frozen=True)
class Member:
    rank: int
    local_rank: int
    node_rank: int | None
    host: str
    pid: int
    device: str
    device_name: str

    def where(self) -> str:
        return f"rank {self.rank} (local rank {self.local_rank} on host {self.host})"


_current: RankGroup | None = None


def current() -> RankGroup | None:
    """The job this process is a rank of, once joined; None without a launcher."""
    return _current


def rank_device(env: LauncherEnv, device_type: str) -> torch.device:
    """This rank's device: cuda:LOCAL_RANK, or cuda:0 where the launcher gave each task one GPU."""
    if device_type != "cuda":
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if count == 1:
        return torch.device("cuda", 0)  # srun --gpus-per-task=1: each task sees only its own GPU
    if env.local_rank >= count:
        raise LauncherEnvError(f"local rank {env.local_rank} has no GPU: {count} visible on {env.host}")
    return torch.device("cuda", env.local_rank)


class RankGroup:
    """One rank's view of the job. Rank 0 (the leader) writes the run directory."""

    def __init__(self, env: LauncherEnv, device: torch.device, backend: str, store: Any,
                 members: list[Member], timeout_s: float) -> None:
        self.env, self.device, self.backend, self.store = env, device, backend, store
        self.members = members
        self.rank, self.world = env.rank, env.world_size
        self.timeout_s = timeout_s
        self.dead_after_s = dead_after_s()
        self.failures: list[dict[str, Any]] = []
        self.broken = False
        self.diagnosing = False  # rank 0 is finding out which rank failed (see sigterm_raises)
        self.terminated_by: str | None = None  # the signal the launcher stopped this rank with
        self._step = 0
        self._beats: dict[int, tuple[int, float]] = {}  # rank -> (last heartbeat count, when it last moved)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._abort_seen: float | None = None
        self._thread = threading.Thread(target=self._heartbeat, name="aibench-heartbeat", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ joining

    @classmethod
    def join(cls, env: LauncherEnv, device_type: str) -> RankGroup:
        """Rendezvous with every rank of the job and open the process group."""
        global _current
        if _current is not None:
            return _current
        if not dist.is_available():
            raise LauncherEnvError("this torch build has no torch.distributed: it cannot run as a rank of a launched job")
        os.environ.update(env.rendezvous_vars())  # srun exports none of what env:// reads
        device = rank_device(env, device_type)
        if device.type == "cuda":
            torch.cuda.set_device(device)
            backend = "nccl"  # RCCL on ROCm builds
            # One path for every rank of the job: the fingerprint (env vars) stays the same on each.
            tag = env.job_id or f"{env.master_addr}-{env.master_port}"
            prepare_nccl_debug(Path(tempfile.gettempdir()) / f"aibench-nccl-{tag}")
            # Errors and timeouts raise in the rank (2 = CleanUpOnly) instead of killing it before
            # rank 0 could write what it has (torch's default 3 takes the process down).
            os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2")
        else:
            backend = "gloo"
            if env.local_world_size:  # ranks share the cores: intra-op threads must not starve each other
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // env.local_world_size))
        timeout = rank_timeout_s(backend)
        base, _, _ = next(dist.rendezvous("env://", timeout=timedelta(seconds=START_TIMEOUT_S)))
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"aibench/{restart}/", base)
        pg_store = dist.PrefixStore(f"aibench-pg/{restart}/", base)
        kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, store=pg_store, rank=env.rank, world_size=env.world_size,
                                timeout=timedelta(seconds=timeout), **kwargs)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        me = Member(env.rank, env.local_rank, env.node_rank, env.host, os.getpid(), str(device), name)
        store.set(f"member/{env.rank}", json.dumps(asdict(me)))
        keys = [f"member/{r}" for r in range(env.world_size)]
        store.wait(keys, timedelta(seconds=START_TIMEOUT_S))
        members = [Member(**json.loads(store.get(k))) for k in keys]
        _current = cls(env, device, backend, store, members, timeout)
        return _current

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    @property
    def me(self) -> Member:
        return self.members[self.rank]

    @property
    def hosts(self) -> list[str]:
        return [m.host for m in self.members]

    @property
    def nodes(self) -> int:
        return len(set(self.hosts)) if self.env.nnodes is None else self.env.nnodes

    def next_step(self) -> str:
        """A key prefix for the next unit of work; every rank counts its units in the same order."""
        self._step += 1
        return f"s{self._step}"

    def manifest_block(self) -> dict[str, Any]:
        """What the run manifest says about the job (rank 0 writes it)."""
        return {
            "launcher": self.env.launcher, "world_size": self.world, "nodes": self.nodes,
            "backend": self.backend, "job_id": self.env.job_id,
            "ranks": [asdict(m) for m in self.members],
            "partial": bool(self.failures), "failures": list(self.failures),
        }

    # ------------------------------------------------------------------ messages

    def post(self, key: str, obj: Any) -> None:
        self.store.set(key, json.dumps(obj))

    def reply(self, prefix: str, obj: Any) -> None:
        """This rank's answer under `prefix` (what `collect` gathers on rank 0)."""
        self.post(f"{prefix}/{self.rank}", obj)
        self.store.add(f"{prefix}/n", 1)

    def _get(self, key: str) -> Any:
        return json.loads(self.store.get(key))

    def delete(self, keys: list[str]) -> None:
        for k in keys:
            with contextlib.suppress(Exception):
                self.store.delete_key(k)

    def abort(self, reason: str) -> None:
        """End the run for every rank (rank 0, after a failure it recorded)."""
        self.broken = True
        with contextlib.suppress(Exception):  # the store itself may be what failed
            self.store.set("abort", reason)

    def _aborted(self) -> str | None:
        if self.store.check(["abort"]):
            return self.store.get("abort").decode("utf-8", "replace")
        return None

    def await_any(self, keys: list[str], *, watch: list[int], timeout_s: float, what: str) -> tuple[str, Any]:
        """The first of `keys` to appear, and its value; raises when a watched rank is gone."""
        deadline = time.monotonic() + timeout_s
        last_watch = started = time.monotonic()
        try:
            while True:
                for key in keys:
                    if self.store.check([key]):
                        return key, self._get(key)
                now = time.monotonic()
                if now - last_watch >= HEARTBEAT_S:
                    last_watch = now
                    if (reason := self._aborted()) is not None:
                        raise GroupAborted(f"rank 0 ended the run: {reason}")
                    if gone := self.gone(watch):
                        raise RankFailure(self.describe(gone, what), self.failure_entries(gone, what))
                if now > deadline:
                    raise RankFailure(f"{what}: no message from rank(s) {watch} within {timeout_s:.0f} s",
                                      self.failure_entries(watch, what, kind="hung"))
                time.sleep(_poll(now - started))
        except (RankFailure, KeyboardInterrupt, Terminated):
            raise
        except Exception as exc:  # the store's host is gone (rank 0's, or torchrun's agent on node 0)
            raise RankFailure(f"{what}: lost the job's rendezvous store ({type(exc).__name__}: {exc}); "
                              "rank 0 or the launcher on its node ended") from None

    def collect(self, prefix: str, ranks: list[int], *, timeout_s: float, what: str,
                settle_s: float = 0.0) -> tuple[dict[int, Any], list[dict[str, Any]]]:
        """{rank: message} that `ranks` sent with reply(prefix), and the failures of those missing.

        Waits until every rank has answered, or is gone (heartbeat stopped), or the time is up
        (alive but silent: hung). With `settle_s` (after this rank's own failure) it waits at
        most that long for the ranks that are still alive, then calls them hung.
        """
        got: dict[int, Any] = {}
        started = time.monotonic()
        limit = min(timeout_s, settle_s) if settle_s else timeout_s
        last_watch = started
        gone: list[int] = []
        try:
            while True:
                now = time.monotonic()
                complete = int(self.store.add(f"{prefix}/n", 0)) >= len(ranks)
                if complete or now - last_watch >= HEARTBEAT_S:
                    for r in [r for r in ranks if r not in got]:
                        if complete or self.store.check([f"{prefix}/{r}"]):
                            got[r] = self._get(f"{prefix}/{r}")
                missing = [r for r in ranks if r not in got]
                if not missing:
                    return got, []
                if now - last_watch >= HEARTBEAT_S:
                    last_watch = now
                    gone = self.gone(missing)
                alive_missing = [r for r in missing if r not in gone]
                if not alive_missing:
                    return got, self.failure_entries(gone, what)
                if now - started > limit:
                    return got, self.failure_entries(gone, what) + self.failure_entries(alive_missing, what, "hung")
                time.sleep(_poll(now - started))
        except Exception as exc:
            entries = [{"rank": -1, "local_rank": None, "host": None, "kind": "store", "during": what,
                        "reason": f"lost the job's rendezvous store during {what} ({type(exc).__name__}: {exc})"}]
            return got, entries

    def barrier(self, name: str, *, timeout_s: float | None = None) -> None:
        """Every rank reaches this point (a case starts on every GPU at once)."""
        key = f"barrier/{name}"
        self.store.add(key, 1)
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        last_watch = 0.0
        while int(self.store.add(key, 0)) < self.world:
            now = time.monotonic()
            if now - last_watch >= HEARTBEAT_S:
                last_watch = now
                if (reason := self._aborted()) is not None:
                    raise GroupAborted(f"rank 0 ended the run: {reason}")
                others = [r for r in range(self.world) if r != self.rank]
                if gone := self.gone(others):
                    raise RankFailure(self.describe(gone, f"barrier {name}"),
                                      self.failure_entries(gone, f"barrier {name}"))
            if now > deadline:
                raise RankFailure(f"barrier {name}: not every rank arrived within {timeout_s or self.timeout_s:.0f} s")
            time.sleep(POLL_S)

    # ------------------------------------------------------------------ liveness

    def tick(self) -> None:
        """One more sync point reached (the worker's barrier calls it): a hang diagnosis counts them."""
        self.store.add(f"progress/{self.rank}", 1)

    def progress(self, ranks: list[int]) -> dict[int, int]:
        return {r: int(self.store.add(f"progress/{r}", 0)) for r in ranks}

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.store.add(f"hb/{self.rank}", 1)
                if not self.is_leader and self._abort_seen is None and self.store.check(["abort"]):
                    self._abort_seen = time.monotonic()
            except Exception:  # the store is gone (its host ended): the main thread's waits say so
                if not self.is_leader and self._abort_seen is None:
                    self._abort_seen = time.monotonic()
            # A follower stuck where it never looks (a collective whose peer died, a hang) still
            # goes: rank 0 has recorded the failure and ended the run.
            if self._abort_seen is not None and time.monotonic() - self._abort_seen > ABORT_GRACE_S:
                os._exit(1)

    def gone(self, ranks: list[int]) -> list[int]:
        """Those of `ranks` whose heartbeat has not moved for dead_after_s (watched from the first call)."""
        now = time.monotonic()
        out = []
        with self._lock:
            for r in ranks:
                if r == self.rank:
                    continue
                try:
                    count = int(self.store.add(f"hb/{r}", 0))
                except Exception:
                    out.append(r)
                    continue
                last = self._beats.get(r)
                if last is None or last[0] != count:
                    self._beats[r] = (count, now)
                elif now - last[1] > self.dead_after_s:
                    out.append(r)
        return out

    def silence_s(self, rank: int) -> float | None:
        last = self._beats.get(rank)
        return None if last is None else time.monotonic() - last[1]

    def terminated(self, rank: int) -> str | None:
        """What a rank said when its launcher stopped it (SIGTERM), if it said anything."""
        with contextlib.suppress(Exception):
            if self.store.check([f"term/{rank}"]):
                return self.store.get(f"term/{rank}").decode("utf-8", "replace")
        return None

    def describe(self, ranks: list[int], what: str, kind: str = "died") -> str:
        return "; ".join(e["reason"] for e in self.failure_entries(ranks, what, kind))

    def failure_entries(self, ranks: list[int], what: str, kind: str = "died") -> list[dict[str, Any]]:
        """One entry per rank for the manifest: rank, host, what it was doing, why it is missing."""
        out = []
        for r in ranks:
            m = self.members[r]
            said = self.terminated(r) if kind == "died" else None
            silence = self.silence_s(r)
            quiet = f"no heartbeat for {silence:.0f} s" if silence is not None else "its heartbeat stopped"
            if said:
                kind_r, reason = "terminated", f"{m.where()} was stopped by its launcher ({said}) during {what}"
            elif kind == "died":
                kind_r, reason = "died", f"{m.where()} died during {what} ({quiet}: killed? out of memory? node gone?)"
            else:
                kind_r, reason = kind, f"{m.where()} is alive but did not answer during {what} (hung)"
            out.append({"rank": r, "local_rank": m.local_rank, "host": m.host, "kind": kind_r, "during": what,
                        "reason": reason})
        return out

    def laggards(self, ranks: list[int]) -> list[int]:
        """Of `ranks`, those that reached fewer sync points than the furthest one (hung ones)."""
        counts = self.progress(ranks)
        top = max(counts.values(), default=0)
        return [r for r, c in counts.items() if c < top]

    def diagnose_termination(self, signal_name: str, what: str) -> list[dict[str, Any]]:
        """Rank 0 was stopped by its launcher (torchrun stops the survivors when a rank dies): find
        which followers are gone before it goes too, record them, and end the run for every rank.

        A follower that died stops beating; one that its launcher stopped says so in the store;
        with neither, the stop was the launcher's own (a Ctrl-C of torchrun, scancel, a time limit).
        """
        self.diagnosing = True
        followers = [r for r in range(self.world) if r != self.rank]
        deadline = time.monotonic() + self.dead_after_s + 2 * HEARTBEAT_S
        gone: list[int] = []
        with contextlib.suppress(Exception):
            while True:
                gone = self.gone(followers)
                said = [r for r in followers if r not in gone and self.terminated(r)]
                if gone or len(said) == len(followers) or time.monotonic() > deadline:
                    break
                time.sleep(HEARTBEAT_S)
        entries = self.failure_entries(gone, what)
        if not entries:
            entries = [{"rank": self.rank, "local_rank": self.me.local_rank, "host": self.me.host,
                        "kind": "terminated", "during": what,
                        "reason": f"{self.me.where()} was stopped by its launcher ({signal_name}) during {what}; "
                                  "no other rank was seen to fail"}]
        self.record_failures(entries)
        self.abort("; ".join(e["reason"] for e in entries))
        return entries

    def record_failures(self, entries: list[dict[str, Any]]) -> None:
        seen = {(e["rank"], e["during"]) for e in self.failures}
        self.failures += [e for e in entries if (e["rank"], e["during"]) not in seen]

    # ------------------------------------------------------------------ ending

    @contextlib.contextmanager
    def sigterm_raises(self) -> Iterator[None]:
        """SIGTERM (torchrun stopping the job) raises Terminated in the main thread, so that what
        was measured is written first; a follower says so in the store before it goes."""
        def handler(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            with contextlib.suppress(Exception):
                self.store.set(f"term/{self.rank}", f"signal {name}")
            self.terminated_by = name
            # Rank 0 finding out who failed (torchrun stops the survivors as soon as one rank
            # dies): it finishes that and writes it down first; torchrun waits 30 s to SIGKILL.
            if self.is_leader and (self.broken or self.diagnosing):
                return
            raise Terminated(f"rank {self.rank} received {name}")

        try:
            previous = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def finish(self) -> None:
        """Leave the job: followers tell rank 0 they are done; rank 0 waits for them (its
        process may host the store they still read), then everyone closes the group."""
        global _current
        try:
            if not self.broken:
                if not self.is_leader:
                    self.reply("done", 1)
                else:
                    self.collect("done", [r for r in range(1, self.world)], timeout_s=30.0, what="the end of the run")
        except Exception:
            pass
        finally:
            self._stop.set()
            with contextlib.suppress(Exception):
                if self.broken and self.backend == "nccl":
                    dist.distributed_c10d._abort_process_group()  # a peer is gone: destroy would wait on it
                elif dist.is_initialized():
                    dist.destroy_process_group()
            _current = None
