"""Work, % of peak and energy per unit recomputed on the buyer's side (results/work.py, recompute.py).

The torch-free formulas must give exactly the work the real workloads record (so they cannot
drift apart), and a record whose work, % of peak or J per unit was raised is named by its code.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch
from test_runner import FAST
from test_telemetry_core import ConstantReader

from aibench.device.specs import match_spec
from aibench.results import recompute
from aibench.results.work import FORMULAS, expected_work
from aibench.telemetry.core import Telemetry
from aibench.workloads.run import run_workload

CPU = torch.device("cpu")

# Odd shapes and every dtype family a formula distinguishes; the torch backend only (the Triton
# interpreter gives the same work, far slower).
REAL_CASES: list[tuple[str, dict[str, Any]]] = [
    ("gemm", {"m": 33, "n": 65, "k": 17, "dtype": "float32"}),
    ("gemm", {"m": 7, "n": 5, "k": 129, "dtype": "bfloat16", "transpose_b": True}),
    ("attention.prefill", {"batch": 2, "heads": 4, "kv_heads": 2, "seq": 19, "head_dim": 16, "dtype": "float32",
                           "causal": True}),
    ("attention.prefill", {"batch": 1, "heads": 2, "kv_heads": 2, "seq": 9, "head_dim": 16, "dtype": "float32",
                           "causal": False}),
    ("attention.decode", {"batch": 3, "heads": 4, "kv_heads": 1, "context": 23, "head_dim": 16, "dtype": "float32"}),
    ("memory.copy", {"mib": 1, "dtype": "float32"}),
    ("memory.triad", {"mib": 1, "dtype": "bfloat16"}),
    ("llm.prefill", {"model": "tiny", "batch": 2, "prompt_len": 7, "dtype": "float32"}),
    ("llm.decode", {"model": "tiny", "batch": 2, "context_len": 5, "new_tokens": 3, "dtype": "float32"}),
]


def _records(name: str, params: dict[str, Any], options: Any = FAST, **kw: Any) -> list[dict[str, Any]]:
    return [o.record.to_dict() for o in run_workload(name, params, CPU, ["torch"], options, **kw)]


@pytest.mark.parametrize(("name", "params"), REAL_CASES, ids=lambda x: x if isinstance(x, str) else None)
def test_the_formulas_give_the_work_the_real_workload_records(name: str, params: dict[str, Any]) -> None:
    (rec,) = _records(name, params)
    assert rec["status"] == "ok", rec["reason"]
    want = expected_work(rec)
    assert want is not None and want  # the formula covers this workload at these params
    assert {u: rec["work"][u] for u in want} == {u: float(a) for u, a in want.items()}
    assert recompute.record_problems(rec, None) == []


def test_every_formula_names_a_registered_workload() -> None:
    from aibench.workloads.registry import REGISTRY, load_builtin

    load_builtin()
    assert set(FORMULAS) <= set(REGISTRY)


def test_a_record_with_energy_from_a_real_window_is_consistent() -> None:
    # The runner's own telemetry path (a stand-in sensor of 250 W): energy per call, average power
    # and J per unit as written are what the recompute gives.
    tele = Telemetry("nvml", [ConstantReader()], interval_s=0.002)
    options = dataclasses.replace(FAST, telemetry=True, energy_min_s=0.05)
    try:
        (rec,) = _records("memory.triad", {"mib": 1, "dtype": "float32"}, options, telemetry=tele)
    finally:
        tele.close()
    assert rec["telemetry"]["energy_j"] > 0  # the window measured energy
    assert rec["telemetry"]["per_unit"]["j_per_gb"] is not None
    assert recompute.energy_problems(rec) == []


def _gemm_record() -> dict[str, Any]:
    (rec,) = _records("gemm", {"m": 16, "n": 24, "k": 8, "dtype": "float32"})
    return rec


def test_raised_work_is_a_work_mismatch_even_with_rates_to_match() -> None:
    rec = _gemm_record()
    lie = copy.deepcopy(rec)
    lie["work"]["flops"] *= 10
    lie["metrics"].update(recompute.expected_metrics(lie))  # the vendor raised the rate with it
    codes = [c for c, _ in recompute.record_problems(lie, None)]
    assert codes == ["work_mismatch"]
    del lie["work"]["bytes"]
    assert [c for c, _ in recompute.work_problems(lie)] == ["work_mismatch", "work_mismatch"]


@pytest.mark.parametrize("size", ["sixteen", 16.0, 1e308, True, -16])
def test_sizes_the_formula_cannot_read_are_a_work_mismatch_not_unchecked_work(size: Any) -> None:
    # No made-up expectation (expected_work gives none), but no pass either: "m": 16.0 with its work
    # and rates raised once went through unchecked, since the formula only reads whole sizes.
    rec = _gemm_record()
    rec["params"]["m"] = size
    rec["work"]["flops"] *= 10
    rec["metrics"].update(recompute.expected_metrics(rec))
    assert expected_work(rec) is None
    (problem,) = recompute.work_problems(rec)
    assert problem[0] == "work_mismatch" and "params.m" in problem[1]


def test_a_workload_with_no_formula_checks_no_work() -> None:
    rec = _gemm_record()
    rec["workload"] = "vendor.custom"
    rec["params"]["m"] = "sixteen"  # sizes of a workload this aibench has no formula for: not read
    assert expected_work(rec) is None and recompute.work_problems(rec) == []


H100 = "NVIDIA H100 80GB HBM3"


def _on_h100(rec: dict[str, Any], pct: float) -> dict[str, Any]:
    rec = copy.deepcopy(rec)
    rec["device"] = {"spec": "cuda:0", "kind": "cuda", "name": H100, "index": 0}
    rec["metrics"]["pct_peak_tflops"] = pct
    return rec


def test_a_percent_of_peak_must_put_100_percent_at_a_datasheet_peak() -> None:
    spec = match_spec(H100)
    assert spec is not None
    rec = _gemm_record()
    pct = 100.0 * rec["metrics"]["tflops"] / spec.peak_tflops["float32"]
    assert recompute.peak_problems(_on_h100(rec, pct)) == []
    (code, why), = recompute.peak_problems(_on_h100(rec, pct * 1.5))
    assert code == "metric_mismatch" and "not a datasheet peak" in why


def test_a_percent_of_peak_on_a_device_with_no_datasheet_row_is_a_lie() -> None:
    rec = _gemm_record()  # a CPU: no datasheet row, so no honest % of peak exists
    rec["metrics"]["pct_peak_bandwidth"] = 50.0
    (code, why), = recompute.peak_problems(rec)
    assert code == "metric_mismatch" and "no datasheet peak" in why


def _with_energy() -> dict[str, Any]:
    rec = _gemm_record()
    energy, calls, duration = 30.0, 1000, 0.2
    rec["telemetry"] = {"available": True, "reason": None, "energy_j": energy, "calls": calls, "duration_s": duration,
                        "energy_per_call_j": energy / calls, "avg_power_w": energy / duration,
                        "devices": [{"index": 0, "energy_j": 10.0}, {"index": 1, "energy_j": 20.0}],
                        "work_per_call": dict(rec["work"]),
                        "per_unit": recompute.per_unit(energy / calls, rec["work"])}
    return rec


def test_an_energy_window_that_adds_up_gives_no_finding() -> None:
    assert recompute.energy_problems(_with_energy()) == []


@pytest.mark.parametrize(("path", "factor"), [
    (("per_unit", "j_per_tflop"), 0.5), (("per_unit", "tflop_per_j"), 2.0), (("energy_per_call_j",), 0.5),
    (("avg_power_w",), 0.8), (("energy_j",), 0.5),
])
def test_each_lowered_energy_figure_is_an_energy_mismatch(path: tuple[str, ...], factor: float) -> None:
    rec = _with_energy()
    box = rec["telemetry"]
    for key in path[:-1]:
        box = box[key]
    box[path[-1]] *= factor
    problems = recompute.energy_problems(rec)
    assert problems and {c for c, _ in problems} == {"energy_mismatch"}
    assert "energy_mismatch" in recompute.REFUSING_CODES


def test_energy_per_unit_of_work_the_record_does_not_do_is_a_mismatch() -> None:
    rec = _with_energy()
    rec["telemetry"]["per_unit"]["j_per_token"] = 0.001  # a gemm does no tokens: a report would show it
    (code, why), = recompute.energy_problems(rec)
    assert code == "energy_mismatch" and "'j_per_token' names no unit" in why


def test_an_energy_window_over_other_work_is_a_mismatch() -> None:
    rec = _with_energy()
    rec["telemetry"]["work_per_call"] = {"flops": 1.0}
    assert [c for c, _ in recompute.energy_problems(rec)] == ["energy_mismatch"]
