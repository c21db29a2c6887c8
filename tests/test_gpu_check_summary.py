"""scripts/gpu_check.py turns records into target verdicts: test that arithmetic on made-up records."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from load_helpers import SCRIPTS, load_module

gpu_check = load_module("gpu_check", SCRIPTS / "gpu_check.py")


def rec(group: str, workload: str, backend: str, status: str = "ok", median: float = 1.0, **metrics: float) -> dict:
    return {"id": f"{group}/{backend}", "workload": workload, "backend": backend, "status": status,
            "reason": None, "params": {"m": metrics.pop("m", 0)}, "metrics": metrics,
            "timing": {"median": median}, "details": {"gpu_check_group": group}}


def test_decode_sized_work_is_timed_as_graph_replays() -> None:
    assert gpu_check.timer_for("gemm-llm", {"m": 64}).cuda_graph
    assert not gpu_check.timer_for("gemm-llm", {"m": 65}).cuda_graph
    assert gpu_check.timer_for("attn-decode", {"batch": 8}).cuda_graph
    assert gpu_check.timer_for("llm-decode-graph", {}).cuda_graph
    assert not gpu_check.timer_for("llm-decode", {}).cuda_graph  # compiled: reduce-overhead has its own graphs
    assert not gpu_check.timer_for("gemm-square", {"m": 4096}).cuda_graph
    assert gpu_check.timer_for("attn-prefill", {}).flush_l2


def test_targets_from_records() -> None:
    results = [
        rec("copy", "memory.copy", "torch", gbps=4000.0),
        rec("copy", "memory.copy", "triton", gbps=3900.0),
        rec("gemm-square", "gemm", "triton", m=4096, speedup=0.95),
        rec("gemm-square", "gemm", "triton", m=8192, speedup=0.9),
        rec("gemm-square", "gemm", "triton.tma", m=8192, speedup=0.97),
        rec("gemm-llm", "gemm", "triton.tma", m=4096, speedup=0.96),
        rec("gemm-llm", "gemm", "triton.tma", m=4096, speedup=1.0),
        rec("gemm-llm", "gemm", "triton", m=64, speedup=0.5),
        rec("gemm-llm", "gemm", "triton", m=4096, speedup=2.0),
        rec("attn-prefill", "attention.prefill", "torch.flash", m=4096, median=3.0),
        rec("attn-prefill", "attention.prefill", "triton", m=4096, median=2.0, speedup=0.8),
        rec("attn-prefill", "attention.prefill", "torch.flash", m=8192, median=9.0),
        rec("attn-prefill", "attention.prefill", "triton", m=8192, median=10.0, speedup=0.7),
        rec("attn-decode", "attention.decode", "triton", gbps=3400.0),
        rec("attn-decode", "attention.decode", "triton", status="invalid"),
        rec("llm-decode", "llm.decode", "torch", mbu_pct=83.0),
        rec("llm-decode-graph", "llm.decode", "torch", mbu_pct=51.0),
    ]
    s = gpu_check.summarize(results, torch.device("cpu"))
    t = s["targets"]
    assert s["copy_gbps_torch_max"] == 4000.0
    assert t["matmul_4096_vs_cublas"]["value"] == 0.95
    assert t["matmul_llm_geomean_vs_cublas"]["value"] == pytest.approx(1.0)
    assert t["matmul_llm_geomean_vs_cublas"]["decode"] == 0.5  # the TMA records are not mixed in
    assert t["matmul_tma_vs_cublas"] == {"4096": None, "8192": 0.97,
                                         "llm_prefill_geomean": pytest.approx(0.96**0.5), "n": 2}
    assert t["matmul_llm_geomean_vs_cublas"]["prefill"] == 2.0
    assert t["prefill_causal_d128_vs_sdpa_flash_min"]["value"] == 0.9  # 9 / 10; the other is 3 / 2
    assert sorted(t["prefill_causal_d128_vs_sdpa_flash_min"]["all"]) == [0.9, 1.5]
    assert t["prefill_causal_d128_vs_sdpa_default"]["all"] == [0.8, 0.7]
    assert t["decode_fraction_of_copy_bw_min"]["value"] == pytest.approx(0.85)
    assert t["llama8b_decode_b1_mbu_pct"]["value"] == 83.0
    assert t["llama8b_decode_b1_mbu_pct_eager_graph"]["value"] == 51.0
    assert t["llama8b_prefill_8k_mfu_pct"]["value"] is None  # not measured: None, never 0
    assert t["llama8b_prefill_8k_mfu_pct_compiled"]["value"] is None
    assert s["wrong_results"] == ["attn-decode/triton"]


def test_every_planned_case_names_valid_parameters() -> None:
    """A typo in a parameter would only surface on the GPU, after minutes of lease: check here."""
    from aibench.workloads.registry import get

    cases = gpu_check.plan("bfloat16") + gpu_check.model_plan() + gpu_check.model_tail_plan()
    groups = {group for group, _, _ in cases}
    assert {"copy", "gemm-square", "gemm-llm", "attn-prefill", "attn-decode", "llm-decode", "llm-prefill",
            "llm-decode-graph", "llm-prefill-compiled"} <= groups
    for _group, name, params in cases:
        resolved = get(name).resolve_params(params)  # raises UsageError on an unknown name or value
        assert all(resolved[k] == v for k, v in params.items())
    decode = next(p for g, _, p in gpu_check.model_plan() if g == "llm-decode")
    assert decode["compile"] and decode["batch"] == 1  # the MBU target's conditions


def test_headline_targets_run_first() -> None:
    groups = [g for g, _, _ in gpu_check.ordered_cases("bfloat16", models=True)]
    first = {g: groups.index(g) for g in dict.fromkeys(groups)}
    assert first["copy"] == 0  # decode attention is judged against this run's copy bandwidth
    # The kernel targets first (the LLM shape set's geomean is the one last measured short of its
    # bound), then the models' targets, then the models' informational cases.
    assert first["attn-decode"] < first["gemm-llm"] < first["llm-decode"] < first["llm-prefill"]
    assert groups[-2:] == ["llm-decode-graph", "llm-prefill-compiled"]
    assert "llm-decode" not in [g for g, _, _ in gpu_check.ordered_cases("bfloat16", models=False)]
    only = [g for g, _, _ in gpu_check.ordered_cases("bfloat16", models=True, kernels=False)]
    assert only == ["llm-decode", "llm-prefill", "llm-decode-graph", "llm-prefill-compiled"]


def test_llm_shape_gemms_are_timed_briefly_and_decode_ones_as_graphs() -> None:
    prefill = gpu_check.timer_for("gemm-llm", {"m": 4096})
    decode = gpu_check.timer_for("gemm-llm", {"m": 32})
    assert prefill.min_time_s < gpu_check.TIMER.min_time_s and prefill.target_rel_se == gpu_check.TIMER.target_rel_se
    assert decode.cuda_graph and not decode.flush_l2 and not prefill.cuda_graph and prefill.flush_l2
    assert gpu_check.timer_for("gemm-square", {"m": 4096}) == gpu_check.TIMER


@pytest.mark.parametrize(("mfu", "promoted"), [(55.0, True), (None, True), (60.0, False), (71.2, False)])
def test_compiled_prefill_runs_next_when_eager_misses_the_target(mfu: float | None, promoted: bool) -> None:
    remaining = gpu_check.ordered_cases("bfloat16", models=True)
    remaining = remaining[[g for g, _, _ in remaining].index("llm-prefill") + 1 :]  # after the eager prefill
    eager = rec("llm-prefill", "llm.prefill", "torch", **({} if mfu is None else {"mfu_pct": mfu}))
    after = gpu_check.promote_compiled_prefill(remaining, eager)
    assert sorted(map(str, after)) == sorted(map(str, remaining))  # the same cases, maybe reordered
    assert (after[0][0] == "llm-prefill-compiled") is promoted
    assert gpu_check.promote_compiled_prefill(remaining, rec("gemm-llm", "gemm", "torch", mfu_pct=1.0)) == remaining


def test_backends_per_group() -> None:
    assert gpu_check.backends_for("llm-decode", {}) == ["torch"]
    assert gpu_check.backends_for("gemm-llm", {"m": 64}) == ["torch", "triton"]
    assert gpu_check.backends_for("gemm-llm", {"m": 4096}) is None  # triton.tma too
    assert gpu_check.backends_for("gemm-square", {"m": 8192}) is None


def test_console_line_shows_missing_metrics_as_dashes() -> None:
    assert gpu_check._num({"tflops": 612.345}, "tflops", 7, 1) == "  612.3"
    assert gpu_check._num({}, "gbps", 8, 1) == "       -"


def test_main_loop_runs_in_priority_order_and_writes_its_files(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop itself, with a stand-in runner on the CPU: every case in order, the compiled
    prefill promoted after an eager prefill under target, records and summary written."""
    seen: list[str] = []

    class Outcome:
        def __init__(self, record: dict) -> None:
            self.record = type("Record", (), {"to_dict": lambda _self: record})()

    def fake_run(name: str, params: dict, device: torch.device, backends: list[str] | None = None,
                 options: object = None, on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        seen.append(f"{name}:{params.get('compile', False)}")
        metrics = {"llm.prefill": {"mfu_pct": 50.0}, "memory.copy": {"gbps": 3000.0}}.get(name, {})
        r = {"id": name, "workload": name, "backend": "torch", "status": "ok", "reason": None,
             "params": dict(params), "metrics": metrics, "timing": {"median": 1e-3}, "details": {}}
        outcome = Outcome(r)
        if on_outcome is not None:  # as the runner does: each outcome as it is made
            on_outcome(outcome)
        return [outcome]

    monkeypatch.setattr(gpu_check.devices, "resolve", lambda _name: torch.device("cuda"))
    monkeypatch.setattr(gpu_check.devices, "describe", lambda _d: type("D", (), {"as_dict": lambda _s: {}})())
    monkeypatch.setattr(gpu_check, "run_workload", fake_run)
    assert gpu_check.main(["--out", str(tmp_path), "--models", "--budget-s", "600"]) == 0
    planned = gpu_check.ordered_cases("bfloat16", models=True)
    assert len(seen) == len(planned)
    eager = seen.index("llm.prefill:False")
    assert seen[eager + 1] == "llm.prefill:True"  # promoted: the eager MFU (50%) missed 60%
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == len(planned)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["targets"]["llama8b_prefill_8k_mfu_pct"]["value"] == 50.0
    assert summary["targets"]["llama8b_prefill_8k_mfu_pct_compiled"]["value"] == 50.0
