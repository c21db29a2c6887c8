"""`aibench slurm`: the sbatch script as text, run by bash against a stand-in srun (two CPU "nodes"
on this machine), and submitted to a real one-node Slurm that the test starts (slurm_cluster.py)
where Slurm is installed."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from slurm_cluster import Cluster, ClusterUnavailable, missing_commands, start_cluster

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


def test_a_step_that_wrote_nothing_fails_the_job_with_its_own_status(tmp_path: Path) -> None:
    """srun fails before rank 0 writes a run directory: nothing is packed and the job exits with srun's
    status (not that of the `ls` looking for the run), saying why."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", "#!/bin/bash\nexit 3\n"), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    script = sbatch_script(SlurmJob("s.toml", nodes=1, gpus_per_node=0, aibench="false"))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "SLURM_JOB_ID": "9",
           "SLURM_JOB_NODELIST": "localhost"}
    proc = subprocess.run(["bash", "-s"], input=script, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=30)
    assert proc.returncode == 3 and proc.stderr.strip() == "aibench: no run directory under results/slurm-9"


@pytest.fixture
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A one-node Slurm started here for the test (munged, slurmctld, slurmd), stopped after it."""
    if missing := missing_commands():
        pytest.skip(f"no Slurm here ({', '.join(missing)} not on PATH: install Debian's slurmctld slurmd "
                    "slurm-client munge); the script is tested as text and through a stand-in srun above")
    with contextlib.ExitStack() as stack:
        try:
            # A short root: munged's socket path must fit a sockaddr_un (108 bytes).
            cluster = stack.enter_context(start_cluster(tmp_path_factory.mktemp("slurm")))
        except ClusterUnavailable as exc:
            pytest.skip(f"Slurm is installed but cannot run here: {exc}")
        yield cluster


def test_under_a_real_slurm(slurm: Cluster, tmp_path: Path) -> None:
    """The script `aibench slurm` writes, submitted with `sbatch --wait` to a real slurmctld: srun and
    scontrol are Slurm's own, two gloo ranks on the one node, one run directory, a signed bundle that
    verifies."""
    (tmp_path / "s.toml").write_text(SUITE)
    runner = CliRunner()
    key, script = tmp_path / "k.key", tmp_path / "job.sbatch"
    assert runner.invoke(cli, ["bundle", "keygen", str(key)]).exit_code == 0
    result = runner.invoke(cli, ["slurm", "--nodes", "1", "--gpus-per-node", "0", "--procs-per-node", "2",
                                 # A free rendezvous port: 29500 may be another job's on a shared machine.
                                 "--time", "10", "--no-telemetry", "--port", str(free_port()), "--key", str(key),
                                 "--script", str(script), "-o", str(tmp_path / "results"),
                                 str(tmp_path / "s.toml")])
    assert result.exit_code == 0, result.output
    env = {k: v for k, v in slurm.env.items()
           if not k.startswith("TORCHELASTIC_") and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                               "MASTER_PORT")}
    # The script calls `torchrun` and `aibench` by name, as on a cluster where they are installed.
    env.update(PATH=f"{VENV_BIN}:{env.get('PATH', '')}", PYTHONPATH=f"{REPO}:{env.get('PYTHONPATH', '')}")
    proc = subprocess.run(["sbatch", "--wait", str(script)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=150, env=env)
    job = submitted_job_id(proc.stdout)
    log = tmp_path / f"aibench-{job}.out"  # the script's --output, in the folder sbatch ran in
    output = log.read_text() if job and log.is_file() else "(none)"
    assert proc.returncode == 0 and job, f"{proc.stdout}{proc.stderr}\n--- job output ---\n{output[-4000:]}"
    shown = slurm.run("scontrol", "show", "job", job).stdout
    assert "JobState=COMPLETED" in shown and "ExitCode=0:0" in shown, shown
    (run,) = (tmp_path / "results" / f"slurm-{job}").iterdir()
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert [(r["details"]["size_bytes"], r["status"]) for r in records] == [(64, "ok"), (4096, "ok")]
    block = json.loads((run / "manifest.json").read_text())["distributed"]
    assert (block["launcher"], block["world_size"], block["nodes"]) == ("torchrun", 2, 1)
    # torchrun's rendezvous id is the Slurm job's; both ranks ran on the one node slurmd started.
    assert block["job_id"] == job and [r["host"] for r in block["ranks"]] == [slurm.node] * 2
    bundle = tmp_path / "results" / f"aibench-{job}.tar.gz"
    verified = runner.invoke(cli, ["bundle", "verify", str(bundle), "--pubkey", f"{key}.pub", "--json"])
    report = json.loads(verified.output)
    assert verified.exit_code == 0 and report["valid"] and report["errors"] == [], verified.output
