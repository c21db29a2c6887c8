"""The runner turns every outcome into a schema-valid record: ok, invalid, failed, skipped."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from aibench.core.checks import Check, compare
from aibench.core.errors import Unsupported
from aibench.measure.case import Case, Param
from aibench.measure.records import Record, validate
from aibench.measure.runner import RunOptions
from aibench.measure.timer import TimerConfig
from aibench.workloads.registry import REGISTRY, workload
from aibench.workloads.run import run_workload

FAST = RunOptions(timer=TimerConfig(warmup_s=0.0, min_samples=5, min_time_s=0.001, max_time_s=1.0,
                                    target_rel_se=0.5))
CPU = torch.device("cpu")


@pytest.fixture
def toy() -> Iterator[str]:
    """A workload with one backend per outcome."""
    wl = workload("test.toy", "toy", [Param("n", int, 32, "size")])
    x = torch.randn(32, 32)

    @wl.backend("ref", baseline=True)
    def _ref(p: dict, d: torch.device) -> Case:
        return Case(fn=lambda: x @ x, check=lambda: compare(x @ x, x.double() @ x.double(), 1e-4),
                    flops=2 * 32**3, bytes=3 * 32 * 32 * 4, work={"items": 4}, dtype="float32")

    @wl.backend("wrong")
    def _wrong(p: dict, d: torch.device) -> Case:
        return Case(fn=lambda: x @ x, check=lambda: compare(x @ x + 1, x.double() @ x.double(), 1e-4))

    @wl.backend("nan")
    def _nan(p: dict, d: torch.device) -> Case:
        return Case(fn=lambda: x, check=lambda: compare(x * float("nan"), x, 1e-4))

    @wl.backend("broken")
    def _broken(p: dict, d: torch.device) -> Case:
        raise RuntimeError("kernel exploded\nsecond line")

    @wl.backend("nofp8")
    def _unsupported(p: dict, d: torch.device) -> Case:
        raise Unsupported("no fp8 on this device")

    @wl.backend("absent", available=lambda d: (False, "library X missing"))
    def _absent(p: dict, d: torch.device) -> Case:
        raise AssertionError("must not be set up")

    @wl.backend("unchecked")
    def _unchecked(p: dict, d: torch.device) -> Case:
        return Case(fn=lambda: x @ x, flops=2 * 32**3)

    yield wl.name
    del REGISTRY[wl.name]


def by_backend(name: str, **kw: object) -> dict[str, Record]:
    return {o.record.backend: o.record for o in run_workload(name, {}, CPU, options=FAST, **kw)}


def test_every_outcome_is_a_valid_record(toy: str) -> None:
    recs = by_backend(toy)
    for rec in recs.values():
        validate(rec.to_dict())
    assert next(iter(recs)) == "ref"  # baseline first
    ok = recs["ref"]
    assert ok.status == "ok" and ok.correctness["passed"] is True
    assert ok.timing["n"] == len(ok.timing["samples_s"]) >= 5
    med = ok.timing["median"]
    assert ok.metrics["tflops"] == pytest.approx(2 * 32**3 / med / 1e12)
    assert ok.metrics["gbps"] == pytest.approx(3 * 32 * 32 * 4 / med / 1e9)
    assert ok.metrics["items_per_s"] == pytest.approx(4 / med)
    assert "pct_peak_tflops" not in ok.metrics and "no datasheet peak" in ok.unavailable["pct_peak_tflops"]
    assert ok.preview is True and ok.device["kind"] == "cpu"

    assert recs["wrong"].status == "invalid" and recs["wrong"].timing is None
    assert "relative error" in recs["wrong"].reason and recs["wrong"].metrics == {}
    assert recs["nan"].status == "invalid" and "non-finite" in recs["nan"].reason
    assert recs["broken"].status == "failed" and recs["broken"].reason == "RuntimeError: kernel exploded"
    assert "traceback" in recs["broken"].details
    assert recs["nofp8"].status == "skipped" and recs["nofp8"].reason == "no fp8 on this device"
    assert recs["absent"].status == "skipped" and recs["absent"].reason == "library X missing"
    unchecked = recs["unchecked"]
    assert unchecked.status == "ok" and unchecked.correctness["checked"] is False
    assert unchecked.metrics["speedup"] == pytest.approx(ok.timing["median"] / unchecked.timing["median"])


def test_speedup_unavailable_when_baseline_failed(toy: str) -> None:
    REGISTRY[toy].backends["ref"] = REGISTRY[toy].backends["ref"].__class__(
        "ref", lambda p, d: Case(fn=lambda: None, check=lambda: Check(False, detail="bad")), baseline=True)
    recs = by_backend(toy, backends=["unchecked", "ref"])
    assert recs["ref"].status == "invalid"
    assert "speedup" not in recs["unchecked"].metrics
    assert "no valid timing" in recs["unchecked"].unavailable["speedup"]


def test_record_round_trip_and_schema_rejects_garbage(toy: str) -> None:
    import jsonschema

    rec = by_backend(toy, backends=["ref"])["ref"]
    data = rec.to_dict()
    assert Record.from_dict(data).to_dict() == data
    for mutate in (
        lambda d: d.update(status="great"),
        lambda d: d.update(schema_version=99),
        lambda d: d["metrics"].update(tflops=-1.0),
        lambda d: d["timing"].update(samples_s=[]),
        lambda d: d.pop("telemetry"),
    ):
        bad = rec.to_dict()
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            validate(bad)


def test_negative_or_nan_metric_refused_at_construction() -> None:
    with pytest.raises(ValueError):
        Record(id="x", workload="w", backend="b", params={}, device={}, status="ok", metrics={"gbps": float("nan")})


def test_memory_copy_end_to_end_on_cpu() -> None:
    recs = by_backend("memory.copy")
    assert recs["torch"].status == "ok"
    assert recs["torch"].metrics["gbps"] > 0
    assert recs["torch"].params == {"mib": 8, "dtype": "float32"}  # preview size on CPU
    assert recs["triton"].status == "ok" and recs["triton"].interpreted
    assert recs["triton"].correctness["passed"] is True


def test_a_hung_case_is_recorded_as_timeout_and_the_run_goes_on() -> None:
    wl = workload("test.hang", "hangs in setup", [])

    @wl.backend("ref", baseline=True)
    def _hang(p: dict, d: torch.device) -> Case:
        while True:  # pure Python: the watchdog's interrupt lands between bytecodes
            time.sleep(0.01)

    try:
        options = RunOptions(timer=FAST.timer, case_timeout_s=0.3)
        start = time.perf_counter()
        (outcome,) = run_workload("test.hang", {}, CPU, options=options)
        assert time.perf_counter() - start < 5
        assert outcome.record.status == "failed" and outcome.record.reason.startswith("timeout")
        time.sleep(0.4)  # the cancelled watchdog must not interrupt anything later
    finally:
        del REGISTRY["test.hang"]


def test_a_case_that_swallows_the_first_interrupt_is_still_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python drops an interrupt raised inside a __del__, and a library may catch it: the
    deadline interrupts again until the case ends."""
    wl = workload("test.swallow", "catches the first interrupt", [])

    @wl.backend("ref", baseline=True)
    def _swallow(p: dict, d: torch.device) -> Case:
        try:
            while True:
                time.sleep(0.01)
        except KeyboardInterrupt:
            pass  # swallowed
        while True:
            time.sleep(0.01)

    try:
        import aibench.measure.runner as runner_module
        from aibench.core.deadline import Deadline

        monkeypatch.setattr(runner_module, "Deadline", lambda seconds: Deadline(seconds, repeat_s=0.2))
        options = RunOptions(timer=FAST.timer, case_timeout_s=0.2)
        start = time.perf_counter()
        (outcome,) = run_workload("test.swallow", {}, CPU, options=options)
        assert time.perf_counter() - start < 5
        assert outcome.record.status == "failed" and outcome.record.reason.startswith("timeout")
        time.sleep(0.5)  # no repeat fires after the case ended
    finally:
        del REGISTRY["test.swallow"]


