"""Work formulas: the FLOPs and bytes of each kernel family (pure integer arithmetic) and the
energy per unit of work.

Triton's tutorials keep these beside their kernel; here they live apart so that the buyer's side
(bundle verify, report, compare) can recompute a record's work from its parameters without torch
(aibench/results/work.py). The kernel modules re-export them, so they still read as one file each.
"""

from __future__ import annotations

from collections.abc import Mapping

# Bytes per element of the dtype names records carry (suites and --param spell them this way).
ELEMENT_BYTES: dict[str, int] = {
    "float64": 8, "float32": 4, "bfloat16": 2, "float16": 2,
    "float8_e4m3": 1, "float8_e4m3fn": 1, "float8_e4m3fnuz": 1, "float8_e5m2": 1, "float8_e5m2fnuz": 1,
}


# --- matmul (aibench/kernels/matmul.py) ---------------------------------------------------------


def matmul_flops(m: int, n: int, k: int) -> int:
    """Floating-point operations of an [m, k] @ [k, n] product: one multiply and one add per
    term of each of the m * n dot products of length k."""
    return 2 * m * n * k


def matmul_bytes(m: int, n: int, k: int, in_bytes: int, out_bytes: int) -> int:
    """Fewest bytes one product moves through device memory: A and B read once, C written once.

    (The fp8 per-tensor scales, 8 bytes, are left out.)
    """
    return (m * k + k * n) * in_bytes + m * n * out_bytes


# --- attention (aibench/kernels/attention.py) ---------------------------------------------------


def attended_pairs(sq: int, skv: int, causal: bool) -> int:
    """Number of (query, key) pairs that take part, per batch and head.

    Causal counts the unmasked pairs exactly (bottom-right: row i sees min(i + Skv - Sq + 1, Skv)
    keys, at least 0). For Sq == Skv == S that is S(S+1)/2, a factor (1 + 1/S) over the
    "halve it" convention of the Triton tutorial and FlashAttention papers (0.02% at S = 4096).
    """
    if not causal:
        return sq * skv
    if sq <= skv:
        return sq * (2 * skv - sq + 1) // 2  # rows see skv-sq+1 ... skv keys
    return skv * (skv + 1) // 2  # the first sq - skv rows see nothing, the rest 1 ... skv


def attention_flops(b: int, hq: int, sq: int, skv: int, d: int, causal: bool) -> int:
    """FLOPs of the forward pass: 2 matmuls (q k^T and p v) of 2 flops per multiply-add per pair.

    4 * b * hq * pairs * d, with pairs = sq * skv (non-causal) or the exact causal count above.
    Softmax exponentials are not counted (convention of FlashAttention and the tutorial).
    """
    return 4 * b * hq * attended_pairs(sq, skv, causal) * d


def attention_bytes(b: int, hq: int, hkv: int, sq: int, skv: int, d: int, element_size: int) -> int:
    """Fewest bytes a forward pass moves: q, k, v read once and o written once (K/V with Hkv heads)."""
    return (2 * b * hq * sq * d + 2 * b * hkv * skv * d) * element_size


# --- STREAM copy and triad (aibench/kernels/stream.py) -----------------------------------------


def copy_bytes(n_elements: int, element_size: int) -> int:
    """Bytes moved by a copy: each element read once and written once."""
    return 2 * n_elements * element_size


def triad_bytes(n_elements: int, element_size: int) -> int:
    """Bytes moved by a triad: two arrays read, one written (STREAM counts no write-allocate)."""
    return 3 * n_elements * element_size


def triad_flops(n_elements: int) -> int:
    """One multiply and one add per element."""
    return 2 * n_elements


# --- energy per unit of work (aibench/telemetry/calc.py) ----------------------------------------


# Work units a Case can declare, with the scale that makes the per-unit figure readable
# (J/TFLOP rather than J/FLOP) and the unit's name in the record's keys.
_UNIT_SCALE: dict[str, tuple[float, str]] = {
    "flops": (1e12, "tflop"),
    "bytes": (1e9, "gb"),
    "tokens": (1.0, "token"),
    "images": (1.0, "image"),
}


def per_unit(energy_per_call_j: float | None, work: Mapping[str, float] | None) -> dict[str, float | None]:
    """Joules per unit of work and units per joule, from energy per call and work per call.

    flops -> j_per_tflop / tflop_per_j, bytes -> j_per_gb / gb_per_j, tokens -> j_per_token /
    tokens_per_j, images -> j_per_image / images_per_j; other units keep their own name.
    None where the energy is unknown or the work is not positive: never a made-up figure.
    """
    out: dict[str, float | None] = {}
    for unit, amount in (work or {}).items():
        scale, name = _UNIT_SCALE.get(unit, (1.0, unit[:-1] if unit.endswith("s") else unit))
        plural = name if name in ("tflop", "gb") else f"{name}s"
        scaled = float(amount) / scale if amount is not None else 0.0
        ok = energy_per_call_j is not None and energy_per_call_j > 0 and scaled > 0
        out[f"j_per_{name}"] = energy_per_call_j / scaled if ok else None
        out[f"{plural}_per_j"] = scaled / energy_per_call_j if ok else None
    return out
