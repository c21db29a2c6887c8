"""Energy per token of a serving record: one telemetry window over the measured requests, read from
the stand-in pynvml (tests/fixtures/telemetry: 100 -> 300 W over 0-2 s, the energy counter its exact
integral), whose fake clock only the work inside or outside the window moves; unavailable, never 0,
without telemetry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from aiohttp import web
from load_helpers import FAKE_PYNVML, load_module

from aibench.measure.case import Case, CustomMeasurement, EnergyWindow
from aibench.measure.runner import RunOptions
from aibench.telemetry import open_telemetry
from aibench.workloads.registry import REGISTRY, workload
from aibench.workloads.run import run_workload
from tests.serving_helpers import stream_completion, stub_server

fake = load_module("aibench_test_fake_pynvml_serving_energy", FAKE_PYNVML)
CPU = torch.device("cpu")
ON = RunOptions(telemetry=True)


def ramp_energy_j(t0: float, t1: float) -> float:
    """The trace's energy between t0 and t1 within 0-2 s: the integral of 100 + 100 t W."""
    return 100 * (t1 - t0) + 50 * (t1 * t1 - t0 * t0)


def _telemetry(clock: Any) -> Any:
    return open_telemetry([torch.device("cuda", 0)], nvml=fake.make_module(clock), clock=clock,
                          sleep=clock.advance, inline=True)


@pytest.fixture
def self_timed() -> Iterator[tuple[str, Any]]:
    """A self-timed workload with energy_of_run: 0.5 s of warm-up, 2 s of measured run making 80
    tokens inside its window, then 1 s of extra work (sweep points) after it."""
    clock = fake.FakeClock(start_us=-500_000)  # the warm-up ends at t = 0, where the trace starts
    wl = workload("test.serve_energy", "toy serving run", [])

    @wl.backend("ref", baseline=True)
    def _ref(p: dict, d: torch.device) -> Case:
        def measure(_timer: Any, window: EnergyWindow) -> CustomMeasurement:
            clock.advance(0.5)
            out = window(lambda: clock.advance(2.0) or "the run's result")
            clock.advance(1.0)
            return CustomMeasurement([0.1, 0.2], {"completed": 2.0}, {"result": out}, work={"tokens": 80.0})

        def never() -> None:
            raise AssertionError("fn of an energy_of_run case must not be called")

        return Case(fn=never, measure=measure, energy_of_run=True, work={"tokens": 1.0})

    yield wl.name, clock
    del REGISTRY[wl.name]


def test_energy_is_the_window_over_the_run_per_token_of_the_run(self_timed: tuple[str, Any]) -> None:
    name, clock = self_timed
    tele = _telemetry(clock)
    (outcome,) = run_workload(name, {}, CPU, options=ON, telemetry=tele)
    tele.close()
    rec = outcome.record
    assert rec.status == "ok", rec.reason
    assert rec.details["result"] == "the run's result"  # the window hands the run's result back
    t = rec.telemetry
    json.dumps(t, allow_nan=False)
    assert t["available"] is True and t["method"] == "counter" and t["calls"] == 1
    assert t["duration_s"] == 2.0  # the run only: not the warm-up before it, not the work after
    assert t["energy_j"] == pytest.approx(ramp_energy_j(0.0, 2.0), rel=1e-12)  # 400 J
    assert t["per_unit"] == pytest.approx({"j_per_token": 5.0, "tokens_per_j": 0.2}, rel=1e-12)
    assert t["work_per_call"] == {"tokens": 80.0} and rec.work == {"tokens": 80.0}
    assert t["execution"] == "one window over the measured run itself"
    from aibench.results.recompute import energy_problems

    assert energy_problems(rec.to_dict()) == []  # what a buyer's verify recomputes agrees
    assert outcome.telemetry_samples and all(0.0 <= s["t_rel_s"] <= 2.0 for s in outcome.telemetry_samples)


def test_without_telemetry_the_run_still_runs_and_no_energy_is_made_up(self_timed: tuple[str, Any]) -> None:
    name, _ = self_timed
    for options, tele, why in ((ON, open_telemetry([]), None), (RunOptions(telemetry=False), None, "telemetry off")):
        (outcome,) = run_workload(name, {}, CPU, options=options, telemetry=tele)
        rec = outcome.record
        assert rec.status == "ok" and rec.details["result"] == "the run's result"
        assert rec.telemetry["available"] is False and "per_unit" not in rec.telemetry and not outcome.telemetry_samples
        assert why is None or why in rec.telemetry["reason"]
        assert rec.work == {"tokens": 80.0}  # still the run's work, for whoever measures it later


def test_openai_backend_energy_per_output_token_of_the_measured_requests() -> None:
    """Each request the stub serves moves the fake clock 0.25 s: the probe and the warm-up before the
    window, the six measured requests inside it (1.5 s, 6 x 4 output tokens)."""
    clock = fake.FakeClock(start_us=-500_000)  # probe + warm-up end at t = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        clock.advance(0.25)
        return await stream_completion(request, await request.json())

    tele = _telemetry(clock)
    params = {"num_requests": 6, "input_len": 8, "output_len": 4, "max_concurrency": 2, "concurrency_sweep": "",
              "warmup_requests": 1}
    with stub_server({"/v1/completions": handler}) as url:
        (outcome,) = run_workload("llm.serve", {**params, "endpoint": url}, CPU, backends=["openai"],
                                  options=ON, telemetry=tele)
    tele.close()
    rec = outcome.record
    assert rec.status == "ok", rec.reason
    assert rec.metrics["total_output_tokens"] == 24 and rec.details["warmup_failed"] == 0
    t = rec.telemetry
    assert t["duration_s"] == 1.5 and t["method"] == "counter"
    energy = ramp_energy_j(0.0, 1.5)  # 262.5 J
    assert t["energy_j"] == pytest.approx(energy, rel=1e-12)
    assert t["per_unit"]["j_per_token"] == pytest.approx(energy / 24, rel=1e-12)
    assert rec.work == {"tokens": 24.0} and t["work_per_call"] == {"tokens": 24.0}
    from aibench.results.recompute import energy_problems

    assert energy_problems(rec.to_dict()) == []  # what a buyer's verify recomputes agrees


def test_openai_backend_without_telemetry_says_unavailable() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream_completion(request, await request.json())

    with stub_server({"/v1/completions": handler}) as url:
        (outcome,) = run_workload("llm.serve", {"num_requests": 3, "input_len": 8, "output_len": 2, "endpoint": url,
                                                "concurrency_sweep": "", "warmup_requests": 0},
                                  CPU, backends=["openai"], options=ON, telemetry=open_telemetry([]))
    rec = outcome.record
    assert rec.status == "ok", rec.reason
    assert rec.telemetry["available"] is False and rec.telemetry["reason"]
    assert "per_unit" not in rec.telemetry and "j_per_token" not in rec.metrics
