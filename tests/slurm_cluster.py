"""A real one-node Slurm for a test, started from nothing in a temporary folder.

`start_cluster` writes a slurm.conf of its own (this host as controller and only node, free ports,
every state, spool, pid and log file under the folder), starts munged with a fresh key on its own
socket, then `slurmctld -D` and `slurmd -D` as child processes, and waits until the node is idle.
Nothing of the machine's Slurm or munge set-up is read or touched (SLURM_CONF points at ours).
A daemon that cannot run here (no root, no munge, a kernel it dislikes) raises `ClusterUnavailable`
with the line of its log that says why, so the test can skip rather than fail.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aibench.collectives.launch import free_port

DAEMONS = ("slurmctld", "slurmd", "sbatch", "srun", "scontrol", "sinfo", "munged")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class ClusterUnavailable(RuntimeError):
    """Slurm is installed but a daemon cannot run on this machine (the message says which and why)."""


@dataclass
class Cluster:
    """A running cluster: `env` is what a Slurm client command needs (SLURM_CONF among it)."""

    root: Path
    conf: Path
    node: str
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, env=self.env, timeout=timeout)

    def log(self, name: str) -> str:
        path = self.root / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.is_file() else ""


def missing_commands() -> list[str]:
    return [name for name in DAEMONS if shutil.which(name) is None]


def _node_hardware() -> str:
    """`slurmd -C`'s CPUs=... RealMemory=... for this host (what slurmd will report, so the node is not
    drained for "Low RealMemory" or a CPU count it does not have)."""
    proc = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=20)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("NodeName=")), "")
    fields = dict(re.findall(r"(\w+)=(\S+)", line))
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    if not all(k in fields for k in keys):
        return f"CPUs={os.cpu_count() or 1}"
    return " ".join(f"{k}={fields[k]}" for k in keys)


def _conf_text(root: Path, node: str, user: str, munge_socket: Path, ctld_port: int, slurmd_port: int) -> str:
    # ProctrackType/TaskPlugin without cgroups: a container or a VM without a delegated cgroup tree
    # still runs jobs; JobAcctGather off for the same reason.
    return "\n".join([
        "ClusterName=aibench-test",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        f"SlurmUser={user}",
        f"SlurmdUser={user}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket}",
        "MpiDefault=none",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "ReturnToService=2",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        "InactiveLimit=0",
        "KillWait=5",
        "MinJobAge=30",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        f"NodeName={node} NodeAddr=127.0.0.1 {_node_hardware()} State=UNKNOWN",
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _why(name: str, log: str) -> str:
    """The line of a daemon's log that says why it stopped (the last error or fatal), else its tail."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if re.search(r"\bfatal\b", ln, flags=re.I)]
    # slurmd logs errors at every start that stop nothing (the PMIx MPI plugin it cannot load).
    errors = [ln for ln in lines if re.search(r"\berror\b", ln, flags=re.I) and not re.search(r"pmix|MPI:", ln)]
    return f"{name}: {(fatal or errors or lines or ['exited without a log line'])[-1][:300]}"


def _start(cluster: Cluster, name: str, argv: list[str]) -> None:
    with (cluster.root / "log" / f"{name}.out").open("wb") as out:  # what it says before its log file opens
        cluster.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=cluster.env,
                                               start_new_session=True)  # its own group: teardown stops it all


def _check_alive(cluster: Cluster) -> None:
    for name, proc in cluster.procs.items():
        if proc.poll() is not None:
            out = (cluster.root / "log" / f"{name}.out").read_text(errors="replace")
            raise ClusterUnavailable(_why(name, cluster.log(name) + "\n" + out) + f" (exit {proc.returncode})")


def _wait_until(cluster: Cluster, what: str, ready: Callable[[], bool], deadline: float) -> None:
    while time.monotonic() < deadline:
        _check_alive(cluster)
        if ready():
            return
        time.sleep(0.3)
    state = cluster.run("sinfo", "-h", "-N", "-o", "%N %T %E").stdout.strip() if "slurmd" in cluster.procs else ""
    raise ClusterUnavailable(f"{what} not within {START_TIMEOUT_S:.0f} s" + (f" (sinfo: {state})" if state else "")
                             + "; " + "; ".join(_why(n, cluster.log(n)) for n in ("slurmctld", "slurmd")))


def _munge(cluster: Cluster, munge_dir: Path, deadline: float) -> None:
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    _start(cluster, "munged", ["munged", "--foreground", "--force", f"--socket={munge_dir / 'munge.socket'}",
                               f"--key-file={key}", f"--pid-file={munge_dir / 'munged.pid'}",
                               f"--seed-file={munge_dir / 'munged.seed'}"])
    _wait_until(cluster, "munged's socket", (munge_dir / "munge.socket").exists, deadline)


def _stop(cluster: Cluster) -> None:
    """Daemons in reverse start order: SIGTERM to each process group, then SIGKILL what outlives it."""
    for proc in reversed(list(cluster.procs.values())):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def start_cluster(root: Path) -> Iterator[Cluster]:
    """A one-node cluster under `root`, stopped (every daemon waited for) on exit."""
    for sub in ("state", "spool", "run", "log", "munge"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "munge").chmod(0o700)  # munged refuses a key or socket folder others may write
    node = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    munge_socket = root / "munge" / "munge.socket"
    ports = {free_port()}
    while len(ports) < 2:
        ports.add(free_port())
    conf.write_text(_conf_text(root, node, getpass.getuser(), munge_socket, *sorted(ports)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_CONF=str(conf))
    cluster = Cluster(root=root, conf=conf, node=node, env=env)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        _munge(cluster, root / "munge", deadline)
        _start(cluster, "slurmctld", ["slurmctld", "-D", "-f", str(conf)])
        _wait_until(cluster, "slurmctld answering `scontrol ping`",
                    lambda: "is UP" in cluster.run("scontrol", "ping").stdout, deadline)
        _start(cluster, "slurmd", ["slurmd", "-D", "-N", node, "-f", str(conf)])
        _wait_until(cluster, f"node {node} idle in sinfo",
                    lambda: cluster.run("sinfo", "-h", "-N", "-n", node, "-o", "%T").stdout.strip() == "idle",
                    deadline)
        yield cluster
    finally:
        _stop(cluster)