def test_a_hung_case_times_out_even_where_sigint_is_ignored() -> None:
    """A suite started in the background by a script has SIGINT ignored, and then the watchdog's
    interrupt_main does nothing; the deadline stands its own handler in for the case."""
    import signal

    from aibench.core.deadline import Deadline

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        start = time.perf_counter()
        with pytest.raises(KeyboardInterrupt), Deadline(0.2) as d:
            while time.perf_counter() - start < 5:
                time.sleep(0.01)
        assert d.fired and time.perf_counter() - start < 4
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the shell's choice is restored
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_nested_deadline_fires_where_sigint_is_ignored() -> None:
    """gpu_check's per-case cut around the runner's per-backend limit: the outer deadline stands
    the handler in, and the inner one's interrupt must still get through it."""
    import signal

    from aibench.core.deadline import Deadline

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        start = time.perf_counter()
        with Deadline(30.0) as outer, pytest.raises(KeyboardInterrupt), Deadline(0.2) as inner:
            while time.perf_counter() - start < 5:
                time.sleep(0.01)
        assert inner.fired and not outer.fired and time.perf_counter() - start < 4
    finally:
        signal.signal(signal.SIGINT, previous)


def test_deadline_passes_a_real_interrupt_through() -> None:
    from aibench.core.deadline import Deadline

    with pytest.raises(KeyboardInterrupt), Deadline(10.0) as d:
        raise KeyboardInterrupt
    assert not d.fired


