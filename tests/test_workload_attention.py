"""attention.prefill / attention.decode workloads: setup on CPU (preview sizes), checks, counts."""

from __future__ import annotations

import pytest
import torch

import aibench.workloads.attention as wl_attention
from aibench.core.errors import UsageError
from aibench.device import devices
from aibench.kernels.attention import attention_bytes, attention_flops
from aibench.workloads.registry import get

CPU = torch.device("cpu")
# The triton backend runs on a CPU only through the interpreter (the CPU test tier).
needs_interpreter = pytest.mark.skipif(
    not devices.is_interpreted(CPU), reason="needs TRITON_INTERPRET=1 (CPU tier)"
)


def _backends() -> list:
    return ["torch", pytest.param("triton", marks=needs_interpreter)]


def _setup(name: str, backend: str, **overrides: object):
    wl = get(name)
    params = wl.resolve_params(overrides, preview=True)
    return params, wl.get_backend(backend).setup(params, CPU)


def test_registered_with_baseline_and_triton() -> None:
    for name in ("attention.prefill", "attention.decode"):
        wl = get(name)
        assert wl.baseline_name == "torch"
        assert {"torch", "triton"} <= set(wl.backends)
        assert wl.get_backend("triton").available(CPU) == devices.triton_usable(CPU)
    flash = get("attention.prefill").get_backend("torch.flash")
    assert flash.available(CPU) == (False, "SDPA's flash backend runs on GPUs only")


@pytest.mark.parametrize("backend", _backends())
def test_prefill_preview_checks_pass(backend: str) -> None:
    p, case = _setup("attention.prefill", backend)
    assert p["causal"] is True and p["dtype"] == "bfloat16"
    check = case.check()
    assert check.passed, check
    s = p["seq"]
    assert case.flops == attention_flops(p["batch"], p["heads"], s, s, p["head_dim"], True)
    assert case.bytes == attention_bytes(p["batch"], p["heads"], p["kv_heads"], s, s, p["head_dim"], 2)
    assert case.work == {"tokens": p["batch"] * s}
    assert case.dtype == "bfloat16"
    out = case.fn()
    assert out.shape == (p["batch"], p["heads"], s, p["head_dim"]) and out.dtype == torch.bfloat16


@pytest.mark.parametrize("backend", _backends())
def test_prefill_non_causal_fp32_mha(backend: str) -> None:
    p, case = _setup("attention.prefill", backend, causal="false", dtype="float32", kv_heads=4, seq=33)
    assert case.check().passed
    assert case.flops == 4 * p["batch"] * p["heads"] * 33 * 33 * p["head_dim"]


@pytest.mark.parametrize("backend", _backends())
def test_decode_preview_checks_pass(backend: str) -> None:
    p, case = _setup("attention.decode", backend)
    check = case.check()
    assert check.passed, check
    b, hq, hkv, ctx, d = p["batch"], p["heads"], p["kv_heads"], p["context"], p["head_dim"]
    assert case.bytes == (2 * b * hkv * ctx * d + 2 * b * hq * d) * 2  # KV cache + q + o, bf16
    assert case.flops == 4 * b * hq * ctx * d
    assert case.work == {"tokens": b}


@needs_interpreter
def test_corrupted_triton_output_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    real = wl_attention.triton_attention
    monkeypatch.setattr(wl_attention, "triton_attention", lambda q, k, v, causal: real(q, k, v, causal=causal) * 1.1)
    _, case = _setup("attention.decode", "triton")
    check = case.check()
    assert not check.passed and "exceeds tolerance" in (check.detail or "")


def test_nan_torch_output_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def poisoned(q, k, v, causal):
        out = wl_attention.F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        out[0, 0, -1, 0] = float("nan")
        return out

    monkeypatch.setattr(wl_attention, "sdpa", poisoned)
    _, case = _setup("attention.prefill", "torch")
    check = case.check()
    assert not check.passed and "non-finite" in (check.detail or "")


def test_sdpa_baseline_refuses_misaligned_causal() -> None:
    q, k = torch.randn(1, 1, 2, 16), torch.randn(1, 1, 5, 16)
    with pytest.raises(ValueError, match="top-left"):
        wl_attention.sdpa(q, k, k, causal=True)


@pytest.mark.parametrize(
    ("name", "overrides", "match"),
    [("attention.prefill", {"heads": 6, "kv_heads": 4}, r"heads \(6\) must be a multiple of kv_heads \(4\)"),
     ("attention.prefill", {"seq": 0}, "seq must be >= 1, got 0"),
     ("attention.prefill", {"batch": 0}, "batch must be >= 1, got 0"),
     ("attention.prefill", {"kv_heads": -2}, "kv_heads must be >= 1, got -2"),
     ("attention.decode", {"context": 0}, "context must be >= 1, got 0"),  # the name the user typed
     ("attention.decode", {"heads": 0}, "heads must be >= 1, got 0")],
)
def test_bad_params_raise_usage_error(name: str, overrides: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        _setup(name, "torch", **overrides)
    # The same check without allocating anything: what a resolve-time hook of the registry calls.
    with pytest.raises(UsageError, match=match):
        wl_attention.validate_params(get(name).resolve_params(overrides, preview=True))


def test_bad_choice_rejected() -> None:
    with pytest.raises(UsageError, match="head_dim"):
        get("attention.decode").resolve_params({"head_dim": "48"})
