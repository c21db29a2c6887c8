"""Matrix multiplication C = A @ B in Triton, told in the order of Triton's tutorial 03.

1. autotune configs, built by a function and pruned per launch by `_keep`;
2. the kernel: one program computes one [BLOCK_M, BLOCK_N] tile of C, walking K in
   BLOCK_K steps with an fp32 accumulator, programs ordered in groups of GROUP_M rows of
   tiles so that neighbouring programs reuse the same A rows and B columns from L2;
3. the wrapper `matmul(a, b)`: check, allocate, launch;
4. the torch reference and the FLOP / byte formulas.

Split-K, for skinny (decode) products: with M <= 64 and N of a few thousand, the skinny tiles
make fewer programs than the GPU has SMs, each walking all of K alone while the rest idle. A
split config (SPLIT_K > 1) gives each (tile, contiguous range of K tiles) its own program, which
writes its fp32 partial to a workspace [SPLIT_K, M, N]; a second small kernel (kernels/splitk.py)
sums the partials in a fixed order and casts to C's dtype. No atomics: results are reproducible
bit for bit. `_split_ok` offers splits only where the unsplit grid leaves SMs idle, and the
autotuner times kernel + reduce together (its post_hook launches the reduce).

Dtypes: fp16 and bf16 (fp32 accumulate, output in the input dtype), fp32 (exact IEEE unless
`allow_tf32`), fp8 e4m3 with per-tensor scales on GPUs whose MMA takes it: OCP e4m3fn on NVIDIA
compute capability >= 8.9 and AMD gfx950 (MI350), e4m3fnuz on AMD gfx942 (MI300).

On a CPU this runs in Triton's interpreter (TRITON_INTERPRET=1 set before triton is imported).
The interpreter multiplies bf16 bit patterns as integers in `tl.dot`
(../shared/reference/triton-interpreter.md), so there the kernel upcasts its tiles to fp32
first (UPCAST), and it skips autotuning (one small config) because interpreted launches are slow.

For aligned fp16/bf16 products of more than 64 rows on Hopper, the first launch of each shape
also runs the persistent TMA kernel (kernels/matmul_tma.py) and keeps whichever is faster, when
the two agree: `tuned_config()` says which runs and why.

Seen on an H200 before split-K (torch 2.11, triton 3.6, do_bench medians vs torch.matmul): bf16
4096^3 0.93x, 8192^3 0.935x, Llama-3.1 prefill projections 0.82-0.95x; decode (M <= 64) 0.6-1.15x
in GPU time (CUDA graphs), the low end on 8B's o and down projections that split-K now targets;
less when the Python launch cost (~50-100 us a call there, torch ~20 us) shows. kernels/PERF.md.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any

import torch

from aibench.core.errors import Unsupported
from aibench.core.formulas import matmul_bytes, matmul_flops  # noqa: F401 (re-exported; torch-free for the buyer's recompute)
from aibench.device.fp8 import native_fp8_dtype
from aibench.kernels.splitk import splitk_reduce, splitk_workspace

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except Exception:  # not installed (non-Linux), or a broken install: the formulas still work
    HAS_TRITON = False

# fp8 e4m3 comes in two encodings: OCP e4m3fn (bias 7, max 448: NVIDIA sm_89+, AMD gfx950) and
# e4m3fnuz (bias 8, no -0 or inf, max 240: AMD gfx940-942, MI300). Each GPU's MMA takes one.
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e4m3fnuz)
_IN_DTYPES = (torch.float16, torch.bfloat16, torch.float32, *FP8_DTYPES)
_OUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_INT32_LIMIT = 2**31  # element offsets at or past this overflow Triton's default int32 indices


# ---------------------------------------------------------------------------------------------
# 1. Autotune configs
# ---------------------------------------------------------------------------------------------

# (BLOCK_M, BLOCK_N, K tile in bytes, num_warps, num_stages). A K tile is given in bytes so one
# list serves every element size: 128 bytes is BLOCK_K = 64 for bf16, 128 for fp8, 32 for fp32.
# The large tiles are the ones known to be good for Hopper bf16 (128x256x64 w8 s3, 256x128x64
# w8 s3, 128x128x64 w4/w8 s3-4); the smaller ones cover mid-size grids on any GPU.
_LARGE_TILES = (
    (128, 256, 128, 8, 3),
    (256, 128, 128, 8, 3),
    (128, 128, 128, 8, 4),
    (128, 128, 128, 4, 4),
    (128, 128, 128, 8, 3),
    (128, 64, 128, 4, 4),
    (64, 128, 128, 4, 4),
    (64, 64, 128, 4, 4),
)
# Skinny M (decode, M <= 64) is bound by streaming B: one tile row of 16/32/64, narrow N tiles
# so that enough programs run to fill every SM, long K tiles and deep pipelines to keep many
# loads in flight.
_SKINNY_TILES = tuple(
    (bm, bn, kb, 4, stages)
    for bm in (16, 32, 64)
    for bn in (32, 64, 128)
    for kb, stages in ((256, 4), (512, 3))
)
# Split-K variants (SPLIT_K 2, 4, 8) of the skinny tiles with 256-byte K tiles and 4 stages: for
# shapes whose unsplit grid leaves SMs idle (8B's o and down projections: 32-128 tiles for an
# H200's 132 SMs), each (tile, range of K tiles) gets its own program. `_split_ok` decides per
# shape; the short K tile keeps more splits eligible (each split must walk >= 2 K tiles).
_SPLIT_TILES = tuple(
    (bm, bn, 256, 4, 4, split) for bm in (16, 32, 64) for bn in (32, 64, 128) for split in (2, 4, 8)
)
_SKINNY_MAX_M = 64
_GROUP_M = 8
_INTERPRETER_TILE = (32, 32, 32)  # BLOCK_M, BLOCK_N, BLOCK_K: few launches, small tiles


def _configs(elem_bytes: int) -> list[Any]:
    """Every candidate config for inputs of `elem_bytes` bytes; `_keep` picks per launch."""
    unsplit = [(*tile, 1) for tile in _LARGE_TILES + _SKINNY_TILES]
    return [
        triton.Config(
            {
                "BLOCK_M": bm,
                "BLOCK_N": bn,
                "BLOCK_K": kb // elem_bytes,
                "GROUP_M": _GROUP_M,
                "SPLIT_K": split,
            },
            num_warps=warps,
            num_stages=stages,
        )
        for bm, bn, kb, warps, stages, split in unsplit + list(_SPLIT_TILES)
    ]


def _m_bucket(m: int) -> int:
    """Autotune key for M: the next power of two, so token counts share a tuned config."""
    return 1 << max(m - 1, 0).bit_length()


@functools.cache
def _max_shared_memory(device_index: int) -> int | None:
    try:
        props = triton.runtime.driver.active.utils.get_device_properties(device_index)
        return int(props["max_shared_mem"])
    except Exception:  # no driver query available: let the compiler reject what does not fit
        return None


@functools.cache
def _num_sms(device_index: int) -> int | None:
    try:
        props = triton.runtime.driver.active.utils.get_device_properties(device_index)
        return int(props["multiprocessor_count"])
    except Exception:  # unknown (no driver, or a backend without the key): no split configs
        return None


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _tile(config: Any) -> tuple[int, int, int, int]:
    """BLOCK_M, BLOCK_N, BLOCK_K and SPLIT_K of a triton.Config."""
    kw = config.kwargs
    return kw["BLOCK_M"], kw["BLOCK_N"], kw["BLOCK_K"], kw["SPLIT_K"]


def _split_ok(
    m: int, n: int, k: int, block_m: int, block_n: int, block_k: int, split: int, sms: int | None
) -> bool:
    """Whether a config that splits K `split` ways may run an [m, k] @ [k, n] product on a GPU
    of `sms` SMs (None: unknown). Unsplit configs always may.

    A split costs a workspace round trip and a second launch, so it is offered only where it
    can pay: skinny M, an unsplit grid of fewer than two waves of programs (`tiles` < 2 * sms),
    at most four waves once split, and at least two K tiles for every split to walk.
    """
    if split == 1:
        return True
    if sms is None or m > _SKINNY_MAX_M:
        return False
    tiles = _cdiv(m, block_m) * _cdiv(n, block_n)
    return tiles < 2 * sms and tiles * split <= 4 * sms and split <= _cdiv(k, block_k) // 2


def _keep(configs: list[Any], named_args: dict[str, Any], **_: Any) -> list[Any]:
    """Prune the candidates for one launch: split-K and tile row height by shape, shared memory
    by device."""
    m, n, k, a = named_args["M"], named_args["N"], named_args["K"], named_args["a_ptr"]
    elem_bytes, device_index = a.element_size(), a.device.index or 0
    sms = _num_sms(device_index)
    # Split-K first, so that no fallback below can bring back a split the shape does not allow.
    configs = [c for c in configs if _split_ok(m, n, k, *_tile(c), sms)]
    if m <= _SKINNY_MAX_M:
        block_m = max(16, _m_bucket(m))
        kept = [c for c in configs if c.kwargs["BLOCK_M"] == block_m and c.kwargs["BLOCK_K"] * elem_bytes > 128]
    else:
        kept = [c for c in configs if c.kwargs["BLOCK_K"] * elem_bytes == 128]
        if m <= 128:
            kept = [c for c in kept if c.kwargs["BLOCK_M"] <= 128]
    kept = kept or list(configs)  # configs built for another element size: tune over them all
    smem = _max_shared_memory(device_index)
    if smem is not None:
        # Each pipeline stage holds one A tile and one B tile in shared memory.
        def need(c: Any) -> int:
            kw = c.kwargs
            return c.num_stages * (kw["BLOCK_M"] + kw["BLOCK_N"]) * kw["BLOCK_K"] * elem_bytes

        fitting = [c for c in kept if need(c) <= smem]
        kept = fitting or [min(kept, key=need)]
    return kept


# ---------------------------------------------------------------------------------------------
# 2. The kernel (split-K's reduce kernel: kernels/splitk.py)
# ---------------------------------------------------------------------------------------------


def _matmul_kernel(
    # Pointers: matrices, the fp8 per-tensor scales (unused unless FP8), and the split-K fp32
    # workspace, contiguous [SPLIT_K, M, N] (unused unless SPLIT_K > 1)
    a_ptr, b_ptr, c_ptr, a_scale_ptr, b_scale_ptr, ws_ptr,
    # Sizes; M_BUCKET only keys the autotuner
    M, N, K, M_BUCKET,
    # Strides: elements to step one row / one column of each matrix (b may be a transposed view)
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    # Meta-parameters
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    SPLIT_K: tl.constexpr,  # > 1: program (tile, s) sums the s-th of SPLIT_K ranges of K tiles
    EVEN_K: tl.constexpr,  # K % BLOCK_K == 0: no mask on the K loads
    DOT_PRECISION: tl.constexpr,  # "ieee" | "tf32" for fp32 inputs, "" = the dtype's default
    UPCAST: tl.constexpr,  # interpreter: multiply in fp32 (its bf16 dot is broken)
    FP8: tl.constexpr,  # fp8: accumulator times a_scale * b_scale
    FAST_ACCUM: tl.constexpr,  # fp8: let the MMA accumulate over all of K in reduced precision
    INDEX_64: tl.constexpr,  # some offset reaches 2**31 elements: index in int64
):  # fmt: skip
    # Grouped ordering: programs sweep GROUP_M tile rows column by column, so a group's A rows
    # and B columns stay in L2 instead of each program streaming a fresh B column.
    pid = tl.program_id(axis=0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    # Rows and columns past the edge wrap around (% M, % N) instead of being masked: the loads
    # stay in bounds and unmasked, and the store below drops those rows and columns.
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    if INDEX_64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
        offs_k = offs_k.to(tl.int64)
    offs_am = offs_m % M
    offs_bn = offs_n % N
    a_ptrs = a_ptr + (offs_am[:, None] * stride_am + offs_k[None, :] * stride_ak)
    b_ptrs = b_ptr + (offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn)

    # The K tiles this program walks: all of them, or with split-K a contiguous range of
    # cdiv(k_tiles, SPLIT_K) whole tiles (the last ranges may be short or empty: an empty one
    # stores zeros, which the reduce adds harmlessly). k stays the global tile index, so the
    # EVEN_K mask below is the same whichever split loads the tile.
    k_tiles = tl.cdiv(K, BLOCK_K)
    if SPLIT_K == 1:
        k_first = 0
        k_last = k_tiles
    else:
        pid_k = tl.program_id(axis=1)
        per_split = tl.cdiv(k_tiles, SPLIT_K)
        k_first = tl.minimum(pid_k * per_split, k_tiles)
        k_last = tl.minimum(k_first + per_split, k_tiles)
        # k_start <= K + BLOCK_K fits int32; times a stride it is an offset into A or B, which
        # needs int64 exactly when INDEX_64 says so. (An empty range's pointers may point past
        # the end: nothing is loaded through them.)
        k_start = k_first * BLOCK_K
        if INDEX_64:
            k_start = k_start.to(tl.int64)
        a_ptrs += k_start * stride_ak
        b_ptrs += k_start * stride_bk

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(k_first, k_last):
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            a = tl.load(a_ptrs, mask=offs_k[None, :] < K - k * BLOCK_K, other=0.0)
            b = tl.load(b_ptrs, mask=offs_k[:, None] < K - k * BLOCK_K, other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        if FP8:
            if FAST_ACCUM:
                acc = tl.dot(a, b, acc)
            else:
                # Hopper's fp8 MMA accumulates in reduced precision, and triton lets it run over
                # all of K by default: a 2048-term sum of positive products then loses ~2% (seen
                # on an H200). Promote to fp32 once per K tile, as cuBLAS does by default
                # (torch._scaled_mm, use_fast_accum=False). Costs ~25-35% at 4096^3 on an H200.
                acc = tl.dot(a, b, acc, max_num_imprecise_acc=BLOCK_K)
        elif DOT_PRECISION == "":
            acc = tl.dot(a, b, acc)
        else:
            acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    if FP8:  # scaling is linear: scaling each partial equals scaling their sum
        acc = acc * (tl.load(a_scale_ptr) * tl.load(b_scale_ptr))

    c_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if SPLIT_K == 1:
        c = acc.to(c_ptr.dtype.element_ty)
        c_ptrs = c_ptr + stride_cm * offs_m[:, None] + stride_cn * offs_n[None, :]
        tl.store(c_ptrs, c, mask=c_mask)
    else:
        # The fp32 partial goes to slice pid_k of the workspace, unrounded: only the reduce
        # rounds to C's dtype, once. The slice base is int64 (SPLIT_K * M * N may pass 2**31);
        # offsets inside a slice are under M * N, which INDEX_64 covers (_launch_args).
        ws_ptrs = ws_ptr + pid_k.to(tl.int64) * M * N + (offs_m[:, None] * N + offs_n[None, :])
        tl.store(ws_ptrs, acc, mask=c_mask)


def _reduce_after_bench(nargs: dict[str, Any], exception: BaseException | None = None) -> None:
    """The autotuner's post_hook: it runs inside the timed call while benchmarking (never on the
    tuner's final launch), so a split config is timed with its reduce, as it will run."""
    if exception is None and nargs["SPLIT_K"] > 1:
        splitk_reduce(nargs["ws_ptr"], nargs["c_ptr"], nargs["M"], nargs["N"], nargs["SPLIT_K"])


