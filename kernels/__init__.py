"""Triton kernels, one module per kernel family, each in the order of Triton's tutorials.

Importing this package never fails: without a usable triton, HAS_TRITON is False and the
kernels raise aibench.errors.Unsupported when called (their FLOP/byte formulas still work).
"""

from __future__ import annotations

from aibench.kernels.matmul import HAS_TRITON, matmul, matmul_bytes, matmul_flops, matmul_reference

__all__ = ["HAS_TRITON", "matmul", "matmul_bytes", "matmul_flops", "matmul_reference"]

try:  # attention.py guards its own triton import; this guard keeps the package importable anyway
    from aibench.kernels.attention import attention

    __all__ += ["attention"]
except ImportError:  # pragma: no cover
    pass
