"""Which launcher started this process, and as which rank: torchrun, Slurm's srun, or none.

Pure: `launcher_env(environ)` reads a mapping (os.environ by default) and returns a frozen
LauncherEnv, or None when no launcher started this process (aibench then spawns its own ranks,
on one node). Nothing is imported from torch; nothing is started.

Variables (../shared/reference/hardware.md, "Launchers"):
    torchrun   RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
               MASTER_PORT (and TORCHELASTIC_RUN_ID, TORCHELASTIC_USE_AGENT_STORE)
    srun       SLURM_PROCID (global rank), SLURM_LOCALID, SLURM_NTASKS, SLURM_NNODES,
               SLURM_NODEID, SLURM_JOB_NODELIST; MASTER_ADDR is the first host of the node list
               (what `scontrol show hostnames $SLURM_JOB_NODELIST | head -1` prints)

torchrun wins where both are set: `srun torchrun ...` (the sbatch script of `aibench slurm`) runs
one torchrun per node, and its workers see the SLURM_* variables of that one task too. Inside an
sbatch batch script (no srun step) SLURM_PROCID is set as well but no step has started: that is
not a rank of anything, so it is not a launcher.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from aibench.core.errors import UsageError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
SLURM_VARS = ("SLURM_PROCID", "SLURM_NTASKS")
# Slurm's batch step: SLURM_STEP_ID is unset there on some versions, this value on others.
_BATCH_STEP_IDS = ("", "batch", "4294967294")  # 4294967294 = SLURM_BATCH_SCRIPT (0xfffffffe)
# PyTorch Lightning's SLURMEnvironment convention when MASTER_PORT is not exported: 15000 plus
# the job id's last 4 digits, so that two jobs sharing a node do not pick the same port.
SLURM_PORT_BASE = 15000


class LauncherEnvError(UsageError):
    """The environment names a launcher but cannot be a rank of it (a variable missing or wrong)."""


@dataclass(frozen=True)
class LauncherEnv:
    """This process as one rank of a launched job."""

    launcher: str  # "torchrun" | "slurm" | "env" (RANK/WORLD_SIZE exported by something else)
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int | None
    node_rank: int | None
    nnodes: int | None
    master_addr: str
    master_port: int
    host: str
    job_id: str | None = None
    agent_store: bool = False  # torchrun's agent hosts the rendezvous store (not rank 0)

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one rank: aibench runs as one of them instead of spawning its own."""
        return self.world_size > 1

    def rendezvous_vars(self) -> dict[str, str]:
        """What torch's env:// rendezvous reads (srun exports none of these)."""
        return {"MASTER_ADDR": self.master_addr, "MASTER_PORT": str(self.master_port),
                "RANK": str(self.rank), "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": str(self.local_rank)}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def launcher_env(environ: Mapping[str, str] | None = None, hostname: str | None = None) -> LauncherEnv | None:
    """This process's rank in a torchrun or srun job, or None when no launcher started it.

    Raises LauncherEnvError when the variables name a launcher but are incomplete or
    inconsistent (RANK without WORLD_SIZE, a rank outside the world): running on as a single
    process would measure something else than what was launched.
    """
    env = os.environ if environ is None else environ
    host = hostname or env.get("SLURMD_NODENAME") or socket.gethostname()
    if any(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        return _torchrun(env, host)
    if all(k in env for k in SLURM_VARS) and env.get("SLURM_STEP_ID", env.get("SLURM_STEPID", "")) not in _BATCH_STEP_IDS:
        return _slurm(env, host)
    return None


def _torchrun(env: Mapping[str, str], host: str) -> LauncherEnv:
    missing = [k for k in TORCHRUN_VARS if not env.get(k)]
    if missing:
        raise LauncherEnvError(
            f"launcher environment incomplete: {', '.join(k for k in TORCHRUN_VARS if env.get(k))} set but "
            f"{', '.join(missing)} missing (torchrun sets all of {', '.join(TORCHRUN_VARS)}; unset them all to "
            "run without a launcher)")
    rank, world = _int(env, "RANK", 0), _int(env, "WORLD_SIZE", 1)
    local_rank = _int(env, "LOCAL_RANK", 0)
    local_world = _int(env, "LOCAL_WORLD_SIZE", 1) if env.get("LOCAL_WORLD_SIZE") else None
    node_rank = _int(env, "GROUP_RANK", 0) if env.get("GROUP_RANK") else None
    nnodes = None
    if local_world and world % local_world == 0:
        nnodes = world // local_world  # torchrun gives every node the same --nproc-per-node
    _check_rank(rank, world, local_rank, local_world)
    launcher = "torchrun" if "TORCHELASTIC_RUN_ID" in env or "GROUP_RANK" in env else "env"
    return LauncherEnv(launcher, rank, world, local_rank, local_world, node_rank, nnodes, env["MASTER_ADDR"],
                       _port(env["MASTER_PORT"], "MASTER_PORT"), host, env.get("TORCHELASTIC_RUN_ID"),
                       env.get("TORCHELASTIC_USE_AGENT_STORE") == "True")


def _slurm(env: Mapping[str, str], host: str) -> LauncherEnv:
    rank, world = _int(env, "SLURM_PROCID", 0), _int(env, "SLURM_NTASKS", 1)
    local_rank = _int(env, "SLURM_LOCALID", 0) if env.get("SLURM_LOCALID") else 0
    nodes_env = env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_NNODES")
    nnodes = _int({"n": nodes_env}, "n", 1) if nodes_env else None
    node_rank = _int(env, "SLURM_NODEID", 0) if env.get("SLURM_NODEID") else None
    local_world = tasks_on_node(env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or "",
                                node_rank)
    _check_rank(rank, world, local_rank, local_world)
    addr = env.get("MASTER_ADDR")
    if not addr:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if not nodelist:
            raise LauncherEnvError("srun environment without MASTER_ADDR nor SLURM_JOB_NODELIST: cannot find rank 0's host")
        addr = expand_hostlist(nodelist)[0]
    job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if env.get("MASTER_PORT"):
        port = _port(env["MASTER_PORT"], "MASTER_PORT")
    elif job and job.isdigit():
        port = SLURM_PORT_BASE + int(job[-4:])
    else:
        raise LauncherEnvError("srun environment without MASTER_PORT nor a numeric SLURM_JOB_ID: export MASTER_PORT")
    return LauncherEnv("slurm", rank, world, local_rank, local_world, node_rank, nnodes, addr, port, host, job)


def _int(env: Mapping[str, str], key: str, minimum: int) -> int:
    text = str(env.get(key, "")).strip()
    try:
        value = int(text)
    except ValueError:
        raise LauncherEnvError(f"{key}={text!r} is not an integer") from None
    if value < minimum:
        raise LauncherEnvError(f"{key}={value} must be at least {minimum}")
    return value


def _port(text: str, key: str) -> int:
    port = _int({key: text}, key, 1)
    if port > 65535:
        raise LauncherEnvError(f"{key}={port} is not a TCP port")
    return port


def _check_rank(rank: int, world: int, local_rank: int, local_world: int | None) -> None:
    if world < 1:
        raise LauncherEnvError(f"world size {world} must be at least 1")
    if rank >= world:
        raise LauncherEnvError(f"rank {rank} is outside a world of {world} ranks")
    if local_world is not None and local_rank >= local_world:
        raise LauncherEnvError(f"local rank {local_rank} is outside the {local_world} ranks of its node")


def tasks_on_node(spec: str, node_rank: int | None) -> int | None:
    """Slurm's tasks-per-node list ("4(x2),2" = 4, 4, 2) at `node_rank`; None when unknown."""
    counts: list[int] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part)
        if not m:
            return None
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    if not counts:
        return None
    if node_rank is None:
        return counts[0] if len(set(counts)) == 1 else None
    return counts[node_rank] if node_rank < len(counts) else None


