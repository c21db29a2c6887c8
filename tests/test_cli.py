"""The CLI end to end: click's CliRunner for behaviour, a real subprocess for the entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aibench import __version__
from aibench.cli import cli
from aibench.measure.records import validate

FAST = ["--min-time", "0.01", "--max-time", "0.5", "--noise", "0.5", "--no-telemetry"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_list_json(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    names = {w["name"] for w in data["workloads"]}
    assert {"memory.copy", "gemm", "attention.prefill", "attention.decode", "llm.decode"} <= names
    copy = next(w for w in data["workloads"] if w["name"] == "memory.copy")
    assert copy["backends"][0]["name"] == "torch" and copy["backends"][0]["baseline"]
    assert {"gigafactory", "ci", "smoke"} <= {s["name"] for s in data["suites"]}
    assert data["load_errors"] == {}


def test_env_json(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["env", "--json"])
    assert result.exit_code == 0, result.output
    env = json.loads(result.output)
    assert env["aibench"]["version"] == __version__
    assert "python" in env and "gpus" in env


def test_run_memory_copy_json(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["run", "memory.copy", "--device", "cpu", "--json", "-p", "mib=1", *FAST])
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert [r["backend"] for r in records] == ["torch", "triton"]
    for rec in records:
        validate(rec)
        assert rec["status"] == "ok" and rec["preview"] is True
        assert rec["metrics"]["gbps"] > 0 and rec["timing"]["rel_noise"] is not None
        assert len(rec["timing"]["samples_s"]) == rec["timing"]["n"]
    assert records[1]["interpreted"] is True and "speedup" in records[1]["metrics"]


def test_run_writes_a_run_directory(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["run", "memory.triad", "--device", "cpu", "-p", "mib=1", "--backend", "torch",
                                 "--out", str(tmp_path), *FAST])
    assert result.exit_code == 0, result.output
    (run,) = list(tmp_path.iterdir())
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["complete"] and manifest["comparable"] is False
    (line,) = (run / "records.jsonl").read_text().splitlines()
    assert json.loads(line)["workload"] == "memory.triad"
    # A run without telemetry still packs into a bundle that verifies (one manifest shape).
    key, bundle = tmp_path / "k.key", tmp_path / "run.tar.gz"
    for args in (["bundle", "keygen", str(key)], ["bundle", "pack", str(run), "-o", str(bundle), "--key", str(key)]):
        assert runner.invoke(cli, args).exit_code == 0
    verified = runner.invoke(cli, ["bundle", "verify", str(bundle), "--pubkey", f"{key}.pub", "--json"])
    report = json.loads(verified.output)
    assert verified.exit_code == 0 and report["valid"] and report["errors"] == [], report["errors"]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["run", "no.such"], 2, "unknown workload 'no.such'"),
    (["run", "memory.copy", "-p", "mib=lots"], 2, "expects int"),
    (["run", "memory.copy", "-p", "nonsense"], 2, "expected key=value"),
    (["run", "memory.copy", "-p", "size=1"], 2, "has no parameter 'size'"),
    (["run", "memory.copy", "--device", "tpu"], 2, "unknown device 'tpu'"),
    (["run", "memory.copy", "--backend", "cuda"], 2, "has no backend 'cuda'"),
    (["suite", "no-such-suite"], 2, "no-such-suite"),
    # Values no backend can take are the user's mistake, said before anything runs (not failed records).
    (["run", "gemm", "-p", "m=0"], 2, "gemm needs m, n, k >= 1; got m=0"),
    (["run", "gemm", "-p", "tf32=true"], 2, "tf32 applies to dtype=float32 only, not bfloat16"),
    (["run", "gemm", "-p", "fast_accum=true", "-p", "dtype=float16"], 2, "fast_accum applies to the float8"),
    (["run", "attention.prefill", "-p", "heads=6", "-p", "kv_heads=4"], 2, "multiple of kv_heads (4)"),
    (["run", "attention.decode", "-p", "context=0"], 2, "context must be >= 1, got 0"),
    (["run", "memory.copy", "-p", "mib=0"], 2, "mib must be >= 1, got 0"),
])
def test_bad_input_is_one_line_with_exit_code(runner: CliRunner, args: list[str], code: int, message: str) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.skipif(os.path.exists("/dev/nvidia0"), reason="a GPU exists here")
def test_cuda_device_without_gpu_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["run", "memory.copy", "--device", "cuda:0"])
    assert result.exit_code == 2 and "no CUDA/ROCm GPU is visible" in result.output


def _subprocess(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aibench", *args], capture_output=True, text=True, timeout=300)


def test_subprocess_run_json_and_error() -> None:
    ok = _subprocess("run", "memory.copy", "--device", "cpu", "--json", "-p", "mib=1", "--backend", "torch", *FAST)
    assert ok.returncode == 0, ok.stderr
    (rec,) = json.loads(ok.stdout)
    validate(rec)
    bad = _subprocess("run", "memory.copy", "-p", "mib=x")
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "expects int" in bad.stderr


@pytest.mark.slow
def test_subprocess_smoke_suite_end_to_end(tmp_path: Path) -> None:
    """The quick-start path on a CPU: the smoke suite runs, in preview mode, into a run directory."""
    done = _subprocess("suite", "smoke", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "PREVIEW MODE" in done.stderr
    (run,) = list(tmp_path.iterdir())
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["comparable"] is False
    assert manifest["suite"]["name"] == "smoke" and len(manifest["suite"]["sha256"]) == 64
    records = [json.loads(x) for x in (run / "records.jsonl").read_text().splitlines()]
    ok = [r for r in records if r["status"] == "ok"]
    skipped = [r for r in records if r["status"] == "skipped"]
    assert len(ok) >= 10 and len(ok) + len(skipped) == len(records), [r["reason"] for r in records]
    assert all(r["reason"] for r in skipped)  # e.g. SDPA's flash backend on a CPU: said why
    assert str(run) in done.stdout


def test_suite_plan_lists_cases_and_runs_nothing(runner: CliRunner, tmp_path: Path) -> None:
    from aibench.suite.load import load_suite
    from aibench.suite.model import PlanContext

    out = tmp_path / "runs"
    result = runner.invoke(cli, ["suite", "gigafactory", "--plan", "--device", "cpu", "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    expected = load_suite("gigafactory").plan("preview", PlanContext())
    assert plan["mode"] == "preview" and [c["case"] for c in plan["cases"]] == [c.case_id for c in expected]
    decode = next(c for c in plan["cases"] if c["entry"] == "attention-decode-llama3-8b")
    assert decode["timer"] == {"cuda_graph": True} and decode["skip_reason"] is None
    # Machine-readable: the backends are always a list (every backend of the workload, baseline
    # first, when the entry names none) and the case's own parameters are there.
    copy = next(c for c in plan["cases"] if c["workload"] == "memory.copy")
    assert copy["backends"] == ["torch", "triton"] and isinstance(copy["params"], dict)
    assert all(isinstance(c["backends"], list) for c in plan["cases"])
    assert not out.exists()  # a plan measures nothing and writes nothing
    table = runner.invoke(cli, ["suite", "gigafactory", "--plan", "--device", "cpu"])
    assert table.exit_code == 0 and "nothing was run" in table.output and "needs 2 GPUs" in table.output


def test_preview_run_with_a_skipped_entry_packs_into_a_valid_bundle(runner: CliRunner, tmp_path: Path) -> None:
    """A whole entry skipped in preview (`preview.skip`) although it lists its backends, as the
    shipped suites' decode GEMM entries do: the bundle still verifies (it used to fail coverage)."""
    suite = tmp_path / "s.toml"
    suite.write_text(
        '[suite]\nname = "skipcheck"\nversion = "1.0.0"\ndescription = "x"\n'
        '[rules]\nmin_time_s = 0.01\nmax_time_s = 0.2\nmin_samples = 3\ntarget_rel_se = 0.5\nwarmup_s = 0.0\n'
        '[[entry]]\nid = "copy"\nworkload = "memory.copy"\nparams = { mib = 1 }\nbackends = ["torch"]\n'
        '[[entry]]\nid = "gemm-big"\nworkload = "gemm"\nparams = { m = 8192, n = 8192, k = 8192 }\n'
        'backends = ["torch", "triton"]\npreview = { skip = true }\n')
    done = runner.invoke(cli, ["suite", str(suite), "--device", "cpu", "-o", str(tmp_path / "runs"), "--no-telemetry"])
    assert done.exit_code == 0, done.output
    (run,) = list((tmp_path / "runs").iterdir())
    key, bundle = tmp_path / "k.key", tmp_path / "run.tar.gz"
    for args in (["bundle", "keygen", str(key)], ["bundle", "pack", str(run), "-o", str(bundle), "--key", str(key)]):
        assert runner.invoke(cli, args).exit_code == 0
    verified = runner.invoke(cli, ["bundle", "verify", str(bundle), "--pubkey", f"{key}.pub", "--json"])
    report = json.loads(verified.output)
    assert verified.exit_code == 0 and report["valid"], report["errors"]
    assert {w["code"] for w in report["warnings"]} >= {"preview", "record_skipped"}


