"""aibench as ranks of a real torchrun job (gloo on the CPU), through a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from aibench.collectives.launcher_env import LauncherEnvError, launcher_env

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                                              "MASTER_ADDR", "MASTER_PORT")}


def test_torchrun_all_reduce_reports_busbw(tmp_path: Path) -> None:
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "aibench", "run", "collective.all_reduce",
           "--device", "cpu", "--json", "--no-telemetry", "-o", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_clean_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads(proc.stdout)  # rank 0 alone prints: stdout is one JSON document
    assert len(records) == 1 and records[0]["status"] == "ok"
    assert records[0]["metrics"]["busbw_gbps"] > 0
    assert records[0]["details"]["launcher"] == "torchrun"
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    manifest = json.loads((run / "manifest.json").read_text())
    block = manifest["distributed"]
    assert block["world_size"] == 2 and block["backend"] == "gloo" and not block["partial"]
    assert [m["rank"] for m in block["ranks"]] == [0, 1] and all(m["host"] for m in block["ranks"])


def _torchrun_sweep(tmp_path: Path, fault: str, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "aibench", "run", "collective.all_reduce",
           "--device", "cpu", "-p", "sizes=8:4K:8", "--no-telemetry", "-o", str(tmp_path)]
    full = {**_clean_env(), "AIBENCH_TEST_FAULT": fault, "AIBENCH_RANK_DEAD_AFTER_S": "2", **env}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=full, cwd=tmp_path)
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    return proc, run


@pytest.mark.parametrize(("fault", "kind", "env"), [
    ("exit@512", "died", {}),  # rank 1 exits at the third size; torchrun then SIGTERMs rank 0
    ("hang@512", "hung", {"AIBENCH_RANK_TIMEOUT_S": "4"}),  # rank 1 sleeps; rank 0's collective times out
])
def test_a_rank_lost_mid_sweep_is_named_and_the_run_kept(tmp_path: Path, fault: str, kind: str,
                                                         env: dict[str, str]) -> None:
    proc, run = _torchrun_sweep(tmp_path, fault, **env)
    assert proc.returncode != 0
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert [(r["params"]["size_bytes"], r["status"]) for r in records] == [
        (8, "ok"), (64, "ok"), (512, "failed"), (4096, "failed")]
    host = socket.gethostname()
    assert f"rank 1 (local rank 1 on host {host})" in records[2]["reason"]
    assert "the job is broken" in records[3]["reason"]  # nothing new is started on a broken group
    manifest = json.loads((run / "manifest.json").read_text())
    block = manifest["distributed"]
    assert block["partial"] is True
    assert [(f["rank"], f["host"], f["kind"]) for f in block["failures"]] == [(1, host, kind)]


TWO_NODE_SUITE = """\
[suite]
name = "two-nodes"
version = "0.1"
description = "the five collectives and a memory copy across two torchrun nodes (a CPU test)"
[preview.rules]
min_time_s = 0.01
max_time_s = 0.3
warmup_s = 0.0