if HAS_TRITON:
    # M_BUCKET is only read by the autotuner: no compile variants for its value
    _jit_kernel = triton.jit(_matmul_kernel, do_not_specialize=["M_BUCKET"])
    _kernel = triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})(_jit_kernel)
    # One autotuner per element size (1: fp8, 2: fp16/bf16, 4: fp32), each keyed on the shape
    # bucket and the layouts; triton adds the tensors' dtypes to the key and caches the winner.
    _tuned = {
        elem_bytes: triton.autotune(
            configs=_configs(elem_bytes),
            key=["M_BUCKET", "N", "K", "stride_ak", "stride_bk"],
            prune_configs_by={"early_config_prune": _keep},
            post_hook=_reduce_after_bench,
        )(_kernel)
        for elem_bytes in (1, 2, 4)
    }


# ---------------------------------------------------------------------------------------------
# 3. The wrapper: check, allocate, launch
# ---------------------------------------------------------------------------------------------


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def fp8_unsupported_reason(device: torch.device, dtype: torch.dtype = torch.float8_e4m3fn) -> str | None:
    """Why fp8 matmuls in `dtype` cannot run on `device`, or None when they can."""
    name = str(dtype).replace("torch.", "")
    native = native_fp8_dtype(device)
    if native is None:
        if device.type != "cuda":
            return (f"fp8 e4m3 matmul needs an NVIDIA GPU of compute capability >= 8.9 or an AMD "
                    f"MI300/MI350; got device {device}")
        if getattr(torch.version, "hip", None):
            arch = getattr(torch.cuda.get_device_properties(device), "gcnArchName", "?")
            return f"fp8 e4m3 matmul needs AMD gfx942 (MI300) or gfx950 (MI350); this GPU is {arch}"
        major, minor = torch.cuda.get_device_capability(device)
        return (f"fp8 e4m3 matmul needs compute capability >= 8.9 (Ada, Hopper or newer); "
                f"{torch.cuda.get_device_name(device)} has {major}.{minor}")
    if dtype != native:
        native_name = str(native).replace("torch.", "")
        return f"{torch.cuda.get_device_name(device)} multiplies fp8 e4m3 as {native_name}, not {name}"
    return None


