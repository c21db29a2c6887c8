"""scripts/gpu_check.py as the one GPU call of a lease runs it: a `timeout` kill, a hung case or a
crashing case must not lose what was measured, and its summary must answer every target of
aibench/kernels/PERF.md (value, bound, verdict, or the reason there is none). Driven on the CPU by a
stand-in runner; one test feeds it records made by the real runner."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from load_helpers import SCRIPTS, load_module

from aibench.measure.records import Outcome
from aibench.measure.runner import RunOptions
from aibench.measure.timer import TimerConfig
from aibench.workloads.run import run_workload as real_run_workload

gpu_check = load_module("gpu_check_run", SCRIPTS / "gpu_check.py")

Hook = Callable[[str, dict[str, Any], str], None]
QUICK = TimerConfig(warmup_s=0.0, min_samples=3, min_time_s=0.0, max_time_s=0.05, target_rel_se=0.5)


def _record(name: str, params: dict[str, Any], backend: str, **metrics: float) -> dict[str, Any]:
    return {"id": f"{name}/{backend}", "workload": name, "backend": backend, "status": "ok", "reason": None,
            "params": dict(params), "metrics": metrics, "unavailable": {}, "timing": {"median": 1e-3},
            "details": {}}


class _Outcome:
    def __init__(self, record: dict[str, Any]) -> None:
        self.record = type("Record", (), {"to_dict": lambda _self: record})()


def _fake_runner(hook: Hook | None = None, backends: tuple[str, ...] = ("torch", "triton")) -> Callable[..., list]:
    """A run_workload look-alike: two backends per case, each outcome handed to on_outcome as it
    is made; `hook(name, params, backend)` runs before each backend (to hang or to raise)."""

    def run(name: str, params: dict[str, Any], device: torch.device, backends_: list[str] | None = None,
            options: RunOptions | None = None, on_outcome: Callable[[Any], None] | None = None,
            **_: Any) -> list[Any]:
        outcomes = []
        for backend in backends:
            if hook is not None:
                hook(name, params, backend)
            outcome = _Outcome(_record(name, params, backend, gbps=1000.0, speedup=1.0))
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
        return outcomes

    return lambda name, params, device, backends=None, options=None, on_outcome=None, **kw: run(
        name, params, device, backends, options, on_outcome, **kw)


@pytest.fixture
def on_fake_gpu(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[..., list]], None]:
    monkeypatch.setattr(gpu_check.devices, "resolve", lambda _name: torch.device("cuda"))
    real_describe = gpu_check.devices.describe  # the real runner describes the CPU it runs on
    stand_in = gpu_check.devices.DeviceInfo("cuda:0", "cuda", "NVIDIA H100 80GB HBM3 (stand-in)", 0)
    monkeypatch.setattr(gpu_check.devices, "describe", lambda d: real_describe(d) if d.type == "cpu" else stand_in)
    monkeypatch.setattr(gpu_check, "_environment", lambda: {"software": {"driver_version": "580.159.04"}},
                        raising=False)

    def use(runner: Callable[..., list]) -> None:
        monkeypatch.setattr(gpu_check, "run_workload", runner)

    return use


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_backend_is_on_disk_before_the_next_one_starts(tmp_path: Path, on_fake_gpu: Any) -> None:
    """A `timeout` kill during a case's third backend must keep the first two (fsynced as made)."""
    seen_on_disk: list[int] = []

    def hook(name: str, params: dict[str, Any], backend: str) -> None:
        if name == "memory.copy" and backend == "triton":
            path = tmp_path / "records.jsonl"
            seen_on_disk.append(len(path.read_text().splitlines()) if path.exists() else 0)
            summary = json.loads((tmp_path / "summary.json").read_text())
            seen_on_disk.append(int(summary["copy_gbps_torch_max"] == 1000.0))

    on_fake_gpu(_fake_runner(hook))
    assert gpu_check.main(["--out", str(tmp_path), "--budget-s", "600"]) == 0
    assert seen_on_disk == [1, 1]  # the torch record and a summary that counts it, mid-case


