"""`aibench suite --resume`: what it refuses (another run, another device, a broken records file),
what it leaves alone (a complete run) and what it tells the user."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aibench.cli import cli
from aibench.core.errors import AibenchError, UsageError
from aibench.results.rundir import RunDir
from aibench.suite import run as suite_run
from aibench.suite.load import load_suite
from aibench.suite.session import Session

SUITE = """
[suite]
name = "resume-hunt"
version = "1"

[rules]
min_time_s = 0.01
min_samples = 3
target_rel_se = 0.5
warmup_s = 0.0
max_time_s = 0.2
energy_min_s = 0.0

[[entry]]
id = "copy"
workload = "memory.copy"
backends = ["torch"]
preview = { params = { mib = 1 } }

[[entry]]
id = "pair"
workload = "collective.all_reduce"
requires = { gpus = 2 }
"""


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "hunt.toml"
    path.write_text(SUITE)
    return path


@pytest.fixture
def finished(tmp_path: Path, suite_file: Path) -> Path:
    """A complete preview run of SUITE (two records)."""
    session = Session.open("cpu", telemetry=False)
    suite = load_suite(suite_file)
    run = suite_run.start_run(session, suite, "preview", tmp_path / "runs", None)
    suite_run.execute(session, suite, "preview")
    assert len(run.records()) == 2
    return run.path


def _resume(suite_file: Path, run: Path, *extra: str) -> object:
    return CliRunner().invoke(cli, ["suite", str(suite_file), "--device", "cpu", "--no-telemetry",
                                    "--resume", str(run), *extra])


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


@pytest.mark.parametrize("bad", ['{"id": "a", "sta', "[1]", "{}", '{"entry": "copy", "backend": "torch"}'])
def test_a_broken_record_line_before_the_last_is_a_one_line_error(finished: Path, suite_file: Path,
                                                                  bad: str) -> None:
    """Only a cut-short LAST line is a kill's trace (dropped); any other bad line stopped the resume
    with a traceback (ValueError, AttributeError, KeyError, jsonschema's ValidationError)."""
    records = finished / "records.jsonl"
    lines = records.read_text().splitlines(keepends=True)
    records.write_text(bad + "\n" + "".join(lines))
    before = (finished / "manifest.json").read_text()
    with pytest.raises(AibenchError, match=r"records\.jsonl:1: "):
        RunDir.open_existing(finished)
    result = _resume(suite_file, finished)
    assert result.exit_code == 1 and "records.jsonl:1:" in result.output, result.output
    assert isinstance(result.exception, SystemExit)  # a one-line error, not a traceback
    assert (finished / "manifest.json").read_text() == before  # refused before anything changed


def test_resuming_a_complete_run_changes_nothing(finished: Path, suite_file: Path) -> None:
    before = _manifest(finished)
    records = (finished / "records.jsonl").read_bytes()
    result = _resume(suite_file, finished)
    assert result.exit_code == 0, result.output
    assert "already complete" in result.output
    assert _manifest(finished) == before  # finished_at was rewritten to the time of the no-op
    assert (finished / "records.jsonl").read_bytes() == records


def test_resume_on_another_device_is_refused(finished: Path, suite_file: Path) -> None:
    """Records of one accelerator appended to a run whose manifest names another."""
    manifest = _manifest(finished)
    manifest["device"] = {**manifest["device"], "kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "spec": "cuda:0"}
    (finished / "manifest.json").write_text(json.dumps(manifest))
    session = Session.open("cpu", telemetry=False)
    with pytest.raises(UsageError, match=r"NVIDIA H100 80GB HBM3.*AMD|NVIDIA H100 80GB HBM3.*this device"):
        suite_run.resume_run(session, load_suite(suite_file), "preview", finished)


def test_resume_of_a_run_without_suite_says_so(tmp_path: Path, suite_file: Path) -> None:
    result = CliRunner().invoke(cli, ["run", "memory.copy", "--device", "cpu", "--no-telemetry", "-p", "mib=1",
                                      "--min-time", "0.01", "--max-time", "0.1", "-o", str(tmp_path / "one")])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "one").iterdir()
    result = _resume(suite_file, run)
    assert result.exit_code == 2 and "aibench run" in result.output and "None" not in result.output, result.output


def test_mode_mismatch_says_which_flag(finished: Path, suite_file: Path) -> None:
    manifest = _manifest(finished)
    manifest["suite"]["mode"] = "quick"
    (finished / "manifest.json").write_text(json.dumps(manifest))
    session = Session.open("cpu", telemetry=False)
    with pytest.raises(UsageError, match="--quick"):
        suite_run.resume_run(session, load_suite(suite_file), "full", finished)


def test_resume_in_another_environment_warns_on_screen(finished: Path, suite_file: Path) -> None:
    manifest = _manifest(finished)
    manifest["environment_sha256"] = "0" * 64
    (finished / "manifest.json").write_text(json.dumps(manifest))
    records = finished / "records.jsonl"
    records.write_text(records.read_text().splitlines(keepends=True)[0])  # one case left to run
    result = _resume(suite_file, finished)
    assert result.exit_code == 0, result.output
    assert "environment" in result.output and "warning" in result.output.lower(), result.output


def test_the_interrupted_message_gives_a_command_that_resumes(tmp_path: Path, suite_file: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The hint dropped --quick and --device: on a GPU, `--quick` interrupted then resumed as the hint
    said was refused as another mode; `--device cpu` on a GPU machine likewise."""
    import shlex

    calls: list[object] = []
    real = suite_run.run_case

    def interrupt_first(*args: object, **kwargs: object) -> object:
        calls.append(args[1])
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(suite_run, "run_case", interrupt_first)
    result = CliRunner().invoke(cli, ["suite", str(suite_file), "--quick", "--device", "cpu", "--no-telemetry",
                                      "-o", str(tmp_path / "runs")])
    assert result.exit_code == 1, result.output
    hint = result.output.split("finish it with: ", 1)[1].strip()
    args = shlex.split(hint)
    assert args[:2] == ["aibench", "suite"] and {"--quick", "--no-telemetry"} <= set(args)
    assert args[args.index("--device") + 1] == "cpu"
    done = CliRunner().invoke(cli, args[1:])
    assert done.exit_code == 0, done.output
    (run,) = (tmp_path / "runs").iterdir()
    assert _manifest(run)["complete"] is True