[[entry]]
id = "ar"
workload = "collective.all_reduce"
preview = { params = { sizes = "8,64K" } }
""" + "".join(f"""
[[entry]]
id = "{name}"
workload = "collective.{op}"
preview = {{ params = {{ sizes = "4K" }} }}
""" for name, op in (("ag", "all_gather"), ("rs", "reduce_scatter"), ("a2a", "all_to_all"), ("bc", "broadcast"))) + """
[[entry]]
id = "copy"
workload = "memory.copy"
backends = ["torch"]
"""


def test_two_torchrun_nodes_write_one_run_that_verifies(tmp_path: Path) -> None:
    """Two torchrun launches (--nnodes 2, c10d rendezvous on 127.0.0.1) are two "nodes": node 0's
    rank 0 runs the suite, node 1's rank follows, one run directory packs and verifies."""

    from aibench.collectives.launch import free_port

    suite = tmp_path / "two-nodes.toml"
    suite.write_text(TWO_NODE_SUITE, encoding="utf-8")
    out = tmp_path / "results"
    port = free_port()
    procs = [subprocess.Popen(
        [TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node), "--rdzv-backend", "c10d",
         "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "aibench-test", "-m", "aibench", "suite", str(suite),
         "--device", "cpu", "--no-telemetry", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_clean_env(), cwd=tmp_path)
        for node in (0, 1)]
    try:
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [err[-3000:] for _, err in results]
    (run,) = out.iterdir()  # one run directory, written by rank 0 alone
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" for r in records), [r["reason"] for r in records]
    collectives = [r for r in records if r["workload"].startswith("collective.")]
    assert sorted({r["workload"] for r in collectives}) == sorted(f"collective.{op}" for op in (
        "all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast"))
    assert [r["details"]["size_bytes"] for r in collectives if r["entry"].startswith("ar/")] == [8, 65536]
    assert all(r["details"]["nodes"] == 2 and r["metrics"]["busbw_gbps"] > 0 for r in collectives)
    block = json.loads((run / "manifest.json").read_text())["distributed"]
    assert (block["world_size"], block["nodes"], block["partial"]) == (2, 2, False)
    assert [m["node_rank"] for m in block["ranks"]] == [0, 1]  # RANK = GROUP_RANK x nproc + LOCAL_RANK
    assert _packed_and_verified(run, tmp_path)["valid"] is True


def test_launcher_env_detection() -> None:
    assert launcher_env({}) is None
    env = launcher_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "29500",
                        "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "0", "TORCHELASTIC_RUN_ID": "x"}, hostname="n1")
    assert env is not None and (env.launcher, env.rank, env.world_size, env.nnodes) == ("torchrun", 1, 2, 1)
    slurm = launcher_env({"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0",
                          "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "123456", "SLURM_NODEID": "1",
                          "SLURM_TASKS_PER_NODE": "2(x2)"}, hostname="gpu08")
    assert slurm is not None and (slurm.master_addr, slurm.master_port, slurm.local_world_size) == ("gpu07", 18456, 2)
    with pytest.raises(LauncherEnvError):
        launcher_env({"RANK": "0", "WORLD_SIZE": "2"})


NODE_LOAD_SUITE = """\
[suite]
name = "node-load"
version = "0.1"
description = "per-GPU cases on every rank at once, beside a collective (a CPU test)"
[preview.rules]
min_time_s = 0.01
max_time_s = 0.3
warmup_s = 0.0

[[entry]]
id = "copy"
workload = "memory.copy"
backends = ["torch"]
preview = { params = { mib = 2 } }

[[entry]]
id = "gemm"
workload = "gemm"
backends = ["torch"]
preview = { params = { dtype = "float32" } }

[[entry]]
id = "ar"
workload = "collective.all_reduce"
preview = { params = { sizes = "4K" } }
"""


