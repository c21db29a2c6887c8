"""`aibench slurm`: the sbatch script that runs a suite across a Slurm allocation. Pure text.

The script (what `sbatch` runs on the allocation's first node):

    #SBATCH --nodes=N --ntasks-per-node=1 --gpus-per-node=G [--partition=P] [--time=T]
    head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    srun torchrun --nnodes=N --nproc-per-node=G --rdzv-backend=c10d --rdzv-endpoint=$head:PORT \
        --rdzv-id=$SLURM_JOB_ID -m aibench suite SUITE --out OUT/slurm-$SLURM_JOB_ID
    aibench bundle pack OUT/slurm-$SLURM_JOB_ID/<run> -o OUT/aibench-$SLURM_JOB_ID.tar.gz

One srun task per node starts one torchrun there, which starts one rank per GPU; the c10d
rendezvous store is on the head node (PyTorch's multi-node recipe for Slurm). aibench inside
sees torchrun's variables (aibench.collectives.launcher_env: torchrun wins over SLURM_*), rank 0
runs the suite and writes the one run directory, the others follow. c10d does not say which node
gets rank 0, so OUT must be a folder every node sees (a shared file system, as on most clusters):
the batch step then finds the run there and packs it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from aibench.core.errors import UsageError

DEFAULT_PORT = 29500  # torchrun's default master port
# Slurm's --time formats (sbatch(1)): M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME = re.compile(r"\d+(:\d{1,2}){0,2}|\d+-\d{1,2}(:\d{1,2}){0,2}")
_PARTITION = re.compile(r"[A-Za-z0-9_.\-]+(,[A-Za-z0-9_.\-]+)*")
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass(frozen=True)
class SlurmJob:
    """What the script asks Slurm for and runs."""

    suite: str  # a shipped suite's name or a suite file's path
    nodes: int
    gpus_per_node: int  # 0: CPU nodes (gloo), one rank per node unless procs_per_node says otherwise
    partition: str | None = None
    time: str | None = None
    out: str = "results"
    port: int = DEFAULT_PORT
    quick: bool = False
    telemetry: bool = True
    procs_per_node: int | None = None  # ranks per node; default one per GPU
    job_name: str | None = None
    account: str | None = None
    torchrun: str = "torchrun"
    aibench: str = "aibench"  # the command that packs, as the shell reads it ("python3 -m aibench")
    pack_key: str | None = None  # sign the bundle with this key (else it is packed unsigned)

    @property
    def ranks_per_node(self) -> int:
        return self.procs_per_node or self.gpus_per_node or 1

    def problems(self) -> list[str]:
        out = []
        if self.nodes < 1:
            out.append(f"--nodes must be at least 1, got {self.nodes}")
        if self.gpus_per_node < 0:
            out.append(f"--gpus-per-node must be 0 (CPU nodes) or more, got {self.gpus_per_node}")
        if self.procs_per_node is not None and self.procs_per_node < 1:
            out.append(f"--procs-per-node must be at least 1, got {self.procs_per_node}")
        if self.time is not None and not _TIME.fullmatch(self.time):
            out.append(f"--time {self.time!r}: expected a Slurm time (MINUTES, HH:MM:SS, D-HH, D-HH:MM:SS)")
        if self.partition is not None and not _PARTITION.fullmatch(self.partition):
            out.append(f"--partition {self.partition!r}: expected a partition name (letters, digits, _ . -; "
                       "a comma between several)")
        for flag, value in (("--job-name", self.job_name), ("--account", self.account)):
            if value is not None and not _NAME.fullmatch(value):
                out.append(f"{flag} {value!r}: letters, digits, _ . - only")
        if not 1 <= self.port <= 65535:
            out.append(f"--port {self.port} is not a TCP port")
        return out


def sbatch_script(job: SlurmJob) -> str:
    """The batch script's text (UsageError listing every bad field)."""
    if problems := job.problems():
        raise UsageError("; ".join(problems))
    name = job.job_name or f"aibench-{_stem(job.suite)}"
    directives = [f"--job-name={name}", f"--nodes={job.nodes}", "--ntasks-per-node=1"]
    if job.gpus_per_node:
        directives.append(f"--gpus-per-node={job.gpus_per_node}")
    if job.partition:
        directives.append(f"--partition={job.partition}")
    if job.time:
        directives.append(f"--time={job.time}")
    if job.account:
        directives.append(f"--account={job.account}")
    # Whole nodes: another job on the same GPUs or NICs would be measured too.
    directives += ["--exclusive", "--output=aibench-%j.out"]
    q = shlex.quote
    out_dir = f"{q(job.out)}/slurm-$SLURM_JOB_ID"
    suite_args = [q(job.suite), *(["--quick"] if job.quick else []), *([] if job.telemetry else ["--no-telemetry"]),
                  *([] if job.gpus_per_node else ["--device", "cpu"])]
    pack = [job.aibench, "bundle", "pack", '"$run"', "-o", f"{q(job.out)}/aibench-$SLURM_JOB_ID.tar.gz",
            *(["--key", q(job.pack_key)] if job.pack_key else [])]
    lines = [
        "#!/bin/bash",
        f"# Written by `aibench slurm`: suite {job.suite} on {job.nodes} node(s) x {job.ranks_per_node} rank(s).",
        *(f"#SBATCH {d}" for d in directives),
        "set -euo pipefail",
        "",
        "# The c10d rendezvous store lives on the head node, the allocation's first host.",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        f"rdzv_port={job.port}",
        f"mkdir -p {out_dir}",
        "",
        "# One task per node -> one torchrun per node -> one rank per GPU. aibench's rank 0 writes the",
        f"# run directory under {job.out} (a folder every node sees), the other ranks follow it.",
        "# A lost rank fails the step, but what rank 0 wrote is still packed (its manifest says partial).",
        "status=0",
        "srun --ntasks-per-node=1 --kill-on-bad-exit=1 \\",
        f"  {q(job.torchrun)} --nnodes={job.nodes} --nproc-per-node={job.ranks_per_node} \\",
        '    --rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d --rdzv-endpoint="$head_node:$rdzv_port" \\',
        f"    -m aibench suite {' '.join(suite_args)} --out {out_dir} || status=$?",
        "",
        "# The collected run directory, packed into one bundle (verify it with `aibench bundle verify`).",
        f'run=$(ls -d {out_dir}/*/ 2>/dev/null | head -n 1) || true',
        # A step that failed before rank 0 wrote anything: srun's status, not ls's, is the job's.
        f'[[ -n "$run" ]] || {{ echo "aibench: no run directory under {out_dir}" >&2; exit $((status ? status : 1)); }}',
        " ".join(pack),
        'exit "$status"',
        "",
    ]
    return "\n".join(lines)


def _stem(suite: str) -> str:
    """A job name from a suite's name or path: gigafactory, or my-suite for ./my-suite.toml."""
    base = suite.replace("\\", "/").rsplit("/", 1)[-1]
    base = base[:-5] if base.endswith(".toml") else base
    return re.sub(r"[^A-Za-z0-9_.\-]", "-", base) or "suite"


def submitted_job_id(sbatch_stdout: str) -> str | None:
    """The job id in sbatch's answer ("Submitted batch job 123456"; --parsable prints "123456[;cluster]")."""
    m = re.search(r"Submitted batch job (\d+)", sbatch_stdout) or re.fullmatch(r"\s*(\d+)(;\S+)?\s*", sbatch_stdout)
    return m.group(1) if m else None
