"""aibench as one rank of a job someone else launched (torchrun, srun).

`join_launched(device_spec)` is what `aibench run` and `aibench suite` call first: without a
launcher environment (or with a world of one) it returns None and aibench spawns its own ranks
on this node as before; otherwise it joins the job (env:// rendezvous, NCCL on GPUs, gloo on the
CPU, aibench.collectives.group). Rank 0 then runs the command and writes the one run directory;
every other rank `follow`s it (aibench.collectives.ranked) and writes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from aibench.collectives.group import RankFailure, RankGroup, Terminated, current
from aibench.collectives.launcher_env import launcher_env
from aibench.device import devices


def join_launched(device_spec: str) -> RankGroup | None:
    """This process's job, joined; None when no launcher started it (or it is a world of one)."""
    env = launcher_env()
    if env is None or not env.distributed:
        return None
    device = devices.resolve(device_spec)
    return RankGroup.join(env, device.type)


def distributed_block(group: RankGroup | None = None) -> dict[str, Any] | None:
    """The manifest's `distributed` block: launcher, ranks with their hosts, partial, failures."""
    group = group or current()
    if group is None:
        return None
    block = group.manifest_block()
    if group.terminated_by is not None:
        block["terminated_by"] = f"rank 0 received {group.terminated_by} from its launcher"
    return block


@contextlib.contextmanager
def leading(group: RankGroup | None, what: str, on_failure: Callable[[], None]) -> Iterator[None]:
    """Rank 0's command under its launcher: a SIGTERM (torchrun stopping the job because a rank
    died) raises RankFailure naming the ranks that failed, after `on_failure` has written them
    (the run directory's manifest: partial, rank and host); without a launcher, nothing."""
    if group is None:
        yield
        return
    with group.sigterm_raises():
        try:
            yield
        except Terminated:
            entries = group.diagnose_termination(group.terminated_by or "SIGTERM", what)
            on_failure()
            raise RankFailure("; ".join(e["reason"] for e in entries), entries) from None
