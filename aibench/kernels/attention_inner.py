"""The FlashAttention-2 inner loop that the prefill kernel (attention.py) and the split-KV decode
kernel (flash_decode.py) share: one pass of online softmax over a range of keys.

Its own file so that the two kernel files import it, not each other.
"""

from __future__ import annotations

import os
from typing import Any

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - the torch reference and formulas still work
    triton = None
    tl = None
    HAS_TRITON = False


def _jit(fn: Any) -> Any:
    """triton.jit when Triton is installed; otherwise the plain function (never called)."""
    return triton.jit(fn) if HAS_TRITON else fn


def is_interpreter() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"



@_jit
def _dot(a, b, acc, IEEE: tl.constexpr):
    # IEEE: fp32 operands stay fp32 (TF32 would miss the fp32 tolerance); fp16/bf16 ignore it.
    if IEEE:
        return tl.dot(a, b, acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


@_jit
def _attn_fwd_inner(
    acc, l_i, m_i, q,  # running state [BLOCK_M, D], [BLOCK_M], [BLOCK_M]; q tile [BLOCK_M, D]
    k_base, v_base,  # pointers to this (batch, kv head)'s K and V
    stride_kn, stride_kd, stride_vn, stride_vd,
    q_pos,  # [BLOCK_M] query index of each row (for the causal mask)
    lo, hi,  # key range [lo, hi); lo is a multiple of BLOCK_N
    diag_offset,  # Skv - Sq: query i sees keys j <= i + diag_offset (bottom-right)
    qk_scale,  # softmax scale * log2(e)
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr,  # False: every key of [lo, hi) is visible to every row (no mask work)
    CAUSAL: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr,
):
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k_ptrs = k_base + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd
        v_ptrs = v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd
        if MASKED:
            k = tl.load(k_ptrs, mask=cols[:, None] < hi, other=0.0)
        else:
            k = tl.load(k_ptrs)
        if UPCAST:  # interpreter + bf16: its bf16 tl.dot is garbage, fp32 is exact
            k = k.to(tl.float32)
        qk = _dot(q, tl.trans(k), tl.zeros([q.shape[0], BLOCK_N], dtype=tl.float32), IEEE)
        if MASKED:
            keep = cols[None, :] < hi
            if CAUSAL:
                keep = keep & (cols[None, :] <= q_pos[:, None] + diag_offset)
            qk = tl.where(keep, qk * qk_scale, float("-inf"))
            m_ij = tl.maximum(m_i, tl.max(qk, 1))
            # A row with no visible key so far keeps m = -inf; subtract 0 instead so that
            # exp2(-inf - (-inf)) never makes a NaN: its p and alpha are then exactly 0.
            m_sub = tl.where(m_ij == float("-inf"), 0.0, m_ij)
            qk = qk - m_sub[:, None]
        else:
            m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
            m_sub = m_ij
            qk = qk * qk_scale - m_ij[:, None]
        p = tl.math.exp2(qk)
        alpha = tl.math.exp2(m_i - m_sub)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        if MASKED:
            v = tl.load(v_ptrs, mask=cols[:, None] < hi, other=0.0)
        else:
            v = tl.load(v_ptrs)
        if UPCAST:
            v = v.to(tl.float32)
        acc = _dot(p.to(v.dtype), v, acc, IEEE)
        m_i = m_ij
    return acc, l_i, m_i
