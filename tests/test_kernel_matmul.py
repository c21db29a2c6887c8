"""The Triton matmul kernel: results against a float64 reference, every error path, the formulas.

On a CPU the kernel runs in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1),
so shapes stay small. The `gpu` tests run the compiled kernel (AIBENCH_TEST_GPU=1 on a GPU).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from matmul_helpers import randn, rel_error

from aibench.core.errors import Unsupported
from aibench.kernels.matmul import matmul, matmul_bytes, matmul_flops, matmul_reference

# The package re-exports the function `matmul`, which shadows the module attribute of that name.
matmul_module = importlib.import_module("aibench.kernels.matmul")

pytestmark = pytest.mark.skipif(not matmul_module.HAS_TRITON, reason="triton is not installed")


# --- results (CPU interpreter) ----------------------------------------------------------------

FP32_SHAPES = [(1, 1, 1), (37, 53, 29), (129, 65, 257), (1, 96, 80), (7, 96, 80), (33, 40, 64), (64, 70, 33)]


@pytest.mark.parametrize(("m", "n", "k"), FP32_SHAPES)
def test_fp32_matches_float64_reference(m: int, n: int, k: int) -> None:
    a, b = randn(m, k, seed=1), randn(k, n, seed=2)
    out = matmul(a, b)
    assert out.shape == (m, n) and out.dtype == torch.float32
    # IEEE fp32 with fp32 accumulation over k <= 257 terms: ~1e-7 relative.
    assert rel_error(out, matmul_reference(a, b)) < 2e-6


@pytest.mark.parametrize(("m", "n", "k"), [(37, 53, 29), (1, 96, 80), (16, 33, 100)])
def test_fp16_rounds_once_to_fp16(m: int, n: int, k: int) -> None:
    a, b = randn(m, k, dtype=torch.float16, seed=3), randn(k, n, dtype=torch.float16, seed=4)
    out = matmul(a, b)
    assert out.dtype == torch.float16
    # fp32 accumulation then one rounding to fp16 (unit roundoff 2^-11 ~ 4.9e-4).
    assert rel_error(out, matmul_reference(a, b)) < 1e-3


@pytest.mark.parametrize(("m", "n", "k"), [(64, 48, 40), (33, 70, 130), (2, 64, 96)])
def test_bf16_through_the_upcast_path(m: int, n: int, k: int) -> None:
    a, b = randn(m, k, dtype=torch.bfloat16, seed=5), randn(k, n, dtype=torch.bfloat16, seed=6)
    out = matmul(a, b)
    assert out.dtype == torch.bfloat16
    # One rounding to bf16 (2^-8 ~ 3.9e-3; the interpreter truncates, up to twice that).
    assert rel_error(out, matmul_reference(a, b)) < 8e-3


def test_bf16_accumulates_in_fp32() -> None:
    a, b = randn(20, 200, dtype=torch.bfloat16, seed=7), randn(200, 24, dtype=torch.bfloat16, seed=8)
    out = matmul(a, b, out_dtype=torch.float32)
    assert out.dtype == torch.float32
    # Products of bf16 values are exact in fp32: only fp32 summation error remains.
    assert rel_error(out, matmul_reference(a, b)) < 1e-6


def test_transposed_weight_is_not_copied() -> None:
    a, w = randn(37, 29, seed=9), randn(53, 29, seed=10)
    b = w.t()  # [K, N] view with strides (1, K), as nn.Linear computes x @ w.t()
    assert not b.is_contiguous()
    assert rel_error(matmul(a, b), a.double() @ w.double().t()) < 2e-6


def test_strided_views_of_both_operands() -> None:
    big_a, big_b = randn(40, 70, seed=11), randn(90, 50, seed=12)
    a = big_a[::2, 3:48]  # row stride 140, 45 columns
    b = big_b[5:50, ::3]  # 45 rows, column stride 3
    assert rel_error(matmul(a, b), matmul_reference(a, b)) < 2e-6


def test_meta_parameters_per_dtype() -> None:
    a, b = randn(4, 8), randn(8, 4)
    c = torch.empty(4, 4)
    _, meta = matmul_module._launch_args(a, b, c, None, None, allow_tf32=True, upcast=False, fast_accum=True)
    assert meta == {"DOT_PRECISION": "tf32", "UPCAST": False, "FP8": False, "FAST_ACCUM": False, "INDEX_64": False}
    a16, b16 = a.to(torch.bfloat16), b.to(torch.bfloat16)
    _, meta = matmul_module._launch_args(a16, b16, c, None, None, allow_tf32=True, upcast=True)
    assert (meta["DOT_PRECISION"], meta["UPCAST"]) == ("ieee", True)  # the interpreter multiplies in fp32
    _, meta = matmul_module._launch_args(a16, b16, c, None, None, allow_tf32=False, upcast=False)
    assert meta["DOT_PRECISION"] == ""  # half precision: the tensor cores' own mode
    a8, b8 = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn)
    one = torch.tensor(1.0)
    args, meta = matmul_module._launch_args(a8, b8, c, one, one, allow_tf32=False, upcast=False, fast_accum=True)
    assert meta["FP8"] and meta["FAST_ACCUM"]
    assert args[3] is one and args[4] is one


def test_int64_indexing_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real 2**31-element tensors do not fit a test: lower the threshold to take the same branch.
    monkeypatch.setattr(matmul_module, "_INT32_LIMIT", 1)
    a, b = randn(19, 45, seed=13), randn(45, 23, seed=14)
    assert rel_error(matmul(a, b), matmul_reference(a, b)) < 2e-6


def test_tf32_flag_keeps_fp32_output() -> None:
    a, b = randn(17, 33, seed=15), randn(33, 9, seed=16)
    out = matmul(a, b, allow_tf32=True)
    assert out.dtype == torch.float32
    assert rel_error(out, matmul_reference(a, b)) < 5e-3  # TF32 bound (the interpreter is exact)


def test_fp8_needs_a_capable_gpu() -> None:
    a = randn(16, 32).to(torch.float8_e4m3fn)
    b = randn(32, 16).to(torch.float8_e4m3fn)
    one = torch.ones((), dtype=torch.float32)
    with pytest.raises(Unsupported, match=r"compute capability >= 8\.9"):
        matmul(a, b, a_scale=one, b_scale=one)


class _FakeGpu:
    """torch.cuda's answers for one GPU, NVIDIA (capability) or AMD (gcnArchName)."""

    def __init__(self, name: str, capability: tuple[int, int] = (9, 0), arch: str | None = None) -> None:
        self.name, self.capability, self.arch = name, capability, arch

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(torch.version, "hip", "6.4" if self.arch else None)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: self.capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: self.name)
        props = type("Props", (), {"gcnArchName": self.arch or ""})()
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)


