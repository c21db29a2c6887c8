"""Correctness checks: a workload's output against a reference computed in higher precision.

The measure is the normwise relative error ||out - ref||_2 / ||ref||_2 (METHOD.md of the device
tool): it does not blow up on near-zero elements the way an elementwise rtol does. NaN or Inf
in the output never passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Check:
    """Outcome of comparing a workload's output with its reference."""

    passed: bool
    max_abs_error: float | None = None
    rel_error: float | None = None  # ||out - ref|| / ||ref||
    tolerance: float | None = None  # bound on rel_error
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": True,
            "passed": self.passed,
            "max_abs_error": self.max_abs_error,
            "rel_error": self.rel_error,
            "tolerance": self.tolerance,
            "detail": self.detail,
        }


# Bounds on the normwise relative error, per dtype of the computation. Why these numbers:
# fp32 arithmetic lands far under 1e-4 for sums of thousands of terms; TF32 (10-bit mantissa)
# lands near 3e-4; fp16 operands with fp32 accumulation ~5e-4, bf16 operands (8-bit mantissa)
# between 1e-3 and 1e-2. Each bound leaves about 3-5x headroom over what a correct kernel shows
# on random normal data (METHOD.md's figures).
# fp8 e4m3: the reference multiplies the same quantized operands (with their scales) in higher
# precision, so the 3-bit mantissa of the inputs is not part of the error: what is left is the
# accumulation and the bf16 output's rounding (~2^-9), as for bf16, hence bf16's bound. A looser
# bound would pass a kernel that drops its last K tile (error 0.05-0.09 at Llama's K of 14k-53k).
# With fast accumulation the MMA keeps fewer accumulator bits (about 14 on Hopper, DeepSeek-V3's
# report) over every K tile: 1e-1 until a GPU run measures it (aibench/kernels/PERF.md).
REL_TOLERANCE: dict[str, float] = {
    "float64": 1e-10,
    "float32": 1e-4,
    "tf32": 5e-3,
    "float16": 5e-3,
    "bfloat16": 3e-2,
    "float8_e4m3fn": 3e-2,
    "float8_e4m3fnuz": 3e-2,  # the same 3-bit mantissa (bias 8 instead of 7)
    "float8_e4m3fn+fast_accum": 1e-1,
    "float8_e4m3fnuz+fast_accum": 1e-1,
}


def tolerance_for(dtype: str | torch.dtype) -> float:
    name = str(dtype).replace("torch.", "")
    if name not in REL_TOLERANCE:
        raise ValueError(f"no tolerance defined for dtype {name!r}")
    return REL_TOLERANCE[name]


def compare(out: torch.Tensor, ref: torch.Tensor, tolerance: float) -> Check:
    """Normwise comparison of `out` with `ref` (both are upcast to float64 on the CPU)."""
    if tuple(out.shape) != tuple(ref.shape):
        return Check(False, detail=f"shape {tuple(out.shape)} != reference {tuple(ref.shape)}", tolerance=tolerance)
    o = out.detach().to("cpu", torch.float64)
    r = ref.detach().to("cpu", torch.float64)
    if not torch.isfinite(o).all():
        bad = int((~torch.isfinite(o)).sum())
        return Check(False, detail=f"{bad} non-finite element(s) in the output", tolerance=tolerance)
    diff = o - r
    max_abs = float(diff.abs().max()) if diff.numel() else 0.0
    ref_norm = float(torch.linalg.vector_norm(r))
    diff_norm = float(torch.linalg.vector_norm(diff))
    rel = diff_norm / ref_norm if ref_norm > 0 else diff_norm
    passed = rel <= tolerance
    detail = None if passed else f"relative error {rel:.3e} exceeds tolerance {tolerance:.1e}"
    return Check(passed, max_abs_error=max_abs, rel_error=rel, tolerance=tolerance, detail=detail)
