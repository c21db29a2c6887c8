"""The `gemm` workload: C[M, N] = A[M, K] @ B[K, N], vendor BLAS against the Triton kernel.

Backends: `torch` (baseline: torch.matmul, i.e. cuBLAS / hipBLASLt; torch._scaled_mm for fp8),
`triton` (aibench.kernels.matmul) and `triton.tma` (aibench.kernels.matmul_tma: persistent, TMA
descriptors, fp16/bf16 on Hopper and newer; a case it cannot take is skipped with the reason). Shapes from real models: aibench.workloads.shapes.
The runner derives TFLOP/s, % of peak and the speedup over the baseline from `flops`, `bytes`
and `dtype`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from aibench.core.checks import Check, compare, tolerance_for
from aibench.core.errors import Unsupported, UsageError
from aibench.device import devices
from aibench.kernels.matmul import (
    FP8_DTYPES,
    fp8_unsupported_reason,
    matmul,
    matmul_bytes,
    matmul_flops,
    matmul_reference,
    native_fp8_dtype,
    tuned_config,
)
from aibench.kernels.matmul_tma import matmul_tma, tma_unsupported_reason
from aibench.measure.case import Case, Param
from aibench.workloads.coldcache import rotating, rotation
from aibench.workloads.registry import workload

DTYPES: dict[str, torch.dtype | None] = {
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
    # fp8 e4m3 in the encoding this GPU's MMA takes (OCP e4m3fn on NVIDIA and MI350, e4m3fnuz on
    # MI300): the name suites use, so that vendors' fp8 rows line up in a report. The records'
    # details say which encoding ran.
    "float8_e4m3": None,
    "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e4m3fnuz": torch.float8_e4m3fnuz,
}
# Past this many output elements the check compares a sample of rows (all columns): the
# comparison runs in float64 on the CPU, and a 405B gate_up output has 872M elements.
_FULL_CHECK_MAX_ELEMENTS = 2**26
_CHECK_ROWS = 1024
# Above this many multiply-adds a GPU reference runs in IEEE fp32 (error ~1e-6, under every
# tolerance) rather than float64, which is slow on most GPUs and doubles the memory.
_FLOAT64_REFERENCE_MAX_MNK = 2**30


def validate_params(p: dict[str, Any]) -> None:
    """A UsageError for parameters no backend can take: the user's mistake, not a failed run.
    Needs no device and allocates nothing, so that it can run before any measurement."""
    if min(p["m"], p["n"], p["k"]) < 1:
        raise UsageError(f"gemm needs m, n, k >= 1; got m={p['m']}, n={p['n']}, k={p['k']}")
    # A flag its dtype ignores would sit in the record's params as if it had applied.
    if p["tf32"] and p["dtype"] != "float32":
        raise UsageError(f"tf32 applies to dtype=float32 only, not {p['dtype']}")
    if p["fast_accum"] and not str(p["dtype"]).startswith("float8"):
        raise UsageError(f"fast_accum applies to the float8 dtypes only, not {p['dtype']}")


gemm = workload(
    "gemm",
    "Dense matrix product C = A @ B (cuBLAS/hipBLASLt vs the Triton kernel)",
    params=[
        Param("m", int, 4096, "rows of A and C (tokens)", preview=64),
        Param("n", int, 4096, "columns of B and C (output features)", preview=48),
        Param("k", int, 4096, "inner dimension (input features)", preview=40),
        Param("dtype", str, "bfloat16", "input dtype (fp8: per-tensor scales, bf16 output)", choices=tuple(DTYPES)),
        Param("tf32", bool, False, "float32 only: allow TF32 tensor cores in both backends"),
        Param("fast_accum", bool, False, "float8 only: accumulate in the MMA's reduced precision (both backends)"),
        Param("transpose_b", bool, False, "B is a transposed [N, K] weight, w.t(), as in nn.Linear (fp8: always)"),
        Param("seed", int, 0, "seed of the random inputs"),
    ],
    validate=validate_params,
)


class _Inputs:
    """The operands of one product, allocated once at setup (never timed)."""

    def __init__(self, p: dict[str, Any], device: torch.device) -> None:
        validate_params(p)
        self.m, self.n, self.k = p["m"], p["n"], p["k"]
        dtype = DTYPES[p["dtype"]]
        if dtype is None:  # float8_e4m3: the device's own encoding (none: refused just below)
            dtype = native_fp8_dtype(device) or torch.float8_e4m3fn
        self.dtype: torch.dtype = dtype
        self.fp8 = self.dtype in FP8_DTYPES
        self.tf32 = bool(p["tf32"]) and self.dtype == torch.float32
        self.fast_accum = bool(p["fast_accum"]) and self.fp8
        # fp8 B is always a transposed weight: torch._scaled_mm takes column-major B only.
        self.transpose_b = bool(p["transpose_b"]) or self.fp8
        self.out_dtype = torch.bfloat16 if self.fp8 else self.dtype
        if self.fp8 and (reason := fp8_unsupported_reason(device, self.dtype)):
            raise Unsupported(reason)
        self._require_memory(device)

        g = torch.Generator(device=device).manual_seed(p["seed"])
        gen_dtype = torch.bfloat16 if self.fp8 else self.dtype
        self.a = torch.randn(self.m, self.k, generator=g, device=device, dtype=gen_dtype)
        w_shape = (self.n, self.k) if self.transpose_b else (self.k, self.n)
        w = torch.randn(w_shape, generator=g, device=device, dtype=gen_dtype)
        w.mul_(self.k**-0.5)  # outputs ~ N(0, 1) whatever K: no fp16 overflow, no tiny norms
        self.a_scale: torch.Tensor | None = None
        self.b_scale: torch.Tensor | None = None
        if self.fp8:
            self.a, self.a_scale = _quantize_fp8(self.a, self.dtype)
            w, self.b_scale = _quantize_fp8(w, self.dtype)
        self.b = w.t() if self.transpose_b else w

    def _require_memory(self, device: torch.device) -> None:
        if device.type != "cuda":
            return
        in_bytes = 2 if self.fp8 else self.dtype.itemsize  # fp8 inputs are drawn in bf16 first
        need = matmul_bytes(self.m, self.n, self.k, in_bytes, self.out_dtype.itemsize)
        free, _total = torch.cuda.mem_get_info(device)
        if need > 0.9 * free:
            raise Unsupported(
                f"gemm {self.m}x{self.n}x{self.k} {self.dtype} needs {need / 2**30:.1f} GiB; "
                f"the device has {free / 2**30:.1f} GiB free"
            )

    @property
    def dtype_key(self) -> str:
        """Names the tolerance row and the peak-TFLOP/s row (none exists for tf32: no % of peak)."""
        return "tf32" if self.tf32 else str(self.dtype).replace("torch.", "")

    def case(self, op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], backend_details: dict[str, Any]) -> Case:
        """The Case timing `op(a, b)`, each call on the next copy of the operands (coldcache)."""
        rot, cold = rotation((self.a, self.b), self.a.device)
        fn = rotating(op, rot)
        rows = _check_rows(self.m, self.n, self.a.device)
        on_gpu = self.a.device.type != "cpu"
        ref_dtype = (
            torch.float32 if on_gpu and self.m * self.n * self.k > _FLOAT64_REFERENCE_MAX_MNK else torch.float64
        )

        def check() -> Check:
            out = fn()
            a = self.a if rows is None else self.a[rows]
            ref = matmul_reference(a, self.b, a_scale=self.a_scale, b_scale=self.b_scale, dtype=ref_dtype)
            key = f"{self.dtype_key}+fast_accum" if self.fast_accum else self.dtype_key
            return compare(out if rows is None else out[rows], ref, tolerance_for(key))

        details = {
            "m": self.m,
            "n": self.n,
            "k": self.k,
            "dtype": str(self.dtype).replace("torch.", ""),
            "out_dtype": str(self.out_dtype).replace("torch.", ""),
            "tf32": self.tf32,
            "fast_accum": self.fast_accum,
            "transpose_b": self.transpose_b,
            "check_rows": "all" if rows is None else int(rows.numel()),
            "reference_dtype": str(ref_dtype).replace("torch.", ""),
            **cold,
            **backend_details,
        }
        return Case(
            fn=fn,
            check=check,
            flops=matmul_flops(self.m, self.n, self.k),
            bytes=matmul_bytes(self.m, self.n, self.k, self.dtype.itemsize, self.out_dtype.itemsize),
            dtype=self.dtype_key,
            details=details,
        )


def _quantize_fp8(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor fp8: x ~ scale * x8, with the scale mapping amax onto the largest finite value
    of `dtype` (448 for e4m3fn, 240 for e4m3fnuz)."""
    top = torch.finfo(dtype).max
    scale = (x.abs().amax().float() / top).clamp_min(torch.finfo(torch.float32).tiny)
    x8 = (x / scale.to(x.dtype)).clamp_(-top, top).to(dtype)
    return x8, scale.reshape(())


