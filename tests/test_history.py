"""`aibench history`: runs stored once in SQLite, trends read back, the step named by run and commit."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_helpers import jsonl, manifest, record, run_files
from click.testing import CliRunner

from aibench.cli import cli
from aibench.core import stats
from aibench.results.history import SCHEMA_VERSION, add_run, open_history, trends
from aibench.results.runs import load_dir

STEP_AT = 8  # the first run of the slower level


def _run(root: Path, i: int, median: float, device: str = "NVIDIA H100") -> Path:
    """Run number i: created on day i+1 of January 2026 at commit c<i>, its gemm timed around `median`."""
    samples = [median * (1 + 0.001 * ((j * 7) % 11 - 5)) for j in range(20)]
    timing = {"method": "cuda_event", "samples_s": samples, "n": 20, "median": stats.median(samples),
              "converged": True, "stop_reason": "converged", "total_s": sum(samples), "ci95_median": list(stats.bootstrap_ci_median(samples))}
    env = {"aibench": {"version": "x", "git_commit": f"c{i:039d}", "git_dirty": False, "unavailable": {}}}
    man = manifest(run_id=f"run-{i:02d}", created_at=f"2026-01-{i + 1:02d}T00:00:00.000+00:00", environment=env,
                   device={"name": device})
    records = [record(timing=timing, metrics={}, work={}),
               record(entry="copy", workload="memory.copy", id="memory.copy[]/torch", status="skipped",
                      reason="not here", timing=None, metrics={})]
    path = root / f"run-{i:02d}-{device.split()[-1]}"
    for rel, data in run_files(man, records).items():
        if rel == "records.jsonl":
            data = jsonl(records)
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    return path


@pytest.fixture()
def runs(tmp_path: Path) -> list[Path]:
    return [_run(tmp_path / "runs", i, 1e-3 * (1.2 if i >= STEP_AT else 1.0)) for i in range(16)]


def test_add_is_idempotent_and_versioned(tmp_path: Path, runs: list[Path]) -> None:
    db = tmp_path / "h.sqlite"
    with open_history(db) as conn:
        first = add_run(conn, load_dir(runs[0]))
        again = add_run(conn, load_dir(runs[0]))
    assert (first.added, first.measurements, first.skipped) == (True, 1, 1)
    assert (again.added, again.measurements) == (False, 0)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    row = conn.execute("SELECT key, median, n, ci_low, samples, git_commit, device "
                       "FROM measurements JOIN runs USING (run_id)").fetchone()
    conn.close()
    assert row[0] == "gemm-small::gemm[m=64]/torch"
    assert row[1] == pytest.approx(1e-3) and row[2] == 20 and row[3] == stats.bootstrap_ci_median(json.loads(row[4]))[0]
    assert len(json.loads(row[4])) == 20
    assert row[5] == "c" + "0" * 39 and row[6] == "NVIDIA H100"


def test_a_newer_or_foreign_database_is_refused(tmp_path: Path) -> None:
    from aibench.core.errors import AibenchError

    newer = tmp_path / "newer.sqlite"
    sqlite3.connect(newer).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(AibenchError, match="newer"), open_history(newer):
        pass
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE t (x)")
    with pytest.raises(AibenchError, match="not an aibench history"), open_history(foreign):
        pass


def test_trends_name_the_run_and_commit_of_the_step(tmp_path: Path, runs: list[Path]) -> None:
    with open_history(tmp_path / "h.sqlite") as conn:
        for path in reversed(runs):  # added out of order: trends follow the runs' creation time
            add_run(conn, load_dir(path))
        (trend,) = trends(conn)
        assert [p.run_id for p in trend.points] == [f"run-{i:02d}" for i in range(16)]
        (step,) = trend.steps
        assert step.run_id == f"run-{STEP_AT:02d}" and step.git_commit == f"c{STEP_AT:039d}"
        assert step.relative == pytest.approx(0.2, rel=1e-6)
        late = trends(conn, since="2026-01-13")
        assert [p.run_id for p in late[0].points] == ["run-12", "run-13", "run-14", "run-15"]
        assert late[0].steps == []
        assert trends(conn, workload="memory.copy") == []


def test_each_device_is_its_own_series(tmp_path: Path) -> None:
    with open_history(tmp_path / "h.sqlite") as conn:
        for i in range(10):  # alternating GPUs, each steady: two flat series, no step between them
            device = "NVIDIA H200" if i % 2 else "NVIDIA H100"
            add_run(conn, load_dir(_run(tmp_path, i, 1e-3 * (0.7 if i % 2 else 1.0), device)))
        found = trends(conn)
    assert [(t.device, len(t.points), t.steps) for t in found] == [("NVIDIA H100", 5, []), ("NVIDIA H200", 5, [])]


def test_cli_add_show_json_since_and_plot(tmp_path: Path, runs: list[Path]) -> None:
    db = tmp_path / "h.sqlite"
    runner = CliRunner()
    result = runner.invoke(cli, ["history", "add", *map(str, runs), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "run-00: added 1 measurement(s) (1 without timing samples)" in result.output
    result = runner.invoke(cli, ["history", "add", str(runs[3]), "--db", str(db)])
    assert "run-03: already in the history, unchanged" in result.output
    result = runner.invoke(cli, ["history", "show", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "+20.0% at run-08" in result.output and "16" in result.output
    result = runner.invoke(cli, ["history", "show", "--db", str(db), "--json", "--since", "2026-01-05"])
    data = json.loads(result.output)
    (trend,) = data["trends"]
    assert trend["runs"] == 12 and trend["first"] == pytest.approx(1e-3) and trend["last"] == pytest.approx(1.2e-3)
    assert [s["run_id"] for s in trend["steps"]] == ["run-08"]
    result = runner.invoke(cli, ["history", "show", "--db", str(db), "--since", "January"])
    assert result.exit_code == 2 and "not an ISO date" in result.output
    result = runner.invoke(cli, ["history", "show", "--db", str(tmp_path / "none.sqlite")])
    assert result.exit_code == 2 and "no history yet" in result.output


def test_cli_plot_writes_a_png(tmp_path: Path, runs: list[Path]) -> None:
    pytest.importorskip("matplotlib")
    db, png = tmp_path / "h.sqlite", tmp_path / "trend.png"
    assert CliRunner().invoke(cli, ["history", "add", *map(str, runs[:6]), "--db", str(db)]).exit_code == 0
    result = CliRunner().invoke(cli, ["history", "show", "--db", str(db), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_subprocess_add_and_show(tmp_path: Path, runs: list[Path]) -> None:
    db = tmp_path / "h.sqlite"

    def aibench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "aibench", "history", *args, "--db", str(db)],
                              capture_output=True, text=True, timeout=120)

    added = aibench("add", str(runs[0]), str(runs[1]), "--commit", "abc123")
    assert added.returncode == 0, added.stderr
    shown = aibench("show", "--json")
    assert shown.returncode == 0, shown.stderr
    points = json.loads(shown.stdout)["trends"][0]["points"]
    assert [p["git_commit"] for p in points] == ["abc123", "abc123"]
