"""`llm.train`: training steps of the Llama-family model (`llm.time_to_quality`, the time-to-target
preview, is aibench/workloads/llm_ttq.py).

`llm.train` times one optimizer step (forward, fp32 cross-entropy, backward, AdamW) of the
named model on a fixed synthetic batch (seeded tokens), after a correctness gate:
  1. one step's gradients of a tiny model (`tiny`, or `tiny-moe` for an MoE model), in the same
     precision, checkpointing and parallel layout, against float64 on the CPU (normwise relative
     error within the dtype's bound, aibench.core.checks);
  2. the measured model's loss decreases over `check_steps` steps on its fixed batch.
Precision: bf16 autocast with fp32 master weights, gradients and AdamW state (FSDP2 also gathers
parameters in bf16 and reduces gradients in fp32); the CPU preview runs fp32 (`compute`).

Layouts: `ranks` 1 runs in this process (the runner's timer: CUDA events with warm-up on a GPU);
more ranks run as a torchrun job on this node (aibench.workloads.train_launch): FSDP2 over
ranks / tp data-parallel shards, DTensor tensor parallel over `tp` (projections of each block;
embedding, norms and lm_head replicated; MoE experts never split). A sample is the slowest
rank's step, timed by CUDA events in the ranks. Multi-node launches, pipeline, context and
expert parallelism, sequence parallelism and loss parallelism are not implemented.

Metrics: tokens/s (all ranks) and per GPU, MFU and HFU in TorchTitan's convention and with the
causal halving (aibench.models.train_flops), peak allocated/reserved memory (max over ranks; a GPU
only), and through the energy window energy per trained token (`work` = tokens per step).
MoE (Mixtral) trains without a router load-balancing loss: the step's cost is that of the
routing it gets, which a real run's auxiliary loss would even out.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import torch

from aibench.collectives.launch import plan_from_timer
from aibench.core import stats
from aibench.core.checks import Check, tolerance_for
from aibench.core.errors import Unsupported, UsageError
from aibench.device import devices
from aibench.measure.case import Case, CustomMeasurement, Param
from aibench.models.config import CONFIGS, ModelArgs
from aibench.models.memory import GIB, free_bytes
from aibench.models.train import (
    ADAMW,
    Layout,
    TrainSpec,
    build_trainer,
    peak_memory,
    synthetic_tokens,
    train_memory_bytes,
)
from aibench.models.train_check import check_args, grad_check, loss_curve, loss_decreases
from aibench.models.train_flops import TrainFlops, utilization_pct
from aibench.workloads.registry import workload
from aibench.workloads.train_launch import CHECK_TIMEOUT_S, TrainJob

COMPUTE = ("bf16", "fp32")
PEAK_DTYPE = {"bf16": "bfloat16", "fp32": "float32"}
CPU_NOTE = ("CPU preview: fp32 throughout (no bf16 autocast), gloo between processes sharing the CPU; "
            "it exercises the pipeline, its numbers are not comparable with a GPU's")
MEMORY_MARGIN = 0.92  # of the free memory a run may plan to use (allocator fragmentation, NCCL buffers)

COMMON_PARAMS = (
    Param("compute", str, "bf16", "bf16 (autocast, fp32 master weights) or fp32", choices=COMPUTE, preview="fp32"),
    Param("ac_every", int, 1, "activation checkpointing: every k-th block (0 none, 1 all, 2 every other)"),
    Param("compile", bool, False, "torch.compile each transformer block (GPU only)"),
    Param("seed", int, 0, "seed of the weights and the synthetic tokens"),
)
train_wl = workload(
    "llm.train",
    "Training step (forward, backward, AdamW; FSDP2/DTensor across ranks): tokens/s/GPU, MFU, HFU",
    (Param("model", str, "llama-3.1-8b", "named model configuration", choices=tuple(CONFIGS), preview="tiny"),
     Param("local_batch", int, 2, "sequences per data-parallel rank per step", preview=2),
     Param("seq", int, 8192, "tokens per sequence", preview=32),
     Param("ranks", int, 0, "processes, one per GPU (0: every visible GPU; 1 on a CPU)", preview=1),
     Param("tp", int, 1, "tensor-parallel ranks per model replica (ranks / tp shard it with FSDP2)"),
     *COMMON_PARAMS,
     Param("check_steps", int, 3, "steps of the loss-decrease gate on the fixed batch")),
)


def validate_train(p: dict[str, Any]) -> None:
    for name, least in (("local_batch", 1), ("seq", 2), ("ranks", 0), ("tp", 1), ("ac_every", 0),
                        ("check_steps", 2)):
        if p[name] < least:
            raise UsageError(f"{name} must be >= {least}, got {p[name]}")
    if p["ranks"] and p["ranks"] % p["tp"]:
        raise UsageError(f"ranks {p['ranks']} is not a multiple of tp {p['tp']}")
    args = ModelArgs.from_name(p["model"])
    if p["seq"] > args.block_size:
        raise UsageError(f"seq {p['seq']} exceeds model {args.name}'s {args.block_size} positions")


train_wl.validate = validate_train


# --- shared ------------------------------------------------------------------------------------


def world_size(ranks: int, device: torch.device) -> int:
    """Processes to run: `ranks`, or every visible GPU for 0 (1 on a CPU)."""
    if device.type != "cuda":
        return ranks or 1
    visible = torch.cuda.device_count()
    if ranks > visible:
        raise Unsupported(f"ranks={ranks} needs {ranks} GPUs, {visible} visible")
    return ranks or visible


def ensure_fits(spec: TrainSpec, layout: Layout, local_batch: int, device: torch.device) -> dict[str, int]:
    """Unsupported (skipped, with the sizes) when one rank's estimate exceeds its free memory."""
    need = train_memory_bytes(spec, layout, local_batch)
    if device.type == "cuda":
        have = free_bytes(torch.device("cuda", 0))
        where = f"each GPU has {have / GIB:.1f} GiB free" if have is not None else ""
        per = need["total"]
    else:
        have = free_bytes(device)
        where = f"the host has {have / GIB:.1f} GiB available for {layout.world_size} rank(s)" if have else ""
        per = need["total"] * layout.world_size
    if have is not None and per > MEMORY_MARGIN * have:
        parts = ", ".join(f"{k} {v / GIB:.1f}" for k, v in need.items() if k != "total")
        raise Unsupported(
            f"training {spec.args.name} over {layout.world_size} rank(s) (dp {layout.dp} x tp {layout.tp}) needs "
            f"~{need['total'] / GIB:.1f} GiB per rank (estimate, GiB: {parts}), but {where}; it needs more "
            f"ranks (FSDP2 shards the 16 bytes/parameter of weights, gradients and AdamW state) or more "
            f"activation checkpointing")
    return need