def test_suite_json_without_plan_is_refused_before_anything_runs(runner: CliRunner, tmp_path: Path) -> None:
    """`aibench suite ci --json` ignored --json and ran the whole suite, printing a table."""
    result = runner.invoke(cli, ["suite", "ci", "--device", "cpu", "--json", "-o", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "--plan" in result.output, result.output
    assert not (tmp_path / "runs").exists()


def test_run_manifest_states_the_rules_it_ran_under(runner: CliRunner, tmp_path: Path) -> None:
    """`aibench run --min-time/--max-time/--noise -o DIR` wrote the preview defaults as run_rules, so
    `bundle verify` held the records to durations they were never asked for."""
    result = runner.invoke(cli, ["run", "memory.copy", "--device", "cpu", "-p", "mib=1", "--backend", "torch",
                                 "--min-time", "0.01", "--max-time", "0.03", "--noise", "0.25", "--no-telemetry",
                                 "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (run,) = list(tmp_path.iterdir())
    rules = json.loads((run / "manifest.json").read_text())["run_rules"]
    assert (rules["min_time_s"], rules["max_time_s"], rules["target_rel_se"]) == (0.01, 0.03, 0.25)


@pytest.mark.parametrize(("flag", "value"), [
    ("--noise", "0"), ("--noise", "5"), ("--noise", "nan"),   # a traceback (TimerConfig's ValueError)
    ("--min-time", "-1"), ("--min-time", "inf"), ("--max-time", "0"), ("--max-time", "nan"),  # accepted
])
def test_run_timer_options_out_of_range_are_usage_errors(runner: CliRunner, flag: str, value: str) -> None:
    result = runner.invoke(cli, ["run", "memory.copy", "--device", "cpu", "-p", "mib=1", "--no-telemetry",
                                 flag, value])
    assert result.exit_code == 2, result.output
    assert flag in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_parameter_given_twice_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["run", "memory.copy", "-p", "mib=1", "-p", "mib=2"])
    assert result.exit_code == 2 and "parameter 'mib' given twice ('1' and '2')" in result.output
