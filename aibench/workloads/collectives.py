"""Collective workloads: `collective.all_reduce`, `.all_gather`, `.reduce_scatter`, `.all_to_all`,
`.broadcast` — one measurement across the node's GPUs (or a launched job's ranks), reported as
nccl-tests' algbw and busbw.

`sizes` sweeps the message size as nccl-tests does (-b 8 -e 8G -f 2 is `sizes=8:8G:2`; a comma
list also works): one case, hence one record, per size, each checked element by element before it
is timed. Every record carries the spread across ranks (min/avg/max of each rank's median time and
busbw), the transport NCCL reports it used (aibench.collectives.transport) and the verdict of the
busbw floor that applies (aibench.collectives.floors). The ranks of a spawned pool live for the
whole sweep: a pool per size would measure process start-up, seconds per size.

The device the runner passes only selects the kind: on "cuda" the collective runs over all visible
GPUs (or `ranks` of them), one spawned process per GPU with NCCL (RCCL on ROCm); on the CPU it runs
with gloo over the loopback, a preview of the pipeline whose numbers are not comparable.

Setup starts a persistent pool of ranks (aibench.collectives.launch) and allocates the buffers;
`check` verifies every output element once, `measure` times the iterations (per iteration, the
slowest rank's time: a collective is as slow as its slowest rank), and `fn` — what the energy
window calls over and over in this process — runs a ~50 ms burst of the same collective in the
ranks, so that energy is measured over real collective work and not over process start-up. The
pool goes away with the Case (weakref.finalize) or on the first error.
"""

from __future__ import annotations

import functools
import math
import socket
from typing import Any

import torch
import torch.distributed as dist

from aibench.collectives import launch
from aibench.collectives.busbw import algbw, bus_factor, busbw
from aibench.collectives.floors import busbw_floor, floor_verdict
from aibench.collectives.group import current
from aibench.collectives.launch import RankPool, plan_from_timer
from aibench.collectives.ranked import GroupPool
from aibench.collectives.sweep import size_list
from aibench.collectives.transport import merge_transports
from aibench.collectives.worker import OpSpec, burst_iterations, layout
from aibench.core import stats
from aibench.core.checks import Check
from aibench.core.errors import Unsupported, UsageError
from aibench.measure.case import Case, CustomMeasurement, Param
from aibench.workloads.registry import workload

OPS: tuple[str, ...] = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast")
_DTYPES = ("bfloat16", "float16", "float32")
MIB = 1024 * 1024

# GPU default 1 GiB: large enough for busbw to approach its plateau on NVLink/NVSwitch
# (nccl-tests curves flatten from ~1 GiB; the hardware.md reference is at 16 GiB). Preview: 1 MiB
# in float32, since gloo lacks some bf16 reductions on older torch builds.
_PARAMS = (
    Param("size_mib", int, 1024, "total array size S in MiB (nccl-tests: for all_gather and "
          "reduce_scatter the full gathered buffer, each rank holding S/n)", preview=1),
    Param("dtype", str, "bfloat16", "element type", choices=_DTYPES, preview="float32"),
    Param("ranks", int, 0, "ranks, one per GPU; 0 = every visible GPU", preview=2),
    Param("sizes", str, "", "a size sweep, one record per size: MIN:MAX:FACTOR as nccl-tests' -b/-e/-f "
          "(8:8G:2) or a comma list (8,64K,1M); bytes, K/M/G binary; empty = the one size of "
          "size_bytes or size_mib"),
    Param("size_bytes", int, 0, "total array size S in bytes (one point of a sweep); 0 = size_mib"),
    Param("floor_gbps", float, 0.0, "busbw floor of this fabric, GB/s: the sweep's largest size below it "
          "is flagged; 0 = the built-in floor where one is published (8-GPU H100/H200 NVSwitch)"),
)

