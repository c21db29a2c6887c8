"""Ctrl-C during a suite: it stops the suite even when Python swallows the KeyboardInterrupt, and
a case's own deadline (the same interrupt, raised by a watchdog) is not taken for one."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from aibench.cli import cli
from aibench.measure.case import Case
from aibench.suite import run as suite_run
from aibench.workloads.registry import REGISTRY, load_builtin, workload

HEAD = """
[suite]
name = "interrupt-hunt"
version = "1"

[rules]
min_time_s = 0.01
min_samples = 3
target_rel_se = 0.5
warmup_s = 0.0
max_time_s = 0.1
energy_min_s = 0.0
case_timeout_s = 0.5
"""

pytestmark = pytest.mark.skipif(signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
                                reason="SIGINT is not Python's default handler here")


@pytest.fixture
def toys() -> Iterator[None]:
    load_builtin()
    quick, hang = workload("test.quick", "returns at once", []), workload("test.hang2", "hangs in setup", [])
    x = torch.ones(4)

    @quick.backend("ref", baseline=True)
    def _quick(p: dict, d: torch.device) -> Case:
        return Case(fn=lambda: x + 1)

    @hang.backend("ref", baseline=True)
    def _hang(p: dict, d: torch.device) -> Case:
        while True:  # pure Python: the watchdog's interrupt lands between bytecodes
            time.sleep(0.01)

    yield
    del REGISTRY["test.quick"], REGISTRY["test.hang2"]


def _suite(tmp_path: Path, *workloads: str) -> Path:
    body = "".join(f'\n[[entry]]\nid = "e{i}"\nworkload = "{w}"\n' for i, w in enumerate(workloads))
    path = tmp_path / "s.toml"
    path.write_text(HEAD + body)
    return path


def _invoke(suite: Path, out: Path) -> tuple[object, Path, list[dict]]:
    result = CliRunner().invoke(cli, ["suite", str(suite), "--device", "cpu", "--no-telemetry", "-o", str(out)])
    (run,) = out.iterdir()
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    return result, run, records


def _swallowing_first_ctrl_c(real: Any, calls: list[object]) -> Any:
    """run_case that, on its first call, gets a Ctrl-C Python swallows: what Python does with an
    exception raised in a weakref callback is print it and go on."""

    def run_case(*args: object, **kwargs: object) -> object:
        calls.append(args[1])
        if len(calls) == 1:
            with contextlib.suppress(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    return run_case


def test_a_swallowed_ctrl_c_still_stops_the_suite(tmp_path: Path, toys: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C landing in a weakref callback during garbage collection ("Exception ignored in ...")
    was lost: the suite ran on and its manifest said complete (2 of 5 real Ctrl-C on smoke)."""
    monkeypatch.setattr(suite_run, "run_case", _swallowing_first_ctrl_c(suite_run.run_case, []))
    result, run, records = _invoke(_suite(tmp_path, "test.quick", "test.quick"), tmp_path / "runs")
    assert result.exit_code == 1 and "interrupted: 1 record(s) kept" in result.output, result.output  # type: ignore[attr-defined]
    assert [r["entry"] for r in records] == ["e0"] and records[0]["status"] == "ok"
    assert json.loads((run / "manifest.json").read_text())["complete"] is False
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_a_case_timeout_is_not_taken_for_ctrl_c(tmp_path: Path, toys: None) -> None:
    result, run, records = _invoke(_suite(tmp_path, "test.hang2", "test.quick"), tmp_path / "runs")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert [(r["entry"], r["status"]) for r in records] == [("e0", "failed"), ("e1", "ok")]
    assert records[0]["reason"].startswith("timeout")
    assert json.loads((run / "manifest.json").read_text())["complete"] is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_swallowed_ctrl_c_still_stops_aibench_run(tmp_path: Path, toys: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for `aibench run`: seen once during memory.copy's triton backend, which then ran
    on and exited 0."""
    from aibench.measure import runner

    second = workload("test.two", "two backends", [])
    x = torch.ones(4)
    second.backend("ref", baseline=True)(lambda p, d: Case(fn=lambda: x + 1))
    second.backend("other")(lambda p, d: Case(fn=lambda: x + 2))
    calls: list[object] = []
    monkeypatch.setattr(runner, "run_case", _swallowing_first_ctrl_c(runner.run_case, calls))
    try:
        result = CliRunner().invoke(cli, ["run", "test.two", "--device", "cpu", "--no-telemetry", "-o",
                                          str(tmp_path), "--min-time", "0.01", "--max-time", "0.1"])
    finally:
        del REGISTRY["test.two"]
    (run,) = tmp_path.iterdir()
    assert result.exit_code == 1 and "interrupted: 1 record(s) kept" in result.output, result.output
    assert len(calls) == 1 and json.loads((run / "manifest.json").read_text())["complete"] is False
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
