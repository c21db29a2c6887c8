"""Triton kernels, one module per kernel family, each in the order of Triton's tutorials.

Importing this package never fails: without a usable triton, HAS_TRITON is False and the
kernels raise aibench.core.errors.Unsupported when called (their FLOP/byte formulas still work).
"""

from __future__ import annotations

from aibench.kernels.matmul import HAS_TRITON, matmul, matmul_bytes, matmul_flops, matmul_reference
from aibench.kernels.matmul_tma import HAS_TMA, matmul_tma  # guards its own triton import

__all__ = ["HAS_TMA", "HAS_TRITON", "matmul", "matmul_bytes", "matmul_flops", "matmul_reference", "matmul_tma"]

try:  # attention.py guards its own triton import; this guard keeps the package importable anyway
    from aibench.kernels.attention import attention

    __all__ += ["attention"]
except ImportError:  # pragma: no cover
    pass
