"""Persistent matmul with TMA descriptors for Hopper (sm_90+): C = A @ B, fp16/bf16.

The same product as kernels/matmul.py, written the way Triton's tutorial 09 reaches cuBLAS on
Hopper: the tensor memory accelerator (TMA) copies whole tiles from HBM to shared memory (no
per-thread address arithmetic, no masks: out-of-bounds rows and columns read as zeros, stores are
clipped), wgmma multiplies them, and a persistent grid of one program per SM walks the output
tiles in grouped order, so no tile waits for a launch. The tile loop is flattened so that the
pipeliner overlaps one tile's epilogue with the next tile's loads, and the epilogue may store C
in two halves to leave shared memory for a deeper pipeline. It is the `triton.tma` backend of the
`gemm` workload, and `matmul` races it against its pointer kernel on the first launch of each
aligned fp16/bf16 prefill-sized shape on Hopper (`race`), keeping the faster when both agree
(kernels/PERF.md: the pointer kernel is 0.87-0.89x cuBLAS on Llama-3.1 8B prefill shapes on an H200).

1. autotune configs, whose pre_hook sets the descriptors' tile shapes;
2. the kernel;
3. the wrapper `matmul_tma(a, b)`: check, allocate, launch (`tma_unsupported_reason` says why
   a case cannot run: TMA needs 16-byte aligned bases and row strides and a unit inner stride),
   and `race`, matmul's per-shape choice between the two kernels.

In Triton's CPU interpreter (TRITON_INTERPRET=1) host descriptors work too; the kernel then
upcasts its tiles to fp32 (the interpreter's bf16 dot is broken, triton-interpreter.md) and runs
one small config without tuning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from aibench.core.errors import Unsupported, first_line
from aibench.kernels.matmul import _check_inputs, _interpreting, _m_bucket, _max_shared_memory, _num_sms

try:
    import triton
    import triton.language as tl
    from triton.tools.tensor_descriptor import TensorDescriptor

    HAS_TMA = True
except Exception:  # no triton, or one without host-side tensor descriptors (before 3.3)
    HAS_TMA = False

_DTYPES = (torch.float16, torch.bfloat16)
# Two fp32-accumulated products of the same inputs differ by summation order and then by one
# rounding of C: a few units of the output's last place, normwise well under one unit.
_AGREE = {torch.float16: 2**-10, torch.bfloat16: 2**-7}
_ALIGN = 16  # bytes: TMA's alignment of a tensor's base address and of every stride but the last


# ---------------------------------------------------------------------------------------------
# 1. Autotune configs
# ---------------------------------------------------------------------------------------------

# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages, EPILOGUE_SUBTILE, FLATTEN) for 2-byte inputs:
# tutorial 09's Hopper recipe. Shared memory per program: stages * (BM + BN) * BK * 2 bytes of A/B
# tiles plus the C tile the TMA store reads from, BM * BN * 2 bytes, or half of it when the
# epilogue stores C in two [BM, BN/2] halves (EPILOGUE_SUBTILE): 128x256x64 holds 3 stages with a
# whole C tile (144 + 64 = 208 KB of 227) and 4 with halves (192 + 32 = 224 KB).
# FLATTEN lets the software pipeliner run across the persistent loop's tiles (the next tile's
# first loads overlap this tile's epilogue), as the tutorial does on Hopper (without warp
# specialization). The unflattened 128x256x64 config, this kernel's earlier form, stays for the
# autotuner to fall back on: neither form has run on a GPU yet (kernels/PERF.md).
_TILES = (
    (128, 256, 64, 8, 3, False, True),
    (128, 256, 64, 8, 4, True, True),
    (128, 256, 64, 8, 3, False, False),
    (256, 128, 64, 8, 3, False, True),
    (128, 128, 128, 8, 3, True, True),
    (128, 128, 64, 8, 4, False, True),
    (128, 128, 64, 4, 4, False, True),
    (128, 64, 64, 4, 4, False, True),
    (64, 128, 64, 4, 4, False, True),
)
_GROUP_M = 8
_INTERPRETER_TILE = (16, 16, 16)
_INTERPRETER_EPILOGUE = {"EPILOGUE_SUBTILE": False, "FLATTEN": False}  # the tests run both forms


def _set_block_shapes(nargs: dict[str, Any]) -> None:
    """Config pre_hook: the descriptors were made before the tile size was known."""
    bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
    nargs["a_desc"].block_shape = [bm, bk]
    nargs["b_desc"].block_shape = [bn, bk] if nargs["B_KMAJOR"] else [bk, bn]
    nargs["c_desc"].block_shape = [bm, bn // 2] if nargs["EPILOGUE_SUBTILE"] else [bm, bn]


def _configs() -> list[Any]:
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": _GROUP_M,
                       "EPILOGUE_SUBTILE": subtile, "FLATTEN": flatten},
                      num_warps=warps, num_stages=stages, pre_hook=_set_block_shapes)
        for bm, bn, bk, warps, stages, subtile, flatten in _TILES
    ]


def _smem_bytes(c: Any) -> int:
    kw = c.kwargs
    c_tile = kw["BLOCK_M"] * kw["BLOCK_N"] // (2 if kw["EPILOGUE_SUBTILE"] else 1)
    return 2 * (c.num_stages * (kw["BLOCK_M"] + kw["BLOCK_N"]) * kw["BLOCK_K"] + c_tile)


def _fits(configs: list[Any], named_args: dict[str, Any], **_: Any) -> list[Any]:
    """Drop configs whose A/B stages and C tile exceed the device's shared memory."""
    smem = _max_shared_memory(named_args["a_desc"].base.device.index or 0)
    if smem is None:
        return configs
    return [c for c in configs if _smem_bytes(c) <= smem] or [min(configs, key=_smem_bytes)]