def _spec(p: dict[str, Any], device: torch.device, dp: int) -> TrainSpec:
    if p["compile"] and device.type != "cuda":
        raise Unsupported("compile=true needs a CUDA GPU (torch.compile of each block)")
    return TrainSpec(ModelArgs.from_name(p["model"]), global_batch=p["local_batch"] * dp, seq=p["seq"],
                     compute=p["compute"], ac_every=p["ac_every"], compile=p["compile"], seed=p["seed"])


def gate_check(grad_rel: float, grad_worst: str, loss_ok: bool, loss_detail: str, compute: str) -> Check:
    """The gate as one Check: gradients within the dtype's bound and the loss decreasing."""
    tol = tolerance_for(PEAK_DTYPE[compute])
    grads_ok = math.isfinite(grad_rel) and grad_rel <= tol
    parts = [f"gradients vs float64: relative error {grad_rel:.2e} (bound {tol:.0e}; worst {grad_worst})",
             loss_detail]
    return Check(grads_ok and loss_ok, None, grad_rel, tol, "; ".join(parts))


def rate_metrics(flops: TrainFlops, tokens_per_step: int, world: int, median_s: float,
                 peak: float | None) -> dict[str, float]:
    """tokens/s, per GPU, model TFLOP/s per GPU and, with a datasheet peak, MFU and HFU."""
    per_gpu = tokens_per_step / median_s / world
    out = {"step_time_s": median_s, "tokens_per_s": tokens_per_step / median_s, "tokens_per_s_per_gpu": per_gpu,
           "model_tflops_per_gpu": flops.model_flops_per_token * per_gpu / 1e12}
    if peak:
        out.update({
            "mfu_pct": utilization_pct(flops.model_flops_per_token, per_gpu, peak),
            "mfu_causal_pct": utilization_pct(flops.model_flops_per_token_causal, per_gpu, peak),
            "hfu_pct": utilization_pct(flops.hardware_flops_per_token, per_gpu, peak),
            "hfu_causal_pct": utilization_pct(flops.hardware_flops_per_token_causal, per_gpu, peak),
        })
    return out