def test_first_line_of_an_empty_or_long_message() -> None:
    from aibench.core.errors import first_line

    assert first_line(RuntimeError("")) == "RuntimeError"
    assert first_line(RuntimeError("  \n")) == "RuntimeError"
    assert first_line(RuntimeError("CUDA error: x\n  page two")) == "CUDA error: x"
    assert len(first_line(ValueError("y" * 900))) == 500


@pytest.fixture
def hostile() -> Iterator[str]:
    """Backends that fail in the ways a suite must survive: each must become one record."""
    from aibench.core.errors import CheckFailed

    wl = workload("test.hostile", "fails in odd places", [])
    x = torch.ones(4)

    @wl.backend("ref", baseline=True)
    def _ref(p: dict, d: torch.device) -> Case:
        return Case(fn=lambda: x + 1)

    def _boom(d: torch.device) -> tuple[bool, str | None]:
        raise RuntimeError("driver query crashed")

    @wl.backend("probe", available=_boom)
    def _probe(p: dict, d: torch.device) -> Case:
        raise AssertionError("must not be set up")

    @wl.backend("exits")
    def _exits(p: dict, d: torch.device) -> Case:
        raise SystemExit(3)  # a library that calls sys.exit() must not end the suite

    @wl.backend("memory")
    def _memory(p: dict, d: torch.device) -> Case:
        raise MemoryError

    @wl.backend("wrong")
    def _wrong(p: dict, d: torch.device) -> Case:
        raise CheckFailed("logits differ from the reference")

    @wl.backend("opaque")
    def _opaque(p: dict, d: torch.device) -> Case:
        return Case(fn=lambda: x + 1, details={"dtype": torch.float16})  # not JSON

    yield wl.name
    del REGISTRY[wl.name]


def test_a_workload_failing_anywhere_gives_a_record_and_the_run_goes_on(hostile: str) -> None:
    import json

    recs = by_backend(hostile)
    assert list(recs) == ["ref", "probe", "exits", "memory", "wrong", "opaque"]
    assert recs["ref"].status == "ok"
    assert recs["probe"].status == "failed" and "driver query crashed" in recs["probe"].reason
    assert recs["exits"].status == "failed" and "SystemExit" in recs["exits"].reason
    assert recs["memory"].status == "failed" and recs["memory"].reason == "MemoryError: MemoryError"
    # CheckFailed is the domain error of a wrong result: invalid, never timed
    assert recs["wrong"].status == "invalid" and "logits differ" in recs["wrong"].reason
    assert recs["wrong"].timing is None and recs["wrong"].metrics == {}
    # a record the run directory could not write would stop the suite: it fails instead
    assert recs["opaque"].status == "failed" and "JSON" in recs["opaque"].reason
    for rec in recs.values():
        validate(json.loads(json.dumps(rec.to_dict(), allow_nan=False)))


def test_a_backend_named_twice_is_measured_once(toy: str) -> None:
    """`aibench run W --backend x --backend x` measured x twice (two records with one id)."""
    outcomes = run_workload(toy, {}, CPU, ["unchecked", "ref", "unchecked"], FAST)
    assert [o.record.backend for o in outcomes] == ["ref", "unchecked"]


