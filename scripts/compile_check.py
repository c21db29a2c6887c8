"""Compile every Triton kernel of aibench for a GPU that is not here: Hopper (sm_90) by default.

Triton's CPU interpreter checks what a kernel computes but never runs the GPU compiler, so a
kernel can pass every interpreter test and still fail to compile (a constexpr used as a tensor,
a dtype the MMA does not take, too much shared memory) on the H100 it was written for. This
script lowers each kernel, in the variants the wrappers launch, through Triton's real pipeline
to a cubin with the ptxas that ships in Triton's wheel: no GPU and no CUDA driver needed.

    python scripts/compile_check.py [--arch 90] [--json]   # exit 1 when a variant fails

It must run without TRITON_INTERPRET (the interpreter replaces triton.jit); the tests run it in
a subprocess. Reports per variant: compiled or the error, whether Hopper's wgmma instructions
were emitted (the tensor-core path), the shared memory, and ptxas's registers per thread and
spill stores (a kernel that spills to local memory loses much of its speed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Variant:
    kernel: str  # module:attribute of the jitted (or autotuned) function
    label: str
    pointers: dict[str, str]  # argument -> Triton pointer element type ("bf16", "fp32", ...)
    constexprs: dict[str, Any]
    floats: tuple[str, ...] = ()  # fp32 scalar arguments; every other argument is an i32
    # As a launch specialises them: an int equal to 1 (a unit stride, M of a decode step) becomes
    # the constexpr 1; every other int and every pointer is taken as divisible by 16 (aligned
    # tensors, LLM dimensions), which enables vectorised loads and pipelining, except `ragged`.
    ones: tuple[str, ...] = ()
    ragged: tuple[str, ...] = ()
    descriptors: dict[str, str] = field(default_factory=dict)  # argument -> "tensordesc<bf16[128, 64]>"
    expect_tma: bool = False  # loads must lower to TMA bulk copies (cp.async.bulk.tensor)
    num_warps: int = 4
    num_stages: int = 3
    expect_wgmma: bool = False  # a tensor-core kernel must lower to wgmma on sm_90
    options: dict[str, Any] = field(default_factory=dict)


# a [M, K] row-major, b = w.t() of a row-major w [N, K] (nn.Linear), c [M, N] row-major.
_MATMUL_ONES = ("stride_ak", "stride_bk", "stride_cn")


def _matmul(label: str, in_ty: str, out_ty: str, bm: int, bn: int, bk: int, warps: int, stages: int,
            split: int = 1, ones: tuple[str, ...] = _MATMUL_ONES, ragged: tuple[str, ...] = (),
            **meta: Any) -> Variant:
    fp8 = in_ty == "fp8e4nv"
    constexprs = {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8, "SPLIT_K": split, "EVEN_K": True,
                  "DOT_PRECISION": "", "UPCAST": False, "FP8": fp8, "FAST_ACCUM": False, "INDEX_64": False,
                  **meta}
    pointers = {"a_ptr": in_ty, "b_ptr": in_ty, "c_ptr": out_ty, "a_scale_ptr": "fp32", "b_scale_ptr": "fp32",
                "ws_ptr": "fp32"}
    # wgmma works on 64-row tiles per warp group: skinny (decode) tiles use mma.sync instead.
    tensor_cores = in_ty != "fp32" or meta.get("DOT_PRECISION") == "tf32"
    return Variant("aibench.kernels.matmul:_jit_kernel", label, pointers, constexprs, num_warps=warps,
                   num_stages=stages, expect_wgmma=tensor_cores and bm >= 64, ones=ones, ragged=ragged)


def _matmul_tma(label: str, bm: int, bn: int, bk: int, warps: int, stages: int, k_major: bool,
                subtile: bool = False, flatten: bool = True) -> Variant:
    b_block = f"[{bn}, {bk}]" if k_major else f"[{bk}, {bn}]"
    c_block = f"[{bm}, {bn // 2 if subtile else bn}]"
    return Variant("aibench.kernels.matmul_tma:_jit_kernel", label, {},
                   {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8, "EPILOGUE_SUBTILE": subtile,
                    "FLATTEN": flatten, "NUM_SMS": 132, "B_KMAJOR": k_major, "UPCAST": False},
                   num_warps=warps, num_stages=stages, expect_wgmma=True, expect_tma=True,
                   descriptors={"a_desc": f"tensordesc<bf16[{bm}, {bk}]>", "b_desc": f"tensordesc<bf16{b_block}>",
                                "c_desc": f"tensordesc<bf16{c_block}>"})


def _attention(label: str, dtype: str, d: int, bm: int, bn: int, causal: bool, warps: int, stages: int) -> Variant:
    return Variant("aibench.kernels.attention:_attn_fwd", label, {"Q": dtype, "K": dtype, "V": dtype, "Out": dtype},
                   {"HEAD_DIM": d, "BLOCK_M": bm, "BLOCK_N": bn, "CAUSAL": causal, "UPCAST": False, "IEEE": False},
                   floats=("qk_scale",), num_warps=warps, num_stages=stages, expect_wgmma=True,
                   ones=_ATTENTION_ONES, ragged=("GROUP", "Sq", "Skv"))


_ATTENTION_ONES = ("stride_qd", "stride_kd", "stride_vd", "stride_od")  # contiguous head dim


VARIANTS: tuple[Variant, ...] = (
    _matmul("matmul bf16 128x256x64 (prefill)", "bf16", "bf16", 128, 256, 64, 8, 3),
    _matmul("matmul fp16 128x128x64, ragged K", "fp16", "fp16", 128, 128, 64, 4, 4, EVEN_K=False,
            ragged=("M", "N", "K", "stride_am", "stride_bn", "stride_cm")),
    _matmul("matmul bf16 16x64x128 (decode, M = 1)", "bf16", "bf16", 16, 64, 128, 4, 4,
            ones=(*_MATMUL_ONES, "M")),
    _matmul("matmul bf16 16x64x128 split-K 4, ragged K", "bf16", "bf16", 16, 64, 128, 4, 4, split=4,
            EVEN_K=False, ragged=("K", "stride_am", "stride_bn")),
    _matmul("matmul fp8 128x128x128, fp32 per K tile", "fp8e4nv", "bf16", 128, 128, 128, 8, 3),
    _matmul("matmul fp8 128x128x128, fast accumulation", "fp8e4nv", "bf16", 128, 128, 128, 8, 3,
            FAST_ACCUM=True),
    _matmul("matmul fp32 IEEE, int64 indices", "fp32", "fp32", 64, 64, 32, 4, 3, DOT_PRECISION="ieee",
            INDEX_64=True),
    _matmul("matmul fp32 TF32", "fp32", "fp32", 128, 128, 32, 8, 3, DOT_PRECISION="tf32"),
    _matmul_tma("matmul TMA persistent bf16 128x256x64, w.t()", 128, 256, 64, 8, 3, k_major=True),
    _matmul_tma("matmul TMA bf16 128x256x64 s4, C halves, w.t()", 128, 256, 64, 8, 4, k_major=True, subtile=True),
    _matmul_tma("matmul TMA bf16 128x256x64, not flattened", 128, 256, 64, 8, 3, k_major=True, flatten=False),
    _matmul_tma("matmul TMA persistent bf16 128x128x64, [K, N]", 128, 128, 64, 8, 4, k_major=False),
    Variant("aibench.kernels.splitk:_reduce_kernel", "split-K reduce fp32 -> bf16 (M = 1)",
            {"ws_ptr": "fp32", "c_ptr": "bf16"}, {"SPLIT_K": 4, "BLOCK": 512}, ones=("M", "stride_cn")),
    _attention("attention bf16 d128 causal 128x64", "bf16", 128, 128, 64, True, 8, 3),
    _attention("attention fp16 d64 128x64", "fp16", 64, 128, 64, False, 4, 3),
    _attention("attention bf16 d256 causal 64x32", "bf16", 256, 64, 32, True, 4, 2),
    Variant("aibench.kernels.flash_decode:_split_kv_fwd", "flash-decoding split bf16 d128",
            {"Q": "bf16", "K": "bf16", "V": "bf16", "Opart": "fp32", "Mpart": "fp32", "Lpart": "fp32"},
            {"HEAD_DIM": 128, "BLOCK_M": 16, "BLOCK_N": 64, "CAUSAL": False, "UPCAST": False, "IEEE": False},
            floats=("qk_scale",), ones=_ATTENTION_ONES[:3]),
    Variant("aibench.kernels.flash_decode:_split_kv_reduce", "flash-decoding combine bf16 d128",
            {"Opart": "fp32", "Mpart": "fp32", "Lpart": "fp32", "Out": "bf16"}, {"HEAD_DIM": 128, "SPLITS": 16}),
    Variant("aibench.kernels.stream:_copy_kernel", "stream copy fp32", {"src_ptr": "fp32", "dst_ptr": "fp32"},
            {"BLOCK": 4096}),
    Variant("aibench.kernels.stream:_triad_kernel", "stream triad bf16",
            {"a_ptr": "bf16", "b_ptr": "bf16", "c_ptr": "bf16"}, {"BLOCK": 4096}, floats=("scalar",)),
)


def _jit_function(path: str) -> Any:
    """The JITFunction behind `module:attribute` (unwrapping autotuners and heuristics)."""
    import importlib

    from triton.runtime.jit import JITFunction

    module, attr = path.split(":")
    fn = getattr(importlib.import_module(module), attr)
    while not isinstance(fn, JITFunction):
        fn = fn.fn
    return fn


def _ptxas() -> Path | None:
    """The newest ptxas in Triton's wheel (triton 3.9 emits PTX that only its ptxas-blackwell reads)."""
    import triton

    folder = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    return next((p for p in (folder / "ptxas-blackwell", folder / "ptxas") if p.exists()), None)


