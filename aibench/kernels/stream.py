"""STREAM-style memory kernels: copy (b = a) and triad (a = b + s * c).

In the order of Triton's tutorials: configs, kernels, wrappers (check, allocate, launch), torch
references, byte formulas. These are bandwidth probes: each element is read and written once, so
the bytes moved are exact and the achieved GB/s compares directly with the copy ceiling measured
on the card (../shared/reference/hardware.md: ~3.0 TB/s on H100, ~4.3 TB/s on H200, counting
bytes read + written).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from aibench.core.formulas import copy_bytes, triad_bytes, triad_flops  # noqa: F401 (re-exported; torch-free for the buyer's recompute)

# 16 KiB-ish tiles per program: with 8 warps each thread issues 16-byte vector accesses for fp32
# (BLOCK / (32 * 8) = 4 elements), the width HOPPER.md asks of memory-bound code. Autotuning
# between a few sizes covers other dtypes.
_GPU_CONFIGS = [
    triton.Config({"BLOCK": 1024}, num_warps=4),
    triton.Config({"BLOCK": 2048}, num_warps=8),
    triton.Config({"BLOCK": 4096}, num_warps=8),
    triton.Config({"BLOCK": 8192}, num_warps=16),
]
# The CPU interpreter runs programs one after another in Python: one large block keeps it fast.
_INTERPRETER_CONFIGS = [triton.Config({"BLOCK": 4096}, num_warps=4)]


def _configs() -> list[triton.Config]:
    return _INTERPRETER_CONFIGS if os.environ.get("TRITON_INTERPRET") == "1" else _GPU_CONFIGS


@triton.autotune(configs=_configs(), key=["n_elements"])
@triton.jit
def _copy_kernel(
    src_ptr, dst_ptr,  # pointers
    n_elements,  # size
    BLOCK: tl.constexpr,  # meta-parameters
):
    pid = tl.program_id(0).to(tl.int64)  # int64: buffers of several GB overflow int32 offsets
    offsets = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    x = tl.load(src_ptr + offsets, mask=mask)
    tl.store(dst_ptr + offsets, x, mask=mask)


@triton.autotune(configs=_configs(), key=["n_elements"])
@triton.jit
def _triad_kernel(
    a_ptr, b_ptr, c_ptr,  # pointers: a = b + scalar * c
    scalar,
    n_elements,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    offsets = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    b = tl.load(b_ptr + offsets, mask=mask)
    c = tl.load(c_ptr + offsets, mask=mask)
    a = b.to(tl.float32) + scalar * c.to(tl.float32)
    tl.store(a_ptr + offsets, a.to(a_ptr.dtype.element_ty), mask=mask)


def _check_1d(name: str, *tensors: torch.Tensor) -> None:
    first = tensors[0]
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected tensors, got {type(t).__name__}")
        if t.device != first.device:
            raise ValueError(f"{name}: tensors on different devices ({t.device} vs {first.device})")
        if t.dtype != first.dtype:
            raise TypeError(f"{name}: dtypes differ ({t.dtype} vs {first.dtype})")
        if t.shape != first.shape:
            raise ValueError(f"{name}: shapes differ ({tuple(t.shape)} vs {tuple(first.shape)})")
        if not t.is_contiguous():
            raise ValueError(f"{name}: tensors must be contiguous (a bandwidth probe moves exact bytes)")


def copy(src: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """out = src, elementwise, through a Triton kernel."""
    out = torch.empty_like(src) if out is None else out
    _check_1d("copy", src, out)
    n = src.numel()
    if n:
        grid = lambda meta: (triton.cdiv(n, meta["BLOCK"]),)  # noqa: E731
        _copy_kernel[grid](src, out, n)
    return out


def triad(b: torch.Tensor, c: torch.Tensor, scalar: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """out = b + scalar * c (STREAM triad), computed in fp32 and stored in the input dtype."""
    out = torch.empty_like(b) if out is None else out
    _check_1d("triad", out, b, c)
    if not b.dtype.is_floating_point:
        raise TypeError(f"triad: needs a floating-point dtype, got {b.dtype}")
    n = b.numel()
    if n:
        grid = lambda meta: (triton.cdiv(n, meta["BLOCK"]),)  # noqa: E731
        _triad_kernel[grid](out, b, c, float(scalar), n)
    return out


def triad_reference(b: torch.Tensor, c: torch.Tensor, scalar: float) -> torch.Tensor:
    return (b.double() + scalar * c.double()).to(b.dtype)
