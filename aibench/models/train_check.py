"""The training step's correctness gate: one step's gradients against float64, and the loss
falling on a fixed batch (aibench/workloads/llm_train.py runs both before it times anything).

The float64 reference is the same model code on the CPU in float64, unsharded, without autocast
or checkpointing, over the whole global batch: what it checks is the training path (precision,
checkpointing, FSDP2's gradient reduction, tensor parallel's layout), not the model's forward
(tests/test_models_hf_parity.py compares that with transformers).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from aibench.models.config import ModelArgs
from aibench.models.llama import Transformer
from aibench.models.reference import record_routing, replay_routing
from aibench.models.train import Trainer, TrainSpec, cross_entropy, tp_row_order


def check_args(is_moe: bool, tp: int = 1) -> ModelArgs:
    """The gradient check's tiny model: `tiny` (or `tiny-moe`), widened for tp > 1 so that tp
    divides its query and KV heads and its MLP (tp ranks each get 2 query heads and 1 KV head)."""
    if tp == 1:
        return ModelArgs.from_name("tiny-moe" if is_moe else "tiny")
    return ModelArgs.from_name("tiny", dim=32 * tp, n_head=2 * tp, n_kv_head=tp, intermediate_size=64 * tp)



def loss_curve(trainer: Trainer, tokens: Tensor, steps: int) -> list[float]:
    """Global mean losses of `steps` optimizer steps on the same batch (memorising it)."""
    inputs, labels = trainer.local_batch(tokens)
    return [float(trainer.step(inputs, labels)) for _ in range(steps)]


def loss_decreases(losses: list[float]) -> tuple[bool, str]:
    """Every loss finite and the last below the first: training on a fixed batch must learn it."""
    if not losses or not all(math.isfinite(x) for x in losses):
        return False, f"non-finite loss in {losses}"
    if len(losses) < 2 or not losses[-1] < losses[0]:
        return False, f"loss did not decrease on a fixed batch: {[round(x, 4) for x in losses]}"
    return True, f"loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps on a fixed batch"


def _full(t: Tensor) -> Tensor:
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


@dataclass(frozen=True)
class GradCheck:
    """Per-parameter gradients of one step against a float64 reference of the same model."""

    rel_error: float  # ||g - g_ref|| / ||g_ref|| over every parameter's gradient, concatenated
    max_abs_error: float
    worst: str  # the parameter with the largest relative error
    worst_rel_error: float
    loss: float
    loss_ref: float


def grad_check(trainer: Trainer, tokens: Tensor) -> GradCheck:
    """One forward + backward of `trainer` on the global batch `tokens` (its local rows), against
    the same weights in float64 on the CPU over the whole batch (no sharding, no autocast, no
    checkpointing). MoE routing is teacher-forced: the reference reuses the measured choices, so a
    near-tie that rounding flips does not fail a correct step. Collective on every rank."""
    model, spec = trainer.model, trainer.spec
    a = spec.args
    tp = trainer.layout.tp if trainer.layout is not None else 1
    inputs, labels = trainer.local_batch(tokens)
    trainer.optimizer.zero_grad(set_to_none=True)
    with record_routing(model) as tape:
        loss = trainer.global_mean(trainer.forward_backward(inputs, labels))
    grads = {n: _full(p.grad).detach().to("cpu", torch.float64) for n, p in model.named_parameters()}
    weights = {n: _full(p.detach()).to("cpu", torch.float64) for n, p in model.named_parameters()}
    trainer.optimizer.zero_grad(set_to_none=True)
    order = tp_row_order(a, tp) if tp > 1 else None
    routing = _gather_routing(tape, trainer) if a.is_moe else None

    ref = Transformer(a).to(torch.float64)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            w = weights[_measured_name(name, spec)]
            if order is not None and ".attention.wqkv." in name:
                w = w[torch.argsort(order)]  # back to (q heads, k heads, v heads)
            p.copy_(w)
    ref_in, ref_labels = tokens[:, :-1], tokens[:, 1:]
    context = replay_routing(ref, routing) if routing is not None else contextlib.nullcontext()
    with context:
        ref_loss = cross_entropy(ref(ref_in), ref_labels)
    ref_loss.backward()
    err_sq = ref_sq = 0.0
    worst, worst_rel, max_abs = "", 0.0, 0.0
    for name, p in ref.named_parameters():
        g_ref = p.grad
        g = grads[_measured_name(name, spec)]
        if order is not None and ".attention.wqkv." in name:
            g = g[torch.argsort(order)]
        diff = g - g_ref
        d2, r2 = float(diff.pow(2).sum()), float(g_ref.pow(2).sum())
        err_sq, ref_sq = err_sq + d2, ref_sq + r2
        max_abs = max(max_abs, float(diff.abs().max()))
        rel = math.sqrt(d2 / r2) if r2 > 0 else math.sqrt(d2)
        if rel > worst_rel or not worst:
            worst, worst_rel = name, rel
    rel_error = math.sqrt(err_sq / ref_sq) if ref_sq > 0 else math.sqrt(err_sq)
    return GradCheck(rel_error, max_abs, worst, worst_rel, float(loss), float(ref_loss.detach()))


def _measured_name(ref_name: str, spec: TrainSpec) -> str:
    """The measured model's name of a reference parameter: checkpointed blocks sit under `.block`,
    compiled ones under `._orig_mod` (layers.3.attention... -> layers.3.block.attention...)."""
    parts = ref_name.split(".")
    if parts[0] != "layers":
        return ref_name
    i = int(parts[1])
    prefix = ["layers", parts[1]]
    if spec.compile:
        prefix.append("_orig_mod")
    if spec.ac_every and i % spec.ac_every == 0:
        prefix.append("block")
    return ".".join(prefix + parts[2:])


def _gather_routing(tape: list[list[Tensor]], trainer: Trainer) -> list[list[Tensor]]:
    """Each MoE layer's first recorded forward (a checkpointed block records its recompute too),
    gathered over the dp ranks in rank order: the expert choices of the global batch's rows."""
    first = [calls[0] for calls in tape]
    if trainer.dp == 1:
        return [[t.cpu()] for t in first]
    import torch.distributed as dist

    group = trainer.mesh["dp"].get_group()
    out: list[list[Tensor]] = []
    for t in first:
        parts = [torch.empty_like(t) for _ in range(trainer.dp)]
        dist.all_gather(parts, t.contiguous(), group=group)
        out.append([torch.cat(parts).cpu()])
    return out