def _no_peak(device: torch.device, compute: str) -> dict[str, str]:
    spec = devices.spec_for(device)
    peak = spec.peak_for(PEAK_DTYPE[compute]) if spec else None
    if peak:
        return {}
    why = devices.no_peak_reason(device, spec, f"{PEAK_DTYPE[compute]} TFLOP/s")
    return {k: why for k in ("mfu_pct", "mfu_causal_pct", "hfu_pct", "hfu_causal_pct")}


def _peak(device: torch.device, compute: str) -> float | None:
    spec = devices.spec_for(device)
    return spec.peak_for(PEAK_DTYPE[compute]) if spec else None


def _details(p: dict[str, Any], spec: TrainSpec, layout: Layout, flops: TrainFlops, device: torch.device,
             need: dict[str, int]) -> dict[str, Any]:
    a = spec.args
    out: dict[str, Any] = {
        "model": a.name, "moe": a.is_moe, "local_batch": p["local_batch"], "global_batch": spec.global_batch,
        "seq": spec.seq, "tokens_per_step": spec.global_batch * spec.seq, "parallel": layout.as_dict(),
        "precision": ("bf16 autocast, fp32 master weights/gradients/AdamW state"
                      + ("; FSDP2 MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)" if layout.dp > 1 else "")
                      if spec.compute == "bf16" else "fp32 throughout"),
        "activation_checkpointing": {"ac_every": spec.ac_every, "checkpointed_layers":
                                     len(range(0, a.n_layer, spec.ac_every)) if spec.ac_every else 0},
        "compile": spec.compile, "optimizer": {"name": "AdamW", **{k: list(v) if isinstance(v, tuple) else v
                                                                   for k, v in ADAMW.items()}},
        "data": f"synthetic uniform tokens, one fixed batch (seed {spec.seed + 1})",
        "flops": flops.as_dict(), "memory_estimate_bytes": need,
        "mfu_convention": "mfu_pct/hfu_pct: TorchTitan (no causal halving); *_causal_pct: Megatron-LM (halved)",
    }
    if a.is_moe:
        out["moe_note"] = "no router load-balancing loss (Mixtral's router_aux_loss) in the step"
    if device.type == "cpu":
        out["note"] = CPU_NOTE
    return out


# --- llm.train: one process ---------------------------------------------------------------------


def _single(p: dict[str, Any], device: torch.device, spec: TrainSpec, need: dict[str, int]) -> Case:
    layout = Layout()
    flops = TrainFlops.of(spec.args, spec.seq, spec.ac_every)
    trainer = build_trainer(spec, device)
    tokens = synthetic_tokens(spec.args.vocab_size, spec.global_batch, spec.seq, spec.seed + 1)
    inputs, labels = trainer.local_batch(tokens)
    details = _details(p, spec, layout, flops, device, need)
    details["launcher"] = "in-process (one rank)"

    def fn() -> torch.Tensor:
        loss = trainer.forward_backward(inputs, labels)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        return loss

    def check() -> Check:
        tiny = check_args(spec.args.is_moe)
        tiny_spec = TrainSpec(tiny, global_batch=spec.global_batch, seq=min(spec.seq, 32), compute=spec.compute,
                              ac_every=spec.ac_every, seed=spec.seed)
        grads = grad_check(build_trainer(tiny_spec, device),
                           synthetic_tokens(tiny.vocab_size, tiny_spec.global_batch, tiny_spec.seq, spec.seed + 2))
        losses = loss_curve(trainer, tokens, p["check_steps"])
        ok, detail = loss_decreases(losses)
        details["gate"] = {"check_model": tiny.name, "grad": grads.__dict__, "losses": losses}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)  # the peak read below is the timed steps'
        return gate_check(grads.rel_error, grads.worst, ok, detail, spec.compute)

    tokens_per_step = spec.global_batch * spec.seq
    peak = _peak(device, spec.compute)

    def metrics(median_s: float) -> dict[str, float]:
        mem, _ = peak_memory(device)
        return {**rate_metrics(flops, tokens_per_step, 1, median_s, peak), **mem}

    _, no_mem = peak_memory(device)
    return Case(fn=fn, check=check, flops=flops.model_flops_per_token * tokens_per_step, work={"tokens": tokens_per_step},
                dtype=PEAK_DTYPE[spec.compute], metrics=metrics, unavailable={**_no_peak(device, spec.compute), **no_mem},
                details=details, cuda_graph_ok=False)