FN, FNUZ = torch.float8_e4m3fn, torch.float8_e4m3fnuz


@pytest.mark.parametrize(
    ("gpu", "native", "fn_reason", "fnuz_reason"),
    [
        (_FakeGpu("NVIDIA H100 80GB HBM3", (9, 0)), FN, None, "multiplies fp8 e4m3 as float8_e4m3fn, not float8_e4m3fnuz"),
        (_FakeGpu("NVIDIA L40S", (8, 9)), FN, None, "as float8_e4m3fn, not float8_e4m3fnuz"),
        (_FakeGpu("NVIDIA A100-SXM4-80GB", (8, 0)), None, "A100-SXM4-80GB has 8.0", "has 8.0"),
        (_FakeGpu("AMD Instinct MI300X", arch="gfx942:sramecc+:xnack-"), FNUZ,
         "MI300X multiplies fp8 e4m3 as float8_e4m3fnuz, not float8_e4m3fn", None),
        (_FakeGpu("AMD Instinct MI355X", arch="gfx950:sramecc+:xnack-"), FN, None, "as float8_e4m3fn, not"),
        (_FakeGpu("AMD Instinct MI250X", arch="gfx90a:sramecc+:xnack-"), None,
         "needs AMD gfx942 [(]MI300[)] or gfx950 [(]MI350[)]; this GPU is gfx90a", "this GPU is gfx90a"),
    ],
    ids=["h100", "l40s", "a100", "mi300x", "mi355x", "mi250x"],
)
def test_fp8_encoding_per_gpu(monkeypatch: pytest.MonkeyPatch, gpu: _FakeGpu, native: torch.dtype | None,
                              fn_reason: str | None, fnuz_reason: str | None) -> None:
    gpu.install(monkeypatch)
    cuda = torch.device("cuda")
    assert matmul_module.native_fp8_dtype(cuda) == native
    for dtype, expected in ((FN, fn_reason), (FNUZ, fnuz_reason)):
        reason = matmul_module.fp8_unsupported_reason(cuda, dtype)
        assert (reason is None) == (expected is None), reason
        if expected is not None:
            assert reason is not None
            assert re.search(expected, reason), reason


def test_fp8_encodings_are_refused_on_the_cpu_with_the_reason() -> None:
    for dtype in (FN, FNUZ):
        assert matmul_module.native_fp8_dtype(torch.device("cpu")) is None
        reason = matmul_module.fp8_unsupported_reason(torch.device("cpu"), dtype)
        assert reason is not None and "AMD MI300/MI350; got device cpu" in reason


