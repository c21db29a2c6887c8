"""`llm.time_to_quality`: MLPerf Training's score in miniature. A small Llama trains on a shipped
public-domain text (aibench.models.text_data, UTF-8 bytes as tokens) until its loss on the
held-out end of the text reaches `target_loss`; the score is the wall time to that evaluation.

One run (MLPerf asks for several and drops the extremes), one process, the same training step
and correctness gate as `llm.train` (aibench/workloads/llm_train.py). A run that never reaches the
target within `max_steps` has no score: its record is invalid, with the best loss it reached.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from aibench.core.checks import Check
from aibench.core.errors import CheckFailed, UsageError
from aibench.measure.case import Case, CustomMeasurement, Param
from aibench.models.config import CONFIGS, ModelArgs
from aibench.models.text_data import (
    BYTE_VOCAB,
    TEXT_FILE,
    byte_tokens,
    random_windows,
    shipped_text,
    split_text,
    tiling_windows,
)
from aibench.models.train import ADAMW, Layout, Trainer, TrainSpec, build_trainer, cross_entropy
from aibench.models.train_check import grad_check, loss_curve, loss_decreases
from aibench.workloads.llm_train import COMMON_PARAMS, CPU_NOTE, PEAK_DTYPE, ensure_fits, gate_check
from aibench.workloads.registry import workload

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
     COMMON_PARAMS[0], COMMON_PARAMS[3]),
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

    return Case(fn=fn, check=check, measure=measure, work={"tokens": tokens_per_step}, dtype=PEAK_DTYPE[p["compute"]],
                details=details, cuda_graph_ok=False)

