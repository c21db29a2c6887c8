"""`llm.train`: training steps of the Llama-family model, and `llm.time_to_quality` (a preview of
MLPerf Training's time-to-target score on a shipped text).

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
import time
from dataclasses import asdict
from typing import Any

import torch

from aibench.collectives.launch import plan_from_timer
from aibench.core import stats
from aibench.core.checks import Check, tolerance_for
from aibench.core.errors import CheckFailed, Unsupported, UsageError
from aibench.device import devices
from aibench.measure.case import Case, CustomMeasurement, Param
from aibench.models.config import CONFIGS, ModelArgs
from aibench.models.memory import GIB, free_bytes
from aibench.models.text_data import (
    BYTE_VOCAB,
    TEXT_FILE,
    byte_tokens,
    random_windows,
    shipped_text,
    split_text,
    tiling_windows,
)
from aibench.models.train import (
    ADAMW,
    Layout,
    Trainer,
    TrainSpec,
    build_trainer,
    check_args,
    cross_entropy,
    grad_check,
    loss_curve,
    loss_decreases,
    peak_memory,
    synthetic_tokens,
    train_memory_bytes,
)
from aibench.models.train_flops import TrainFlops, utilization_pct
from aibench.workloads.registry import workload
from aibench.workloads.train_launch import CHECK_TIMEOUT_S, TrainJob

COMPUTE = ("bf16", "fp32")
_PEAK_DTYPE = {"bf16": "bfloat16", "fp32": "float32"}
CPU_NOTE = ("CPU preview: fp32 throughout (no bf16 autocast), gloo between processes sharing the CPU; "
            "it exercises the pipeline, its numbers are not comparable with a GPU's")
MEMORY_MARGIN = 0.92  # of the free memory a run may plan to use (allocator fragmentation, NCCL buffers)

_COMMON = (
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
     *_COMMON,
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
    tol = tolerance_for(_PEAK_DTYPE[compute])
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
    peak = spec.peak_for(_PEAK_DTYPE[compute]) if spec else None
    if peak:
        return {}
    why = devices.no_peak_reason(device, spec, f"{_PEAK_DTYPE[compute]} TFLOP/s")
    return {k: why for k in ("mfu_pct", "mfu_causal_pct", "hfu_pct", "hfu_causal_pct")}


def _peak(device: torch.device, compute: str) -> float | None:
    spec = devices.spec_for(device)
    return spec.peak_for(_PEAK_DTYPE[compute]) if spec else None


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
                dtype=_PEAK_DTYPE[spec.compute], metrics=metrics, unavailable={**_no_peak(device, spec.compute), **no_mem},
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

    return Case(fn=fn, check=check, measure=measure, work={"tokens": tokens_per_step}, dtype=_PEAK_DTYPE[spec.compute],
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


# --- llm.time_to_quality --------------------------------------------------------------------------

ttq_wl = workload(
    "llm.time_to_quality",
    f"Time to a target held-out loss training a small model on a shipped text ({TEXT_FILE}, bytes)",
    (Param("model", str, "tiny", "named model configuration (vocabulary >= 256: byte tokens)",
           choices=tuple(CONFIGS)),
     Param("batch", int, 16, "windows per step"),
     Param("seq", int, 64, "bytes per window"),
     Param("lr", float, 3e-3, "AdamW learning rate"),
     Param("target_loss", float, 2.5, "held-out cross-entropy (nats per byte) that ends the run"),
     Param("max_steps", int, 300, "steps before the run is declared not to have reached the target"),
     Param("eval_every", int, 10, "steps between evaluations of the held-out loss"),
     _COMMON[0], _COMMON[3]),
)


def validate_ttq(p: dict[str, Any]) -> None:
    for name in ("batch", "seq", "max_steps", "eval_every"):
        if p[name] < 1:
            raise UsageError(f"{name} must be >= 1, got {p[name]}")
    if not (p["lr"] > 0 and p["target_loss"] > 0):
        raise UsageError("lr and target_loss must be > 0")
    if ModelArgs.from_name(p["model"]).vocab_size < BYTE_VOCAB:
        raise UsageError(f"model {p['model']} has fewer than {BYTE_VOCAB} tokens: byte tokens do not fit")


ttq_wl.validate = validate_ttq
EVAL_FRACTION = 0.1  # the held-out end of the text


def train_to_target(trainer: Trainer, train: torch.Tensor, held_out: torch.Tensor, p: dict[str, Any],
                    device: torch.device) -> dict[str, Any]:
    """Train until the held-out loss <= target (evaluated every `eval_every` steps) or max_steps.
    Wall time from the first step to the evaluation that met the target, evaluations included
    (MLPerf Training's clock runs through its evaluations too)."""
    gen = torch.Generator().manual_seed(p["seed"] + 3)
    eval_set = tiling_windows(held_out, p["seq"]).to(device)
    steps_s: list[float] = []
    curve: list[dict[str, float]] = []
    start = time.perf_counter()
    for step in range(1, p["max_steps"] + 1):
        batch = random_windows(train, p["batch"], p["seq"], gen).to(device)
        t0 = time.perf_counter()
        loss = float(trainer.step(batch[:, :-1], batch[:, 1:]))  # float(): the step is done (a sync)
        steps_s.append(time.perf_counter() - t0)
        if step % p["eval_every"] == 0 or step == p["max_steps"]:
            with torch.no_grad(), trainer.autocast():
                held = float(cross_entropy(trainer.model(eval_set[:, :-1]), eval_set[:, 1:]))
            elapsed = time.perf_counter() - start
            curve.append({"step": step, "elapsed_s": elapsed, "train_loss": loss, "eval_loss": held})
            if held <= p["target_loss"]:
                return {"reached": True, "steps": step, "time_s": elapsed, "steps_s": steps_s, "curve": curve}
    return {"reached": False, "steps": p["max_steps"], "time_s": time.perf_counter() - start, "steps_s": steps_s,
            "curve": curve}


@ttq_wl.backend("torch", baseline=True, description="eager PyTorch, one process")
def _ttq_torch(p: dict[str, Any], device: torch.device) -> Case:
    validate_ttq(p)
    args = ModelArgs.from_name(p["model"])
    adamw = {**ADAMW, "lr": p["lr"]}
    spec = TrainSpec(args, global_batch=p["batch"], seq=p["seq"], compute=p["compute"], seed=p["seed"], adamw=adamw)
    ensure_fits(spec, Layout(), p["batch"], device)
    text = shipped_text()
    train, held_out = split_text(byte_tokens(text), EVAL_FRACTION)
    if len(held_out) < p["seq"] + 1:
        raise UsageError(f"seq {p['seq']} is longer than the held-out text ({len(held_out) - 1} bytes)")
    tokens_per_step = p["batch"] * p["seq"]
    details: dict[str, Any] = {"model": args.name, "text": TEXT_FILE, "text_bytes": len(text), "tokens": "UTF-8 bytes",
                               "held_out_bytes": len(held_out), "target_loss": p["target_loss"],
                               "optimizer": {"name": "AdamW", "lr": p["lr"]},
                               "rule": "wall time from the first step to the first evaluation whose held-out loss "
                                       "<= target_loss (MLPerf Training's time-to-target, one run)"}
    if device.type == "cpu":
        details["note"] = CPU_NOTE
    energy_trainer = build_trainer(spec, device)  # the energy window keeps training this one
    gen = torch.Generator().manual_seed(p["seed"] + 4)

    def check() -> Check:
        grads = grad_check(build_trainer(spec, device), random_windows(train, p["batch"], p["seq"], gen))
        losses = loss_curve(build_trainer(spec, device), random_windows(train, p["batch"], p["seq"], gen), 3)
        ok, detail = loss_decreases(losses)
        details["gate"] = {"grad": grads.__dict__, "losses": losses}
        return gate_check(grads.rel_error, grads.worst, ok, detail, spec.compute)

    def measure(_timer_config: Any) -> CustomMeasurement:
        run = train_to_target(build_trainer(spec, device), train, held_out, p, device)
        details["curve"] = run["curve"]
        if not run["reached"]:
            best = min(c["eval_loss"] for c in run["curve"])
            raise CheckFailed(f"held-out loss never reached {p['target_loss']} in {p['max_steps']} steps "
                              f"(best {best:.3f}): no time-to-target")
        metrics = {"time_to_target_s": run["time_s"], "steps_to_target": float(run["steps"]),
                   "tokens_to_target": float(run["steps"] * tokens_per_step),
                   "final_eval_loss": run["curve"][-1]["eval_loss"]}
        return CustomMeasurement(run["steps_s"], metrics, {"sample": "seconds per training step (wall clock)"},
                                 stop_reason="self-timed workload (trains to the target loss)")

    batch = random_windows(train, p["batch"], p["seq"], gen).to(device)

    def fn() -> torch.Tensor:
        return energy_trainer.step(batch[:, :-1], batch[:, 1:])

    return Case(fn=fn, check=check, measure=measure, work={"tokens": tokens_per_step}, dtype=_PEAK_DTYPE[p["compute"]],
                details=details, cuda_graph_ok=False)