def _check_scale(name: str, scale: Any, device: torch.device) -> torch.Tensor:
    if not isinstance(scale, torch.Tensor):
        raise TypeError(f"{name} must be a float32 tensor holding one scale, got {type(scale).__name__}")
    if scale.dtype != torch.float32 or scale.numel() != 1:
        raise ValueError(
            f"{name} must be a float32 tensor with one element (a per-tensor scale); "
            f"got {scale.dtype} of shape {tuple(scale.shape)}"
        )
    if scale.device != device:
        raise ValueError(f"{name} is on {scale.device} but the matrices are on {device}")
    return scale.reshape(())


def _check_inputs(
    a: Any, b: Any, out_dtype: torch.dtype | None, a_scale: Any, b_scale: Any
) -> torch.dtype:
    """Raise ValueError/TypeError for anything the kernel cannot take; return the output dtype."""
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"matmul: {name} must be a torch.Tensor, got {type(t).__name__}")
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(
            f"matmul expects 2-D a [M, K] and b [K, N]; got a of shape {tuple(a.shape)} "
            f"and b of shape {tuple(b.shape)}"
        )
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"matmul inner dimensions differ: a is {tuple(a.shape)} (K={a.shape[1]}) but b is "
            f"{tuple(b.shape)} (K={b.shape[0]})"
        )
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: a is {a.dtype} but b is {b.dtype}; cast both to one dtype")
    if a.dtype not in _IN_DTYPES:
        names = ", ".join(str(d).replace("torch.", "") for d in _IN_DTYPES)
        raise TypeError(f"matmul: unsupported dtype {a.dtype}; supported: {names}")
    if a.device != b.device:
        raise ValueError(f"matmul: a is on {a.device} but b is on {b.device}")
    if min(a.shape[0], a.shape[1], b.shape[1]) < 1:
        raise ValueError(
            f"matmul needs M, N, K >= 1; got M={a.shape[0]}, N={b.shape[1]}, K={a.shape[1]}"
        )
    if out_dtype is not None and out_dtype not in _OUT_DTYPES:
        raise TypeError(f"matmul: out_dtype must be float16, bfloat16 or float32, got {out_dtype}")
    if a.dtype in FP8_DTYPES:
        if a_scale is None or b_scale is None:
            raise ValueError("matmul: fp8 inputs need per-tensor scales a_scale and b_scale (float32 tensors)")
        return out_dtype or torch.bfloat16
    if a_scale is not None or b_scale is not None:
        raise ValueError(f"matmul: a_scale/b_scale apply to fp8 inputs only, not {a.dtype}")
    return out_dtype or a.dtype


