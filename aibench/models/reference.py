"""References and check helpers for the LLM: the model's logits in plain math (the workloads'
correctness reference) and MoE routing record/replay (teacher forcing for the checks)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from aibench.models.llama import MoEFeedForward, Transformer, precompute_freqs_cis


@contextmanager
def record_routing(model: Transformer) -> Iterator[list[list[Tensor]]]:
    """Collect each MoE layer's expert choices [T, k], one entry per forward call, while open."""
    moes = [m for m in model.modules() if isinstance(m, MoEFeedForward)]
    tape: list[list[Tensor]] = [[] for _ in moes]
    for m, calls in zip(moes, tape):
        m.routing, m.replay = calls, False
    try:
        yield tape
    finally:
        for m in moes:
            m.routing = None


@contextmanager
def replay_routing(model: Transformer, tape: list[list[Tensor]]) -> Iterator[None]:
    """Teacher forcing: MoE layers reuse recorded choices (same calls in the same order), so a
    check compares numerics rather than near-tie routing flips that rounding legitimately causes."""
    moes = [m for m in model.modules() if isinstance(m, MoEFeedForward)]
    for m, calls in zip(moes, tape):
        m.routing, m.replay = list(calls), True
    try:
        yield
    finally:
        for m in moes:
            m.routing, m.replay = None, False


# --- Reference ----------------------------------------------------------------------------------


def _rms(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight.to(x.dtype)


@torch.no_grad()
def reference_logits(model: Transformer, tokens: Tensor, positions: Tensor | list[int] | None = None,
                     dtype: torch.dtype = torch.float64, routing: Sequence[Tensor] | None = None) -> Tensor:
    """The model's logits computed in plain math (no cache, no kernels) in `dtype`: the reference
    of the workloads' checks. Weights are upcast one matrix at a time, so an 8B model's fp64
    reference needs one layer's worth of fp64, not a full fp64 copy.

    tokens [B, S] -> logits [B, P, V] at `positions` (default: all S). `routing`: per MoE layer,
    expert choices [B * S, k] to use instead of the reference's own top-k (teacher forcing).
    """
    a = model.args
    B, S = tokens.shape
    Hq, Hkv, D = a.n_head, a.n_kv_head, a.head_dim
    group = Hq // Hkv

    def up(w: Tensor | None) -> Tensor | None:
        return None if w is None else w.to(dtype)

    x = model.tok_embeddings.weight[tokens].to(dtype)  # [B, S, dim]
    fc = precompute_freqs_cis(a, S, tokens.device).to(dtype)  # the model's own fp32 angles
    cos, sin = fc[None, :, None, 0], fc[None, :, None, 1]  # [1, S, 1, D]
    ones = torch.ones(S, S, dtype=torch.bool, device=tokens.device)
    causal = ones.tril()  # [S, S] key t visible to query s
    if a.sliding_window is not None:  # not the keys t <= s - window (Mistral's window)
        causal &= ~ones.tril(-a.sliding_window)

    def rope(t: Tensor) -> Tensor:
        t1, t2 = t.chunk(2, dim=-1)
        return t * cos + torch.cat((-t2, t1), dim=-1) * sin

    for i, layer in enumerate(model.layers):
        att = layer.attention
        h = _rms(x, layer.attention_norm.weight, a.norm_eps)
        q, k, v = F.linear(h, up(att.wqkv.weight), up(att.wqkv.bias)).split([Hq * D, Hkv * D, Hkv * D], -1)
        q, k, v = rope(q.view(B, S, Hq, D)), rope(k.view(B, S, Hkv, D)), v.view(B, S, Hkv, D)
        y = torch.empty_like(q)
        for g in range(Hkv):  # one KV head (and its query group) at a time: [B, G, S, S] scores
            qs = q[:, :, g * group : (g + 1) * group]
            scores = torch.einsum("bsgd,btd->bgst", qs, k[:, :, g]) / math.sqrt(D)
            p = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
            y[:, :, g * group : (g + 1) * group] = torch.einsum("bgst,btd->bsgd", p, v[:, :, g])
        x = x + F.linear(y.reshape(B, S, Hq * D), up(att.wo.weight))
        h = _rms(x, layer.ffn_norm.weight, a.norm_eps)
        ff = layer.feed_forward
        if isinstance(ff, MoEFeedForward):
            x = x + _reference_moe(ff, h, dtype, None if routing is None else routing[i])
        else:
            x = x + F.linear(F.silu(F.linear(h, up(ff.w1.weight))) * F.linear(h, up(ff.w3.weight)), up(ff.w2.weight))
    h = _rms(x, model.norm.weight, a.norm_eps)
    if positions is not None:
        h = h[:, torch.as_tensor(positions, device=h.device)]
    return F.linear(h, model.output.weight.to(dtype))


def _reference_moe(ff: MoEFeedForward, h: Tensor, dtype: torch.dtype, idx: Tensor | None) -> Tensor:
    # Mixtral's formulation: softmax over all experts, keep the top k, renormalise.
    t = h.reshape(-1, h.shape[-1])
    probs = F.linear(t, ff.gate.weight.to(dtype)).softmax(dim=-1)
    if idx is None:
        top, idx = probs.topk(ff.top_k, dim=-1)
    else:
        top = probs.gather(-1, idx.to(probs.device))
    top = top / top.sum(dim=-1, keepdim=True)
    out = torch.zeros_like(t)
    for e in range(ff.w1.shape[0]):
        tok, j = torch.where(idx == e)
        if tok.numel():
            xe = t[tok]
            y = F.linear(F.silu(F.linear(xe, ff.w1[e].to(dtype))) * F.linear(xe, ff.w3[e].to(dtype)), ff.w2[e].to(dtype))
            out.index_add_(0, tok, y * top[tok, j, None])
    return out.view_as(h)
