"""Shared by the matmul kernel tests: seeded inputs and the normwise error against a reference."""

from __future__ import annotations

import torch


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64."""
    diff = out.double() - ref.double()
    return float(torch.linalg.vector_norm(diff) / torch.linalg.vector_norm(ref.double()))


def randn(*shape: int, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0) -> torch.Tensor:
    """Standard normal values drawn in fp32 from a seeded generator, then cast to `dtype`."""
    g = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(*shape, generator=g, device=device, dtype=torch.float32).to(dtype)
