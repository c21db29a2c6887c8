"""The persistent TMA matmul (kernels/matmul_tma.py): results against a float64 reference on odd
shapes in both weight layouts, why a case cannot take TMA, and the tile bookkeeping.

On a CPU it runs in Triton's interpreter (tests/conftest.py), whose host-side tensor descriptors
zero-fill reads past the edges and clip stores as the TMA unit does; sm_90 compilation is
checked by scripts/compile_check.py (tests/test_kernels_compile.py)."""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from aibench.errors import Unsupported
from aibench.kernels.matmul import matmul_reference

# The package re-exports the function `matmul_tma`, which shadows the module attribute of that name.
mt = importlib.import_module("aibench.kernels.matmul_tma")

pytestmark = pytest.mark.skipif(not mt.HAS_TMA, reason="this triton has no host-side tensor descriptors")


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).norm() / ref.norm())


def randn(*shape: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dtype)


# (M, N, K): K and N multiples of 8 (16-byte rows in 2-byte types); M anything. The interpreter's
# tiles are 16: ragged M, N and K tails, a single row, more tiles than persistent programs.
SHAPES = [(1, 16, 8), (37, 56, 40), (129, 72, 24), (64, 48, 64)]


@pytest.mark.parametrize(("m", "n", "k"), SHAPES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_both_weight_layouts_match_float64(m: int, n: int, k: int, dtype: torch.dtype) -> None:
    a, w = randn(m, k, dtype=dtype, seed=1), randn(n, k, dtype=dtype, seed=2)
    b = randn(k, n, dtype=dtype, seed=3)
    # One rounding to the output dtype after an fp32 sum (bf16 truncates in the interpreter: 2x).
    tol = 1e-3 if dtype == torch.float16 else 8e-3
    for rhs in (w.t(), b):  # w.t(): descriptor over w [N, K] (nn.Linear); b: row-major [K, N]
        out = mt.matmul_tma(a, rhs)
        assert out.dtype == dtype and out.shape == (m, n)
        assert rel_error(out, matmul_reference(a, rhs)) < tol


@pytest.mark.parametrize(
    ("a", "b", "out_dtype", "message"),
    [
        (torch.randn(4, 16), torch.randn(16, 16), None, "float16/bfloat16, not float32"),
        (torch.randn(4, 29).half(), torch.randn(29, 16).half(), None, "A row-major with 16-byte aligned rows"),
        (torch.randn(16, 4).half().t(), torch.randn(16, 16).half(), None, "A row-major"),
        (torch.randn(4, 16).half(), torch.randn(24, 20).half()[:, :16].t(), None, "weight's rows 16-byte aligned"),
        (torch.randn(4, 16).half(), torch.randn(16, 12).half(), None, "B row-major"),
        (torch.randn(4, 16).half(), torch.randn(12, 16).half().t()[:, :4], None, "C's rows 16-byte aligned"),
        (torch.randn(4, 16).half(), torch.randn(16, 16).half(), torch.float32, "returns the input dtype"),
    ],
)
def test_cases_tma_cannot_take_say_why(a: torch.Tensor, b: torch.Tensor, out_dtype: Any, message: str) -> None:
    assert message in (mt.tma_unsupported_reason(a, b, out_dtype) or "")
    with pytest.raises(Unsupported, match=message.split(",")[0]):
        mt.matmul_tma(a, b, out_dtype=out_dtype)


def test_bad_inputs_raise_like_matmul() -> None:
    with pytest.raises(ValueError, match="inner dimensions differ"):
        mt.matmul_tma(torch.randn(4, 16).half(), torch.randn(8, 16).half())
    with pytest.raises(TypeError, match="cast both to one dtype"):
        mt.matmul_tma(torch.randn(4, 16).half(), torch.randn(16, 16).bfloat16())


def test_pre_hook_sets_tile_shapes_for_each_layout() -> None:
    descs = {name: SimpleNamespace(block_shape=[16, 16]) for name in ("a_desc", "b_desc", "c_desc")}
    tile = {"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64}
    mt._set_block_shapes({**descs, **tile, "B_KMAJOR": True})
    assert [d.block_shape for d in descs.values()] == [[128, 64], [256, 64], [128, 256]]
    mt._set_block_shapes({**descs, **tile, "B_KMAJOR": False})
    assert descs["b_desc"].block_shape == [64, 256]  # [BLOCK_K, BLOCK_N] tiles of a row-major B


def test_configs_are_pruned_by_shared_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    configs = mt._configs()
    args = {"a_desc": SimpleNamespace(base=torch.empty(1))}
    monkeypatch.setattr(mt, "_smem_limit", lambda index: 232448)  # H100/H200: 227 KB per block
    kept = mt._fits(configs, args)
    # 128x256x64 with 3 stages: 2 * (3 * 384 * 64 + 128 * 256) = 212992 bytes: fits.
    assert len(kept) == len(configs)
    monkeypatch.setattr(mt, "_smem_limit", lambda index: 200_000)
    assert {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in mt._fits(configs, args)} == {
        (128, 128), (128, 64), (64, 128)}
    monkeypatch.setattr(mt, "_smem_limit", lambda index: 1000)  # nothing fits: the smallest, to fail loudly
    (smallest,) = mt._fits(configs, args)
    assert (smallest.kwargs["BLOCK_M"], smallest.kwargs["BLOCK_N"]) in {(128, 64), (64, 128)}
