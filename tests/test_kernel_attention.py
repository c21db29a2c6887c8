"""Triton attention kernels (CPU interpreter; conftest sets TRITON_INTERPRET=1), the torch
reference and the FLOP/byte formulas. Shapes are small and ragged: the interpreter is slow."""

from __future__ import annotations

import math
import os

import pytest
import torch

from aibench.core.checks import compare, tolerance_for
from aibench.kernels import attention as kernels_attention_export
from aibench.kernels.attention import (
    attended_pairs,
    attention,
    attention_bytes,
    attention_flops,
    attention_reference,
    causal_mask,
    uses_split_kv,
)

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
    reason="needs the Triton interpreter or a GPU",
)
DEVICE = "cuda" if os.environ.get("TRITON_INTERPRET") != "1" else "cpu"


def _qkv(b: int, hq: int, hkv: int, sq: int, skv: int, d: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    shapes = ((b, hq, sq, d), (b, hkv, skv, d), (b, hkv, skv, d))
    return [torch.randn(s, generator=gen).to(dtype).to(DEVICE) for s in shapes]


def _check(q, k, v, causal: bool, scale: float | None = None, tol: float | None = None) -> torch.Tensor:
    out = attention(q, k, v, causal=causal, scale=scale)
    assert out.dtype == q.dtype and out.shape == q.shape and out.device == q.device
    ref = attention_reference(q.cpu(), k.cpu(), v.cpu(), causal, scale)
    result = compare(out, ref, tol if tol is not None else tolerance_for(q.dtype))
    assert result.passed, result
    return out


# --- correctness ------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
def test_single_query_single_key(causal: bool) -> None:
    q, k, v = _qkv(1, 1, 1, 1, 1, 64, torch.float32)
    out = _check(q, k, v, causal, tol=1e-5)
    torch.testing.assert_close(out, v, rtol=1e-6, atol=1e-6)  # softmax over one key is 1


@pytest.mark.parametrize(("sq", "skv"), [(37, 53), (53, 37)])
def test_causal_bottom_right_ragged(sq: int, skv: int) -> None:
    q, k, v = _qkv(2, 2, 1, sq, skv, 64, torch.float32, seed=sq)
    out = _check(q, k, v, causal=True, tol=1e-5)
    if sq > skv:  # the first sq - skv rows see no key: defined as 0, never NaN
        assert torch.all(out[:, :, : sq - skv] == 0)
        assert torch.isfinite(out).all()


def test_non_causal_ragged_fp32_with_scale() -> None:
    q, k, v = _qkv(1, 3, 3, 19, 45, 32, torch.float32, seed=3)
    _check(q, k, v, causal=False, scale=0.3, tol=1e-5)


@pytest.mark.parametrize(("hq", "hkv"), [(8, 1), (4, 1), (6, 3)])  # GQA 8:1, MQA, GQA 2:1
def test_gqa_and_mqa(hq: int, hkv: int) -> None:
    q, k, v = _qkv(1, hq, hkv, 21, 33, 64, torch.float16, seed=hq)
    _check(q, k, v, causal=True)


def test_head_dim_128_fp16() -> None:
    q, k, v = _qkv(1, 2, 1, 17, 24, 128, torch.float16, seed=5)
    _check(q, k, v, causal=True)


def test_bf16_upcast_path() -> None:
    q, k, v = _qkv(1, 2, 2, 29, 40, 64, torch.bfloat16, seed=6)
    _check(q, k, v, causal=True)


def test_decode_split_kv_long_context() -> None:
    assert uses_split_kv(1, 1000, 4)
    q, k, v = _qkv(1, 4, 1, 1, 1000, 64, torch.float32, seed=7)
    _check(q, k, v, causal=False, tol=1e-5)
    _check(q, k, v, causal=True, tol=1e-5)  # Sq = 1 bottom-right causal sees every key


def test_split_kv_several_queries_causal_bf16() -> None:
    # 3 queries x GQA 2:1 packed into one tile; causal rows end at different keys.
    assert uses_split_kv(3, 300, 2)
    q, k, v = _qkv(2, 2, 1, 3, 300, 128, torch.bfloat16, seed=8)
    _check(q, k, v, causal=True)


def test_path_choice() -> None:
    assert not uses_split_kv(1, 1, 1)  # short cache: the prefill kernel
    assert not uses_split_kv(64, 4096, 1)  # many queries: the prefill kernel
    assert not uses_split_kv(16, 4096, 16)  # 256 packed rows exceed one tile


def test_non_contiguous_q_from_bshd_layout() -> None:
    gen = torch.Generator().manual_seed(9)
    q_bshd = torch.randn(1, 23, 2, 64, generator=gen).to(DEVICE)  # [B, S, H, D]
    k_bshd = torch.randn(1, 31, 2, 64, generator=gen).to(DEVICE)
    v = torch.randn(1, 2, 31, 64, generator=gen).to(DEVICE)
    q, k = q_bshd.transpose(1, 2), k_bshd.transpose(1, 2)
    assert not q.is_contiguous() and not k.is_contiguous()
    _check(q, k, v, causal=True, tol=1e-5)


# --- validation -------------------------------------------------------------------------------
def _good() -> list[torch.Tensor]:
    return _qkv(1, 4, 2, 8, 8, 64, torch.float32)


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda q, k, v: (q[0], k, v), ValueError, r"q must be 4-D"),
        (lambda q, k, v: (q, k[0], v), ValueError, r"k must be 4-D"),
        (lambda q, k, v: (q.tolist(), k, v), TypeError, r"q must be a torch.Tensor"),
        (lambda q, k, v: (q[:, :, :0], k, v), ValueError, r"empty dimension"),
        (lambda q, k, v: (q, k[:, :, :0], v[:, :, :0]), ValueError, r"empty dimension"),
        (lambda q, k, v: (q.repeat(2, 1, 1, 1), k, v), ValueError, r"batch of q \(2\) and k/v \(1\)"),
        (lambda q, k, v: (q[..., :32], k, v), ValueError, r"head dim of q \(32\) and k/v \(64\)"),
        (lambda q, k, v: (q[:, :3], k, v), ValueError, r"multiple of kv heads"),
        (lambda q, k, v: (q, k, v[:, :, :5]), ValueError, r"k and v shapes differ"),
        (lambda q, k, v: (q, k.half(), v.half()), TypeError, r"dtypes differ"),
        (lambda q, k, v: (q.double(), k.double(), v.double()), TypeError, r"not supported"),
        (lambda q, k, v: (q[..., :48], k[..., :48], v[..., :48]), ValueError, r"head dim 48 not supported"),
        (lambda q, k, v: (q, k, v.to("meta")), ValueError, r"different devices"),
    ],
)
def test_validation_errors(mutate, error: type[Exception], match: str) -> None:
    q, k, v = mutate(*_good())
    with pytest.raises(error, match=match):
        attention(q, k, v)


