"""Triton STREAM kernels (copy, triad) under the interpreter, on random odd sizes."""

from __future__ import annotations

import pytest
import torch

from aibench.kernels import stream


@pytest.mark.parametrize("n", [1, 37, 4096, 4097, 10_001])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_copy_is_bit_exact(n: int, dtype: torch.dtype) -> None:
    src = torch.randn(n).to(dtype)
    out = torch.full_like(src, float("nan"))
    stream.copy(src, out=out)
    assert torch.equal(out, src)


@pytest.mark.parametrize("n", [1, 999, 8193])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triad_matches_reference(n: int, dtype: torch.dtype) -> None:
    b, c = torch.randn(n).to(dtype), torch.randn(n).to(dtype)
    out = stream.triad(b, c, 3.0)
    ref = stream.triad_reference(b, c, 3.0)
    tol = 0 if dtype == torch.float32 else 1e-3
    torch.testing.assert_close(out, ref, rtol=tol or 1.3e-6, atol=tol or 1e-6)


def test_errors_are_clear() -> None:
    a = torch.randn(10)
    with pytest.raises(ValueError, match="shapes differ"):
        stream.copy(a, out=torch.empty(11))
    with pytest.raises(TypeError, match="dtypes differ"):
        stream.copy(a, out=torch.empty(10, dtype=torch.float16))
    with pytest.raises(ValueError, match="contiguous"):
        stream.copy(torch.randn(4, 4).t(), out=torch.empty(4, 4))
    with pytest.raises(TypeError, match="floating-point"):
        stream.triad(torch.ones(4, dtype=torch.int32), torch.ones(4, dtype=torch.int32), 2.0)


def test_byte_and_flop_formulas() -> None:
    assert stream.copy_bytes(1000, 4) == 8000
    assert stream.triad_bytes(1000, 2) == 6000
    assert stream.triad_flops(1000) == 2000
