"""Collective workloads: `collective.all_reduce`, `.all_gather`, `.reduce_scatter`, `.all_to_all`,
`.broadcast` — one measurement across the node's GPUs, reported as nccl-tests' algbw and busbw.

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
from typing import Any

import torch
import torch.distributed as dist

from aibench.collectives.busbw import algbw, bus_factor, busbw, shortfall_note
from aibench.collectives.group import current
from aibench.collectives.launch import RankPool, plan_from_timer
from aibench.collectives.ranked import GroupPool
from aibench.collectives.worker import OpSpec, burst_iterations
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


def _setup(op: str, p: dict[str, Any], device: torch.device) -> Case:
    validate_params(p)
    group = current()  # a launched job (torchrun, srun): its ranks run the collective, rank 0 drives
    world = group.world if group is not None else world_size(p["ranks"], device)
    pool: Any = GroupPool(group, device.type) if group is not None else RankPool(world, device.type)
    try:
        info = pool.prepare(OpSpec(op, p["size_mib"] * MIB, p["dtype"]))
    except BaseException:
        pool.close(grace_s=0.5)
        raise
    size = int(info["size_bytes"])
    burst = burst_iterations(info["iteration_s"])
    if group is not None:
        names = [m.device_name for m in group.members]
    else:
        names = ([torch.cuda.get_device_name(i) for i in range(world)] if device.type == "cuda" else ["cpu"] * world)
    details: dict[str, Any] = {
        "op": op, "ranks": world, "size_bytes": size, "dtype": p["dtype"], "backend": pool.backend,
        "input_elements_per_rank": info["input_elements"], "output_elements_per_rank": info["output_elements"],
        "bus_factor": bus_factor(op, world), "devices": names,
        "hosts": group.hosts if group is not None else None,
        "launcher": group.env.launcher if group is not None else None,
        "sample": "seconds per iteration, the slowest rank's (max over ranks)",
        "energy_fn": f"{burst} iterations per call, run by the ranks",
    }
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
        }
        note = shortfall_note(op, world, names[0], size, bus) if device.type == "cuda" else None
        if note:
            extra["busbw_note"] = note
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
    _wl = workload(f"collective.{_op}", _DESCRIPTIONS[_op], _PARAMS, validate_params)
    _wl.backend("torch", baseline=True, available=available,
                description=f"{_TORCH_CALLS[_op]} (NCCL/RCCL on GPUs, gloo on the CPU)")(
        functools.partial(_setup, _op))
