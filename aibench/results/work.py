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
from dataclasses import dataclass
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


# A tensor dimension of 2**40 elements is a terabyte even at one byte each, past the memory of any
# accelerator (288 GB today): no record ran at a larger size. The formulas multiply sizes, so 10**30
# (or 2**63, which passes as a 64-bit integer) gave work, and TFLOP/s, past any hardware.
LARGEST_SIZE = 2**40


@dataclass(frozen=True)
class Formula:
    """A workload's work at its parameters, and the sizes among them that the work multiplies: each
    must be a whole number from 1 to LARGEST_SIZE where present (each workload's validate refuses
    0 before it runs)."""

    sizes: tuple[str, ...]
    work: Callable[[dict[str, Any]], Work | None]


FORMULAS: dict[str, Formula] = {
    "gemm": Formula(("m", "n", "k"), _gemm),
    "attention.prefill": Formula(("batch", "heads", "kv_heads", "head_dim", "seq"),
                                 lambda p: _attention(p, decode=False)),
    "attention.decode": Formula(("batch", "heads", "kv_heads", "head_dim", "context"),
                                lambda p: _attention(p, decode=True)),
    "memory.copy": Formula(("mib",), lambda p: _stream(p, triad=False)),
    "memory.triad": Formula(("mib",), lambda p: _stream(p, triad=True)),
    "llm.prefill": Formula(("batch", "prompt_len"), _tokens("batch", "prompt_len")),
    "llm.decode": Formula(("batch", "new_tokens"), _tokens("batch", "new_tokens")),
    "vision.resnet50": Formula(("batch",), _images),
    "vision.vit_b16": Formula(("batch",), _images),
}


def param_problem(rec: dict[str, Any]) -> str | None:
    """Why the record's parameters are no sizes its workload runs at, or None. A size stated as
    64.0 or 1e308 made expected_work give None, which skipped the work check: the stated work, and
    every rate built on it, then went unchecked. A workload validates its sizes as ints before it
    runs (workloads/*.py), so an honest record never holds another number there."""
    params = rec.get("params")
    if not isinstance(params, dict):
        return None
    formula = FORMULAS.get(str(rec.get("workload")))
    for name in formula.sizes if formula is not None else ():
        value = params.get(name)
        if name in params and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return f"params.{name} is {value!r:.40}: {rec.get('workload')} runs only at whole sizes, so its work " \
                   "cannot be recomputed"
        if name in params and value > LARGEST_SIZE:
            return f"params.{name} is {value!r:.40}: past any size a device holds ({LARGEST_SIZE})"
    return None


def expected_work(rec: dict[str, Any]) -> Work | None:
    """The units of work the record's workload formulas give at its parameters; None where the
    workload has no closed-form formula or its parameters are not the types the formula takes."""
    formula = FORMULAS.get(str(rec.get("workload")))
    params = rec.get("params")
    return formula.work(params) if formula is not None and isinstance(params, dict) else None