def test_a_hung_case_is_cut_at_the_deadline_and_the_summary_says_so(tmp_path: Path, on_fake_gpu: Any) -> None:
    def hook(name: str, params: dict[str, Any], backend: str) -> None:
        if name == "gemm" and backend == "triton":  # the first GEMM's second backend never returns
            end = time.monotonic() + 30  # bounded: a broken deadline fails the test instead of hanging
            while time.monotonic() < end:
                time.sleep(0.01)
            raise AssertionError("the deadline did not cut the hung case")

    on_fake_gpu(_fake_runner(hook))
    assert gpu_check.main(["--out", str(tmp_path), "--budget-s", "600", "--deadline-s", "0.3"]) == 0
    records = _lines(tmp_path / "records.jsonl")
    assert [(r["workload"], r["backend"]) for r in records] == [
        ("memory.copy", "torch"), ("memory.copy", "triton"), ("gemm", "torch")]
    summary = json.loads((tmp_path / "summary.json").read_text())
    run = summary["run"]
    assert run["finished"] and run["stopped"] == "deadline"
    assert len(run["cut"]) == 1 and run["cut"][0].startswith("gemm-square gemm m=4096")
    assert run["cases_started"] == 2 and len(run["not_run"]) == run["cases_planned"] - 2
    for size in (4096, 8192):  # one cut (its torch record kept), the other never started
        matmul = summary["targets"][f"matmul_{size}_vs_cublas"]
        assert matmul["value"] is None and matmul["met"] is None
        assert matmul["reason"] == ("cut: still running at the deadline; "
                                    "not run: the time box ended before this case")


