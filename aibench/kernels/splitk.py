"""Split-K for the matmul kernel (kernels/matmul.py): the fp32 workspace and the reduce.

A matmul config with SPLIT_K > 1 runs one program per (output tile, range of K tiles); each
writes its fp32 partial sum, unrounded, to slice `s` of a contiguous workspace [SPLIT_K, M, N].
The reduce here then computes C = ws[0] + ws[1] + ... + ws[SPLIT_K - 1] in fp32, in that order,
and rounds once to C's dtype. A fixed order instead of atomic adds (which land in arrival
order) keeps results bit-identical from run to run, as benchmark outputs must be.

Told in the order of Triton's tutorials: config, kernel, launch.
"""

from __future__ import annotations

from typing import Any

import torch

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except Exception:  # not installed, or a broken install: kernels/matmul.py reports it
    HAS_TRITON = False

# Columns of one row per reduce program: 4 fp32 (one 16-byte load) per thread of 4 warps. A
# decode-sized C (M = 1, N = 4096) then still spreads over 8 programs.
_REDUCE_BLOCK = 512
_REDUCE_WARPS = 4


def _splitk_reduce_kernel(
    ws_ptr, c_ptr,  # fp32 partials, contiguous [SPLIT_K, M, N]; the output C, any strides
    M, N, stride_cm, stride_cn,
    SPLIT_K: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    # One program sums BLOCK columns of one row of C over the SPLIT_K slices, always in slice
    # order 0, 1, ...: fp32 addition is not associative, so only a fixed order is reproducible.
    # The partials were just written, so they mostly come from L2. Offsets are int64 (SPLIT_K *
    # M * N may pass 2**31): this kernel is tiny and memory-bound, the extra integer work is free.
    row = tl.program_id(axis=0).to(tl.int64)
    offs_n = (tl.program_id(axis=1) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    mask = offs_n < N
    plane = tl.cast(M, tl.int64) * N  # tl.cast, not M.to: an M of 1 arrives as a constexpr
    ws_ptrs = ws_ptr + row * N + offs_n
    acc = tl.load(ws_ptrs, mask=mask, other=0.0)
    for s in tl.static_range(1, SPLIT_K):  # unrolled: all SPLIT_K loads are in flight at once
        acc += tl.load(ws_ptrs + s * plane, mask=mask, other=0.0)
    c_ptrs = c_ptr + row * stride_cm + offs_n * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask)


if HAS_TRITON:
    _reduce_kernel: Any = triton.jit(_splitk_reduce_kernel)


def splitk_workspace(split: int, m: int, n: int, device: torch.device) -> torch.Tensor:
    """An uninitialised fp32 workspace [split, m, n] for the partials of a split-K launch.

    torch.empty is enough: the split programs write every element of the slices they own
    (a split whose range of K tiles is empty writes zeros). It is a caching-allocator
    allocation, which is allowed while a CUDA graph is being captured.
    """
    return torch.empty((split, m, n), device=device, dtype=torch.float32)


def splitk_reduce(ws: torch.Tensor, c: torch.Tensor, m: int, n: int, split: int) -> None:
    """c[:m, :n] = the sum of the first `split` slices of `ws`, in order, cast to c's dtype.

    `ws` is contiguous with slices of m * n elements (it may hold more than `split` slices:
    the autotuner's workspace is sized for the largest split it times); `c` may have any strides.
    """
    grid = (m, triton.cdiv(n, _REDUCE_BLOCK))
    _reduce_kernel[grid](
        ws, c, m, n, c.stride(0), c.stride(1), SPLIT_K=split, BLOCK=_REDUCE_BLOCK, num_warps=_REDUCE_WARPS
    )
