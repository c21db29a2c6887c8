"""The parent side of `llm.train` across processes: torchrun as a subprocess, commands through a
TCPStore that the parent hosts.

Why a persistent job rather than one torchrun per measurement: the runner checks a case, times it
and then calls its `fn` over and over for the energy window; restarting the ranks (interpreter,
torch import, process group, model build and shard) per call would time the start-up. So setup
starts one job; check, measure and fn are commands its ranks answer (aibench/workloads/train_ranks.py).

Never hang the caller: every wait has a deadline and watches the torchrun process; a rank that
reports an error, a job that exits or a reply that does not come fails the case with
`TrainJobError` (the job is stopped: terminate, then kill), naming the rank, the command and the
tail of torchrun's output.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

import torch.distributed as dist

from aibench.core.errors import WorkloadError

START_TIMEOUT_S = 600.0  # torchrun + torch import + process group + building and sharding a model
CHECK_TIMEOUT_S = 900.0
STOP_GRACE_S = 15.0
_LOG_TAIL = 3000


class TrainJobError(WorkloadError):
    """A rank of a training job failed, died or hung; the job is gone."""


def torchrun_command(world: int, spec: dict[str, Any], store: str, key: str) -> list[str]:
    """torchrun (as `python -m torch.distributed.run`, so no PATH lookup) on one node."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
            "-m", "aibench.workloads.train_ranks", "--spec", json.dumps(spec), "--store", store, "--key", key]


def _stop(proc: subprocess.Popen[bytes], log: Any, grace_s: float, store: Any = None, key: str = "",
          state: dict[str, int] | None = None) -> None:
    """Ask the ranks to stop (a `stop` command), wait `grace_s`, then terminate and kill."""
    if store is not None and state is not None and proc.poll() is None:
        state["seq"] += 1
        with contextlib.suppress(Exception):
            store.set(f"{key}/cmd/{state['seq']}", json.dumps(["stop", None]))
    if proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    if proc.poll() is None:
        proc.terminate()  # torchrun forwards SIGTERM to its ranks
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5.0)
    with contextlib.suppress(Exception):
        log.close()
    with contextlib.suppress(OSError):
        os.unlink(log.name)


class TrainJob:
    """`world` ranks of aibench.workloads.train_ranks under torchrun, serving commands.

        with TrainJob(2, spec) as job:
            job.request("prepare", None, 600)
            replies = job.request("measure", plan_dict, 600)   # one reply per rank, by rank
    """

    def __init__(self, world: int, spec: dict[str, Any], *, start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.world = world
        self.key = f"aibench-train-{uuid.uuid4().hex[:12]}"
        # Port 0: the kernel picks a free port, read back from the store (no race with a probe).
        self.store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
        self._state = {"seq": 0}  # the command counter, shared with the finalizer's stop command
        # Held open for the job's life (torchrun writes into it), closed by close() / the finalizer.
        self._log = tempfile.NamedTemporaryFile(prefix="aibench-train-", suffix=".log", delete=False)  # noqa: SIM115
        self.log_path = Path(self._log.name)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = torchrun_command(world, spec, f"127.0.0.1:{self.store.port}", self.key)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env)
        self._finalizer = weakref.finalize(self, _stop, self.proc, self._log, 5.0, self.store, self.key, self._state)
        try:
            self.prepare_reply = self.request("prepare", None, start_timeout_s)
        except BaseException:
            self.close(grace_s=0.5)
            raise

    @property
    def alive(self) -> bool:
        return self._finalizer.alive

    def close(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop the ranks (idempotent): a `stop` command, then terminate and kill what is left."""
        if self._finalizer.detach() is None:
            return
        _stop(self.proc, self._log, grace_s, self.store, self.key, self._state)

    def __enter__(self) -> TrainJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL:]
        except OSError:
            return ""

    def request(self, cmd: str, arg: Any, timeout_s: float) -> list[Any]:
        """Send one command to every rank; their payloads, by rank."""
        if not self.alive:
            raise TrainJobError(f"{cmd}: the training job is closed")
        self._state["seq"] += 1
        seq = self._state["seq"]
        self.store.set(f"{self.key}/cmd/{seq}", json.dumps([cmd, arg]))
        keys = [f"{self.key}/reply/{seq}/{r}" for r in range(self.world)]
        try:
            return self._wait(cmd, keys, timeout_s)
        except BaseException:  # an error, a timeout, or the runner's deadline (KeyboardInterrupt)
            self.close(grace_s=0.5)
            raise

    def _wait(self, cmd: str, keys: list[str], timeout_s: float) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            done = [k for k in keys if self.store.check([k])]
            for k in done:  # the first error wins: its peers may just be blocked behind it
                reply = json.loads(self.store.get(k))
                if reply["status"] == "error":
                    rank = int(k.rsplit("/", 1)[1])
                    raise TrainJobError(f"rank {rank} of {self.world} failed during {cmd}: {reply['payload']}"
                                        f"\n{reply.get('traceback', '')}"[:4000])
            if len(done) == len(keys):
                return [json.loads(self.store.get(k))["payload"] for k in keys]
            code = self.proc.poll()
            if code is not None:
                raise TrainJobError(f"the torchrun job exited with code {code} during {cmd} before every rank "
                                    f"answered; its output ends:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                missing = [int(k.rsplit("/", 1)[1]) for k in keys if k not in done]
                raise TrainJobError(f"{cmd}: rank(s) {missing} of {self.world} did not answer within "
                                    f"{timeout_s:.0f} s; the job was stopped. Output ends:\n{self.log_tail()}")
            time.sleep(0.02)