def test_a_crashing_case_does_not_stop_the_others(tmp_path: Path, on_fake_gpu: Any) -> None:
    def hook(name: str, params: dict[str, Any], backend: str) -> None:
        if name == "attention.prefill" and params["seq"] == 8192:
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore lines")

    on_fake_gpu(_fake_runner(hook))
    assert gpu_check.main(["--out", str(tmp_path), "--budget-s", "600"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["run"]["errors"] == [
        "attn-prefill attention.prefill batch=1,heads=32,kv_heads=8,seq=8192,head_dim=128,causal=True: "
        "RuntimeError: CUDA error: an illegal memory access was encountered"]
    assert summary["run"]["stopped"] is None and summary["run"]["not_run"] == []
    prefill = summary["targets"]["prefill_causal_d128_vs_sdpa_flash_min"]
    assert prefill["met"] is None  # the stand-in has no torch.flash backend: the crash is the reason given
    assert prefill["reason"] == "error: RuntimeError: CUDA error: an illegal memory access was encountered"
    assert any(r["workload"] == "attention.decode" for r in _lines(tmp_path / "records.jsonl"))  # went on


def test_no_budget_runs_nothing_and_every_target_says_why(tmp_path: Path, on_fake_gpu: Any) -> None:
    on_fake_gpu(_fake_runner())
    assert gpu_check.main(["--out", str(tmp_path), "--budget-s", "-1", "--models"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["run"]["stopped"] == "budget" and summary["run"]["cases_started"] == 0
    verdicts = [t for t in summary["targets"].values() if "met" in t]
    assert len(verdicts) == 7  # the seven bounds of aibench/kernels/PERF.md's table (matmul at two sizes)
    for t in verdicts:
        assert t["value"] is None and t["met"] is None and t["reason"].startswith("not run")
    assert summary["verdict"] == {"met": 0, "missed": 0, "unmeasured": 7}


def rec(group: str, workload: str, backend: str, status: str = "ok", median: float = 1.0, reason: str | None = None,
        unavailable: dict[str, str] | None = None, **metrics: float) -> dict[str, Any]:
    return {"id": f"{group}/{backend}/{metrics.get('m', '')}", "workload": workload, "backend": backend,
            "status": status, "reason": reason, "params": {"m": metrics.pop("m", 0), "seq": metrics.pop("seq", 0)},
            "metrics": metrics, "unavailable": unavailable or {}, "timing": {"median": median},
            "details": {"gpu_check_group": group}}


def test_each_target_states_value_bound_and_verdict() -> None:
    results = [
        rec("copy", "memory.copy", "torch", gbps=4000.0),
        rec("copy", "memory.copy", "triton", gbps=5000.0),  # not the ceiling: the key says torch
        rec("gemm-square", "gemm", "triton", m=4096, speedup=0.95),
        rec("gemm-square", "gemm", "triton", m=8192, speedup=0.85),
        rec("attn-decode", "attention.decode", "triton", gbps=3600.0),
        rec("llm-decode", "llm.decode", "torch", mbu_pct=None, unavailable={"mbu_pct": "no datasheet peak"}),
        rec("llm-prefill", "llm.prefill", "torch", status="failed", reason="out of memory: 16 GiB"),
    ]
    results[5]["metrics"].pop("mbu_pct")
    s = gpu_check.summarize(results, torch.device("cpu"), planned={"attn-decode": 1, "llm-decode": 1})
    t = s["targets"]
    assert s["copy_gbps_torch_max"] == 4000.0
    assert t["matmul_4096_vs_cublas"] | {} == {"value": 0.95, "target": 0.9, "bound": ">= 0.9", "met": True}
    assert t["matmul_8192_vs_cublas"]["met"] is False
    fp8 = gpu_check.summarize([*results[:3], rec("gemm-square", "gemm", "triton", m=8192, status="skipped",
                                                 reason="no wgmma here")], torch.device("cpu"))
    assert fp8["targets"]["matmul_8192_vs_cublas"]["reason"] == "triton skipped: no wgmma here"
    assert fp8["targets"]["matmul_4096_vs_cublas"]["met"] is True  # the 8192 record is not its business
    assert t["decode_fraction_of_copy_bw_min"]["value"] == pytest.approx(0.9)
    assert t["decode_fraction_of_copy_bw_min"]["met"] is True
    assert t["llama8b_decode_b1_mbu_pct"]["met"] is None
    assert t["llama8b_decode_b1_mbu_pct"]["reason"] == "mbu_pct: no datasheet peak"
    assert t["llama8b_prefill_8k_mfu_pct"]["reason"] == "torch failed: out of memory: 16 GiB"
    assert s["verdict"]["met"] == 2 and s["verdict"]["missed"] == 1
    assert s["date"] and "torch" in s and "triton" in s


def test_a_verdict_over_part_of_a_shape_set_is_withheld() -> None:
    """The minimum over one of three prefill lengths (or a geomean over a few LLM shapes) is no
    answer to a target over the whole set: value shown, no verdict, the reason given."""
    results = [rec("attn-prefill", "attention.prefill", "torch.flash", seq=4096, median=3.0),
               rec("attn-prefill", "attention.prefill", "triton", seq=4096, median=2.0, speedup=0.8),
               rec("gemm-llm", "gemm", "triton", m=4096, speedup=0.95)]
    not_run = "not run: the time box ended before this case"
    s = gpu_check.summarize(results, torch.device("cpu"), planned={"attn-prefill": 3, "gemm-llm": 56},
                            not_done={"attn-prefill": not_run, "gemm-llm": not_run})
    prefill, llm = s["targets"]["prefill_causal_d128_vs_sdpa_flash_min"], s["targets"]["matmul_llm_geomean_vs_cublas"]
    assert prefill["value"] == 1.5 and prefill["met"] is None
    assert prefill["reason"] == f"only 1 of 3 planned cases measured: {not_run}"
    assert llm["value"] == 0.95 and llm["met"] is None and (llm["n"], llm["planned"]) == (1, 56)


def test_summary_of_records_made_by_the_real_runner(tmp_path: Path, on_fake_gpu: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The record keys the summary reads are the runner's own: a copy made on the CPU (tiny)."""

    def run(name: str, params: dict[str, Any], device: torch.device, backends: list[str] | None = None,
            options: RunOptions | None = None, on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        if name != "memory.copy":
            return []
        return real_run_workload(name, {"mib": 1, "dtype": "float32"}, torch.device("cpu"), backends=["torch"],
                                 options=RunOptions(timer=QUICK, preview=True), on_outcome=on_outcome)

    on_fake_gpu(run)
    monkeypatch.setattr(gpu_check, "ordered_cases", lambda dtype, models, kernels=True: gpu_check.plan(dtype)[:2])
    assert gpu_check.main(["--out", str(tmp_path), "--budget-s", "600"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    records = _lines(tmp_path / "records.jsonl")
    assert records[0]["status"] == "ok" and records[0]["details"]["gpu_check_group"] == "copy"
    assert summary["copy_gbps_torch_max"] == records[0]["metrics"]["gbps"] > 0
    assert summary["device"]["name"] == "NVIDIA H100 80GB HBM3 (stand-in)"
    assert summary["run"]["finished"] and summary["environment"]["software"]["driver_version"] == "580.159.04"
