"""GPU self-check of the kernels: correctness at real sizes, then speed against the vendor libraries.

Runs the `memory.copy`, `gemm`, `attention.prefill` and `attention.decode` workloads through the
normal runner (so every number is a record with raw samples and a passed reference check) over the
LLM shape sets, then prints the targets of the kernels issue:

  - matmul  >= 0.9x torch.matmul (cuBLAS) at 4096^3 and 8192^3 and in geometric mean over LLM shapes
  - causal prefill attention, D = 128, >= 0.9x SDPA at sequence lengths 4k-16k
  - decode attention >= 80% of the copy bandwidth measured in the same run

and, with --models, the full-model targets of the models issue:

  - llama-3.1-8b bf16 decode at batch 1 >= 80% MBU with CUDA graphs: torch.compile's
    reduce-overhead mode, as gpt-fast measures it: Inductor fuses the ~50 small kernels a layer
    runs eagerly (counted on the tiny config's CPU profile), then replays CUDA graphs. The eager
    kernels replayed as one graph are measured too, last, as information (~1500 tiny kernels a
    token at 8B, estimated to cost about as much GPU time as reading the weights).
  - llama-3.1-8b bf16 prefill >= 60% MFU at 8k tokens

    python scripts/gpu_check.py --out gpu-check/ [--budget-s 240] [--deadline-s 300] [--dtype bfloat16]
                                [--models | --models-only]

Writes records.jsonl and summary.json under --out, both as it goes: each record is appended (and
fsynced) the moment its backend finishes, and the summary is rewritten atomically after it, so a
kill (a `timeout`, the end of a lease) keeps everything measured until then. --budget-s stops
starting new cases; --deadline-s cuts a case still running (its backend gets no record, the
summary names it) so that the script ends by itself. The summary states each target with its
value, bound and verdict (met: true / false, or null with the reason when it was not measured
or only part of its shape set was), and the card, driver, versions and date.
Exit 0 even when a target is missed (the summary says so); exit 1 only when a correctness check
failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from aibench.core import stats
from aibench.core.deadline import Deadline
from aibench.core.errors import first_line
from aibench.core.jsonutil import json_safe, write_json_atomic
from aibench.device import devices
from aibench.measure.records import Outcome, append_jsonl, now_iso
from aibench.measure.runner import RunOptions
from aibench.measure.timer import TimerConfig
from aibench.workloads.run import run_workload
from aibench.workloads.shapes import ATTENTION_DECODE_SETS, GEMM_SHAPE_SETS

TIMER = TimerConfig(warmup_s=0.1, min_samples=10, min_time_s=0.1, max_time_s=1.5, target_rel_se=0.01)


# Decode-sized kernels (a few microseconds) and decode steps are launch-bound when timed one by
# one: graph replays measure the GPU's time, for both backends alike. The workloads rotate copies
# of their operands (aibench.workloads.coldcache), so replays still read cold memory.
GRAPH_TIMER = replace(TIMER, cuda_graph=True, flush_l2=False)
DECODE_MAX_M = 64  # GEMMs of at most this many tokens are decode GEMMs (shapes.DECODE_TOKENS)
# The LLM shape set is 56 GEMMs of 2-3 backends: at TIMER's pace they and their autotuning would
# not fit one device call. Its cases stop at 0.05 s of samples (>= 10 samples, the 1% noise target
# still applies): an 8B decode GEMM is ~10 us a call, a 70B prefill one ~10 ms.
LLM_TIMER = replace(TIMER, warmup_s=0.05, min_time_s=0.05, max_time_s=0.5)
LLM_GRAPH_TIMER = replace(LLM_TIMER, cuda_graph=True, flush_l2=False)


def timer_for(group: str, params: dict[str, Any]) -> TimerConfig:
    """Graph replays for decode-sized work, events with an L2 flush for everything else."""
    if group == "gemm-llm":
        return LLM_GRAPH_TIMER if params["m"] <= DECODE_MAX_M else LLM_TIMER
    if group in ("llm-decode-graph", "attn-decode"):
        return GRAPH_TIMER
    return TIMER


_LLAMA_8B = {"model": "llama-3.1-8b", "dtype": "bfloat16"}


def model_plan() -> list[tuple[str, str, dict[str, Any]]]:
    """The models issue's targets, run first (torch backend: the model on the vendor libraries)."""
    return [
        ("llm-decode", "llm.decode", {**_LLAMA_8B, "batch": 1, "context_len": 2048, "new_tokens": 16,
                                      "compile": True}),
        ("llm-prefill", "llm.prefill", {**_LLAMA_8B, "batch": 1, "prompt_len": 8192}),
    ]