def test_validation_of_options() -> None:
    q, k, v = _good()
    with pytest.raises(TypeError, match="causal must be a bool"):
        attention(q, k, v, causal=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scale must be a float"):
        attention(q, k, v, scale="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale must be finite"):
        attention(q, k, v, scale=math.inf)


def test_package_reexport() -> None:
    assert kernels_attention_export is attention


# --- reference ----------------------------------------------------------------------------------
def test_causal_mask_is_bottom_right() -> None:
    m = causal_mask(2, 4)
    assert m.tolist() == [[True, True, True, False], [True, True, True, True]]
    assert causal_mask(3, 2).tolist() == [[False, False], [True, False], [True, True]]


def test_reference_matches_sdpa_and_chunks() -> None:
    gen = torch.Generator().manual_seed(10)
    q, k, v = (torch.randn(2, 4, 9, 16, generator=gen, dtype=torch.float64) for _ in range(3))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    tiny_chunks = attention_reference(q, k, v, True, chunk_bytes=1)  # one query row per chunk
    torch.testing.assert_close(tiny_chunks, expected)
    torch.testing.assert_close(attention_reference(q, k, v, True), expected)


# --- formulas -----------------------------------------------------------------------------------
def test_attended_pairs_exact() -> None:
    assert attended_pairs(4, 4, causal=True) == 10  # 1 + 2 + 3 + 4
    assert attended_pairs(4, 4, causal=False) == 16
    assert attended_pairs(2, 5, causal=True) == 4 + 5
    assert attended_pairs(5, 2, causal=True) == 0 + 0 + 0 + 1 + 2
    for sq, skv in [(1, 1), (7, 13), (13, 7), (1, 1000), (37, 53)]:
        assert attended_pairs(sq, skv, True) == int(causal_mask(sq, skv).sum())


def test_flops_and_bytes_formulas() -> None:
    assert attention_flops(2, 8, 16, 32, 64, causal=False) == 4 * 2 * 8 * 16 * 32 * 64
    assert attention_flops(1, 1, 4, 4, 8, causal=True) == 4 * 10 * 8
    # q and o with 32 heads, k and v with 8 heads, bf16 (2 bytes)
    assert attention_bytes(1, 32, 8, 4096, 4096, 128, 2) == (2 * 32 + 2 * 8) * 4096 * 128 * 2
    assert attention_bytes(3, 4, 1, 1, 1000, 64, 4) == (2 * 3 * 4 * 64 + 2 * 3 * 1000 * 64) * 4


# --- real GPU (compiled bf16 tl.dot, autotuned configs) -----------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize(("sq", "skv", "causal"), [(1024, 1024, True), (300, 1000, True), (1, 4096, False)])
def test_gpu_bf16_llama_like(sq: int, skv: int, causal: bool) -> None:
    gen = torch.Generator(device="cuda").manual_seed(11)
    q = torch.randn(2, 32, sq, 128, generator=gen, device="cuda").bfloat16()
    k, v = (torch.randn(2, 8, skv, 128, generator=gen, device="cuda").bfloat16() for _ in range(2))
    out = attention(q, k, v, causal=causal)
    result = compare(out, attention_reference(q, k, v, causal), tolerance_for(torch.bfloat16))
    assert result.passed, result
