"""The message sizes of a collective sweep, as nccl-tests steps them (-b MIN -e MAX -f FACTOR).

    sizes("8:8G:2")  -> 8, 16, 32, ... 8 GiB   (bytes; K/M/G are binary, as nccl-tests reads them)

A spec is "MIN:MAX:FACTOR" (FACTOR >= 2, the ratio between two sizes). Pure functions.
"""

from __future__ import annotations

import re

from aibench.core.errors import UsageError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MAX_SIZES = 64  # 8 B..8 GiB in steps of 2 is 31 sizes: more is a typo (factor 1.0x?)


def parse_size(text: str) -> int:
    """'8' -> 8, '64K' -> 65536, '1G' -> 2^30 (binary units; an optional trailing B or iB)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not m:
        raise UsageError(f"bad size {text!r}: expected a number of bytes with an optional K, M, G or T (binary)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def sweep_sizes(spec: str) -> list[int]:
    """The byte sizes of "MIN:MAX:FACTOR", from MIN up to MAX inclusive, each FACTOR times the last."""
    parts = spec.split(":")
    if len(parts) != 3:
        raise UsageError(f"bad sweep {spec!r}: expected MIN:MAX:FACTOR, e.g. 8:8G:2 (nccl-tests -b 8 -e 8G -f 2)")
    lo, hi = parse_size(parts[0]), parse_size(parts[1])
    try:
        factor = int(parts[2])
    except ValueError:
        raise UsageError(f"bad sweep {spec!r}: FACTOR must be an integer >= 2") from None
    if lo < 1 or hi < lo:
        raise UsageError(f"bad sweep {spec!r}: need 1 <= MIN <= MAX")
    if factor < 2:
        raise UsageError(f"bad sweep {spec!r}: FACTOR must be an integer >= 2")
    sizes = [lo]
    while sizes[-1] * factor <= hi:
        sizes.append(sizes[-1] * factor)
    if len(sizes) > MAX_SIZES:
        raise UsageError(f"sweep {spec!r} has {len(sizes)} sizes, more than {MAX_SIZES}")
    return sizes


def size_list(spec: str) -> list[int]:
    """A suite's or user's `sizes`: "MIN:MAX:FACTOR" (sweep_sizes) or a comma list "8,64K,1M".

    A list is kept in its order without duplicates (each size is one record: two with one id
    would make a run ambiguous).
    """
    if ":" in spec:
        return sweep_sizes(spec)
    items = [s for s in (part.strip() for part in spec.split(",")) if s]
    if not items:
        raise UsageError(f"bad sizes {spec!r}: expected MIN:MAX:FACTOR (e.g. 8:1G:2) or a comma list (8,64K,1M)")
    sizes = list(dict.fromkeys(parse_size(s) for s in items))
    if min(sizes) < 1:
        raise UsageError(f"bad sizes {spec!r}: every size must be at least 1 byte")
    if len(sizes) > MAX_SIZES:
        raise UsageError(f"sizes {spec!r} has {len(sizes)} sizes, more than {MAX_SIZES}")
    return sizes