_DESCRIPTIONS = {
    "all_reduce": "all_reduce (sum) across the node's GPUs: algbw and busbw, GB/s (nccl-tests)",
    "all_gather": "all_gather across the node's GPUs: algbw and busbw, GB/s (nccl-tests)",
    "reduce_scatter": "reduce_scatter (sum) across the node's GPUs: algbw and busbw, GB/s (nccl-tests)",
    "all_to_all": "all_to_all (MoE token exchange) across the node's GPUs: algbw and busbw, GB/s",
    "broadcast": "broadcast from rank 0 across the node's GPUs: algbw and busbw, GB/s (nccl-tests)",
}
_TORCH_CALLS = {
    "all_reduce": "torch.distributed.all_reduce (in place)",
    "all_gather": "torch.distributed.all_gather_into_tensor (all_gather_single)",
    "reduce_scatter": "torch.distributed.reduce_scatter_tensor (reduce_scatter_single)",
    "all_to_all": "torch.distributed.all_to_all_single",
    "broadcast": "torch.distributed.broadcast from rank 0",
}
PREVIEW_NOTE = ("CPU preview: gloo over the loopback between processes sharing the CPU; it exercises "
                "the pipeline, its bandwidths are not comparable with GPU interconnect numbers")


def available(device: torch.device) -> tuple[bool, str | None]:
    """GPUs: two or more visible and NCCL/RCCL; CPU: gloo (preview)."""
    if not dist.is_available():
        return False, "this torch build has no torch.distributed"
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count < 2:
            return False, f"needs 2 or more GPUs, {count} visible"
        if not dist.is_nccl_available():
            return False, "this torch build has no NCCL/RCCL backend"
        return True, None
    if device.type == "cpu":
        if not dist.is_gloo_available():
            return False, "this torch build has no gloo backend (needed for the CPU preview)"
        return True, None
    return False, f"collectives run on CUDA/ROCm GPUs (NCCL) or on the CPU (gloo), not {device.type!r}"


def validate_params(p: dict[str, Any]) -> None:
    """A UsageError for parameters no backend can take, before any rank is spawned: the user's
    mistake (exit 2), not a failed record."""
    if p["size_mib"] < 1:
        raise UsageError(f"size_mib must be >= 1, got {p['size_mib']}")
    if p["ranks"] < 0 or p["ranks"] == 1:
        raise UsageError(f"ranks must be 0 (every visible GPU) or at least 2, got {p['ranks']}")
    if p["size_bytes"] < 0:
        raise UsageError(f"size_bytes must be >= 0 (0 = size_mib), got {p['size_bytes']}")
    if p["sizes"]:
        size_list(p["sizes"])
    if not p["floor_gbps"] >= 0 or math.isinf(p["floor_gbps"]):
        raise UsageError(f"floor_gbps must be a finite number of GB/s >= 0, got {p['floor_gbps']}")


