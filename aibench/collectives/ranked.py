"""A launched job's ranks as a rank pool: rank 0 drives, every other rank follows.

Under torchrun or srun every rank runs the same `aibench` command. Rank 0 runs it as usual (the
runner, the run directory); a collective workload's setup then gets a `GroupPool` instead of
spawning a `RankPool`, with the same commands (prepare, check, measure, burst, transport). Each
command is posted to the job's rendezvous store (aibench.collectives.group), executed by rank 0
itself and by every follower in the same order (`follow`), and the followers' replies come back
through the store. So the number of collectives is the same on every rank (the energy window's
bursts included), and only rank 0 writes files.

A rank that dies or hangs breaks the process group: the pool raises a RankError naming the rank
and its host, the job is marked broken (every later command fails at once with that reason, no
new collective is started on a broken group), and the failures go to the run's manifest.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from aibench.collectives.group import GroupAborted, RankFailure, RankGroup
from aibench.collectives.launch import RankCommands, RankError
from aibench.collectives.worker import OpSpec, Plan, _Rank, _serve
from aibench.core.errors import first_line

# Test hook, as launch.FAULT_INJECTION: the last rank "raise"s, "exit"s or "hang"s at measure.
# Launched ranks are separate programs, so it travels in the environment.
FAULT_ENV = "AIBENCH_TEST_FAULT"
FOLLOW_IDLE_S = 7 * 24 * 3600.0  # a follower waits as long as rank 0 lives (its heartbeat is watched)


def _encode(cmd: str, arg: Any) -> Any:
    if isinstance(arg, (OpSpec, Plan)):
        return asdict(arg)
    return arg


def _decode(cmd: str, arg: Any) -> Any:
    if cmd == "prepare":
        return OpSpec(**arg)
    if cmd == "measure":
        return Plan(**arg)
    return arg


class GroupPool(RankCommands):
    """RankPool's interface over the ranks of a launched job (this process is rank 0)."""

    def __init__(self, group: RankGroup, device_type: str) -> None:
        if not group.is_leader:
            raise ValueError("only rank 0 drives the job's collectives")
        wanted = "cuda" if device_type == "cuda" else "cpu"
        if group.device.type != wanted:
            raise RankError(f"the job's ranks joined on {group.device.type}, not {wanted}")
        self.group = group
        self.world_size = group.world
        self.device_type = device_type
        self.backend = group.backend
        self._state: _Rank | None = None
        self._fault = os.environ.get(FAULT_ENV, "")

    @property
    def alive(self) -> bool:
        return not self.group.broken

    def close(self, grace_s: float = 0.0) -> None:
        self._state = None  # the group outlives the workload: the next collective reuses it

    def __enter__(self) -> GroupPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, cmd: str, arg: Any, timeout_s: float) -> list[Any]:
        g = self.group
        if g.broken:
            raise RankError(f"{cmd}: the job is broken, no collective can run: "
                            + "; ".join(f["reason"] for f in g.failures))
        step = g.next_step()
        what = f"{cmd} (step {step})"
        followers = list(range(1, g.world))
        if cmd == "prepare":
            self._state = None  # free the previous op's buffers before allocating the next
        g.post(f"cmd/{step}", {"cmd": cmd, "arg": _encode(cmd, arg)})
        try:
            mine, self._state = _serve(0, g.world, g.device, cmd, arg, self._state, self._fault, g.tick)
        except Exception as exc:  # a peer that died or hung fails rank 0's collective too
            g.diagnosing = True
            try:
                _, failures = g.collect(f"reply/{step}", followers, timeout_s=timeout_s, what=what,
                                        settle_s=g.dead_after_s + 2.0)
            finally:
                g.diagnosing = False
            own = f"rank 0 on host {g.me.host}: {type(exc).__name__}: {first_line(exc)}"
            self._fail(failures, what, own)
        got, failures = g.collect(f"reply/{step}", followers, timeout_s=timeout_s, what=what)
        errors = [{"rank": r, "local_rank": g.members[r].local_rank, "host": g.members[r].host, "kind": "error",
                   "during": what, "reason": f"{g.members[r].where()} failed during {what}: {v['error']}"}
                  for r, v in sorted(got.items()) if "error" in v]
        if failures or errors:
            self._fail(errors + failures, what, None)
        g.delete([f"cmd/{step}", f"reply/{step}/n", *(f"reply/{step}/{r}" for r in followers)])
        return [mine] + [got[r]["payload"] for r in followers]

    def _fail(self, failures: list[dict[str, Any]], what: str, own: str | None) -> None:
        g = self.group
        if not failures:  # nobody else is to blame: rank 0's own failure (or an unexplained one)
            failures = [{"rank": 0, "local_rank": g.me.local_rank, "host": g.me.host, "kind": "error",
                         "during": what, "reason": own or f"rank 0 failed during {what}"}]
        g.record_failures(failures)
        g.abort("; ".join(f["reason"] for f in failures))
        raise RankError("; ".join(f["reason"] for f in failures))


def follow(group: RankGroup, extra: Mapping[str, Callable[[Any], Any]] | None = None) -> int:
    """A follower's life: serve rank 0's commands until it says stop; the exit status.

    `extra`: commands of a higher layer, name -> handler(arg) -> payload (the suite's per-GPU
    cases, aibench.suite.node_load); the collectives' own commands are served here.

    0 after "stop"; 1 when this rank failed (its error went to rank 0 first) or rank 0 is gone.
    """
    fault = os.environ.get(FAULT_ENV, "")
    state: _Rank | None = None
    while True:
        step = group.next_step()
        try:
            _, msg = group.await_any([f"cmd/{step}"], watch=[0], timeout_s=FOLLOW_IDLE_S, what="waiting for rank 0")
        except GroupAborted:
            return 1
        except RankFailure as exc:
            group.broken = True
            print(f"aibench rank {group.rank}: {exc}", flush=True)
            return 1
        cmd = msg["cmd"]
        if cmd == "stop":
            return 0
        try:
            if extra and cmd in extra:
                payload = extra[cmd](msg["arg"])
            else:
                if cmd == "prepare":
                    state = None
                payload, state = _serve(group.rank, group.world, group.device, cmd, _decode(cmd, msg["arg"]),
                                        state, fault, group.tick)
        except Exception as exc:  # the group is out of step now: report, then leave
            group.reply(f"reply/{step}", {"error": f"{type(exc).__name__}: {first_line(exc)}",
                                          "traceback": traceback.format_exc()[-4000:]})
            group.broken = True
            return 1
        group.reply(f"reply/{step}", {"payload": payload})


def stop_followers(group: RankGroup) -> None:
    """Rank 0 at the end of the command: the followers leave their loop (nothing if broken)."""
    if group.is_leader and not group.broken:
        group.post(f"cmd/{group.next_step()}", {"cmd": "stop", "arg": None})

