"""Collectives as a user meets them: bad parameters said before anything runs, and rank processes
that never outlive the run, whatever happens to it (a terminal's Ctrl-C, a killed parent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from aibench.cli import cli
from aibench.collectives.launch import RankError, RankPool
from aibench.collectives.worker import OpSpec, Plan
from aibench.core.errors import UsageError
from aibench.workloads import collectives as wl
from aibench.workloads.registry import get


@pytest.mark.parametrize(("override", "message"), [
    ({"ranks": "1"}, "ranks must be 0 (every visible GPU) or at least 2, got 1"),
    ({"ranks": "-2"}, "ranks must be 0 (every visible GPU) or at least 2, got -2"),
    ({"size_mib": "0"}, "size_mib must be >= 1, got 0"),
])
def test_parameters_no_backend_can_take_are_usage_errors(override: dict[str, str], message: str) -> None:
    for op in wl.OPS:
        with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
            get(f"collective.{op}").resolve_params(override, preview=True)


def test_bad_ranks_is_a_one_line_usage_error_not_a_failed_record() -> None:
    # README: "a bad parameter ... is a one-line error with exit code 2" (no rank is spawned).
    result = CliRunner().invoke(cli, ["run", "collective.all_reduce", "-p", "ranks=1", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "ranks must be 0 (every visible GPU) or at least 2, got 1" in result.output
    assert len(result.output.strip().splitlines()) == 1


def _gone(pid: int) -> bool:
    """Exited (a zombie awaiting its reaper counts: it runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if not _gone(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in pids if not _gone(p)]


def test_a_terminal_ctrl_c_is_left_to_the_parent() -> None:
    """Ctrl-C reaches every process of the foreground group: the ranks must not die of it (each
    printed a KeyboardInterrupt traceback); the parent stops them."""
    with RankPool(2, "cpu", fault="") as pool:
        pool.prepare(OpSpec("broadcast", 4096, "float32"))
        os.kill(pool._procs[0].pid, signal.SIGINT)
        time.sleep(0.3)
        assert all(c["passed"] for c in pool.check())
    assert not pool.alive


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_ranks_do_not_outlive_a_killed_parent() -> None:
    """kill -9 of aibench while the ranks are inside a collective (one of them hung): the ranks
    go too, within seconds, instead of waiting out the group's 10-minute timeout (or forever)."""
    script = (
        "from aibench.collectives.launch import RankPool\n"
        "from aibench.collectives.worker import OpSpec, Plan\n"
        "pool = RankPool(2, 'cpu', fault='hang')\n"
        "pool.prepare(OpSpec('all_reduce', 4096, 'float32'))\n"
        "print(' '.join(str(p.pid) for p in pool._procs), flush=True)\n"
        "pool.request('measure', Plan(0.0, 3, 0.01, 0.1), 3600.0)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              stderr=subprocess.DEVNULL)
    ranks: list[int] = []
    try:
        assert parent.stdout is not None
        ranks = [int(p) for p in parent.stdout.readline().split()]
        assert len(ranks) == 2, "the parent did not start its pool"
        time.sleep(0.5)  # rank 1 asleep in the hang, rank 0 blocked in the all_reduce waiting for it
        parent.kill()
        parent.wait(timeout=10)
        left = _wait_gone(ranks, timeout_s=10.0)
        assert not left, f"ranks {left} outlived their killed parent"
    finally:
        parent.kill()
        for pid in ranks:  # never leave our own orphans behind, even when the test fails
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_hung_rank_fails_the_pool_and_is_stopped() -> None:
    pool = RankPool(2, "cpu", fault="hang")
    pool.prepare(OpSpec("all_gather", 4096, "float32"))
    with pytest.raises(RankError, match=r"measure: rank\(s\) \[0, 1\] of 2 did not answer within 1 s"):
        pool.request("measure", Plan(0.0, 3, 0.01, 0.1), 1.0)
    assert not pool.alive
    assert not [p for p in pool._procs if p.is_alive()]