def test_reference_applies_fp8_scales() -> None:
    a, b = randn(3, 4, seed=17), randn(4, 5, seed=18)
    sa, sb = torch.tensor(0.5), torch.tensor(3.0)
    expected = (a.double() @ b.double()) * 1.5
    assert torch.allclose(matmul_reference(a, b, a_scale=sa, b_scale=sb), expected)


class FakeTuner:
    """Stands in for triton's autotuner on the CPU: 'tunes' to one config and launches it."""

    def __init__(self) -> None:
        import triton

        self.best_config = triton.Config(
            {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 16, "GROUP_M": 2, "SPLIT_K": 1}, num_warps=4
        )
        self.configs = [self.best_config]
        self.launches = 0

    def __getitem__(self, grid: Callable[[dict[str, Any]], tuple[int, int]]) -> Callable[..., None]:
        def launch(*args: object, **meta: object) -> None:
            self.launches += 1
            kwargs = self.best_config.all_kwargs()
            matmul_module._kernel[grid(kwargs)](*args, **kwargs, **meta)

        return launch


def test_tuned_launches_reuse_the_first_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matmul_module, "_LAUNCH_CACHE", {})
    tuner = FakeTuner()
    for k in (40, 40, 48):  # K=40: tune, then the cached path; K=48: a new key, tuned again
        a, b = randn(37, k, seed=k), randn(k, 29, seed=k + 1)
        c = torch.empty(37, 29)
        args, meta = matmul_module._launch_args(a, b, c, None, None, allow_tf32=False, upcast=False)
        matmul_module._launch_tuned(tuner, args, meta)
        assert rel_error(c, matmul_reference(a, b)) < 2e-6
        config = matmul_module.tuned_config()
        assert config is not None and config["BLOCK_K"] == 16
        assert config["EVEN_K"] == (k % 16 == 0)
    assert tuner.launches == 2
    assert len(matmul_module._LAUNCH_CACHE) == 2


# --- validation: clear ValueError / TypeError, never a Triton compile error -------------------

A = randn(8, 6)
B = randn(6, 4)


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "error", "message"),
    [
        (A.numpy(), B, {}, TypeError, "a must be a torch.Tensor"),
        (A[0], B, {}, ValueError, "expects 2-D"),
        (A, B.reshape(1, 6, 4), {}, ValueError, "expects 2-D"),
        (A, randn(5, 4), {}, ValueError, "inner dimensions differ"),
        (A, B.double(), {}, TypeError, "a is torch.float32 but b is torch.float64"),
        (A.double(), B.double(), {}, TypeError, "unsupported dtype torch.float64"),
        (A.int(), B.int(), {}, TypeError, "unsupported dtype torch.int32"),
        (A, B.to("meta"), {}, ValueError, "a is on cpu but b is on meta"),
        (A[:0], B, {}, ValueError, "M, N, K >= 1"),
        (A[:, :0], B[:0], {}, ValueError, "M, N, K >= 1"),
        (A, B[:, :0], {}, ValueError, "M, N, K >= 1"),
        (A, B, {"out_dtype": torch.int8}, TypeError, "out_dtype must be"),
        (A, B, {"a_scale": torch.tensor(1.0), "b_scale": torch.tensor(1.0)}, ValueError, "fp8 inputs only"),
    ],
)
def test_invalid_inputs_raise_clear_errors(
    a: object, b: object, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        matmul(a, b, **kwargs)  # type: ignore[arg-type]


def test_fp8_without_scales_is_rejected() -> None:
    a8, b8 = A.to(torch.float8_e4m3fn), B.to(torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="need per-tensor scales"):
        matmul(a8, b8)
    with pytest.raises(ValueError, match="need per-tensor scales"):
        matmul(a8, b8, a_scale=torch.tensor(1.0))


# --- configs and formulas ---------------------------------------------------------------------


@pytest.mark.parametrize("elem_bytes", [1, 2, 4])
def test_keep_prunes_by_m_and_shared_memory(monkeypatch: pytest.MonkeyPatch, elem_bytes: int) -> None:
    smem = 100 * 1024
    monkeypatch.setattr(matmul_module, "_max_shared_memory", lambda _index: smem)
    configs = matmul_module._configs(elem_bytes)
    dtype = {1: torch.float8_e4m3fn, 2: torch.bfloat16, 4: torch.float32}[elem_bytes]
    a = torch.empty(1, 1, dtype=dtype)
    for m, block_ms in ((1, {16}), (17, {32}), (64, {64}), (100, {64, 128}), (4096, {64, 128, 256})):
        kept = matmul_module._keep(configs, {"M": m, "N": 4096, "K": 4096, "a_ptr": a})
        assert kept, m
        assert {c.kwargs["BLOCK_M"] for c in kept} <= block_ms
        for c in kept:
            kw = c.kwargs
            assert c.num_stages * (kw["BLOCK_M"] + kw["BLOCK_N"]) * kw["BLOCK_K"] * elem_bytes <= smem


def test_keep_never_returns_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matmul_module, "_max_shared_memory", lambda _index: 1)
    a = torch.empty(1, 1, dtype=torch.bfloat16)
    shape = {"M": 4096, "N": 4096, "K": 4096}
    kept = matmul_module._keep(matmul_module._configs(2), {**shape, "a_ptr": a})
    assert len(kept) == 1
    # Configs made for another element size (fp32 here) are not all dropped either.
    assert matmul_module._keep(matmul_module._configs(2), {**shape, "a_ptr": a.float()})