def expand_hostlist(nodelist: str) -> list[str]:
    """Slurm's compact host list, expanded: "gpu[01-03,07],login1" -> gpu01 gpu02 gpu03 gpu07 login1.

    Zero padding is kept ("[08-10]" -> 08 09 10); several bracket groups in one name multiply
    ("r[1-2]n[1-2]" -> r1n1 r1n2 r2n1 r2n2), as `scontrol show hostnames` does.
    """
    hosts: list[str] = []
    for name in _split_outside_brackets(nodelist.strip()):
        hosts += _expand_one(name)
    if not hosts:
        raise LauncherEnvError(f"empty Slurm node list {nodelist!r}")
    return hosts


def _split_outside_brackets(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise LauncherEnvError(f"unbalanced ']' in Slurm node list {text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise LauncherEnvError(f"unbalanced '[' in Slurm node list {text!r}")
    parts.append(text[start:])
    return [p for p in (s.strip() for s in parts) if p]


def _expand_one(name: str) -> list[str]:
    m = re.search(r"\[([^\]]*)\]", name)
    if m is None:
        return [name]
    head, tail = name[:m.start()], name[m.end():]
    values: list[str] = []
    for item in m.group(1).split(","):
        lo, sep, hi = item.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise LauncherEnvError(f"bad range {item!r} in Slurm node list {name!r}")
        if not sep:
            values.append(lo)
            continue
        if int(hi) < int(lo):
            raise LauncherEnvError(f"descending range {item!r} in Slurm node list {name!r}")
        width = len(lo) if lo.startswith("0") else 0
        values += [str(v).zfill(width) for v in range(int(lo), int(hi) + 1)]
    return [host for v in values for host in _expand_one(head + v + tail)]
