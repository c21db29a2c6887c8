"""Memory-bandwidth workloads: `memory.copy` and `memory.triad` (STREAM), Triton vs torch."""

from __future__ import annotations

from typing import Any

import torch

from aibench.core.checks import Check, compare
from aibench.core.errors import UsageError
from aibench.device import devices
from aibench.measure.case import Case, Param
from aibench.workloads.registry import workload

_DTYPES = ("float32", "float16", "bfloat16")

# GPU default 1 GiB per buffer: many times the largest L2 (60 MB on H200), so the copy streams
# from HBM. Preview (CPU) 8 MiB keeps the interpreter run to a fraction of a second.
_PARAMS = (
    Param("mib", int, 1024, "size of each buffer in MiB", preview=8),
    Param("dtype", str, "float32", "element type", choices=_DTYPES),
)


def validate_params(p: dict[str, Any]) -> None:
    """A UsageError for parameters no backend can take: the user's mistake, not a failed run."""
    if p["mib"] < 1:
        raise UsageError(f"mib must be >= 1, got {p['mib']}")


copy_wl = workload("memory.copy", "Device memory copy bandwidth (read + write), GB/s", _PARAMS, validate_params)
triad_wl = workload("memory.triad", "STREAM triad a = b + s*c bandwidth (2 reads + 1 write), GB/s", _PARAMS,
                    validate_params)

# An arbitrary non-trivial scalar: 1.0 or 0.0 would let a wrong kernel pass by accident.
TRIAD_SCALAR = 3.0


def _buffer(p: dict[str, Any], device: torch.device, seed: int) -> torch.Tensor:
    validate_params(p)
    dtype = getattr(torch, p["dtype"])
    n = p["mib"] * 1024 * 1024 // dtype.itemsize
    gen = torch.Generator(device=device).manual_seed(seed)
    # Random data, never zeros (zeros hide unwritten outputs: METHOD.md of the device tool).
    return torch.randn(n, generator=gen, device=device, dtype=torch.float32).to(dtype)


def _exact(out: torch.Tensor, ref: torch.Tensor) -> Check:
    """A copy must be bit-exact; compare() handles NaN/shape and reports the error size."""
    check = compare(out, ref, tolerance=0.0)
    if check.passed and not torch.equal(out, ref):
        return Check(False, check.max_abs_error, check.rel_error, 0.0, "copy is not bit-exact")
    return check


def _copy_case(p: dict[str, Any], device: torch.device, copy_fn: Any) -> Case:
    src = _buffer(p, device, seed=0)
    dst = torch.full_like(src, float("nan"))  # poisoned: every element must be written

    def check() -> Check:
        dst.fill_(float("nan"))
        copy_fn(src, dst)
        devices.synchronize(device)
        return _exact(dst, src)

    return Case(fn=lambda: copy_fn(src, dst), check=check, bytes=2 * src.nbytes,
                details={"elements": src.numel(), "buffer_bytes": src.nbytes})


@copy_wl.backend("torch", baseline=True, description="torch Tensor.copy_ (cudaMemcpy device-to-device)")
def _copy_torch(p: dict[str, Any], device: torch.device) -> Case:
    return _copy_case(p, device, lambda s, d: d.copy_(s))


@copy_wl.backend("triton", available=devices.triton_usable, description="Triton vectorised copy kernel")
def _copy_triton(p: dict[str, Any], device: torch.device) -> Case:
    from aibench.kernels.stream import copy

    return _copy_case(p, device, lambda s, d: copy(s, out=d))


def _triad_case(p: dict[str, Any], device: torch.device, triad_fn: Any) -> Case:
    from aibench.core.checks import tolerance_for

    b, c = _buffer(p, device, seed=1), _buffer(p, device, seed=2)
    a = torch.full_like(b, float("nan"))  # poisoned: every element must be written

    def check() -> Check:
        a.fill_(float("nan"))
        triad_fn(b, c, a)
        devices.synchronize(device)
        return compare(a, b.double() + TRIAD_SCALAR * c.double(), tolerance_for(p["dtype"]))

    return Case(fn=lambda: triad_fn(b, c, a), check=check, bytes=3 * b.nbytes, flops=2 * b.numel(),
                dtype=_triad_peak_key(p["dtype"]), details={"elements": b.numel(), "scalar": TRIAD_SCALAR})


def _triad_peak_key(dtype: str) -> str:
    """The peak row a triad's TFLOP/s is a share of. A triad is element-wise FMAs on the vector
    units, never the tensor cores: the datasheet's float32 row is the non-tensor peak (the right
    ceiling), but its bfloat16/float16 rows are dense matmul peaks, several times out of a
    triad's reach.
    A key no row has leaves "% of peak" unavailable, with this name in the reason."""
    return dtype if dtype == "float32" else f"{dtype} non-tensor"


@triad_wl.backend("torch", baseline=True, description="torch.add(b, c, alpha=s, out=a)")
def _triad_torch(p: dict[str, Any], device: torch.device) -> Case:
    return _triad_case(p, device, lambda b, c, a: torch.add(b, c, alpha=TRIAD_SCALAR, out=a))


@triad_wl.backend("triton", available=devices.triton_usable, description="Triton fused triad kernel")
def _triad_triton(p: dict[str, Any], device: torch.device) -> Case:
    from aibench.kernels.stream import triad

    return _triad_case(p, device, lambda b, c, a: triad(b, c, TRIAD_SCALAR, out=a))
