"""Fused scaled-dot-product attention forward (FlashAttention-2 style) in Triton.

In the order of Triton's tutorial 06-fused-attention: configs, kernels, the wrapper (check,
allocate, launch), the torch reference, FLOP/byte formulas. The split-KV decode kernels
(flash-decoding) live next door in flash_decode.py; both share the inner loop of
attention_inner.py.

Contract of `attention(q, k, v, causal=False, scale=None)`:
  q [B, Hq, Sq, D], k and v [B, Hkv, Skv, D], Hq a multiple of Hkv (GQA/MQA), D a power of two
  in 16..256, any Sq, Skv >= 1, any strides, fp16/bf16/fp32 -> output [B, Hq, Sq, D], same dtype.
  Causal masks are aligned bottom-right (flash-attn, decode against a KV cache): query i
  attends keys j <= i + Skv - Sq. When Sq > Skv the first Sq - Skv rows see no key at all;
  their output is defined as 0 (never NaN).
Numerics: fp32 accumulation, online softmax in base 2 with log2(e) folded into the scale.
fp32 inputs use IEEE fp32 dots (not TF32), so they meet the fp32 tolerance of aibench.core.checks.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from aibench.core.errors import Unsupported
from aibench.core.formulas import attended_pairs, attention_bytes, attention_flops  # noqa: F401 (re-exported; torch-free for the buyer's recompute)
from aibench.kernels.attention_inner import HAS_TRITON, _attn_fwd_inner, _jit, is_interpreter, tl, triton
from aibench.kernels.flash_decode import split_kv_attention

_LOG2E = 1.4426950408889634  # exp(x) == exp2(x * log2(e)): exp2 is the cheap hardware op
SUPPORTED_HEAD_DIMS = (16, 32, 64, 128, 256)
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_MAX_GRID_Y = 65535  # CUDA limit on grid.y, where B * Hq goes (the tutorial's layout)

# ----------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------
# Hopper-good tiles (the tutorial's H100 choices): BLOCK_M=128 with 8 warps (two warpgroups), a
# 64- or 128-wide K/V tile and 3 pipeline stages for D <= 128; D=256 needs smaller tiles to fit
# Q + 2 stages of K/V in shared memory. BLOCK_M=64 covers short query sequences.
# Measured on H200 (torch 2.11, triton 3.6, bf16, D=128, GQA 32:8, causal, seq 4k-16k): 434-458
# TFLOP/s, 1.36-1.59x SDPA's flash backend (FA2); torch's default SDPA pick was faster (516-584).
_GPU_TILES: dict[int, list[tuple[int, int, int, int]]] = {  # (BLOCK_M, BLOCK_N, warps, stages)
    16: [(128, 64, 4, 3), (64, 64, 4, 3)],
    32: [(128, 64, 4, 3), (64, 64, 4, 3)],
    64: [(128, 64, 4, 3), (128, 128, 8, 3), (64, 64, 4, 3)],
    128: [(128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3)],
    256: [(64, 64, 4, 2), (128, 64, 8, 2), (64, 32, 4, 2)],
}
# The interpreter runs programs one by one in numpy: one small tile (16 = tl.dot's minimum).
_INTERPRETER_TILE = {"BLOCK_M": 16, "BLOCK_N": 16}


def _seq_bucket(n: int) -> int:
    """Autotune key: the next power of two (capped), so every length does not retune."""
    return min(1 << max(n - 1, 0).bit_length(), 1 << 16)


_TUNED: dict[int, Any] = {}


def _tuned_prefill(head_dim: int) -> Any:
    """One autotuner per head dim (built on first use: no benchmarking or compiling at import)."""
    if head_dim not in _TUNED:
        configs = [
            triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
            for m, n, w, s in _GPU_TILES[head_dim]
        ]
        _TUNED[head_dim] = triton.autotune(configs, key=["SQ_BUCKET", "SKV_BUCKET", "CAUSAL"])(_attn_fwd)
    return _TUNED[head_dim]


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------
@_jit
def _attn_fwd(
    Q, K, V, Out,  # pointers
    stride_qb, stride_qh, stride_qm, stride_qd,  # strides (elements)
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_om, stride_od,
    H, GROUP, Sq, Skv,  # sizes: query heads, query heads per kv head, lengths
    qk_scale,
    SQ_BUCKET, SKV_BUCKET,  # autotune key only
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,  # meta-parameters
    CAUSAL: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    off_bh = tl.program_id(1)
    off_b = (off_bh // H).to(tl.int64)  # int64: B * H * S * D can pass 2**31 elements
    off_h = (off_bh % H).to(tl.int64)
    off_kvh = off_h // GROUP
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)

    q_ptrs = Q + off_b * stride_qb + off_h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=offs_m[:, None] < Sq, other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    k_base = K + off_b * stride_kb + off_kvh * stride_kh
    v_base = V + off_b * stride_vb + off_kvh * stride_vh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    # Stage 1: key blocks that are full and visible to every row of this query block, with no
    # mask (the tutorial's off-diagonal loop). Stage 2: the rest (diagonal blocks, the ragged
    # last block), masked. Bottom-right alignment: row i sees j <= i + (Skv - Sq).
    diag_offset = Skv - Sq
    n_full = (Skv // BLOCK_N) * BLOCK_N
    if CAUSAL:
        first_row_keys = tl.maximum(start_m + diag_offset + 1, 0)  # keys seen by the first row
        hi1 = tl.minimum((first_row_keys // BLOCK_N) * BLOCK_N, n_full)
        hi2 = tl.minimum(start_m + BLOCK_M + diag_offset, Skv)
    else:
        hi1 = n_full
        hi2 = Skv
    acc, l_i, m_i = _attn_fwd_inner(
        acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
        offs_m, 0, hi1, diag_offset, qk_scale,
        HEAD_DIM, BLOCK_N, False, CAUSAL, UPCAST, IEEE,
    )
    acc, l_i, m_i = _attn_fwd_inner(
        acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
        offs_m, hi1, hi2, diag_offset, qk_scale,
        HEAD_DIM, BLOCK_N, True, CAUSAL, UPCAST, IEEE,
    )

    # Rows that saw no key (causal with Sq > Skv) have l == 0 and acc == 0: output 0.
    acc = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    o_ptrs = Out + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od
    tl.store(o_ptrs, acc.to(Out.dtype.element_ty), mask=offs_m[:, None] < Sq)


# ----------------------------------------------------------------------------------------------
# Wrapper: check, allocate, launch
# ----------------------------------------------------------------------------------------------
# The split-KV path (flash-decoding) pays off when few query rows leave the GPU idle in the
# prefill grid; it packs the Hq / Hkv query heads sharing a kv head into one tile of rows.
SPLIT_KV_MAX_SQ = 16
SPLIT_KV_MIN_SKV = 128
SPLIT_KV_MAX_ROWS = 128  # (Hq / Hkv) * Sq rows must fit one tile


def uses_split_kv(sq: int, skv: int, group: int) -> bool:
    """Whether `attention` takes the split-KV (decode) path for these sizes."""
    return sq <= SPLIT_KV_MAX_SQ and skv >= SPLIT_KV_MIN_SKV and group * sq <= SPLIT_KV_MAX_ROWS


def _validate(q: Any, k: Any, v: Any, causal: Any, scale: Any) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"attention: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            layout = "[B, Hq, Sq, D]" if name == "q" else "[B, Hkv, Skv, D]"
            raise ValueError(f"attention: {name} must be 4-D {layout}, got shape {tuple(t.shape)}")
        if t.numel() == 0:
            raise ValueError(f"attention: {name} has an empty dimension: shape {tuple(t.shape)}")
    if q.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"attention: dtype {q.dtype} not supported (use float16, bfloat16 or float32)")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"attention: q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"attention: q, k, v are on different devices: {q.device}, {k.device}, {v.device}")
    if k.shape != v.shape:
        raise ValueError(f"attention: k and v shapes differ: {tuple(k.shape)} vs {tuple(v.shape)}")
    (b, hq, _, d), (bk, hkv, _, dk) = q.shape, k.shape
    if b != bk:
        raise ValueError(f"attention: batch of q ({b}) and k/v ({bk}) differ")
    if d != dk:
        raise ValueError(f"attention: head dim of q ({d}) and k/v ({dk}) differ")
    if hq % hkv != 0:
        raise ValueError(f"attention: query heads ({hq}) must be a multiple of kv heads ({hkv})")
    if d not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"attention: head dim {d} not supported (supported: {SUPPORTED_HEAD_DIMS})")
    if b * hq > _MAX_GRID_Y:
        raise ValueError(f"attention: batch * heads = {b * hq} exceeds the grid limit {_MAX_GRID_Y}")
    if not isinstance(causal, bool):
        raise TypeError(f"attention: causal must be a bool, got {type(causal).__name__}")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise TypeError(f"attention: scale must be a float or None, got {type(scale).__name__}")
        if not math.isfinite(scale):
            raise ValueError(f"attention: scale must be finite, got {scale}")
    if not HAS_TRITON:
        raise Unsupported("attention: triton is not installed")
    if q.device.type == "cpu" and not is_interpreter():
        raise Unsupported("attention: CPU tensors need the Triton interpreter (TRITON_INTERPRET=1 before start)")


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False, scale: float | None = None
) -> torch.Tensor:
    """softmax(q k^T * scale [+ bottom-right causal mask]) v with GQA; see the module docstring."""
    _validate(q, k, v, causal, scale)
    b, hq, sq, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    sm_scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    out = torch.empty((b, hq, sq, d), dtype=q.dtype, device=q.device)
    interpret = is_interpreter()
    flags = {
        "UPCAST": interpret and q.dtype == torch.bfloat16,
        "IEEE": q.dtype == torch.float32 or (interpret and q.dtype == torch.bfloat16),
    }
    if uses_split_kv(sq, skv, hq // hkv):
        return split_kv_attention(q, k, v, out, causal=causal, qk_scale=sm_scale * _LOG2E, **flags)

    args = (
        q, k, v, out, *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        hq, hq // hkv, sq, skv, sm_scale * _LOG2E, _seq_bucket(sq), _seq_bucket(skv),
    )
    if interpret:
        grid = (triton.cdiv(sq, _INTERPRETER_TILE["BLOCK_M"]), b * hq)
        _attn_fwd[grid](*args, HEAD_DIM=d, CAUSAL=causal, **flags, **_INTERPRETER_TILE)
    else:
        with torch.cuda.device(q.device):
            grid = lambda meta: (triton.cdiv(sq, meta["BLOCK_M"]), b * hq)  # noqa: E731
            _tuned_prefill(d)[grid](*args, HEAD_DIM=d, CAUSAL=causal, **flags)
    return out


# ----------------------------------------------------------------------------------------------
# Torch reference
# ----------------------------------------------------------------------------------------------
def causal_mask(sq: int, skv: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[Sq, Skv] bool, True where query i may attend key j: j <= i + Skv - Sq (bottom-right).

    Not SDPA's is_causal, which is top-left aligned (j <= i) when Sq != Skv.
    """
    return torch.ones(sq, skv, dtype=torch.bool, device=device).tril(diagonal=skv - sq)


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    scale: float | None = None,
    *,
    compute_dtype: torch.dtype | None = None,
    chunk_bytes: int = 1 << 29,
) -> torch.Tensor:
    """Attention in `compute_dtype` (float64 on CPU, float32 elsewhere by default), on q's device.

    GQA is expanded explicitly; rows with no visible key give 0. Scores are computed per kv head
    and per chunk of query rows so that one chunk's score matrix stays under `chunk_bytes`.
    """
    if compute_dtype is None:
        compute_dtype = torch.float64 if q.device.type == "cpu" else torch.float32
    b, hq, sq, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    group = hq // hkv
    sm_scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    out = torch.empty((b, hq, sq, d), dtype=compute_dtype, device=q.device)
    row_bytes = group * skv * torch.finfo(compute_dtype).bits // 8
    rows = max(1, min(sq, chunk_bytes // max(row_bytes, 1)))
    mask = causal_mask(sq, skv, q.device) if causal else None
    for bi in range(b):
        for h in range(hkv):
            heads = slice(h * group, (h + 1) * group)
            kt = k[bi, h].to(compute_dtype).transpose(0, 1)  # [D, Skv]
            vh = v[bi, h].to(compute_dtype)  # [Skv, D]
            for r0 in range(0, sq, rows):
                r1 = min(sq, r0 + rows)
                s = (q[bi, heads, r0:r1].to(compute_dtype) @ kt) * sm_scale  # [group, rows, Skv]
                if mask is not None:
                    s = s.masked_fill(~mask[r0:r1], float("-inf"))
                p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # all -inf row -> NaN -> 0
                out[bi, heads, r0:r1] = p @ vh
    return out