def model_tail_plan() -> list[tuple[str, str, dict[str, Any]]]:
    """Informational, after the kernels, if the budget allows: decode without compile (its eager
    kernels as one graph), and prefill with compile (Inductor fuses the norms, RoPE and SwiGLU
    elementwise passes on which eager prefill spends an estimated ~10% of its time). The compiled
    prefill moves up to run right after the eager one when that one misses the MFU target
    (`promote_compiled_prefill`)."""
    return [("llm-decode-graph", "llm.decode", {**_LLAMA_8B, "batch": 1, "context_len": 2048, "new_tokens": 1}),
            ("llm-prefill-compiled", "llm.prefill", {**_LLAMA_8B, "batch": 1, "prompt_len": 8192, "compile": True})]


def plan(dtype: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(group, workload, params) in priority order: the headline targets first."""
    cases: list[tuple[str, str, dict[str, Any]]] = [("copy", "memory.copy", {"mib": 2048, "dtype": "float32"})]
    for s in (4096, 8192):
        cases.append(("gemm-square", "gemm", {"m": s, "n": s, "k": s, "dtype": dtype}))
    for seq in (4096, 8192, 16384):
        cases.append(("attn-prefill", "attention.prefill", {"batch": 1, "heads": 32, "kv_heads": 8, "seq": seq,
                                                             "head_dim": 128, "causal": True, "dtype": dtype}))
    decode = ATTENTION_DECODE_SETS.get("llama3-8b") or next(iter(ATTENTION_DECODE_SETS.values()))
    for shape in decode:
        cases.append(("attn-decode", "attention.decode", {**shape.params(), "dtype": dtype}))
    for name in ("llama3-8b", "llama3-70b"):
        for shape in GEMM_SHAPE_SETS[name]:
            cases.append(("gemm-llm", "gemm", {**shape.params(), "dtype": dtype}))
    return cases


def backends_for(group: str, params: dict[str, Any]) -> list[str] | None:
    """The models on the vendor libraries only; decode GEMMs without the TMA kernel, whose
    64-256-row tiles are made for prefill (it would spend the budget on M = 1). None: all."""
    if group.startswith("llm-"):
        return ["torch"]
    if group == "gemm-llm" and params["m"] <= DECODE_MAX_M:
        return ["torch", "triton"]
    return None


def ordered_cases(dtype: str, models: bool, kernels: bool = True) -> list[tuple[str, str, dict[str, Any]]]:
    """What to run, most important first (the budget may stop the run anywhere): the kernel
    targets (the headline ones, then the LLM shape set, whose geomean is the target last measured
    short of its bound), then with `models` the model targets and the informational model cases."""
    return (plan(dtype) if kernels else []) + (model_plan() + model_tail_plan() if models else [])


PREFILL_MFU_TARGET = 60.0  # models issue: llama-3.1-8b prefill at 8k tokens


def promote_compiled_prefill(remaining: list[tuple[str, str, dict[str, Any]]],
                             rec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """`remaining` with the compiled prefill moved to the front when `rec`, the eager prefill,
    missed the MFU target (or has no MFU): the issue names no mode for prefill, so the compiled
    number decides it then, before the LLM-shape GEMMs can spend the budget."""
    if rec["details"].get("gpu_check_group") != "llm-prefill" or rec["backend"] != "torch":
        return remaining
    mfu = rec["metrics"].get("mfu_pct")
    if isinstance(mfu, (int, float)) and mfu >= PREFILL_MFU_TARGET:
        return remaining
    first = [c for c in remaining if c[0] == "llm-prefill-compiled"]
    return first + [c for c in remaining if c[0] != "llm-prefill-compiled"]


Case = tuple[str, str, dict[str, Any]]


def _label(case: Case) -> str:
    group, name, params = case
    return f"{group} {name} " + ",".join(f"{k}={v}" for k, v in params.items() if k != "dtype")


class _Run:
    """One gpu_check run's state: the records so far, written the moment each is made, and the
    summary rewritten after each, so that a kill loses at most the backend that was running."""

    def __init__(self, out: Path, device: torch.device, planned: list[Case], budget_s: float,
                 deadline_s: float | None) -> None:
        self.out, self.device, self.planned = out, device, planned
        self.budget_s, self.deadline_s = budget_s, deadline_s
        self.records_path = out / "records.jsonl"
        self.records_path.write_text("")  # this run's records only: a rerun into --out must not mix
        self.results: list[dict[str, Any]] = []
        self.remaining: list[Case] = list(planned)
        self.started: list[Case] = []
        self.cut: list[str] = []
        self.errors: list[str] = []
        self.unfinished: dict[str, list[str]] = {}  # group -> why a case of it has no complete result
        self.stopped: str | None = None
        self.started_at = now_iso()
        self.t0 = time.perf_counter()
        self.environment = _environment()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def record(self, outcome: Outcome, group: str) -> None:
        rec = outcome.record.to_dict()
        rec["details"]["gpu_check_group"] = group
        append_jsonl(self.records_path, rec)  # flushed and fsynced: a kill from here on keeps it
        self.results.append(rec)
        self.remaining = promote_compiled_prefill(self.remaining, rec)
        m = rec["metrics"]
        print(f"{group:13s} {rec['backend']:7s} {rec['status']:8s} "
              f"{_short(rec['params']):58s} med={_ms(rec):>9s} "
              f"TF={_num(m, 'tflops', 7, 1)} GB/s={_num(m, 'gbps', 8, 1)} x={_num(m, 'speedup', 5, 2)}"
              + (f"  [{rec['reason']}]" if rec["reason"] else ""), flush=True)
        self.save(finished=False)

    def run_one(self, case: Case) -> bool:
        """Run one case (every backend it has); False when the deadline cut it."""
        group, name, params = case
        self.started.append(case)
        left = None if self.deadline_s is None else max(self.deadline_s - self.elapsed(), 1.0)
        # Each backend's own limit (a `failed: timeout` record) and one for the whole case: a
        # case of three backends must not run three times the time left.
        options = RunOptions(timer=timer_for(group, params), preview=False,
                             **({} if left is None else {"case_timeout_s": left}))
        cut = Deadline(left)
        try:
            with cut:
                run_workload(name, params, self.device, backends=backends_for(group, params), options=options,
                             on_outcome=lambda outcome: self.record(outcome, group))
        except KeyboardInterrupt:
            if not cut.fired:
                raise  # a real Ctrl-C: the records and summary written so far stay
            self.cut.append(f"{_label(case)}: still running at the {self.deadline_s:.0f} s deadline")
            self.unfinished.setdefault(group, []).append("cut: still running at the deadline")
            return False
        except Exception as exc:  # outside any backend (parameters, a device query): the next case runs
            self.errors.append(f"{_label(case)}: {type(exc).__name__}: {first_line(exc)}")
            self.unfinished.setdefault(group, []).append(f"error: {type(exc).__name__}: {first_line(exc)}")
            self.save(finished=False)
        return True

    def run(self) -> None:
        while self.remaining:
            if self.elapsed() > self.budget_s:
                self.stopped = "budget"
                print(f"budget of {self.budget_s:.0f} s spent: skipping the rest", flush=True)
                break
            if self.deadline_s is not None and self.elapsed() >= self.deadline_s:
                self.stopped = "deadline"
                break
            if not self.run_one(self.remaining.pop(0)):
                self.stopped = "deadline"
                print(f"deadline of {self.deadline_s:.0f} s reached: the case running was cut", flush=True)
                break

    def save(self, finished: bool) -> dict[str, Any]:
        run = {
            "started_at": self.started_at,
            "elapsed_s": round(self.elapsed(), 1),
            "budget_s": self.budget_s,
            "deadline_s": self.deadline_s,
            "finished": finished,
            # budget | deadline: the rest was not run; null: everything ran (or, unfinished, still running)
            "stopped": self.stopped,
            "cases_planned": len(self.planned),
            "cases_started": len(self.started),
            "not_run": [_label(c) for c in self.remaining] if finished else [],
            "cut": self.cut,
            "errors": self.errors,
        }
        not_done = {group: list(why) for group, why in self.unfinished.items()}
        for group, _, _ in self.remaining:
            not_done.setdefault(group, []).append(
                "not run: the time box ended before this case" if finished else "not run yet")
        summary = summarize(self.results, self.device, planned=_group_counts(self.planned),
                            not_done={g: "; ".join(dict.fromkeys(w)) for g, w in not_done.items()},
                            run=run, environment=self.environment)
        write_json_atomic(self.out / "summary.json", json_safe(summary))
        return summary


def _group_counts(cases: list[Case]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for group, _, _ in cases:
        counts[group] = counts.get(group, 0) + 1
    return counts


def _environment() -> dict[str, Any]:
    """Software versions (driver, CUDA, torch, triton, ...) and the GPUs as found; never raises."""
    try:
        from aibench.device.env import collect_environment

        env = collect_environment()
        return {"software": env.get("software"), "gpus": env.get("gpus"), "unavailable": env.get("unavailable")}
    except Exception as exc:  # the check's numbers matter more than its fingerprint
        return {"unavailable": {"environment": f"{type(exc).__name__}: {first_line(exc)}"}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-s", type=float, default=240.0, help="stop starting new cases after this")
    ap.add_argument("--deadline-s", type=float, default=None,
                    help="cut a case still running this many seconds after the start, then write the "
                         "summary and exit (default: no cut; each backend has the runner's own limit)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--models", action="store_true", help="also the llama-3.1-8b MBU/MFU targets, after the kernels")
    ap.add_argument("--models-only", action="store_true", help="the llama-3.1-8b MBU/MFU targets alone")
    args = ap.parse_args(argv)
    device = devices.resolve("auto")
    if device.type != "cuda":
        print("gpu_check: no GPU visible; nothing to check", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    cases = ordered_cases(args.dtype, args.models or args.models_only, not args.models_only)
    run = _Run(args.out, device, cases, args.budget_s, args.deadline_s)
    run.save(finished=False)  # from the first second on, summary.json says what ran (nothing yet)
    run.run()
    summary = run.save(finished=True)
    print(json.dumps(summary["targets"], indent=2))
    print(json.dumps(summary["run"], indent=2))
    return 1 if summary["wrong_results"] else 0


def _short(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items() if k != "dtype")[:58]


def _num(metrics: dict[str, Any], key: str, width: int, digits: int) -> str:
    """A metric for the console line; "-" when the record has none (never a made-up 0)."""
    value = metrics.get(key)
    return f"{value:{width}.{digits}f}" if isinstance(value, (int, float)) else "-".rjust(width)


def _ms(rec: dict[str, Any]) -> str:
    med = (rec.get("timing") or {}).get("median")
    return f"{med * 1e3:.3f}ms" if med else "-"


def _speedups(results: list[dict[str, Any]], group: str, pred: Any = lambda r: True,
              backend: str = "triton") -> list[float]:
    return [r["metrics"]["speedup"] for r in results
            if r["details"].get("gpu_check_group") == group and r["backend"] == backend
            and "speedup" in r["metrics"] and pred(r)]


def _square_speedups(results: list[dict[str, Any]], backend: str) -> dict[int, float | None]:
    """Size of the square GEMM -> speedup of `backend` over cuBLAS."""
    return {r["params"]["m"]: r["metrics"].get("speedup") for r in results
            if r["details"].get("gpu_check_group") == "gemm-square" and r["backend"] == backend}


def _vs_backend(results: list[dict[str, Any]], group: str, reference: str) -> list[float]:
    """reference median / triton median for each parameter set both timed (> 1: triton faster)."""
    medians: dict[tuple[str, str], float] = {}
    for r in results:
        if r["details"].get("gpu_check_group") == group and r["status"] == "ok":
            medians[(json.dumps(r["params"], sort_keys=True), r["backend"])] = r["timing"]["median"]
    return [medians[(key, reference)] / t for (key, backend), t in medians.items()
            if backend == "triton" and (key, reference) in medians]


def _group_records(results: list[dict[str, Any]], groups: tuple[str, ...]) -> list[dict[str, Any]]:
    return [r for r in results if r["details"].get("gpu_check_group") in groups]


def _why_missing(results: list[dict[str, Any]], groups: tuple[str, ...], metric: str | None,
                 not_done: dict[str, str], pred: Any = lambda r: True) -> str:
    """Why a target has no value: never a bare null (and never a 0). `pred` picks the target's
    own records among its groups' (the square GEMM of one size)."""
    recs = [r for r in _group_records(results, groups) if pred(r)]
    bad = [f"{r['backend']} {r['status']}: {r['reason']}" for r in recs if r["status"] != "ok"]
    if bad:
        return "; ".join(dict.fromkeys(bad))[:600]
    if metric is not None:
        why = [r["unavailable"][metric] for r in recs if metric in (r.get("unavailable") or {})]
        if why:
            return f"{metric}: {why[0]}"
    why_not = [not_done[g] for g in groups if g in not_done]
    if why_not:
        return "; ".join(why_not)
    if recs:
        return "measured, but no record carries the figure (a backend or its baseline is missing)"
    return "not part of this run's plan (run with --models for the model targets)" \
        if any(g.startswith("llm-") for g in groups) else "not part of this run's plan"


def _target(value: float | None, bound: float, measured: int | None = None, planned: int | None = None,
            why: str = "") -> dict[str, Any]:
    """A target's verdict: met is value >= bound, or null when there is no value or only part of
    its shape set was measured (a minimum or a geomean over a subset proves nothing)."""
    t: dict[str, Any] = {"value": value, "target": bound, "bound": f">= {bound:g}"}
    if measured is not None:
        t["n"] = measured
    if planned is not None:
        t["planned"] = planned
    if value is None:
        t["met"], t["reason"] = None, why
    elif planned is not None and measured is not None and measured < planned:
        t["met"], t["reason"] = None, f"only {measured} of {planned} planned cases measured: {why}"
    else:
        t["met"] = value >= bound
    return t


def summarize(results: list[dict[str, Any]], device: torch.device, *, planned: dict[str, int] | None = None,
              not_done: dict[str, str] | None = None, run: dict[str, Any] | None = None,
              environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """The targets from the records. `planned`: cases planned per group (a target over part of its
    set gets no verdict); `not_done`: group -> why some of its cases have no result (not run, cut,
    an error); `run`: how the run went; `environment`: software versions and GPUs."""
    plan = planned or {}

    def why(groups: tuple[str, ...], metric: str | None = None, pred: Any = lambda r: True) -> str:
        return _why_missing(results, groups, metric, not_done or {}, pred)

    def square_why(size: int) -> str:
        return why(("gemm-square",), "speedup", lambda r: r["params"].get("m") == size)

    # The copy ceiling is torch's device-to-device copy (the figure aibench/kernels/PERF.md quotes).
    copy = [r for r in results if r["workload"] == "memory.copy" and r["backend"] == "torch"
            and r["status"] == "ok" and isinstance(r["metrics"].get("gbps"), (int, float))]
    copy_gbps = max((r["metrics"]["gbps"] for r in copy), default=None)
    decode = [r for r in results if r["details"].get("gpu_check_group") == "attn-decode"
              and r["backend"] == "triton" and r["status"] == "ok" and isinstance(r["metrics"].get("gbps"), (int, float))]
    decode_frac = [r["metrics"]["gbps"] / copy_gbps for r in decode] if copy_gbps else []
    square, square_tma = _square_speedups(results, "triton"), _square_speedups(results, "triton.tma")
    llm_tma = _speedups(results, "gemm-llm", lambda r: r["params"]["m"] > DECODE_MAX_M, backend="triton.tma")
    llm = _speedups(results, "gemm-llm")
    llm_prefill = _speedups(results, "gemm-llm", lambda r: r["params"]["m"] > DECODE_MAX_M)
    llm_decode = _speedups(results, "gemm-llm", lambda r: r["params"]["m"] <= DECODE_MAX_M)
    model = {r["details"]["gpu_check_group"]: r["metrics"] for r in results
             if r["details"].get("gpu_check_group", "").startswith("llm-") and r["backend"] == "torch"}
    prefill = _vs_backend(results, "attn-prefill", "torch.flash")

    def geo(xs: list[float]) -> float | None:
        return stats.geomean(xs) if xs else None

    def count(group: str) -> int | None:
        return plan.get(group) if planned is not None else None

    llm_target = _target(geo(llm), 0.9, len(llm), count("gemm-llm"), why(("gemm-llm",), "speedup"))
    llm_target.update({"prefill": geo(llm_prefill), "decode": geo(llm_decode),
                       "decode_timing": "cuda_graph replays, both backends"})
    prefill_target = _target(min(prefill, default=None), 0.9, len(prefill), count("attn-prefill"),
                             why(("attn-prefill",)))
    prefill_target["all"] = prefill
    decode_target = _target(min(decode_frac, default=None), 0.8, len(decode_frac), count("attn-decode"),
                            why(("attn-decode", "copy"), "gbps"))
    decode_target["all"] = decode_frac
    mbu = _target(model.get("llm-decode", {}).get("mbu_pct"), 80, why=why(("llm-decode",), "mbu_pct"))
    mbu["how"] = "torch.compile reduce-overhead (CUDA graphs), 16 steps a call"
    mfu = _target(model.get("llm-prefill", {}).get("mfu_pct"), PREFILL_MFU_TARGET, why=why(("llm-prefill",), "mfu_pct"))
    mfu["how"] = "eager (cuBLAS + SDPA flash)"
    targets = {
        "matmul_4096_vs_cublas": _target(square.get(4096), 0.9, why=square_why(4096)),
        "matmul_8192_vs_cublas": _target(square.get(8192), 0.9, why=square_why(8192)),
        "matmul_llm_geomean_vs_cublas": llm_target,
        # The persistent TMA kernel (the `triton.tma` backend), beside the pointer kernel that
        # `matmul` calls: which one should serve aligned prefill shapes is decided from these.
        "matmul_tma_vs_cublas": {"4096": square_tma.get(4096), "8192": square_tma.get(8192),
                                 "llm_prefill_geomean": geo(llm_tma), "n": len(llm_tma)},
        "prefill_causal_d128_vs_sdpa_flash_min": prefill_target,
        "prefill_causal_d128_vs_sdpa_default": {"all": _speedups(results, "attn-prefill")},
        "decode_fraction_of_copy_bw_min": decode_target,
        "llama8b_decode_b1_mbu_pct": mbu,
        "llama8b_decode_b1_mbu_pct_eager_graph": {"value": model.get("llm-decode-graph", {}).get("mbu_pct"),
                                                  "how": "eager kernels replayed as one CUDA graph"},
        "llama8b_prefill_8k_mfu_pct": mfu,
        "llama8b_prefill_8k_mfu_pct_compiled": {"value": model.get("llm-prefill-compiled", {}).get("mfu_pct"),
                                                "how": "torch.compile"},
    }
    verdicts = [t["met"] for t in targets.values() if "met" in t]
    return {
        "date": now_iso(),
        "device": devices.describe(device).as_dict(),
        "torch": torch.__version__,
        "triton": __import__("triton").__version__,
        "environment": environment,
        "run": run,
        "wrong_results": [r["id"] for r in results if r["status"] == "invalid"],
        "failed": [f"{r['id']}: {r['reason']}" for r in results if r["status"] == "failed"],
        "copy_gbps_torch_max": copy_gbps,
        "verdict": {"met": sum(v is True for v in verdicts), "missed": sum(v is False for v in verdicts),
                    "unmeasured": sum(v is None for v in verdicts)},
        "targets": targets,
    }


if __name__ == "__main__":
    raise SystemExit(main())
