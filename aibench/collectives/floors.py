"""busbw floors: below this, a node (or the fabric between nodes) is worth a look.

Two kinds of floor, and only these (nothing else is invented):
- built in: the published 8-GPU NVSwitch all_reduce busbw of H100/H200 (busbw.reference_busbw,
  ../shared/reference/hardware.md "Collectives", from nccl-tests results at 16 GiB), with the
  20% margin that page calls a fault worth flagging; it applies to single-node runs at >= 1 GiB;
- configured: the `floor_gbps` parameter of a collective workload (a suite entry sets it for its
  fabric, e.g. what the vendor's acceptance test promises for 8x400G InfiniBand). aibench ships no
  inter-node floor: no published figure in this project's references says what a healthy fabric
  reaches, so a multi-node run is flagged only against the floor its suite states.

A flag never changes the measured numbers; it names the hosts the collective ran on.
"""

from __future__ import annotations

from typing import Any

from aibench.collectives.busbw import REFERENCE_MIN_BYTES, SHORTFALL, reference_busbw


def busbw_floor(op: str, world: int, nodes: int, device_name: str, floor_gbps: float) -> dict[str, Any] | None:
    """The floor that applies to this run, with its source; None when none is known."""
    if floor_gbps > 0:
        return {"floor_gbps": float(floor_gbps), "min_bytes": 0,
                "source": "configured: the workload's floor_gbps parameter (the suite's or the user's)"}
    if nodes != 1:
        return None  # no built-in inter-node floor (see the module docstring)
    ref = reference_busbw(op, world, device_name)
    if ref is None:
        return None
    gbps, label = ref
    return {"floor_gbps": (1.0 - SHORTFALL) * gbps, "min_bytes": REFERENCE_MIN_BYTES,
            "source": f"built in: {SHORTFALL:.0%} below the ~{gbps:.0f} GB/s published for {label} all_reduce at "
                      "16 GiB (nccl-tests; ../shared/reference/hardware.md)"}


def floor_verdict(floor: dict[str, Any] | None, size_bytes: int, busbw_gbps: float,
                  hosts: list[str]) -> dict[str, Any] | None:
    """{floor, busbw, below, note} for the largest size measured; None when no floor applies."""
    if floor is None:
        return None
    if size_bytes < floor["min_bytes"]:
        return {**floor, "busbw_gbps": busbw_gbps, "below": None,
                "note": f"not judged: {size_bytes} bytes is below the {floor['min_bytes']} bytes the floor is for"}
    below = busbw_gbps < floor["floor_gbps"]
    where = ", ".join(sorted(set(hosts))) or "?"
    note = (f"busbw {busbw_gbps:.1f} GB/s is below the floor of {floor['floor_gbps']:.1f} GB/s: check the "
            f"node(s) {where} (nvidia-smi nvlink -s, topo -m, NIC link rates, NCCL_* settings) and rerun "
            "one node at a time to find the bad one" if below else None)
    return {**floor, "busbw_gbps": busbw_gbps, "below": below, "hosts": sorted(set(hosts)), "note": note}