def test_m_bucket() -> None:
    assert [matmul_module._m_bucket(m) for m in (1, 2, 3, 16, 17, 4096, 4097)] == [1, 2, 4, 16, 32, 4096, 8192]


def test_flop_and_byte_formulas() -> None:
    assert matmul_flops(1, 1, 1) == 2
    assert matmul_flops(4096, 4096, 4096) == 2 * 4096**3
    assert matmul_flops(2, 3, 5) == 60
    # A (2x5) and B (5x3) read once at 2 bytes, C (2x3) written once at 4 bytes.
    assert matmul_bytes(2, 3, 5, 2, 4) == (10 + 15) * 2 + 6 * 4
    assert matmul_bytes(4096, 4096, 4096, 1, 2) == 2 * 4096**2 + 2 * 4096**2


# --- real GPU (compiled kernel) ---------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("m", "n", "k"), [(1, 4096, 4096), (33, 1000, 777), (512, 512, 512), (1000, 1200, 1100)])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_gpu_half_precision(dtype: torch.dtype, m: int, n: int, k: int, transpose_b: bool) -> None:
    a = randn(m, k, dtype=dtype, device="cuda")
    b = randn(n, k, dtype=dtype, device="cuda").t() if transpose_b else randn(k, n, dtype=dtype, device="cuda")
    b = b * k**-0.5
    out = matmul(a, b)
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    assert rel_error(out, matmul_reference(a, b, dtype=torch.float32)) < tol


@pytest.mark.gpu
@pytest.mark.parametrize("allow_tf32", [False, True])
def test_gpu_fp32(allow_tf32: bool) -> None:
    a, b = randn(300, 500, device="cuda"), randn(500, 200, device="cuda")
    err = rel_error(matmul(a, b, allow_tf32=allow_tf32), matmul_reference(a, b))
    assert err < (5e-3 if allow_tf32 else 1e-5)


def _gpu_fp8() -> torch.dtype:
    """The e4m3 encoding this GPU multiplies (e4m3fnuz on an MI300), or skip."""
    native = matmul_module.native_fp8_dtype(torch.device("cuda"))
    if native is None:
        pytest.skip("this GPU has no fp8")
    return native


@pytest.mark.gpu
@pytest.mark.parametrize(("m", "n", "k"), [(1, 1024, 2048), (64, 512, 256), (1000, 1024, 1000), (2048, 2048, 2048)])
@pytest.mark.parametrize("transpose_b", [True, False])
def test_gpu_fp8_with_scales(m: int, n: int, k: int, transpose_b: bool) -> None:
    fp8 = _gpu_fp8()
    a = randn(m, k, device="cuda").to(fp8)
    w = randn(n, k, device="cuda").to(fp8)
    b = w.t() if transpose_b else w.t().contiguous()
    sa = torch.tensor(0.25, device="cuda")
    sb = torch.tensor(0.5, device="cuda")
    out = matmul(a, b, a_scale=sa, b_scale=sb)
    assert out.dtype == torch.bfloat16
    assert rel_error(out, matmul_reference(a, b, a_scale=sa, b_scale=sb, dtype=torch.float32)) < 1e-2


@pytest.mark.gpu
def test_gpu_fp8_fast_accumulation() -> None:
    fp8 = _gpu_fp8()
    a = randn(512, 2048, device="cuda", seed=1).to(fp8)
    b = randn(768, 2048, device="cuda", seed=2).to(fp8).t()
    one = torch.tensor(1.0, device="cuda")
    out = matmul(a, b, a_scale=one, b_scale=one, fp8_fast_accum=True)
    # Reduced-precision accumulation: a looser bound than the precise path's.
    assert rel_error(out, matmul_reference(a, b, dtype=torch.float32)) < 3e-2
