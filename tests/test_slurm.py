"""`aibench slurm`: the sbatch script as text, run by bash against a stand-in srun (two CPU "nodes"
on this machine), and under a real Slurm where one is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aibench.cli import cli
from aibench.collectives.launch import free_port
from aibench.core.errors import UsageError
from aibench.suite.sbatch import SlurmJob, sbatch_script, submitted_job_id

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def _directives(text: str) -> list[str]:
    return re.findall(r"^#SBATCH (\S+)$", text, flags=re.M)


def test_the_script_asks_for_what_was_given() -> None:
    text = sbatch_script(SlurmJob("gigafactory", nodes=4, gpus_per_node=8, partition="gpu", time="02:00:00"))
    assert _directives(text) == ["--job-name=aibench-gigafactory", "--nodes=4", "--ntasks-per-node=1",
                                 "--gpus-per-node=8", "--partition=gpu", "--time=02:00:00", "--exclusive",
                                 "--output=aibench-%j.out"]
    assert 'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in text
    assert "srun --ntasks-per-node=1" in text and "torchrun --nnodes=4 --nproc-per-node=8" in text
    assert '--rdzv-backend=c10d --rdzv-endpoint="$head_node:$rdzv_port"' in text and "rdzv_port=29500" in text
    assert "-m aibench suite gigafactory --out results/slurm-$SLURM_JOB_ID" in text
    assert "aibench bundle pack" in text and "--key" not in text
    bare = sbatch_script(SlurmJob("./my suite.toml", nodes=1, gpus_per_node=0, quick=True, telemetry=False,
                                  pack_key="/keys/v.key"))
    assert not [d for d in _directives(bare) if d.startswith(("--partition", "--time", "--gpus"))]
    assert "--job-name=aibench-my-suite" in bare and "--nproc-per-node=1" in bare
    assert "suite './my suite.toml' --quick --no-telemetry --device cpu" in bare and "--key /keys/v.key" in bare
    for script in (text, bare):
        subprocess.run(["bash", "-n"], input=script, text=True, check=True, timeout=10)


def test_bad_requests_are_named_all_at_once() -> None:
    with pytest.raises(UsageError) as info:
        sbatch_script(SlurmJob("s", nodes=0, gpus_per_node=-1, time="1:2:3:4", partition="a b", port=70000))
    message = str(info.value)
    for part in ("--nodes", "--gpus-per-node", "--time '1:2:3:4'", "--partition 'a b'", "--port 70000"):
        assert part in message
    for good in ("30", "1:30", "02:00:00", "1-12", "1-12:30", "2-00:00:00"):
        assert "--time" not in "; ".join(SlurmJob("s", 1, 1, time=good).problems())


def test_sbatch_answers() -> None:
    assert submitted_job_id("Submitted batch job 4242\n") == "4242"
    assert submitted_job_id("4242;cluster\n") == "4242"
    assert submitted_job_id("sbatch: error: Batch job submission failed") is None


def test_cli_writes_the_script_and_refuses_submit_without_sbatch(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    script = tmp_path / "job.sbatch"
    result = runner.invoke(cli, ["slurm", "--nodes", "2", "--gpus-per-node", "8", "--script", str(script), "ci"])
    assert result.exit_code == 0, result.output
    assert "--nodes=2" in script.read_text() and os.access(script, os.X_OK)
    assert runner.invoke(cli, ["slurm", "--nodes", "2", "--gpus-per-node", "8", "--time", "soon", "ci"]).exit_code == 2
    assert runner.invoke(cli, ["slurm", "--nodes", "2", "--gpus-per-node", "8", "no-such-suite"]).exit_code == 2
    monkeypatch.setattr(shutil, "which", lambda name: None)
    refused = runner.invoke(cli, ["slurm", "--nodes", "1", "--gpus-per-node", "1", "--script", str(script),
                                  "--submit", "ci"])
    assert refused.exit_code == 1 and "sbatch is not on PATH" in refused.output


# A stand-in for srun: one task per "node" (SLURM_NNODES of them, all on this machine), each with
# its SLURM_NODEID and SLURM_PROCID, as `srun --ntasks-per-node=1` starts them.
FAKE_SRUN = """\
#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((n = 0; n < SLURM_NNODES; n++)); do
  SLURM_NODEID=$n SLURM_PROCID=$n SLURM_LOCALID=0 SLURM_NTASKS=$SLURM_NNODES SLURM_STEP_ID=0 "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""
FAKE_SCONTROL = """\
#!/bin/bash
[[ "$1 $2" == "show hostnames" ]] && echo 127.0.0.1
"""
SUITE = """\
[suite]
name = "slurm-test"
version = "0.1"
[preview.rules]
min_time_s = 0.01
max_time_s = 0.3
warmup_s = 0.0
[[entry]]
id = "ar"
workload = "collective.all_reduce"
preview = { params = { sizes = "64,4K" } }
"""


def test_the_script_runs_two_nodes_through_a_stand_in_srun(tmp_path: Path) -> None:
    """bash runs the written script; srun and scontrol are stand-ins, torchrun and aibench are real:
    two torchrun "nodes" rendezvous on the head node, one run directory, packed into a bundle."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "s.toml").write_text(SUITE)
    script = sbatch_script(SlurmJob("s.toml", nodes=2, gpus_per_node=0, port=free_port(), telemetry=False,
                                    torchrun=str(VENV_BIN / "torchrun"),
                                    aibench=f"{sys.executable} -m aibench"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                                              "MASTER_ADDR", "MASTER_PORT")}
    env.update(PATH=f"{bin_dir}:{env.get('PATH', '')}", PYTHONPATH=f"{REPO}:{env.get('PYTHONPATH', '')}",
               SLURM_JOB_ID="777", SLURM_NNODES="2", SLURM_JOB_NODELIST="localhost")
    proc = subprocess.run(["bash", "-s"], input=script, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "results" / "slurm-777").iterdir()
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert [(r["details"]["size_bytes"], r["status"]) for r in records] == [(64, "ok"), (4096, "ok")]
    block = json.loads((run / "manifest.json").read_text())["distributed"]
    assert (block["launcher"], block["world_size"], block["nodes"]) == ("torchrun", 2, 2)
    assert (tmp_path / "results" / "aibench-777.tar.gz").is_file()


@pytest.mark.skipif(shutil.which("slurmctld") is None or shutil.which("sbatch") is None,
                    reason="no Slurm here (slurmctld/sbatch not on PATH: Debian's slurm-wlm is not installed); "
                           "the script is tested as text and through a stand-in srun above")
def test_under_a_real_slurm(tmp_path: Path) -> None:
    """Where Slurm runs (a controller answers `scontrol ping`), submit a one-node CPU job and wait."""
    if subprocess.run(["scontrol", "ping"], capture_output=True, timeout=20).returncode != 0:
        pytest.skip("slurmctld is installed but no controller answers `scontrol ping`")
    (tmp_path / "s.toml").write_text(SUITE)
    script = tmp_path / "job.sbatch"
    result = CliRunner().invoke(cli, ["slurm", "--nodes", "1", "--gpus-per-node", "0", "--procs-per-node", "2",
                                      "--time", "10", "--no-telemetry", "--script", str(script),
                                      "-o", str(tmp_path / "results"), str(tmp_path / "s.toml")])
    assert result.exit_code == 0, result.output
    proc = subprocess.run(["sbatch", "--wait", str(script)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    job = submitted_job_id(proc.stdout)
    assert job and (tmp_path / "results" / f"aibench-{job}.tar.gz").is_file()