def test_torchrun_suite_runs_per_gpu_cases_on_every_rank_and_names_the_slowest(tmp_path: Path) -> None:
    """`torchrun -m aibench suite`: every rank runs each per-GPU case at once; rank 0 writes one
    record per rank and an aggregate (the slowest rank's numbers, naming it); a collective stays
    one record; the run directory packs and verifies without a duplicate or coverage finding."""

    from aibench.results.runs import load_dir

    suite = tmp_path / "node-load.toml"
    suite.write_text(NODE_LOAD_SUITE, encoding="utf-8")
    out = tmp_path / "results"
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "aibench", "suite", str(suite),
           "--device", "cpu", "--no-telemetry", "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=_clean_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = out.iterdir()
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" for r in records), [r["reason"] for r in records]
    host = socket.gethostname()
    for entry in ("copy", "gemm"):
        mine = [r for r in records if r["entry"] == entry]
        per_rank, (agg,) = [r for r in mine if "rank" in r], [r for r in mine if "rank" not in r]
        assert [r["rank"] for r in per_rank] == [0, 1]
        assert [r["details"]["launched_rank"]["host"] for r in per_rank] == [host, host]
        block = agg["details"]["node_load"]
        medians = {r["rank"]: r["timing"]["median"] for r in per_rank}
        slowest = max(medians, key=lambda k: (medians[k], -k))
        assert (block["world_size"], block["slowest_rank"], block["slowest_host"]) == (2, slowest, host)
        assert agg["timing"]["median"] == medians[slowest] == block["max_s"]
        assert block["min_s"] == min(medians.values())
        assert block["spread"] == (block["max_s"] - block["min_s"]) / block["max_s"]
        # Both ranks measured at the same time: their timed windows overlap.
        starts = sorted(r["started_at"] for r in per_rank)
        assert starts[1] <= min(r["finished_at"] for r in per_rank)
    (ar,) = [r for r in records if r["workload"] == "collective.all_reduce"]
    assert "rank" not in ar and ar["metrics"]["busbw_gbps"] > 0
    loaded = load_dir(run)  # report and compare read the aggregates only
    assert sorted(r["workload"] for r in loaded.records) == ["collective.all_reduce", "gemm", "memory.copy"]
    assert [(r["entry"], r["rank"]) for r in loaded.rank_records] == [("copy", 0), ("copy", 1),
                                                                       ("gemm", 0), ("gemm", 1)]
    found = _packed_and_verified(run, tmp_path)
    assert found["valid"] is True and found["errors"] == []
    codes = {f["code"] for f in found["warnings"]}
    assert not codes & {"duplicate_record", "entry_missing", "unknown_entry"}, codes


def test_a_rank_dying_in_a_per_gpu_case_is_named_and_earlier_records_kept(tmp_path: Path) -> None:
    suite = tmp_path / "node-load.toml"
    suite.write_text(NODE_LOAD_SUITE, encoding="utf-8")
    out = tmp_path / "results"
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "aibench", "suite", str(suite),
           "--device", "cpu", "--no-telemetry", "-o", str(out)]
    env = {**_clean_env(), "AIBENCH_TEST_FAULT": "exit@gemm", "AIBENCH_RANK_DEAD_AFTER_S": "2"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path)
    assert proc.returncode != 0
    (run,) = out.iterdir()
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert [(r["entry"], r.get("rank"), r["status"]) for r in records if r["entry"] == "copy"] == [
        ("copy", 0, "ok"), ("copy", 1, "ok"), ("copy", None, "ok")]
    host = socket.gethostname()
    # Rank 0 either sees rank 1 gone while it waits for its record (the gemm aggregate fails,
    # naming it) or is stopped by torchrun first (no gemm record; the run is left incomplete).
    gemm = [r for r in records if r["entry"] == "gemm"]
    assert [(r.get("rank"), r["status"]) for r in gemm] in ([], [(0, "ok"), (None, "failed")])
    if gemm:
        assert f"rank 1 (local rank 1 on host {host}) died" in gemm[-1]["reason"]
    manifest = json.loads((run / "manifest.json").read_text())
    block = manifest["distributed"]
    assert block["partial"] is True
    assert [(f["rank"], f["host"]) for f in block["failures"]] == [(1, host)]


def _packed_and_verified(run: Path, tmp_path: Path) -> dict:
    """The run directory packed and signed with a fresh key, then `bundle verify --json`'s answer."""
    from click.testing import CliRunner

    from aibench.cli import cli

    runner = CliRunner()
    key, bundle = tmp_path / "k.key", tmp_path / "run.tar.gz"
    assert runner.invoke(cli, ["bundle", "keygen", str(key)]).exit_code == 0
    assert runner.invoke(cli, ["bundle", "pack", str(run), "-o", str(bundle), "--key", str(key)]).exit_code == 0
    verified = runner.invoke(cli, ["bundle", "verify", str(bundle), "--pubkey", f"{key}.pub", "--json"])
    assert verified.exit_code == 0, verified.output
    return json.loads(verified.output)
