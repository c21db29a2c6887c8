"""Size arithmetic of a ModelArgs: parameter counts, weight and KV-cache bytes, and the refusal
of a model that cannot fit the device (aibench.core.errors.Unsupported, never an out-of-memory crash).

All functions are pure except `free_bytes` (asks the device) and `ensure_fits` (uses it).
"""

from __future__ import annotations

import torch

from aibench.core.errors import Unsupported
from aibench.models.config import ModelArgs

GIB = 2**30


def _attn_weights(a: ModelArgs) -> int:
    return a.dim * (a.n_head + 2 * a.n_kv_head) * a.head_dim + a.n_head * a.head_dim * a.dim


def _expert_weights(a: ModelArgs) -> int:
    return 3 * a.dim * a.intermediate_size  # w1 (gate), w3 (up), w2 (down)


def param_count(a: ModelArgs) -> int:
    """Every parameter, a tied embedding/lm_head table counted once."""
    bias = (a.n_head + 2 * a.n_kv_head) * a.head_dim if a.qkv_bias else 0
    mlp = a.dim * a.n_expert + a.n_expert * _expert_weights(a) if a.is_moe else _expert_weights(a)
    per_layer = _attn_weights(a) + bias + mlp + 2 * a.dim  # + two RMSNorm weights
    tables = a.vocab_size * a.dim * (1 if a.tie_embeddings else 2)
    return a.n_layer * per_layer + tables + a.dim  # + final norm


def matmul_params(a: ModelArgs, active: bool = True) -> int:
    """Weights one token multiplies through: attention, MLP (its top-k experts and router when
    `active`, all experts otherwise) and lm_head. Not the embedding lookup (no FLOPs), biases
    or norms. 2 * matmul_params is the matmul FLOPs per token."""
    if a.is_moe:
        experts = a.n_expert_per_tok if active else a.n_expert
        mlp = a.dim * a.n_expert + experts * _expert_weights(a)
    else:
        mlp = _expert_weights(a)
    return a.n_layer * (_attn_weights(a) + mlp) + a.vocab_size * a.dim


def weight_bytes(a: ModelArgs, dtype: torch.dtype) -> int:
    return param_count(a) * dtype.itemsize


def kv_cache_bytes(a: ModelArgs, batch: int, seq: int, dtype: torch.dtype) -> int:
    """K and V for `batch` rows of `seq` positions in every layer."""
    return 2 * a.n_layer * batch * a.n_kv_head * seq * a.head_dim * dtype.itemsize


def activation_bytes(a: ModelArgs, tokens: int, dtype: torch.dtype) -> int:
    """Rough peak of live activations for one eager forward over `tokens` tokens: the logits
    plus a handful of hidden-size and MLP-size buffers. An estimate, used only for refusals."""
    per_token = a.vocab_size + 4 * a.dim + 3 * a.intermediate_size + (a.n_head + 2 * a.n_kv_head) * a.head_dim
    return tokens * per_token * dtype.itemsize


def estimate_bytes(a: ModelArgs, batch: int, seq: int, dtype: torch.dtype) -> int:
    """Weights plus a KV cache of `batch` x `seq` positions."""
    return weight_bytes(a, dtype) + kv_cache_bytes(a, batch, seq, dtype)


def free_bytes(device: torch.device) -> int | None:
    """Free device memory (torch.cuda.mem_get_info) or the host's MemAvailable; None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def ensure_fits(a: ModelArgs, batch: int, seq: int, dtype: torch.dtype, device: torch.device, *,
                extra_bytes: int = 0, available: int | None = None) -> int:
    """Raise Unsupported when weights + KV cache (+ extra) exceed the free memory; return the need.

    `available` overrides the device query (tests; callers that know better).
    """
    need = estimate_bytes(a, batch, seq, dtype) + extra_bytes
    have = available if available is not None else free_bytes(device)
    if have is not None and need > have:
        raise Unsupported(
            f"model {a.name or 'custom'} in {str(dtype).replace('torch.', '')} needs ~{need / GIB:.1f} GiB "
            f"(weights {weight_bytes(a, dtype) / GIB:.1f} GiB + KV cache "
            f"{kv_cache_bytes(a, batch, seq, dtype) / GIB:.1f} GiB + activations {extra_bytes / GIB:.1f} GiB), "
            f"but {device} has {have / GIB:.1f} GiB free"
        )
    return need
