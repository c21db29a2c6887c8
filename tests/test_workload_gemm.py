"""The `gemm` workload (both backends, on the CPU) and the LLM shape sets."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from aibench.core import checks
from aibench.core.errors import Unsupported, UsageError
from aibench.workloads import gemm as gemm_module
from aibench.workloads.gemm import gemm
from aibench.workloads.shapes import (
    ATTENTION_DECODE_SETS,
    ATTENTION_PREFILL_SETS,
    DECODE_TOKENS,
    GEMM_SHAPE_SETS,
    LLAMA3,
    GemmShape,
)

CPU = torch.device("cpu")


def setup(backend: str, **overrides: object):  # -> Case
    params = gemm.resolve_params(overrides, preview=True)
    return gemm.get_backend(backend).setup(params, CPU)


# --- parameters -------------------------------------------------------------------------------


def test_defaults_real_and_preview() -> None:
    real = gemm.resolve_params({})
    assert (real["m"], real["n"], real["k"], real["dtype"]) == (4096, 4096, 4096, "bfloat16")
    preview = gemm.resolve_params({}, preview=True)
    assert (preview["m"], preview["n"], preview["k"]) == (64, 48, 40)
    assert gemm.baseline_name == "torch"
    assert set(gemm.backends) == {"torch", "triton", "triton.tma"}


def test_bad_parameters_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="must be one of"):
        gemm.resolve_params({"dtype": "int8"})
    with pytest.raises(UsageError, match="m, n, k >= 1"):
        setup("torch", m=0)
    # The same check without allocating anything: what a resolve-time hook of the registry calls.
    for bad in ({"m": 0}, {"n": -1}, {"k": 0}):
        with pytest.raises(UsageError, match="gemm needs m, n, k >= 1"):
            gemm_module.validate_params(gemm.resolve_params(bad, preview=True))
    gemm_module.validate_params(gemm.resolve_params({"m": 1, "n": 1, "k": 1}))


# --- setup and check on the CPU ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize(
    ("overrides", "dtype_key"),
    [
        ({}, "bfloat16"),
        ({"dtype": "float16", "transpose_b": True}, "float16"),
        ({"dtype": "float32", "m": 37, "n": 53, "k": 29}, "float32"),
        ({"dtype": "float32", "tf32": True}, "tf32"),
        ({"m": 1, "n": 96, "k": 64, "transpose_b": True}, "bfloat16"),
    ],
)
def test_case_checks_against_float64(backend: str, overrides: dict[str, object], dtype_key: str) -> None:
    case = setup(backend, **overrides)
    p = gemm.resolve_params(overrides, preview=True)
    m, n, k = p["m"], p["n"], p["k"]
    assert case.flops == 2 * m * n * k
    in_bytes = out_bytes = {"bfloat16": 2, "float16": 2, "float32": 4}[p["dtype"]]
    assert case.bytes == (m * k + k * n) * in_bytes + m * n * out_bytes
    assert case.dtype == dtype_key
    assert case.details["transpose_b"] == bool(p["transpose_b"])
    assert case.details["check_rows"] == "all"
    assert case.details["fast_accum"] is False  # fp8 only
    out = case.fn()
    assert out.shape == (m, n)
    result = case.check()
    assert result.passed, result
    assert result.tolerance == checks.tolerance_for(dtype_key)


def test_inputs_are_random_not_zeros() -> None:
    x = gemm_module._Inputs(gemm.resolve_params({"transpose_b": True}, preview=True), CPU)
    assert x.a.std() > 0.5 and x.b.abs().sum() > 0
    assert not x.b.is_contiguous()  # a transposed weight view, as nn.Linear uses it
    y = gemm_module._Inputs(gemm.resolve_params({"seed": 1}, preview=True), CPU)
    assert not torch.equal(x.a, y.a)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", ["float8_e4m3", "float8_e4m3fn", "float8_e4m3fnuz"])
def test_fp8_is_unsupported_on_cpu(backend: str, dtype: str) -> None:
    with pytest.raises(Unsupported, match=r"compute capability >= 8\.9 or an AMD MI300/MI350"):
        setup(backend, dtype=dtype)


@pytest.mark.parametrize(("native", "top"), [(torch.float8_e4m3fnuz, 240.0), (torch.float8_e4m3fn, 448.0)])
def test_fp8_runs_in_the_devices_own_encoding(monkeypatch: pytest.MonkeyPatch, native: torch.dtype,
                                              top: float) -> None:
    """float8_e4m3 (the suites' name) becomes the encoding the GPU's MMA takes: e4m3fnuz on an
    MI300, e4m3fn elsewhere. Here the interpreter stands in for such a GPU (it multiplies both)."""
    kernel_module = importlib.import_module("aibench.kernels.matmul")  # the package exports the function

    def reason(device: torch.device, dtype: torch.dtype = torch.float8_e4m3fn) -> str | None:
        return None if dtype == native else f"takes {native}"

    monkeypatch.setattr(gemm_module, "native_fp8_dtype", lambda device: native)
    monkeypatch.setattr(gemm_module, "fp8_unsupported_reason", reason)
    monkeypatch.setattr(kernel_module, "fp8_unsupported_reason", reason)
    case = setup("triton", dtype="float8_e4m3", m=37, n=53, k=29)
    name = str(native).replace("torch.", "")
    assert case.dtype == case.details["dtype"] == name and case.details["out_dtype"] == "bfloat16"
    assert case.bytes == (37 * 29 + 29 * 53) * 1 + 37 * 53 * 2
    x = gemm_module._Inputs(gemm.resolve_params({"dtype": "float8_e4m3", "m": 37, "n": 53, "k": 29}), CPU)
    assert x.a.dtype == native and float(x.a.float().abs().max()) == top  # amax lands on the encoding's max
    result = case.check()
    assert result.passed and result.rel_error is not None and result.rel_error < 3e-2, result
    assert result.tolerance == checks.tolerance_for(name) == checks.tolerance_for("bfloat16")
    # Fast accumulation (fewer accumulator bits in the MMA) is checked against its own, looser row.
    fast = setup("triton", dtype="float8_e4m3", m=37, n=53, k=29, fast_accum=True).check()
    assert fast.passed and fast.tolerance == checks.tolerance_for(f"{name}+fast_accum") > result.tolerance
    other = "float8_e4m3fn" if native == torch.float8_e4m3fnuz else "float8_e4m3fnuz"
    with pytest.raises(Unsupported, match=f"takes {native}"):
        setup("triton", dtype=other)


@pytest.mark.parametrize("transpose_b", [True, False])
def test_tma_backend_checks_both_layouts(transpose_b: bool) -> None:
    case = setup("triton.tma", dtype="bfloat16", transpose_b=transpose_b)  # preview 64x48x40: aligned rows
    result = case.check()
    assert result.passed and result.rel_error is not None and result.rel_error < 8e-3
    assert case.details["op"] == "aibench.kernels.matmul_tma" and case.details["transpose_b"] is transpose_b


def test_tma_backend_skips_what_tma_cannot_take(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Unsupported, match="16-byte aligned rows"):
        setup("triton.tma", dtype="float16", k=29)
    with pytest.raises(Unsupported, match="float16/bfloat16"):
        setup("triton.tma", dtype="float32")
    monkeypatch.setattr(gemm_module, "matmul_tma", lambda a, b: (a.float() @ b.float() * 1.01).to(a.dtype))
    assert not setup("triton.tma", dtype="float16").check().passed  # a wrong kernel is caught


def test_wrong_triton_result_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    case = setup("triton", dtype="float32")
    monkeypatch.setattr(gemm_module, "matmul", lambda a, b, **_: (a @ b) * 1.01)
    result = case.check()
    assert not result.passed
    assert "exceeds tolerance" in (result.detail or "")


def test_wrong_torch_result_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    case = setup("torch", dtype="float16")
    real = torch.matmul

    def broken(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = real(a, b)
        out[3, 5] = float("nan")
        return out

    monkeypatch.setattr(torch, "matmul", broken)
    result = case.check()
    assert not result.passed
    assert "non-finite" in (result.detail or "")


def test_big_outputs_check_a_sample_of_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gemm_module, "_FULL_CHECK_MAX_ELEMENTS", 100)
    monkeypatch.setattr(gemm_module, "_CHECK_ROWS", 8)
    case = setup("torch", dtype="float32", m=40, n=30, k=20)
    assert case.details["check_rows"] == 8
    assert case.check().passed
    real = torch.matmul
    # A wrong last row is caught: the sample always holds the first and the last row.
    monkeypatch.setattr(torch, "matmul", lambda a, b: torch.cat([real(a, b)[:-1], real(a, b)[-1:] + 1]))
    assert not case.check().passed


def test_check_rows_sample() -> None:
    assert gemm_module._check_rows(4096, 4096, CPU) is None
    rows = gemm_module._check_rows(100_000, 1000, CPU)
    assert rows is not None and rows.numel() <= 1024
    assert rows[0] == 0 and rows[-1] == 99_999
    assert torch.all(rows[1:] > rows[:-1])


# --- shape sets -------------------------------------------------------------------------------


def _shape(model: str, op: str, m: int) -> GemmShape:
    return next(s for s in GEMM_SHAPE_SETS[model] if s.op == op and s.m == m)


@pytest.mark.parametrize(
    ("model", "qkv_n", "hidden", "gate_up_n", "inter"),
    [
        ("llama3-8b", 6144, 4096, 28672, 14336),  # (32 + 2 * 8) * 128 = 6144
        ("llama3-70b", 10240, 8192, 57344, 28672),  # (64 + 16) * 128
        ("llama3-405b", 18432, 16384, 106496, 53248),  # (128 + 16) * 128
    ],
)
def test_llama_projection_shapes(model: str, qkv_n: int, hidden: int, gate_up_n: int, inter: int) -> None:
    m = 4096
    assert (_shape(model, "qkv", m).n, _shape(model, "qkv", m).k) == (qkv_n, hidden)
    assert (_shape(model, "o", m).n, _shape(model, "o", m).k) == (hidden, hidden)
    assert (_shape(model, "gate_up", m).n, _shape(model, "gate_up", m).k) == (gate_up_n, hidden)
    assert (_shape(model, "down", m).n, _shape(model, "down", m).k) == (hidden, inter)
    assert {s.m for s in GEMM_SHAPE_SETS[model] if s.phase == "decode"} == {1, 8, 32, 64}


def test_gemm_sets_are_well_formed() -> None:
    assert {"llama3-8b", "llama3-70b", "llama3-405b", "llm-decode", "llm-prefill"} <= set(GEMM_SHAPE_SETS)
    param_names = {p.name for p in gemm.params}
    for name, shapes in GEMM_SHAPE_SETS.items():
        assert shapes, name
        labels = [s.label for s in shapes]
        assert len(labels) == len(set(labels)), name
        for s in shapes:
            assert min(s.m, s.n, s.k) >= 1
            assert set(s.params()) <= param_names
            gemm.resolve_params(s.params())  # valid values for the workload
    assert all(s.m in DECODE_TOKENS for s in GEMM_SHAPE_SETS["llm-decode"])
    assert len(GEMM_SHAPE_SETS["llm-decode"]) == 3 * 4 * len(DECODE_TOKENS)
    assert _shape("llama3-8b", "qkv", 1).label == "llama3-8b/qkv/m1"
    assert _shape("llama3-8b", "qkv", 1).params() == {"m": 1, "n": 6144, "k": 4096, "transpose_b": True}
    with pytest.raises(dataclasses.FrozenInstanceError):
        _shape("llama3-8b", "qkv", 1).m = 2  # type: ignore[misc]


def test_attention_sets_are_well_formed() -> None:
    for sets in (ATTENTION_PREFILL_SETS, ATTENTION_DECODE_SETS):
        assert {"llama3-8b", "llama3-70b", "llama3-405b"} <= set(sets)
        for name, shapes in sets.items():
            labels = [s.label for s in shapes]
            assert len(labels) == len(set(labels)), name
            for s in shapes:
                assert s.heads % s.kv_heads == 0  # grouped-query attention
                assert s.params()["head_dim"] == s.head_dim
    s = ATTENTION_PREFILL_SETS["llama3-70b"][0]
    assert (s.heads, s.kv_heads, s.head_dim) == (64, 8, 128)
    assert set(s.params()) == {"batch", "heads", "kv_heads", "seq", "head_dim"}
    d = ATTENTION_DECODE_SETS["llama3-405b"][0]
    assert (d.heads, d.kv_heads) == (128, 8)
    assert set(d.params()) == {"batch", "heads", "kv_heads", "context", "head_dim"}
    assert LLAMA3["llama3-8b"].vocab == 128256