# ---------------------------------------------------------------------------------------------
# 2. The kernel
# ---------------------------------------------------------------------------------------------


def _tile_offsets(tile, num_pid_m, num_pid_n, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  GROUP_M: tl.constexpr):
    """Grouped order: GROUP_M tile rows swept column by column share their A rows and B columns in
    L2, as kernels/matmul.py does."""
    num_pid_in_group = GROUP_M * num_pid_n
    first_pid_m = (tile // num_pid_in_group) * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (tile % group_size_m)
    pid_n = (tile % num_pid_in_group) // group_size_m
    return pid_m * BLOCK_M, pid_n * BLOCK_N


def _matmul_tma_kernel(
    a_desc, b_desc, c_desc,  # TMA descriptors of A [M, K], B ([N, K] if B_KMAJOR else [K, N]), C [M, N]
    M, N, K, M_BUCKET,  # sizes; M_BUCKET only keys the autotuner
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EPILOGUE_SUBTILE: tl.constexpr,  # store C as two [BLOCK_M, BLOCK_N/2] halves: half the smem
    FLATTEN: tl.constexpr,  # pipeline across the persistent loop's tiles, not only along K
    NUM_SMS: tl.constexpr,  # programs of the persistent grid (one per SM)
    B_KMAJOR: tl.constexpr,  # B is a transposed weight w.t(): its descriptor is over w [N, K]
    UPCAST: tl.constexpr,  # interpreter: multiply in fp32 (its bf16 dot is broken)
):  # fmt: skip
    start = tl.program_id(axis=0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    # The epilogue walks its own copy of the tile counter (tutorial 09): with FLATTEN the
    # pipeliner moves the next tile's loads ahead of this tile's store, and one counter used on
    # both sides of that boundary would tie them together.
    tile_c = start - NUM_SMS
    # Persistent: program p takes tiles p, p + NUM_SMS, ...
    for tile in tl.range(start, num_pid_m * num_pid_n, NUM_SMS, flatten=FLATTEN):
        off_m, off_n = _tile_offsets(tile, num_pid_m, num_pid_n, BLOCK_M, BLOCK_N, GROUP_M)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for ki in range(k_tiles):
            off_k = ki * BLOCK_K
            # Past K, M or N the descriptor reads zeros: a ragged last K tile adds nothing.
            a = a_desc.load([off_m, off_k])
            if B_KMAJOR:
                b = b_desc.load([off_n, off_k]).T
            else:
                b = b_desc.load([off_k, off_n])
            if UPCAST:
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc)
        tile_c += NUM_SMS
        off_cm, off_cn = _tile_offsets(tile_c, num_pid_m, num_pid_n, BLOCK_M, BLOCK_N, GROUP_M)
        if EPILOGUE_SUBTILE:  # columns [0, BN/2) and [BN/2, BN) of the tile, each clipped at M and N
            halves = tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N // 2)), (0, 2, 1))
            left, right = tl.split(halves)
            c_desc.store([off_cm, off_cn], left.to(c_desc.dtype))
            c_desc.store([off_cm, off_cn + BLOCK_N // 2], right.to(c_desc.dtype))
        else:
            c_desc.store([off_cm, off_cn], acc.to(c_desc.dtype))  # clipped at M and N


if HAS_TMA:
    _tile_offsets = triton.jit(_tile_offsets)
    _jit_kernel = triton.jit(_matmul_tma_kernel, do_not_specialize=["M_BUCKET"])
    _tuned = triton.autotune(
        configs=_configs(),
        key=["M_BUCKET", "N", "K", "B_KMAJOR", "NUM_SMS"],
        prune_configs_by={"early_config_prune": _fits},
    )(_jit_kernel)


# ---------------------------------------------------------------------------------------------
# 3. The wrapper: check, allocate, launch
# ---------------------------------------------------------------------------------------------


def _aligned(t: torch.Tensor, row_stride: int) -> bool:
    return t.data_ptr() % _ALIGN == 0 and (row_stride * t.element_size()) % _ALIGN == 0


def tma_unsupported_reason(a: torch.Tensor, b: torch.Tensor, out_dtype: torch.dtype | None = None) -> str | None:
    """Why matmul_tma cannot run a @ b here (None: it can). Inputs already passed matmul's checks."""
    if not HAS_TMA:
        return "the TMA matmul needs triton >= 3.3 (host-side tensor descriptors)"
    if a.dtype not in _DTYPES:
        return f"the TMA matmul takes float16/bfloat16, not {str(a.dtype).replace('torch.', '')}"
    if out_dtype not in (None, a.dtype):
        return "the TMA matmul returns the input dtype"
    if a.device.type == "cuda":
        if getattr(torch.version, "hip", None):
            return "TMA descriptors are an NVIDIA Hopper feature; this is a ROCm GPU"
        major, minor = torch.cuda.get_device_capability(a.device)
        if major < 9:
            return f"TMA needs compute capability >= 9.0 (Hopper); {torch.cuda.get_device_name(a.device)} has {major}.{minor}"
    elif not _interpreting():
        return "Triton on CPU tensors needs TRITON_INTERPRET=1 set before triton is imported"
    if a.stride(1) != 1 or not _aligned(a, a.stride(0)):
        return "TMA needs A row-major with 16-byte aligned rows (K * element size a multiple of 16)"
    if b.stride(0) == 1 and b.shape[1] > 1:  # w.t() of a row-major w [N, K]
        if not _aligned(b, b.stride(1)):
            return "TMA needs the weight's rows 16-byte aligned (K * element size a multiple of 16)"
    elif b.stride(1) != 1 or not _aligned(b, b.stride(0)):
        return "TMA needs B row-major [K, N] or a transposed row-major weight, rows 16-byte aligned"
    if (b.shape[1] * a.element_size()) % _ALIGN:
        return "TMA needs C's rows 16-byte aligned (N * element size a multiple of 16)"
    return None


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 4  # the interpreter: a few persistent programs, each walking several tiles
    # matmul's cached driver query (one per device, not per launch); torch's when it has none
    return _num_sms(device.index or 0) or torch.cuda.get_device_properties(device).multi_processor_count


def matmul_tma(a: torch.Tensor, b: torch.Tensor, *, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """C = a @ b for fp16/bf16 a [M, K] and b [K, N] (row-major, or w.t() of a row-major w)."""
    _check_inputs(a, b, out_dtype, None, None)  # the same ValueError/TypeError as matmul
    reason = tma_unsupported_reason(a, b, out_dtype)
    if reason is not None:
        raise Unsupported(reason)
    c = torch.empty((a.shape[0], b.shape[1]), device=a.device, dtype=a.dtype)
    launch_into(a, b, c)
    return c


def launch_into(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> None:
    """c = a @ b with the TMA kernel; inputs already checked (tma_unsupported_reason is None) and
    c a fresh row-major [M, N] of a's dtype."""
    (m, k), n = a.shape, b.shape[1]
    k_major = b.stride(0) == 1 and n > 1
    w = b.t() if k_major else b  # the descriptor's tensor: w [N, K] or b [K, N], unit inner stride
    # Placeholder tile shapes: the config's pre_hook sets the real ones before each launch.
    a_desc = TensorDescriptor(a, list(a.shape), list(a.stride()), [16, 16])
    b_desc = TensorDescriptor(w, list(w.shape), list(w.stride()), [16, 16])
    c_desc = TensorDescriptor(c, list(c.shape), list(c.stride()), [16, 16])
    sms = _sm_count(a.device)
    args = (a_desc, b_desc, c_desc, m, n, k, _m_bucket(m))
    meta = {"NUM_SMS": sms, "B_KMAJOR": k_major, "UPCAST": _interpreting()}
    if _interpreting():
        bm, bn, bk = _INTERPRETER_TILE
        config = {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 2, **_INTERPRETER_EPILOGUE}
        _set_block_shapes({"a_desc": a_desc, "b_desc": b_desc, "c_desc": c_desc, **config, **meta})
        grid = (min(sms, triton.cdiv(m, bm) * triton.cdiv(n, bn)),)
        _jit_kernel[grid](*args, **config, **meta)
    else:

        def grid(META: dict[str, Any]) -> tuple[int]:
            return (min(sms, triton.cdiv(m, META["BLOCK_M"]) * triton.cdiv(n, META["BLOCK_N"])),)

        _tuned[grid](*args, **meta)


def best_config() -> dict[str, Any] | None:
    """Meta-parameters and launch options of the TMA autotuner's latest choice (None before one)."""
    config = getattr(_tuned, "best_config", None) if HAS_TMA else None
    return None if config is None else {k: v for k, v in config.all_kwargs().items() if v is not None}


def race(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, pointer: Callable[[], None]) -> tuple[bool, str]:
    """Whether `matmul` should use the TMA kernel for this launch key: called once per key, after
    the pointer kernel (`pointer()` relaunches it) has written c = a @ b. The TMA kernel must
    agree with that result (both sum in fp32: only rounding order differs) and be faster by
    do_bench's median (L2 flushed before each call). Returns (use TMA, why)."""
    out = torch.empty_like(c)
    try:
        launch_into(a, b, out)  # tunes the TMA configs on this key's first call
    except Exception as exc:  # a config the compiler or the device refuses: keep the pointer kernel
        return False, f"TMA kernel failed: {type(exc).__name__}: {first_line(exc)}"
    ref = c.float()
    diff = float((out.float() - ref).norm() / ref.norm().clamp_min(1e-30))
    limit = _AGREE[c.dtype]
    if not diff <= limit:  # NaN fails too
        return False, f"TMA result differs from the pointer kernel's by {diff:.2e} (> {limit:.0e}): not used"
    t_pointer = triton.testing.do_bench(pointer)
    t_tma = triton.testing.do_bench(lambda: launch_into(a, b, out))
    use = t_tma < t_pointer
    return use, f"do_bench medians: TMA {t_tma * 1e3:.1f} us, pointer {t_pointer * 1e3:.1f} us"
