"""Attention workloads: `attention.prefill` (compute-bound) and `attention.decode` (memory-bound).

Backends: `torch` (baseline: F.scaled_dot_product_attention, whichever fused kernel torch picks),
`triton` (aibench.kernels.attention) and, for prefill on GPUs, `torch.flash` (SDPA forced to its
FlashAttention-2 backend, the reference of the kernel's speed target). Shapes of real models (Llama-3.1 8B/70B/405B at prefill
and decode token counts) are listed in aibench.workloads.shapes as ATTENTION_PREFILL_SETS and
ATTENTION_DECODE_SETS; suites pass them as parameter overrides.

Metrics come from the Case counts: prefill FLOPs count the unmasked (query, key) pairs exactly
(kernels.attention.attention_flops), so TFLOP/s compares across causal and non-causal runs;
decode bytes are the KV cache read once plus q and o, so GB/s compares with the copy ceiling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from aibench.core.checks import Check, compare, tolerance_for
from aibench.core.errors import Unsupported, UsageError, first_line
from aibench.device import devices
from aibench.kernels.attention import attention as triton_attention
from aibench.kernels.attention import attention_bytes, attention_flops, attention_reference
from aibench.measure.case import Case, Param
from aibench.workloads.coldcache import rotation
from aibench.workloads.registry import workload

_DTYPES = ("bfloat16", "float16", "float32")
_HEAD_DIMS = (16, 32, 64, 128, 256)
# SDPA's enable_gqa arrived in torch 2.5; before it the kv heads are repeated (extra traffic).
_SDPA_HAS_GQA = torch.torch_version.TorchVersion(torch.__version__) >= (2, 5)

# Real defaults: Llama-3.1-8B attention (32 query heads, 8 kv heads, head dim 128) in bf16.
# Preview defaults (CPU interpreter) are tiny but keep GQA and a ragged length.
_COMMON = (
    Param("batch", int, 1, "batch size", preview=1),
    Param("heads", int, 32, "query heads", preview=4),
    Param("kv_heads", int, 8, "key/value heads (GQA: a divisor of heads)", preview=2),
)
_TAIL = (
    Param("head_dim", int, 128, "head dimension", choices=_HEAD_DIMS, preview=64),
    Param("dtype", str, "bfloat16", "element type", choices=_DTYPES),
)


def validate_params(p: dict[str, Any]) -> None:
    """A UsageError for parameters no backend can take (prefill's or decode's), naming the
    parameter the user typed. Needs no device and allocates nothing."""
    for name in ("batch", "heads", "kv_heads", "head_dim", "seq", "context"):
        if name in p and p[name] < 1:
            raise UsageError(f"{name} must be >= 1, got {p[name]}")
    if p["heads"] % p["kv_heads"]:
        raise UsageError(f"heads ({p['heads']}) must be a multiple of kv_heads ({p['kv_heads']})")


prefill_wl = workload(
    "attention.prefill",
    "Fused attention forward over a whole prompt (Sq = Skv = seq), TFLOP/s",
    (*_COMMON, Param("seq", int, 4096, "sequence length (queries = keys)", preview=67),
     *_TAIL, Param("causal", bool, True, "causal mask")),
    validate=validate_params,
)
# Decode default batch 8 x 8192 context: a 268 MB KV cache, several times the largest L2
# (60 MB on H200, ../shared/reference/hardware.md), so the cache streams from HBM.
decode_wl = workload(
    "attention.decode",
    "One new token per sequence attending its KV cache (Sq = 1), GB/s",
    (Param("batch", int, 8, "batch size (sequences)", preview=2), *_COMMON[1:],
     Param("context", int, 8192, "KV cache length", preview=300), *_TAIL),
    validate=validate_params,
)


def _inputs(p: dict[str, Any], sq: int, skv: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    validate_params(p)
    b, hq, hkv, d = p["batch"], p["heads"], p["kv_heads"], p["head_dim"]
    dtype = getattr(torch, p["dtype"])
    gen = torch.Generator(device=device).manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:  # random, never zeros: zeros hide wrong kernels
        return torch.randn(*shape, generator=gen, device=device, dtype=torch.float32).to(dtype)

    return randn(b, hq, sq, d), randn(b, hkv, skv, d), randn(b, hkv, skv, d)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """The torch baseline. is_causal is top-left aligned: right only when Sq == Skv (or no mask)."""
    if causal and q.shape[2] != k.shape[2]:
        raise ValueError("SDPA's is_causal is top-left aligned; the baseline needs Sq == Skv")
    if q.shape[1] == k.shape[1]:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    if _SDPA_HAS_GQA:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def _case(p: dict[str, Any], device: torch.device, sq: int, skv: int, causal: bool,
          run: Callable[..., torch.Tensor]) -> Case:
    q, k, v = _inputs(p, sq, skv, device)
    b, hq, hkv, d = p["batch"], p["heads"], p["kv_heads"], p["head_dim"]
    reference: list[torch.Tensor] = []
    # Each call reads the next copy of q, k, v: a decode KV cache smaller than the L2 stays cold
    # under CUDA-graph timing too (coldcache).
    rot, cold = rotation((q, k, v), device)

    def fn() -> torch.Tensor:
        return run(*rot(), causal)

    def check() -> Check:
        out = fn()
        devices.synchronize(device)
        if not reference:  # float64 on CPU, float32 on a GPU (chunked per kv head and rows)
            reference.append(attention_reference(q, k, v, causal))
        return compare(out, reference[0], tolerance_for(p["dtype"]))

    return Case(
        fn=fn,
        check=check,
        flops=attention_flops(b, hq, sq, skv, d, causal),
        bytes=attention_bytes(b, hq, hkv, sq, skv, d, q.element_size()),
        work={"tokens": b * sq},
        dtype=p["dtype"],
        details={"batch": b, "heads": hq, "kv_heads": hkv, "q_len": sq, "kv_len": skv,
                 "head_dim": d, "causal": causal,
                 "flop_count": "exact unmasked (query, key) pairs" if causal else "4*b*h*sq*skv*d", **cold},
    )


def _run_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    return triton_attention(q, k, v, causal=causal)


@prefill_wl.backend("torch", baseline=True, description="torch SDPA (flash / cuDNN / efficient, torch's pick)")
def _prefill_torch(p: dict[str, Any], device: torch.device) -> Case:
    return _case(p, device, p["seq"], p["seq"], p["causal"], sdpa)


def _flash_available(device: torch.device) -> tuple[bool, str | None]:
    if device.type != "cuda":
        return False, "SDPA's flash backend runs on GPUs only"
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: F401
    except ImportError:
        return False, f"torch {torch.__version__} has no torch.nn.attention.sdpa_kernel"
    return True, None


@prefill_wl.backend("torch.flash", available=_flash_available,
                    description="SDPA forced to its flash backend (FlashAttention-2): the kernel target's reference")
def _prefill_flash(p: dict[str, Any], device: torch.device) -> Case:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if p["dtype"] == "float32":
        raise Unsupported("SDPA's flash backend takes float16/bfloat16 only")

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            return sdpa(q, k, v, causal)

    case = _case(p, device, p["seq"], p["seq"], p["causal"], run)
    try:
        case.fn()  # the flash backend refuses some shapes and head dims: find out before timing
        devices.synchronize(device)
    except RuntimeError as exc:
        raise Unsupported(f"SDPA's flash backend cannot run this case: {first_line(exc)}") from exc
    return case


@prefill_wl.backend("triton", available=devices.triton_usable, description="Triton flash-attention forward")
def _prefill_triton(p: dict[str, Any], device: torch.device) -> Case:
    return _case(p, device, p["seq"], p["seq"], p["causal"], _run_triton)


# Decode has Sq = 1 attending the whole cache: causal (bottom-right) equals no mask there.
@decode_wl.backend("torch", baseline=True, description="torch SDPA, one query per sequence")
def _decode_torch(p: dict[str, Any], device: torch.device) -> Case:
    return _case(p, device, 1, p["context"], False, sdpa)


@decode_wl.backend("triton", available=devices.triton_usable, description="Triton split-KV (flash-decoding)")
def _decode_triton(p: dict[str, Any], device: torch.device) -> Case:
    return _case(p, device, 1, p["context"], False, _run_triton)
