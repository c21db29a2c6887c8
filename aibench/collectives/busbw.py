"""Bandwidth of a collective: nccl-tests' algbw and busbw, as pure functions.

From NVIDIA/nccl-tests doc/PERFORMANCE.md (../shared/reference/hardware.md, "Collectives"):

    algbw = S / t      S the total array size in bytes; for all_gather and reduce_scatter
                       S = count x n, the size of the full (gathered / unscattered) buffer
    busbw = algbw x factor, factor = 2(n-1)/n   all_reduce
                                     (n-1)/n    reduce_scatter, all_gather, all_to_all
                                     1          broadcast, reduce

busbw is the rate at which the busiest link moves data in an optimal algorithm, so that it is
comparable across world sizes and with the hardware's link bandwidth; algbw is what an
application sees. GB/s here are decimal (1e9 bytes/s), as nccl-tests prints them.
"""

from __future__ import annotations

import re

OPS: tuple[str, ...] = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "reduce")

# ../shared/reference/hardware.md, "Collectives": torch all_reduce of 16 GiB on 8 GPUs behind
# NVSwitch. 8xH200 ~482 GB/s busbw (NVLS in-switch reduction); 8xH100 SXM ~460-480 GB/s (we take
# the low end, so that a flag is never raised on a healthy H100 node).
_REFERENCE_BUSBW_GBPS: tuple[tuple[str, float, str], ...] = (
    (r"h200", 482.0, "8xH200 NVSwitch"),
    (r"h100", 460.0, "8xH100 SXM NVSwitch"),
)
REFERENCE_RANKS = 8
REFERENCE_MIN_BYTES = 1 << 30  # the reference is at 16 GiB; below 1 GiB busbw has not saturated
SHORTFALL = 0.20  # more than 20% below the reference is a fault worth flagging (hardware.md)


def algbw(size_bytes: float, seconds: float) -> float:
    """Algorithm bandwidth in GB/s (1e9 bytes/s): S / t."""
    if seconds <= 0:
        raise ValueError(f"time must be positive, got {seconds!r}")
    if size_bytes < 0:
        raise ValueError(f"size must be non-negative, got {size_bytes!r}")
    return size_bytes / seconds / 1e9


def bus_factor(op: str, n: int) -> float:
    """nccl-tests' factor from algbw to busbw for `op` on `n` ranks."""
    if n < 1:
        raise ValueError(f"world size must be at least 1, got {n}")
    if op == "all_reduce":
        return 2 * (n - 1) / n  # reduce-scatter then all-gather: each byte crosses a link twice
    if op in ("reduce_scatter", "all_gather", "all_to_all"):
        return (n - 1) / n  # each rank receives the n-1 chunks it does not already hold
    if op in ("broadcast", "reduce"):
        return 1.0  # a pipelined chain moves the whole buffer over each link once
    raise ValueError(f"unknown collective {op!r} (known: {', '.join(OPS)})")


def busbw(op: str, n: int, size_bytes: float, seconds: float) -> float:
    """Bus bandwidth in GB/s: algbw(S, t) x bus_factor(op, n)."""
    return algbw(size_bytes, seconds) * bus_factor(op, n)


def reference_busbw(op: str, n: int, device_name: str) -> tuple[float, str] | None:
    """The published busbw (GB/s, label) for this node, or None when none applies.

    Only 8-GPU NVSwitch all_reduce has a reference (hardware.md); PCIe and NVL cards have no
    NVSwitch, so they never match.
    """
    name = device_name.lower()
    if op != "all_reduce" or n != REFERENCE_RANKS or re.search(r"pcie|nvl", name):
        return None
    for pattern, gbps, label in _REFERENCE_BUSBW_GBPS:
        if re.search(pattern, name):
            return gbps, label
    return None


def shortfall_note(op: str, n: int, device_name: str, size_bytes: float, busbw_gbps: float) -> str | None:
    """A note when busbw is more than 20% below the published reference, else None.

    A note only: the measured number is never changed.
    """
    ref = reference_busbw(op, n, device_name)
    if ref is None or size_bytes < REFERENCE_MIN_BYTES:
        return None
    gbps, label = ref
    if busbw_gbps >= (1.0 - SHORTFALL) * gbps:
        return None
    below = 100.0 * (1.0 - busbw_gbps / gbps)
    return (f"busbw {busbw_gbps:.0f} GB/s is {below:.0f}% below the ~{gbps:.0f} GB/s published for "
            f"{label} all_reduce at 16 GiB (nccl-tests, hardware.md): check NVLink/NVSwitch health "
            f"(nvidia-smi nvlink -s, topo -m), NVLS and NCCL_* settings")