def expand_sizes(overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """One case per size of `sizes` (each with its size_bytes); the overrides alone without a sweep."""
    spec = str(overrides.get("sizes") or "").strip()
    if not spec:
        return [dict(overrides)]
    return [{**overrides, "size_bytes": size} for size in size_list(spec)]


def total_bytes(p: dict[str, Any]) -> int:
    """S in bytes: size_bytes (a sweep's point) or size_mib."""
    return int(p["size_bytes"]) if p["size_bytes"] else int(p["size_mib"]) * MIB


def last_of_sweep(p: dict[str, Any]) -> bool:
    """Whether no size of this case's sweep comes after it (its pool can then go)."""
    if not p["sizes"]:
        return True
    sizes = size_list(p["sizes"])
    return total_bytes(p) not in sizes or sizes.index(total_bytes(p)) == len(sizes) - 1


def across_ranks(op: str, world: int, size: int, per_rank: list[list[float]]) -> dict[str, Any]:
    """min/avg/max over ranks of each rank's median iteration time and the busbw it gives (as
    nccl-tests' -a 2/1/3 report them); avg busbw is that of the average time."""
    medians = [stats.median(samples) for samples in per_rank]
    avg = sum(medians) / len(medians)
    return {
        "time_s": {"min": min(medians), "avg": avg, "max": max(medians)},
        # The slowest rank has the lowest bandwidth: min busbw comes from the max time.
        "busbw_gbps": {"min": busbw(op, world, size, max(medians)), "avg": busbw(op, world, size, avg),
                       "max": busbw(op, world, size, min(medians))},
        "per_rank_median_s": medians,
    }


def world_size(ranks: int, device: torch.device) -> int:
    """How many ranks to run: `ranks`, or every visible GPU for 0 (2 on a CPU)."""
    if ranks < 0 or ranks == 1:
        raise UsageError(f"ranks must be 0 (every visible GPU) or at least 2, got {ranks}")
    if device.type != "cuda":
        return ranks or 2
    visible = torch.cuda.device_count()
    world = ranks or visible
    if world > visible:
        raise Unsupported(f"ranks={ranks} needs {ranks} GPUs, {visible} visible")
    if world < 2:
        raise Unsupported(f"needs 2 or more GPUs, {visible} visible")
    return world


def merge_checks(per_rank: list[dict[str, Any]]) -> Check:
    """One Check from every rank's exact comparison (tolerance 0: the values are small integers)."""
    wrong = [(r, c) for r, c in enumerate(per_rank) if not c["passed"]]
    max_abs = max(c["max_abs_error"] for c in per_rank)
    err_sq = sum(c["err_sq"] for c in per_rank)
    ref_sq = sum(c["ref_sq"] for c in per_rank)
    rel = math.sqrt(err_sq / ref_sq) if ref_sq > 0 else math.sqrt(err_sq)
    finite = math.isfinite(max_abs)
    if not wrong:
        detail = (f"exact on all {len(per_rank)} ranks: small-integer rank-dependent inputs, "
                  f"every output element compared")
        return Check(True, 0.0, 0.0, 0.0, detail)
    rank, first = wrong[0]
    detail = (f"rank {rank}: {first['wrong']} of {first['elements']} output elements wrong "
              f"(first at {first['first']}); {len(wrong)} of {len(per_rank)} ranks wrong")
    return Check(False, max_abs if finite else None, rel if finite else None, 0.0, detail)


# The spawned pool of a sweep in progress, kept from one size to the next: (world, device type,
# test fault) -> pool. The last size of the sweep takes it out, so that its ranks go with that case.
_SWEEP_POOLS: dict[tuple[int, str, str], RankPool] = {}


def _spawned_pool(world: int, device_type: str, keep: bool) -> RankPool:
    key = (world, device_type, launch.FAULT_INJECTION)
    pool = _SWEEP_POOLS.pop(key, None)
    for other in list(_SWEEP_POOLS):  # another sweep's ranks would share the GPUs with this one
        _SWEEP_POOLS.pop(other).close(grace_s=0.5)
    if pool is None or not pool.alive:  # a failed rank closed it: the next size starts afresh
        pool = RankPool(world, device_type)
    if keep:
        _SWEEP_POOLS[key] = pool
    return pool


def _setup(op: str, p: dict[str, Any], device: torch.device) -> Case:
    validate_params(p)
    group = current()  # a launched job (torchrun, srun): its ranks run the collective, rank 0 drives
    world = group.world if group is not None else world_size(p["ranks"], device)
    requested = total_bytes(p)
    try:
        layout(op, requested, getattr(torch, p["dtype"]), world)
    except ValueError as exc:  # 8 B of bf16 on 8 ranks: nothing to send (nccl-tests skips it too)
        raise Unsupported(str(exc)) from None
    if group is not None:
        pool: Any = GroupPool(group, device.type)
    else:
        pool = _spawned_pool(world, device.type, keep=not last_of_sweep(p))
    try:
        info = pool.prepare(OpSpec(op, requested, p["dtype"]))
        transports = pool.transport()
    except BaseException:
        _SWEEP_POOLS.clear()
        pool.close(grace_s=0.5)
        raise
    size = int(info["size_bytes"])
    burst = burst_iterations(info["iteration_s"])
    if group is not None:
        names = [m.device_name for m in group.members]
        hosts, nodes = group.hosts, group.nodes
    else:
        names = ([torch.cuda.get_device_name(i) for i in range(world)] if device.type == "cuda" else ["cpu"] * world)
        hosts, nodes = [socket.gethostname()] * world, 1
    floor = busbw_floor(op, world, nodes, names[0], p["floor_gbps"])
    if floor is not None and p["sizes"]:  # bandwidth is judged where it has saturated: the sweep's largest size
        floor = {**floor, "min_bytes": max(floor["min_bytes"], max(size_list(p["sizes"]))),
                 "source": f"{floor['source']}; judged at the sweep's largest size only"}
    details: dict[str, Any] = {
        "op": op, "ranks": world, "size_bytes": size, "dtype": p["dtype"], "backend": pool.backend,
        "input_elements_per_rank": info["input_elements"], "output_elements_per_rank": info["output_elements"],
        "bus_factor": bus_factor(op, world), "devices": names,
        "hosts": hosts, "nodes": nodes,
        "launcher": group.env.launcher if group is not None else None,
        "transport": merge_transports(transports, hosts),
        "sample": "seconds per iteration, the slowest rank's (max over ranks)",
        "energy_fn": f"{burst} iterations per call, run by the ranks",
    }
    if p["sizes"]:
        details["sweep"] = {"sizes": p["sizes"], "requested_bytes": requested}
    if device.type == "cpu":
        details["note"] = PREVIEW_NOTE

    def check() -> Check:
        return merge_checks(pool.check())

    def measure(timer_config: Any) -> CustomMeasurement:
        per_rank = pool.measure(plan_from_timer(timer_config))
        samples = [max(values) for values in zip(*(r["samples_s"] for r in per_rank))]
        median = stats.median(samples)
        bus = busbw(op, world, size, median)
        extra: dict[str, Any] = {
            "iterations": len(samples), "warmup_iterations": per_rank[0]["warmup_iterations"],
            "timing_method": "cuda_event" if device.type == "cuda" else "perf_counter",
            "across_ranks": across_ranks(op, world, size, [r["samples_s"] for r in per_rank]),
        }
        verdict = floor_verdict(floor, size, bus, hosts)
        extra["floor"] = verdict if verdict is not None else {
            "below": None, "note": "no busbw floor applies: none is published for this fabric and the "
                                   "workload's floor_gbps is not set"}
        if verdict is not None and verdict["below"]:
            extra["busbw_note"] = verdict["note"]
        # The ranks run a plan (iterations for min_time_s within max_time_s), not the noise rule:
        # whether it met the target is said as the timer would say it, never assumed.
        noise = stats.rel_stderr_median(samples) if len(samples) >= 2 else math.inf
        converged = len(samples) >= timer_config.min_samples and noise <= timer_config.target_rel_se
        stop = (f"the ranks' plan: {len(samples)} iterations for min_time_s; noise target "
                f"{'met' if converged else 'not met'}")
        return CustomMeasurement(samples, {"algbw_gbps": algbw(size, median), "busbw_gbps": bus}, extra,
                                 warmup_calls=per_rank[0]["warmup_iterations"], converged=converged, stop_reason=stop)

    def fn() -> None:
        pool.burst(burst, info["iteration_s"])

    return Case(fn=fn, check=check, measure=measure, work={"collectives": float(burst)}, dtype=p["dtype"],
                details=details, cuda_graph_ok=False, devices=world)


for _op in OPS:
    _wl = workload(f"collective.{_op}", _DESCRIPTIONS[_op], _PARAMS, validate_params, expand=expand_sizes)
    _wl.backend("torch", baseline=True, available=available,
                description=f"{_TORCH_CALLS[_op]} (NCCL/RCCL on GPUs, gloo on the CPU)")(
        functools.partial(_setup, _op))