def test_aibench_run_exits_1_when_a_measurement_failed_and_still_writes_it(toy: str, tmp_path: Any) -> None:
    from click.testing import CliRunner

    from aibench.cli import cli

    args = ["run", toy, "--device", "cpu", "--backend", "ref", "--backend", "broken", "--json", "-o", str(tmp_path),
            "--min-time", "0.01", "--max-time", "0.2", "--noise", "0.5", "--no-telemetry"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "1 of 2 measurement(s) failed or were invalid: broken: failed" in result.output
    (run,) = list(tmp_path.iterdir())
    lines = (run / "records.jsonl").read_text().splitlines()
    assert [json.loads(x)["status"] for x in lines] == ["ok", "failed"]
    assert f"run directory: {run}" in result.stderr  # stdout stays one JSON document
    assert [r["status"] for r in json.loads(result.stdout)] == ["ok", "failed"]
    ok = CliRunner().invoke(cli, [*args[:6], *args[8:]])  # the baseline alone
    assert ok.exit_code == 0, ok.output


def test_aibench_run_keeps_the_backends_measured_before_a_ctrl_c(toy: str, tmp_path: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from aibench.cli import cli
    from aibench.measure import runner

    real = runner.run_case

    def second_is_interrupted(wl: Any, backend: Any, *a: Any, **kw: Any) -> Any:
        if backend.name == "wrong":
            raise KeyboardInterrupt
        return real(wl, backend, *a, **kw)

    monkeypatch.setattr(runner, "run_case", second_is_interrupted)
    result = CliRunner().invoke(cli, ["run", toy, "--device", "cpu", "--backend", "ref", "--backend", "wrong",
                                      "-o", str(tmp_path), "--min-time", "0.01", "--max-time", "0.2",
                                      "--noise", "0.5", "--no-telemetry"])
    (run,) = list(tmp_path.iterdir())
    assert result.exit_code == 1 and f"interrupted: 1 record(s) kept in {run}" in result.output
    assert json.loads((run / "manifest.json").read_text())["complete"] is False


def test_every_triton_backend_is_marked_interpreted_on_a_cpu(toy: str) -> None:
    x = torch.randn(8, 8)
    REGISTRY[toy].backend("triton.variant")(lambda p, d: Case(fn=lambda: x @ x, flops=2 * 8**3))
    recs = by_backend(toy, backends=["ref", "triton.variant"])
    assert recs["triton.variant"].interpreted is True and recs["ref"].interpreted is False


def test_the_energy_window_runs_what_the_timer_timed(toy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A case timed as CUDA-graph replays is replayed in its energy window too (launched one by
    one, the window would hold launch gaps at idle power); others run back to back."""
    import aibench.measure.runner as runner_module
    from aibench.telemetry.core import TelemetryResult

    seen: dict[str, Any] = {}

    class Tele:
        available, reason = True, None

        def uncovered(self, used: list[int]) -> list[int]:
            return []

        def measure_energy(self, fn: Any, sync: Any, **kw: Any) -> TelemetryResult:
            seen.update(kw, fn=fn)
            return TelemetryResult({"available": True, "reason": None}, [])

    replay = object()
    monkeypatch.setattr(runner_module, "graph_replay", lambda fn, device, calls: replay)
    real_measure = runner_module.measure

    def as_graph(fn: Any, device: Any, config: Any) -> Any:
        return dataclasses.replace(real_measure(fn, device, config), method="cuda_graph",
                                   calls_per_sample=config.graph_calls)

    options = dataclasses.replace(FAST, telemetry=True)
    (plain,) = run_workload(toy, {}, CPU, ["ref"], options, telemetry=Tele())
    assert seen["fn"] is not replay and seen["calls_per_fn"] == 1
    assert plain.record.telemetry["execution"] == "back-to-back calls"
    monkeypatch.setattr(runner_module, "measure", as_graph)
    (graphed,) = run_workload(toy, {}, CPU, ["ref"], options, telemetry=Tele())
    assert seen["fn"] is replay and seen["calls_per_fn"] == FAST.timer.graph_calls
    assert graphed.record.telemetry["execution"].startswith("CUDA-graph replays")


def test_a_case_says_why_a_metric_is_missing(toy: str) -> None:
    wl = REGISTRY[toy]
    x = torch.randn(8, 8)
    wl.backend("peakless")(lambda p, d: Case(fn=lambda: x @ x, metrics=lambda s: {"tokens_per_s": 1 / s},
                                             unavailable={"mfu_pct": "no peak", "tokens_per_s": "shadowed"}))
    rec = by_backend(toy, backends=["peakless"])["peakless"]
    assert rec.unavailable["mfu_pct"] == "no peak" and "mfu_pct" not in rec.metrics
    assert "tokens_per_s" in rec.metrics and "tokens_per_s" not in rec.unavailable  # a value wins over a reason