def _check_rows(m: int, n: int, device: torch.device) -> torch.Tensor | None:
    """None: check every row; else a seeded sample of rows, first and last included."""
    if m * n <= _FULL_CHECK_MAX_ELEMENTS or m <= _CHECK_ROWS:
        return None
    g = torch.Generator().manual_seed(m * 1_000_003 + n)
    picked = torch.randperm(m, generator=g)[: _CHECK_ROWS - 2]
    rows = torch.cat([torch.tensor([0, m - 1]), picked]).unique()  # unique() also sorts
    return rows.to(device)


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    """torch's TF32 switch for fp32 matmuls, set for the call and restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


@gemm.backend("torch", baseline=True, description="torch.matmul (cuBLAS / hipBLASLt); torch._scaled_mm for fp8")
def _gemm_torch(p: dict[str, Any], device: torch.device) -> Case:
    x = _Inputs(p, device)
    if x.fp8:
        if not hasattr(torch, "_scaled_mm"):
            raise Unsupported(f"torch {torch.__version__} has no torch._scaled_mm for fp8")

        def op(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch._scaled_mm(
                a, b, scale_a=x.a_scale, scale_b=x.b_scale, out_dtype=x.out_dtype, use_fast_accum=x.fast_accum
            )

        name = "torch._scaled_mm"
    elif x.dtype == torch.float32:

        def op(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            with _tf32(x.tf32):
                return torch.matmul(a, b)

        name = "torch.matmul"
    else:

        def op(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.matmul(a, b)

        name = "torch.matmul"
    case = x.case(op, {"op": name})
    try:
        case.fn()  # warm-up outside the timer; also how _scaled_mm's shape limits surface
        devices.synchronize(device)
    except RuntimeError as exc:
        raise Unsupported(f"{name} cannot run this case: {exc}") from exc
    return case


@gemm.backend("triton", available=devices.triton_usable, description="aibench.kernels.matmul (Triton)")
def _gemm_triton(p: dict[str, Any], device: torch.device) -> Case:
    x = _Inputs(p, device)

    def op(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return matmul(
            a, b, allow_tf32=x.tf32, a_scale=x.a_scale, b_scale=x.b_scale, fp8_fast_accum=x.fast_accum
        )

    case = x.case(op, {"op": "aibench.kernels.matmul", "interpreted": devices.is_interpreted(device)})
    if device.type != "cpu":
        # Autotuning happens on the first call of each shape: do it here, outside the timer
        # (and outside any CUDA graph capture), and record the config it picked. The copies of
        # the operands share the key (same shape and strides): one tuning serves them all.
        case.fn()
        devices.synchronize(device)
        case.details["config"] = tuned_config()
    return case


def _tma_available(device: torch.device) -> tuple[bool, str | None]:
    ok, why = devices.triton_usable(device)
    if not ok or device.type != "cuda":
        return ok, why  # a CPU: the interpreter runs it
    if getattr(torch.version, "hip", None) or torch.cuda.get_device_capability(device)[0] < 9:
        return False, "TMA descriptors need an NVIDIA GPU of compute capability >= 9.0 (Hopper)"
    return True, None


@gemm.backend("triton.tma", available=_tma_available,
              description="aibench.kernels.matmul_tma (Triton: persistent, TMA descriptors, Hopper)")
def _gemm_triton_tma(p: dict[str, Any], device: torch.device) -> Case:
    x = _Inputs(p, device)
    if reason := tma_unsupported_reason(x.a, x.b):
        raise Unsupported(reason)
    case = x.case(matmul_tma, {"op": "aibench.kernels.matmul_tma", "interpreted": devices.is_interpreted(device)})
    if device.type != "cpu":
        case.fn()  # autotunes this shape: outside the timer and any CUDA graph capture
        devices.synchronize(device)
    return case
