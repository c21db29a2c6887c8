"""`aibench slurm`: write (and with --submit, submit) the sbatch script that runs a suite on N nodes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click

from aibench.cli.common import CliUsageError, console, err_console


@click.command("slurm")
@click.argument("suite_ref", metavar="SUITE")
@click.option("--nodes", type=int, required=True, help="Nodes to allocate (one torchrun per node).")
@click.option("--gpus-per-node", type=int, required=True, help="GPUs per node, one rank each; 0 for CPU nodes (gloo).")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--time", "time_limit", default=None, help="Slurm time limit (MINUTES, HH:MM:SS, D-HH:MM:SS).")
@click.option("--account", default=None, help="Slurm account to charge.")
@click.option("--job-name", default=None, help="Job name (default aibench-SUITE).")
@click.option("--procs-per-node", type=int, default=None, help="Ranks per node (default: one per GPU, 1 on CPU nodes).")
@click.option("--port", type=int, default=29500, show_default=True, help="c10d rendezvous port on the head node.")
@click.option("-o", "--out", default="results", show_default=True,
              help="Results folder as the nodes see it (a shared file system: c10d does not say which node is rank 0).")
@click.option("--quick", is_flag=True, help="Run the suite's quick mode.")
@click.option("--telemetry/--no-telemetry", default=True, show_default=True, help="Passed on to `aibench suite`.")
@click.option("--key", "pack_key", default=None, help="Sign the packed bundle with this private key (path on the nodes).")
@click.option("--script", "script_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the script (default aibench-SUITE.sbatch here).")
@click.option("--submit", is_flag=True, help="Submit it with sbatch once written.")
def slurm_command(suite_ref: str, nodes: int, gpus_per_node: int, partition: str | None, time_limit: str | None,
                  account: str | None, job_name: str | None, procs_per_node: int | None, port: int, out: str,
                  quick: bool, telemetry: bool, pack_key: str | None, script_path: Path | None, submit: bool) -> None:
    """Write an sbatch script that runs SUITE across a Slurm allocation: srun starts one torchrun per
    node (c10d rendezvous on the head node), aibench's rank 0 writes one run directory, packed into
    one bundle at the end.

    \b
    Examples:
      aibench slurm --nodes 4 --gpus-per-node 8 --partition gpu --time 02:00:00 gigafactory
      aibench slurm --nodes 2 --gpus-per-node 8 --submit my-suite.toml
    """
    from aibench.core.errors import UsageError
    from aibench.suite.load import load_suite
    from aibench.suite.sbatch import SlurmJob, sbatch_script, submitted_job_id

    suite = load_suite(suite_ref)  # a typo fails here, not hours later in the queue
    job = SlurmJob(suite=suite_ref, nodes=nodes, gpus_per_node=gpus_per_node, partition=partition, time=time_limit,
                   out=out, port=port, quick=quick, telemetry=telemetry, procs_per_node=procs_per_node,
                   job_name=job_name, account=account, pack_key=pack_key)
    try:
        text = sbatch_script(job)
    except UsageError as exc:
        raise CliUsageError(str(exc)) from None
    path = script_path or Path(f"aibench-{suite.name}.sbatch")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None
    path.chmod(0o755)
    console.print(f"wrote {path}: suite {suite.name} {suite.version} on {nodes} node(s) x "
                  f"{job.ranks_per_node} rank(s)", soft_wrap=True)
    if not submit:
        err_console.print(f"submit it with: sbatch {path}", soft_wrap=True)
        return
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise click.ClickException(f"--submit: sbatch is not on PATH (no Slurm client here); {path} is written")
    proc = subprocess.run([sbatch, str(path)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise click.ClickException(f"sbatch refused {path} (exit {proc.returncode}): "
                                   f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    job_id = submitted_job_id(proc.stdout)
    console.print(f"submitted batch job {job_id or '?'}" + ("" if job_id else f" ({proc.stdout.strip()})"))
