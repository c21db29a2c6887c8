"""The work a record's parameters imply, from the workload's own formulas (aibench/core/formulas.py).

A record states its work (flops, bytes, tokens, images) and every rate is that work over the median
time. A vendor who raises the stated work raises its TFLOP/s with it, and the metric recompute
(recompute.py) cannot see it: the work must itself be recomputed from the parameters the record
says it ran. Only workloads whose work is closed-form arithmetic of their parameters are here; a
model's FLOPs traced from its modules (vision) or read from a checkpoint's config (llm) are not
recomputable without torch, and only their token or image counts are checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aibench.core import formulas

Work = dict[str, int]


def _ints(p: dict[str, Any], *names: str) -> list[int] | None:
    values = [p.get(n) for n in names]
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        return values  # type: ignore[return-value]
    return None


def _element(dtype: Any) -> int | None:
    return formulas.ELEMENT_BYTES.get(dtype) if isinstance(dtype, str) else None


def _gemm(p: dict[str, Any]) -> Work | None:
    mnk, size = _ints(p, "m", "n", "k"), _element(p.get("dtype"))
    if mnk is None or size is None:
        return None
    m, n, k = mnk
    out = 2 if size == 1 else size  # fp8 inputs give a bf16 product (workloads/gemm.py)
    return {"flops": formulas.matmul_flops(m, n, k), "bytes": formulas.matmul_bytes(m, n, k, size, out)}


def _attention(p: dict[str, Any], decode: bool) -> Work | None:
    shape, size = _ints(p, "batch", "heads", "kv_heads", "head_dim"), _element(p.get("dtype"))
    length = _ints(p, "context" if decode else "seq")
    causal = False if decode else p.get("causal")
    if shape is None or size is None or length is None or not isinstance(causal, bool):
        return None
    b, hq, hkv, d = shape
    sq, skv = (1, length[0]) if decode else (length[0], length[0])  # decode: one new query per row
    return {"flops": formulas.attention_flops(b, hq, sq, skv, d, causal),
            "bytes": formulas.attention_bytes(b, hq, hkv, sq, skv, d, size), "tokens": b * sq}


def _stream(p: dict[str, Any], triad: bool) -> Work | None:
    mib, size = _ints(p, "mib"), _element(p.get("dtype"))
    if mib is None or size is None:
        return None
    n = mib[0] * 1024 * 1024 // size  # elements of one buffer (workloads/memory.py)
    if triad:
        return {"flops": formulas.triad_flops(n), "bytes": formulas.triad_bytes(n, size)}
    return {"bytes": formulas.copy_bytes(n, size)}


def _tokens(*names: str) -> Callable[[dict[str, Any]], Work | None]:
    def work(p: dict[str, Any]) -> Work | None:
        values = _ints(p, *names)
        return None if values is None else {"tokens": values[0] * values[1]}
    return work


def _images(p: dict[str, Any]) -> Work | None:
    batch = _ints(p, "batch")
    return None if batch is None else {"images": batch[0]}


FORMULAS: dict[str, Callable[[dict[str, Any]], Work | None]] = {
    "gemm": _gemm,
    "attention.prefill": lambda p: _attention(p, decode=False),
    "attention.decode": lambda p: _attention(p, decode=True),
    "memory.copy": lambda p: _stream(p, triad=False),
    "memory.triad": lambda p: _stream(p, triad=True),
    "llm.prefill": _tokens("batch", "prompt_len"),
    "llm.decode": _tokens("batch", "new_tokens"),
    "vision.resnet50": _images,
    "vision.vit_b16": _images,
}


def expected_work(rec: dict[str, Any]) -> Work | None:
    """The units of work the record's workload formulas give at its parameters; None where the
    workload has no closed-form formula or its parameters are not the types the formula takes."""
    formula = FORMULAS.get(str(rec.get("workload")))
    params = rec.get("params")
    return formula(params) if formula is not None and isinstance(params, dict) else None
