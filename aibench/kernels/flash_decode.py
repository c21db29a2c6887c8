"""Split-KV attention (flash-decoding) for few query rows against a long KV cache.

With Sq <= 16 the prefill grid has B * Hq programs of one query tile each: far too few to keep
an H100's 132 SMs streaming the cache. Here each program takes one (batch, kv head) and one
chunk of the keys; the Hq / Hkv query heads that share the kv head are packed into the rows of
one tile, so K and V are read from memory once per kv head, not once per query head. Each
program writes a partial (acc, m, l) in fp32; a second small kernel merges the chunks:
    out = sum_s 2^(m_s - m) acc_s / sum_s 2^(m_s - m) l_s,   m = max_s m_s.
Called by attention.py, which validates the inputs; same masking rules (bottom-right
causal; a row without any visible key gives 0).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from aibench.kernels.attention_inner import HAS_TRITON, _attn_fwd_inner, _jit, is_interpreter

if HAS_TRITON:
    import triton
    import triton.language as tl
else:  # pragma: no cover
    triton = None
    tl = None

# ----------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------
# Memory-bound: the tile only needs to keep enough K/V bytes in flight, which small tiles with 2-3
# stages do while leaving room for several programs per SM. From a sweep on H200 (bf16, D=128,
# GQA 4:1, CUDA graphs): these reach 3.5-4.2 TB/s; (64, 8 warps) and 128-wide tiles were slower.
_GPU_TILES = [(64, 4, 2), (64, 4, 3), (32, 4, 3), (64, 2, 3)]  # (BLOCK_N, warps, stages)
_CHUNK_QUANTUM = 128  # chunk sizes are multiples of every BLOCK_N above
_INTERPRETER_BLOCK_N = 16
_INTERPRETER_PROGRAMS = 4  # enough splits to exercise the merge, few enough to be quick
_PROGRAMS_PER_SM = 2  # best of 2/4/8 in the H200 sweep: more splits cost more merge traffic
_MAX_SPLITS = 128

_TUNED: list[Any] = []


def _tuned_split_kv() -> Any:
    if not _TUNED:
        configs = [triton.Config({"BLOCK_N": n}, num_warps=w, num_stages=s) for n, w, s in _GPU_TILES]
        _TUNED.append(triton.autotune(configs, key=["HEAD_DIM", "BLOCK_M", "CHUNK", "CAUSAL"])(_split_kv_fwd))
    return _TUNED[0]


_SM_COUNT: dict[int, int] = {}


def _sm_count(device: torch.device) -> int:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


def split_plan(programs_per_split: int, skv: int, target_programs: int, quantum: int) -> tuple[int, int]:
    """(chunk, splits): the fewest chunks of `quantum`-multiple length that reach the target."""
    want = max(1, min(_MAX_SPLITS, -(-target_programs // programs_per_split)))
    chunk = -(-skv // want)
    chunk = -(-chunk // quantum) * quantum
    return chunk, -(-skv // chunk)


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------
@_jit
def _split_kv_fwd(
    Q, K, V, Opart, Mpart, Lpart,  # pointers; partials are contiguous [B, Hq, Sq, splits(, D)]
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    Hkv, GROUP, Sq, Skv, CHUNK, num_splits,
    qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr,
):
    off_bkv = tl.program_id(0)
    split = tl.program_id(1)
    off_b = (off_bkv // Hkv).to(tl.int64)
    off_kvh = (off_bkv % Hkv).to(tl.int64)
    rows = tl.arange(0, BLOCK_M)  # row r: query head kvh * GROUP + r // Sq, query index r % Sq
    row_h = off_kvh * GROUP + rows // Sq
    row_m = rows % Sq
    row_ok = rows < GROUP * Sq
    offs_d = tl.arange(0, HEAD_DIM)

    q_ptrs = Q + off_b * stride_qb + row_h[:, None] * stride_qh + row_m[:, None] * stride_qm + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    lo = split * CHUNK
    hi = tl.minimum(lo + CHUNK, Skv)
    # Every block is masked: the causal limit differs per packed row and the chunk end is ragged.
    # Decode is bound by memory traffic, so the mask arithmetic costs nothing measurable.
    acc, l_i, m_i = _attn_fwd_inner(
        acc, l_i, m_i, q,
        K + off_b * stride_kb + off_kvh * stride_kh, V + off_b * stride_vb + off_kvh * stride_vh,
        stride_kn, stride_kd, stride_vn, stride_vd,
        row_m, lo, hi, Skv - Sq, qk_scale,
        HEAD_DIM, BLOCK_N, True, CAUSAL, UPCAST, IEEE,
    )
    part = ((off_b * Hkv * GROUP + row_h) * Sq + row_m) * num_splits + split  # [BLOCK_M]
    tl.store(Mpart + part, m_i, mask=row_ok)
    tl.store(Lpart + part, l_i, mask=row_ok)
    tl.store(Opart + part[:, None] * HEAD_DIM + offs_d[None, :], acc, mask=row_ok[:, None])


@_jit
def _split_kv_reduce(
    Opart, Mpart, Lpart, Out,  # pointers
    stride_ob, stride_oh, stride_om, stride_od,
    H, Sq, num_splits,
    HEAD_DIM: tl.constexpr, SPLITS: tl.constexpr,  # SPLITS: num_splits rounded up to a power of 2
):
    row = tl.program_id(0).to(tl.int64)  # one (batch, query head, query) row per program
    off_m = row % Sq
    off_h = (row // Sq) % H
    off_b = row // (Sq * H)
    offs_s = tl.arange(0, SPLITS)
    offs_d = tl.arange(0, HEAD_DIM)
    s_ok = offs_s < num_splits
    m = tl.load(Mpart + row * num_splits + offs_s, mask=s_ok, other=float("-inf"))
    l_s = tl.load(Lpart + row * num_splits + offs_s, mask=s_ok, other=0.0)
    m_max = tl.max(m, 0)
    w = tl.math.exp2(m - tl.where(m_max == float("-inf"), 0.0, m_max))  # empty split -> 0
    o = tl.load(Opart + (row * num_splits + offs_s)[:, None] * HEAD_DIM + offs_d[None, :], mask=s_ok[:, None], other=0.0)
    acc = tl.sum(o * w[:, None], 0)
    l_sum = tl.sum(l_s * w, 0)
    acc = acc / tl.where(l_sum == 0.0, 1.0, l_sum)  # no visible key at all -> 0
    o_ptrs = Out + off_b * stride_ob + off_h * stride_oh + off_m * stride_om + offs_d * stride_od
    tl.store(o_ptrs, acc.to(Out.dtype.element_ty))


# ----------------------------------------------------------------------------------------------
# Launcher (inputs already validated by attention())
# ----------------------------------------------------------------------------------------------
def split_kv_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
    *, causal: bool, qk_scale: float, UPCAST: bool, IEEE: bool,
) -> torch.Tensor:
    """Fill `out` [B, Hq, Sq, D] by split-KV attention; qk_scale already includes log2(e)."""
    b, hq, sq, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    group = hq // hkv
    block_m = max(16, triton.next_power_of_2(group * sq))  # 16: tl.dot's smallest M
    interpret = is_interpreter()
    if interpret:
        chunk, splits = split_plan(b * hkv, skv, _INTERPRETER_PROGRAMS, _INTERPRETER_BLOCK_N)
    else:
        chunk, splits = split_plan(b * hkv, skv, _PROGRAMS_PER_SM * _sm_count(q.device), _CHUNK_QUANTUM)
    opart = torch.empty((b, hq, sq, splits, d), dtype=torch.float32, device=q.device)
    mpart = torch.empty((b, hq, sq, splits), dtype=torch.float32, device=q.device)
    lpart = torch.empty_like(mpart)
    args = (
        q, k, v, opart, mpart, lpart, *q.stride(), *k.stride(), *v.stride(),
        hkv, group, sq, skv, chunk, splits, qk_scale,
    )
    meta = {"HEAD_DIM": d, "BLOCK_M": block_m, "CAUSAL": causal, "UPCAST": UPCAST, "IEEE": IEEE}
    with torch.cuda.device(q.device) if q.is_cuda else nullcontext():
        if interpret:
            _split_kv_fwd[(b * hkv, splits)](*args, BLOCK_N=_INTERPRETER_BLOCK_N, **meta)
        else:
            _tuned_split_kv()[(b * hkv, splits)](*args, **meta)
        _split_kv_reduce[(b * hq * sq,)](
            opart, mpart, lpart, out, *out.stride(), hq, sq, splits,
            HEAD_DIM=d, SPLITS=triton.next_power_of_2(splits),
        )
    return out