# --- llm.train: a torchrun job --------------------------------------------------------------------


def rank_spec(p: dict[str, Any], layout: Layout, device: torch.device) -> dict[str, Any]:
    """What the ranks rebuild the run from (aibench.workloads.train_ranks.spec_from_dict)."""
    return {"model": p["model"], "local_batch": p["local_batch"], "dp": layout.dp, "tp": layout.tp, "seq": p["seq"],
            "compute": p["compute"], "ac_every": p["ac_every"], "compile": p["compile"], "seed": p["seed"],
            "device": device.type}


def _job(p: dict[str, Any], device: torch.device, spec: TrainSpec, layout: Layout, need: dict[str, int]) -> Case:
    flops = TrainFlops.of(spec.args, spec.seq, spec.ac_every)
    job = TrainJob(layout.world_size, rank_spec(p, layout, device))
    details = _details(p, spec, layout, flops, device, need)
    details["launcher"] = f"torchrun --standalone --nproc-per-node {layout.world_size} (one node)"
    details["devices"] = [r["name"] for r in job.prepare_reply]
    tokens_per_step = spec.global_batch * spec.seq
    peak = _peak(device, spec.compute)

    def check() -> Check:
        replies = job.request("check", p["check_steps"], CHECK_TIMEOUT_S)
        first = replies[0]
        grad_rel = max(r["grad"]["rel_error"] for r in replies)
        details["gate"] = {"check_model": first["check_model"], "grad": first["grad"], "losses": first["losses"]}
        return gate_check(grad_rel, first["grad"]["worst"], all(r["loss_ok"] for r in replies),
                          first["loss_detail"], spec.compute)

    def measure(timer_config: Any) -> CustomMeasurement:
        plan = plan_from_timer(timer_config)
        timeout = 600.0 + 4.0 * (plan.warmup_s + plan.max_time_s)
        reply = job.request("measure", asdict(plan), timeout)[0]
        samples = reply["samples_s"]
        median = stats.median(samples)
        metrics = {**rate_metrics(flops, tokens_per_step, layout.world_size, median, peak), **reply["peak"]}
        noise = stats.rel_stderr_median(samples) if len(samples) >= 2 else math.inf
        converged = len(samples) >= timer_config.min_samples and noise <= timer_config.target_rel_se
        extra = {"timing_method": "cuda_event" if device.type == "cuda" else "perf_counter",
                 "sample": "seconds per optimizer step, the slowest rank's (max over ranks)",
                 "first_step_s": reply["first_step_s"], "steps_timed": len(samples),
                 "losses_timed": reply["losses"], "energy_fn": "one optimizer step per call, run by the ranks"}
        stop = f"the ranks' plan: {len(samples)} steps for min_time_s; noise target {'met' if converged else 'not met'}"
        return CustomMeasurement(samples, metrics, extra, dict(reply["peak_unavailable"]),
                                 warmup_calls=reply["warmup_steps"], converged=converged, stop_reason=stop)

    def fn() -> None:
        job.request("burst", 1, 600.0)

    return Case(fn=fn, check=check, measure=measure, work={"tokens": tokens_per_step}, dtype=PEAK_DTYPE[spec.compute],
                unavailable=_no_peak(device, spec.compute), details=details, cuda_graph_ok=False,
                devices=layout.world_size if device.type == "cuda" else 1)


@train_wl.backend("torch", baseline=True,
                  description="eager PyTorch (optionally compiled blocks), FSDP2 + DTensor under torchrun")
def _train_torch(p: dict[str, Any], device: torch.device) -> Case:
    validate_train(p)
    world = world_size(p["ranks"], device)
    if world % p["tp"]:
        raise Unsupported(f"tp={p['tp']} needs a multiple of {p['tp']} ranks, this run has {world}"
                          + (" (one per visible GPU)" if device.type == "cuda" and not p["ranks"] else ""))
    layout = Layout(dp=world // p["tp"], tp=p["tp"])
    spec = _spec(p, device, layout.dp)
    if layout.tp > 1 and spec.args.is_moe:
        raise Unsupported("tensor parallel of MoE experts (expert parallel) is not implemented: use tp=1")
    if device.type not in ("cuda", "cpu"):
        raise Unsupported(f"llm.train runs on CUDA/ROCm GPUs or the CPU, not {device.type!r}")
    need = ensure_fits(spec, layout, p["local_batch"], device)
    if layout.world_size == 1:
        return _single(p, device, spec, need)
    return _job(p, device, spec, layout, need)