def register_usage(ptx: str, arch: int) -> dict[str, int | None]:
    """Registers per thread and spill-store bytes that `ptxas -v` reports (None: not known)."""
    ptxas = _ptxas()
    out = ""
    if ptxas is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "kernel.ptx"
            path.write_text(ptx)
            suffix = "a" if arch >= 90 else ""  # wgmma needs the arch-specific target, as triton uses
            done = subprocess.run([str(ptxas), f"-arch=sm_{arch}{suffix}", "-v", str(path), "-o", os.devnull],
                                  capture_output=True, text=True, timeout=120)
            out = done.stdout + done.stderr
    regs, spills = re.search(r"Used (\d+) registers", out), re.search(r"(\d+) bytes spill stores", out)
    return {"registers": int(regs.group(1)) if regs else None, "spill_bytes": int(spills.group(1)) if spills else None}


def compile_variant(v: Variant, arch: int) -> dict[str, Any]:
    import triton
    from triton.backends.compiler import GPUTarget

    fn = _jit_function(v.kernel)
    names = list(fn.arg_names)
    unknown = (set(v.pointers) | set(v.constexprs) | set(v.floats) | set(v.descriptors)) - set(names)
    if unknown:
        raise ValueError(f"{v.kernel} has no argument(s) {sorted(unknown)}: update scripts/compile_check.py")
    unknown = set(v.ones) | set(v.ragged)
    unknown -= set(names)
    if unknown:
        raise ValueError(f"{v.kernel} has no argument(s) {sorted(unknown)}: update scripts/compile_check.py")
    fixed = {**v.constexprs, **dict.fromkeys(v.ones, 1)}
    signature: dict[str, str] = {}
    attrs: dict[tuple[int, ...], list[list[Any]]] = {}
    for i, (name, param) in enumerate(zip(names, fn.params)):
        if name in fixed:
            signature[name] = "constexpr"
            continue
        if name in v.descriptors:
            signature[name] = v.descriptors[name]
            continue  # a descriptor carries its own layout: no divisibility attribute
        if name in v.pointers:
            signature[name] = "*" + v.pointers[name]
        else:
            signature[name] = "fp32" if name in v.floats else "i32"
        aligned = name not in v.floats and name not in v.ragged and not param.do_not_specialize
        if aligned:
            attrs[(i,)] = [["tt.divisibility", 16]]
    constexprs = {(names.index(k),): value for k, value in fixed.items()}
    source = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    start = time.perf_counter()
    kernel = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                            options={"num_warps": v.num_warps, "num_stages": v.num_stages, **v.options})
    ptx = kernel.asm.get("ptx", "")
    if "cubin" not in kernel.asm:
        raise RuntimeError("no cubin was produced")
    return {"seconds": round(time.perf_counter() - start, 2), "wgmma": "wgmma" in ptx,
            "tma": "cp.async.bulk.tensor" in ptx,
            "shared_bytes": int(getattr(kernel.metadata, "shared", 0) or 0), **register_usage(ptx, arch)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90, help="CUDA compute capability x10 (90: H100/H200)")
    ap.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("compile_check: unset TRITON_INTERPRET (the interpreter replaces the compiler)", file=sys.stderr)
        return 2
    results = []
    for v in VARIANTS:
        row: dict[str, Any] = {"kernel": v.kernel, "variant": v.label}
        try:
            row.update(ok=True, **compile_variant(v, args.arch))
            if v.expect_wgmma and args.arch == 90 and not row["wgmma"]:
                row.update(ok=False, error="no wgmma in the PTX: the tensor-core path was not taken")
            if v.expect_tma and args.arch >= 90 and not row["tma"]:
                row.update(ok=False, error="no cp.async.bulk.tensor in the PTX: the loads are not TMA copies")
        except Exception as exc:  # every variant is tried; each failure is reported
            row.update(ok=False, error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}")
        results.append(row)
        if not args.json:
            status = "ok  " if row["ok"] else "FAIL"
            extra = (f"{row['seconds']:5.1f} s  wgmma={row['wgmma']!s:5}  smem={row['shared_bytes']:>6}  "
                     f"regs={row['registers']}  spill={row['spill_bytes']}" if "seconds" in row else "")
            print(f"{status} {v.label:44s} {extra} {row.get('error', '')}", flush=True)
    if args.json:
        print(json.dumps({"arch": args.arch, "results": results}, indent=1))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
