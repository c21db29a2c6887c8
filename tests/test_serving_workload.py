"""`llm.serve` backend `openai` through the runner: records from aibench's own server started as a
subprocess, an external endpoint with faults, engines that are absent or die, and a suite sweep
(one record per concurrency point, the engine started once)."""

from __future__ import annotations

import importlib.util
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from aiohttp import web

from aibench.serving import launch
from aibench.workloads.run import run_workload
from tests.serving_helpers import stream_completion, stub_server

CPU = torch.device("cpu")
SMALL = {"num_requests": 6, "input_len": 8, "output_len": 4, "max_concurrency": 2, "concurrency_sweep": "",
         "warmup_requests": 1}


def _record(params: dict) -> object:
    (outcome,) = run_workload("llm.serve", {**SMALL, **params}, CPU, backends=["openai"])
    return outcome.record


def test_aibench_engine_started_measured_and_recorded() -> None:
    try:
        rec = _record({"engine": "aibench", "engine_args": "--max-batch 2 --max-seq 64", "concurrency_sweep": "1,2"})
    finally:
        launch.stop_shared()
    assert rec.status == "ok", rec.reason
    assert rec.correctness["passed"] is True and "4 completion tokens" in rec.correctness["detail"]
    m, d = rec.metrics, rec.details
    assert m["completed"] == 6 and m["failed"] == 0 and m["total_output_tokens"] == 24
    assert m["max_concurrent_requests"] <= 2 and m["ttft_p99_s"] >= m["ttft_median_s"] > 0
    assert d["engine"] == "aibench" and d["engine_version"] and "--max-batch" in d["engine_argv"]
    # Every number traces back to the raw per-chunk timestamps in the record.
    assert len(d["requests"]) == 6 and all(len(r["chunk_times_s"]) == 4 for r in d["requests"])
    assert [row["concurrency"] for row in d["concurrency_sweep"]] == [1, 2]
    assert sorted(rec.timing["samples_s"]) == pytest.approx(sorted(r["chunk_times_s"][-1] - r["sent_s"] for r in d["requests"]))


def test_failed_requests_are_counted_and_the_case_still_records() -> None:
    counter = itertools.count()

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        n = next(counter)
        if n >= 2 and n % 2:  # the probe (0) and the warm-up (1) pass; then every other request fails
            return web.Response(status=500, text="boom")
        return await stream_completion(request, body)

    with stub_server({"/v1/completions": handler}) as url:
        rec = _record({"endpoint": url})
        always = stub_server({"/v1/completions": _fail})
        with always as bad_url:
            broken = _record({"endpoint": bad_url})
    assert rec.status == "ok", rec.reason
    assert rec.metrics["completed"] == 3 and rec.metrics["failed"] == 3
    assert rec.details["failures"] == {"HTTP 500 Internal Server Error: boom": 3}
    assert broken.status == "invalid" and "probe request failed: HTTP 500" in broken.reason


async def _fail(_request: web.Request) -> web.Response:
    return web.Response(status=500, text="down")


def test_missing_engine_or_endpoint_is_skipped_with_the_reason() -> None:
    rec = _record({})
    assert rec.status == "skipped" and "endpoint=URL" in rec.reason
    if importlib.util.find_spec("vllm") is None:
        rec = _record({"engine": "vllm", "engine_model": "meta-llama/Llama-3.1-8B-Instruct"})
        assert rec.status == "skipped" and rec.reason == "vllm is not installed (pip install vllm)"


def test_an_engine_that_dies_at_start_fails_the_case_with_its_log() -> None:
    rec = _record({"engine": "aibench", "engine_args": "--no-such-option"})
    assert rec.status == "failed"
    assert "exited with code 2 before it was healthy" in rec.reason


def test_suite_sweep_gives_one_record_per_point(tmp_path: Path) -> None:
    suite = tmp_path / "serve.toml"
    suite.write_text("""
[suite]
name = "serve-http"
version = "1.0.0"

[[entry]]
id = "serve-aibench"
workload = "llm.serve"
backends = ["openai"]
params = { engine = "aibench", num_requests = 4, input_len = 8, output_len = 3, concurrency_sweep = "" }
sweep = { max_concurrency = [1, 2, 4] }
preview = { params = { engine = "aibench", num_requests = 4, input_len = 8, output_len = 3, concurrency_sweep = "" }, sweep = { max_concurrency = [1, 2, 4] } }
""")
    out = subprocess.run([sys.executable, "-m", "aibench", "suite", str(suite), "--device", "cpu", "--no-telemetry",
                          "-o", str(tmp_path / "runs")], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    assert [r["params"]["max_concurrency"] for r in records] == [1, 2, 4]
    assert all(r["status"] == "ok" and r["metrics"]["completed"] == 4 for r in records)
    # One engine served the three points (started once, reused).
    assert len({r["details"]["url"] for r in records}) == 1


@pytest.mark.parametrize("entry", ["serve-vllm-llama-3.1-8b", "serve-aibench-http-preview"])
def test_gigafactory_has_the_serving_entries(entry: str) -> None:
    from aibench.suite.load import load_suite

    s = load_suite("gigafactory")
    (e,) = [x for x in s.entries if x.id == entry]
    assert e.workload == "llm.serve" and e.backends == ("openai",)