def _offset_span(t: torch.Tensor) -> int:
    """One past the largest element offset the kernel computes into `t`."""
    return 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))


def _launch_args(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    a_scale: torch.Tensor | None,
    b_scale: torch.Tensor | None,
    *,
    allow_tf32: bool,
    upcast: bool,
    fast_accum: bool = False,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The kernel's positional arguments and its meta-parameters other than the tile config.

    Unused fp8 scale pointers are `c`. The split-K workspace (index `_WS_ARG`) is a stand-in
    until a launch that splits K swaps in a real one (`_with_workspace`).
    """
    (m, k), n = a.shape, b.shape[1]
    fp8 = a.dtype in FP8_DTYPES
    if a.dtype == torch.float32 or upcast:
        precision = "tf32" if allow_tf32 and not upcast else "ieee"
    else:
        precision = ""
    args = (
        a, b, c, a_scale if fp8 else c, b_scale if fp8 else c, _no_workspace(c.device),
        m, n, k, _m_bucket(m),
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1),
    )  # fmt: skip
    # m * n bounds the offsets inside one workspace slice, whatever c's layout
    span = max(_offset_span(a), _offset_span(b), _offset_span(c), m * n)
    meta = {
        "DOT_PRECISION": precision,
        "UPCAST": upcast,
        "FP8": fp8,
        "FAST_ACCUM": fp8 and fast_accum,
        "INDEX_64": span >= _INT32_LIMIT,
    }
    return args, meta


_WS_ARG = 5  # position of ws_ptr among the kernel's arguments; M, N, K follow it


@functools.cache
def _no_workspace(device: torch.device) -> torch.Tensor:
    """The ws_ptr of launches that do not split K. It is fp32 like a real workspace because
    triton compiles one variant per pointer dtype: an unsplit config timed by the autotuner
    next to split ones (real workspace) then needs no second compile when the launch cache
    runs it (possibly while a CUDA graph is being captured)."""
    return torch.empty(1, device=device, dtype=torch.float32)


def _with_workspace(args: tuple[Any, ...], ws: torch.Tensor) -> tuple[Any, ...]:
    return (*args[:_WS_ARG], ws, *args[_WS_ARG + 1 :])


def matmul(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    out_dtype: torch.dtype | None = None,
    allow_tf32: bool = False,
    a_scale: torch.Tensor | None = None,
    b_scale: torch.Tensor | None = None,
    fp8_fast_accum: bool = False,
) -> torch.Tensor:
    """C = a @ b for a [M, K] and b [K, N] of one dtype, any strides (b may be `w.t()`).

    fp16/bf16 accumulate in fp32 and return the input dtype; fp32 is exact IEEE fp32 unless
    `allow_tf32`; fp8 e4m3 needs float32 per-tensor scales and returns bf16
    (C = a_scale * b_scale * a @ b), accumulating precisely unless `fp8_fast_accum` (faster,
    as torch._scaled_mm's use_fast_accum). `out_dtype` overrides the output dtype.
    """
    c_dtype = _check_inputs(a, b, out_dtype, a_scale, b_scale)
    if not HAS_TRITON:
        raise Unsupported("the Triton matmul needs triton, which is not installed")
    interpreting = _interpreting()
    if a.device.type == "cpu" and not interpreting:
        raise Unsupported("Triton on CPU tensors needs TRITON_INTERPRET=1 set before triton is imported")
    fp8 = a.dtype in FP8_DTYPES
    if fp8:
        reason = fp8_unsupported_reason(a.device, a.dtype)
        if reason is not None:
            raise Unsupported(reason)
        a_scale = _check_scale("a_scale", a_scale, a.device)
        b_scale = _check_scale("b_scale", b_scale, a.device)

    c = torch.empty((a.shape[0], b.shape[1]), device=a.device, dtype=c_dtype)
    upcast = interpreting and a.dtype in (torch.float16, torch.bfloat16)
    args, meta = _launch_args(
        a, b, c, a_scale, b_scale, allow_tf32=allow_tf32, upcast=upcast, fast_accum=fp8_fast_accum
    )
    if interpreting:
        # Interpreted launches are slow: one small unsplit config, no tuning.
        block_m, block_n, block_k = _INTERPRETER_TILE
        config = {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": 4, "SPLIT_K": 1}
        _launch_config(args, meta, config)
    else:
        _launch_tuned(_tuned[a.element_size()], args, meta)
    return c


def _launch_config(args: tuple[Any, ...], meta: dict[str, Any], config: dict[str, Any]) -> None:
    """Launch the kernel with one config (meta-parameters and launch options), then, when it
    splits K, the reduce into C. The one place that does both, outside the autotuner.

    EVEN_K is derived when `config` lacks it; the launch cache stores it to save that work.
    """
    c, (m, n, k) = args[2], args[_WS_ARG + 1 : _WS_ARG + 4]
    if "EVEN_K" not in config:
        config = {**config, "EVEN_K": k % config["BLOCK_K"] == 0}
    split = config["SPLIT_K"]
    grid = (triton.cdiv(m, config["BLOCK_M"]) * triton.cdiv(n, config["BLOCK_N"]), split)
    if split == 1:
        _jit_kernel[grid](*args, **config, **meta)
        return
    ws = splitk_workspace(split, m, n, c.device)
    _jit_kernel[grid](*_with_workspace(args, ws), **config, **meta)
    splitk_reduce(ws, c, m, n, split)


# The config chosen for each launch key. The autotuner picks it on a key's first launch; later
# launches go straight to the jitted kernel, skipping the autotuner's and the heuristics' Python
# work, which on decode shapes (kernels of ~20 us) takes longer than the kernel itself.
_LAUNCH_CACHE: dict[tuple[Any, ...], dict[str, Any]] = {}
_last_config: dict[str, Any] | None = None


def _launch_key(args: tuple[Any, ...], meta: dict[str, Any]) -> tuple[Any, ...]:
    """What a launch's tuned config depends on: dtypes, device, shape bucket, layouts, meta."""
    a, b, c = args[:3]
    m, n, k = args[_WS_ARG + 1 : _WS_ARG + 4]
    return (a.dtype, c.dtype, a.device, _m_bucket(m), n, k, a.stride(1), b.stride(0), *meta.values())


# For aligned fp16/bf16 prefill-sized keys on Hopper: which kernel won the race against the
# persistent TMA kernel (kernels/matmul_tma.py) on the key's first launch, and why.
_KERNEL_CHOICE: dict[tuple[Any, ...], tuple[str, str]] = {}
_last_choice: tuple[str, str] | None = None


def _tma_module() -> Any:
    # Imported when first needed: kernels/matmul_tma.py imports this module's input checks.
    return importlib.import_module("aibench.kernels.matmul_tma")


def _tma_candidate(args: tuple[Any, ...], meta: dict[str, Any]) -> bool:
    """Whether the TMA kernel may race the pointer kernel for this launch: a GPU, fp16/bf16 in and
    out, more rows than the skinny (decode) tiles serve, and what TMA needs (Hopper, alignment)."""
    a, b, c = args[:3]
    if a.device.type != "cuda" or meta["FP8"] or meta["UPCAST"] or c.dtype != a.dtype:
        return False
    if args[_WS_ARG + 1] <= _SKINNY_MAX_M:
        return False
    return _tma_module().tma_unsupported_reason(a, b) is None


def _launch_tuned(tuner: Any, args: tuple[Any, ...], meta: dict[str, Any]) -> None:
    global _last_config, _last_choice
    c = args[2]
    m, n, k = args[_WS_ARG + 1 : _WS_ARG + 4]
    key = _launch_key(args, meta)
    config = _LAUNCH_CACHE.get(key)
    if config is None:
        # Every split config the tuner times writes its partials into this one workspace. It
        # is sized for the largest split of ANY config, not of those `_keep` lets through here:
        # triton's tuner cache is not keyed on the device, so a key tuned on another GPU (more
        # SMs, other splits allowed) may launch its winner straight away. Once per key and
        # device: later launches size it for their own split. Splits need M <= _SKINNY_MAX_M.
        splits = max((cfg.kwargs["SPLIT_K"] for cfg in tuner.configs), default=1) if m <= _SKINNY_MAX_M else 1
        ws = splitk_workspace(splits, m, n, c.device) if splits > 1 else args[_WS_ARG]

        def grid(META: dict[str, Any]) -> tuple[int, int]:
            return (triton.cdiv(m, META["BLOCK_M"]) * triton.cdiv(n, META["BLOCK_N"]), META["SPLIT_K"])

        # Tunes on the first launch of this key (post_hook reduces after each timed split
        # launch), then launches the winner once more, without the post_hook.
        tuner[grid](*_with_workspace(args, ws), **meta)
        config = dict(tuner.best_config.all_kwargs())
        config["EVEN_K"] = k % config["BLOCK_K"] == 0
        _LAUNCH_CACHE[key] = config
        if config["SPLIT_K"] > 1:
            splitk_reduce(ws, c, m, n, config["SPLIT_K"])
        if _tma_candidate(args, meta):
            tma = _tma_module()
            use, why = tma.race(args[0], args[1], c, lambda: _launch_config(args, meta, config))
            _KERNEL_CHOICE[key] = ("tma" if use else "pointer", why)
    elif _KERNEL_CHOICE.get(key, ("pointer",))[0] == "tma" and _tma_candidate(args, meta):
        # The key does not hold the row strides or the base address: a later launch of it may
        # be a view TMA cannot take (a row offset by one element), which the pointer kernel runs.
        _tma_module().launch_into(args[0], args[1], c)
    else:
        _launch_config(args, meta, config)
    _last_config = config
    _last_choice = _KERNEL_CHOICE.get(key)


def tuned_config() -> dict[str, Any] | None:
    """Meta-parameters and launch options of the most recent autotuned launch (None before one);
    where the TMA kernel raced the pointer kernel, which one runs (`kernel`), why, and its config."""
    if _last_config is None:
        return None
    out: dict[str, Any] = {name: value for name, value in _last_config.items() if value is not None}
    if _last_choice is not None:
        out["kernel"], out["kernel_choice"] = _last_choice
        if _last_choice[0] == "tma":
            out["tma_config"] = _tma_module().best_config()
    return out


# ---------------------------------------------------------------------------------------------
# 4. Reference and formulas
# ---------------------------------------------------------------------------------------------


def matmul_reference(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    a_scale: torch.Tensor | None = None,
    b_scale: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """a @ b (times the fp8 scales) computed in `dtype` from the same inputs, for checks.

    float64 on a CPU; on a GPU pass dtype=torch.float32 for big shapes (TF32 is switched off
    for the call, so the reference is IEEE fp32: ~1e-6 relative error, far under every tolerance).
    """
    if dtype == torch.float32 and a.device.type == "cuda":
        saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            out = a.to(dtype) @ b.to(dtype)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = saved
    else:
        out = a.to(dtype) @ b.to(dtype)
    if a_scale is not None and b_scale is not None:
        out = out * (a_scale.to(dtype) * b_scale.to(dtype))
    return out
