"""Suite runs: run directory contents, failures recorded, interruption and resume without loss."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aibench.measure.records import validate
from aibench.results.rundir import RunDir

SUITE = """
[suite]
name = "resume-test"
version = "1"
description = "six copies, slow enough to be interrupted"

[rules]
min_time_s = 0.25
min_samples = 3
target_rel_se = 0.001
warmup_s = 0.0
max_time_s = 0.3
energy_min_s = 0.0

[[entry]]
id = "copy"
workload = "memory.copy"
backends = ["torch"]
preview = { params = { mib = 1 }, sweep = { mib = [1, 2, 3, 4, 5, 6] } }

[[entry]]
id = "later"
workload = "collective.all_reduce"
requires = { gpus = 2 }
"""


def _aibench(*args: str, **kw: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "aibench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _run_dir(out: Path) -> Path:
    dirs = [p for p in out.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    suite = tmp_path / "resume.toml"
    suite.write_text(SUITE)
    out = tmp_path / "runs"
    proc = _aibench("suite", str(suite), "--device", "cpu", "--out", str(out), "--no-telemetry")
    deadline = time.monotonic() + 120
    records = None
    while time.monotonic() < deadline:
        if out.exists() and any(out.iterdir()):
            records = _run_dir(out) / "records.jsonl"
            if records.exists() and len(records.read_text().splitlines()) >= 2:
                break
        if proc.poll() is not None:
            pytest.fail(f"suite ended before it could be killed: {proc.communicate()}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert records is not None
    run = _run_dir(out)
    before = _lines(records)
    assert 2 <= len(before) < 7
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["finished_at"] is None

    done = subprocess.run([sys.executable, "-m", "aibench", "suite", str(suite), "--device", "cpu",
                           "--resume", str(run), "--no-telemetry"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    after = _lines(records)
    keys = [(r["entry"], r["backend"]) for r in after]
    assert len(keys) == len(set(keys)) == 7  # six copies + one skipped entry, none twice
    assert after[: len(before)] == before  # what was finished before the kill is kept as it was
    assert {r["params"]["mib"] for r in after if r["workload"] == "memory.copy"} == {1, 2, 3, 4, 5, 6}
    skipped = [r for r in after if r["entry"] == "later"]
    assert skipped[0]["status"] == "skipped" and "needs 2 GPUs" in skipped[0]["reason"]
    for r in after:
        validate(r)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["comparable"] is False


def test_truncated_record_line_is_dropped_on_resume(tmp_path: Path) -> None:
    from aibench.measure.records import Record

    run = RunDir.create(tmp_path, "x", {"comparable": False})
    cpu = {"spec": "cpu", "kind": "cpu", "name": "cpu", "index": None}
    kept = json.dumps(Record(id="a", workload="w", backend="b", params={}, device=cpu, status="skipped",
                             reason="r").to_dict())
    with open(run.records_path, "w") as f:
        f.write(kept + '\n{"id": "b", "sta')  # killed mid-write
    reopened = RunDir.open_existing(run.path)
    assert [r["id"] for r in reopened.records()] == ["a"]
    assert run.records_path.read_text() == kept + "\n"


def test_open_existing_rejects_a_non_run(tmp_path: Path) -> None:
    from aibench.core.errors import AibenchError

    with pytest.raises(AibenchError, match="not a run directory"):
        RunDir.open_existing(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(AibenchError, match="not valid JSON"):
        RunDir.open_existing(tmp_path)


def test_entry_timer_overrides_reach_the_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry's `timer` table changes the timer of its own cases only, and the manifest says so."""
    from aibench.suite import run as suite_run
    from aibench.suite.load import load_suite
    from aibench.suite.session import Session

    path = tmp_path / "graphed.toml"
    path.write_text(SUITE.split("[[entry]]")[0] + """
[[entry]]
id = "graphed"
workload = "memory.copy"
backends = ["torch"]
timer = { cuda_graph = true }
preview = { params = { mib = 1 } }

[[entry]]
id = "plain"
workload = "memory.copy"
backends = ["torch"]
preview = { params = { mib = 1 } }
""")
    seen: dict[str, tuple[bool, bool]] = {}
    real = suite_run.run_case

    def spy(*args: object, **kwargs: object) -> object:
        options = args[4]
        seen[str(kwargs["entry"])] = (options.timer.cuda_graph, options.timer.flush_l2)  # type: ignore[attr-defined]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(suite_run, "run_case", spy)
    session = Session.open("cpu", telemetry=False)
    suite = load_suite(path)
    run = suite_run.start_run(session, suite, "preview", tmp_path / "runs", None)
    suite_run.execute(session, suite, "preview")
    assert seen == {"graphed": (True, True), "plain": (False, True)}
    entries = {e["id"]: e for e in run.manifest["suite"]["entries"]}
    assert entries["graphed"]["timer"] == {"cuda_graph": True} and entries["plain"]["timer"] == {}
    assert [r["status"] for r in run.records()] == ["ok", "ok"]


def test_ctrl_c_mid_case_counts_every_kept_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted between two backends of one case: the baseline's record is kept, and the message
    counts it (it used to count finished cases' records only, so it said 0 here)."""
    from click.testing import CliRunner

    from aibench.cli import cli
    from aibench.suite import run as suite_run

    path = tmp_path / "two.toml"
    path.write_text(SUITE.split("[[entry]]")[0] + """
[[entry]]
id = "copy"
workload = "memory.copy"
backends = ["torch", "triton"]
preview = { params = { mib = 1 } }
""")
    real, calls = suite_run.run_case, []

    def interrupt_second(*args: object, **kwargs: object) -> object:
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(suite_run, "run_case", interrupt_second)
    result = CliRunner().invoke(cli, ["suite", str(path), "--device", "cpu", "-o", str(tmp_path / "runs"),
                                      "--no-telemetry"])
    assert result.exit_code == 1 and "interrupted: 1 record(s) kept" in result.output, result.output
    run = _run_dir(tmp_path / "runs")
    assert [r["backend"] for r in _lines(run / "records.jsonl")] == ["torch"]
    assert f"--resume {run}" in result.output
