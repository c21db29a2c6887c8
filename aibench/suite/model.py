"""Suites: one TOML file names the workloads, shapes and run rules of a benchmark campaign.

This module holds a suite's model and expands it into a plan of cases; loading is
aibench.suite.load, validation aibench.suite.check, running the plan aibench.suite.run. The format:

    [suite]
    name = "gigafactory"            # required
    version = "1.0.0"               # required: bump it when a change makes results incomparable
    description = "..."

    [rules]                         # run rules of a full run (fields of `RunRules`, all optional)
    min_time_s = 0.5                # least sampled time per measurement
    min_samples = 10                # least samples per measurement (>= 2: one sample has no spread)
    target_rel_se = 0.01            # stop once the median's relative standard error is this small
    warmup_s = 0.25
    max_time_s = 10.0               # stop here whatever the noise (the record says "not converged")
    seed = 0
    energy_min_s = 2.0              # energy windows are stretched to this (counter granularity)
    flush_l2 = true
    cuda_graph = false
    case_timeout_s = 900.0          # a case still running after this is recorded as failed (timeout)
    [quick.rules]                   # --quick: overrides of [rules]
    [preview.rules]                 # preview (CPU) mode: overrides of [rules] + [quick.rules]

    [[entry]]
    id = "gemm-llama3-8b"           # required, unique, [a-z0-9._-]
    workload = "gemm"               # required: a workload name (`aibench list`)
    description = "..."             # optional
    backends = ["torch", "triton"]  # optional: default every backend of the workload
    params = { dtype = "bfloat16" } # fixed parameters
    shape_set = "llama3-8b"         # one case per shape (aibench.workloads.shapes)
    sweep = { batch = [1, 8, 64] }  # cartesian product over the listed values
    quick = { shape_set = "...", sweep = {...}, params = {...}, backends = [...], skip = false }
    preview = { shape_set = "...", sweep = {...}, params = {...}, backends = [...], skip = false }
    requires = { gpus = 2, gpu = true, fp8 = true }   # any of them
    timer = { cuda_graph = true }   # optional: this entry's timing mode over the rules' (cuda_graph, flush_l2)

A case's parameters are params, overlaid with one shape of the set, overlaid with one point of
the sweep (so `sweep = { m = [1, 4096] }` over a GEMM shape set picks its token counts). Its id
is "<entry id>/k=v,..." over the shape's and the sweep's values; cases whose parameters coincide
are planned once. `quick` overlays the full entry: its shape_set and backends replace the
entry's, its sweep axes and params replace those of the same name. `preview` does NOT inherit the
entry (full-size params would run for hours on a CPU): a preview case is the workload's preview
defaults, overlaid with `preview.params` and expanded by `preview.shape_set` / `preview.sweep`.
`timer` holds in every mode: decode-sized kernels (a few microseconds) are timed as CUDA-graph
replays, which take the host's launch cost out of a number meant for the GPU (on a CPU it has no
effect). An unmet `requires`, a workload missing from this build or `skip = true` gives one skipped case
for the entry, with the reason. Validation (aibench.suite.check) names the file, line and key.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from aibench.core.errors import UsageError
from aibench.device.fp8 import native_fp8_dtype
from aibench.suite.rules import RunRules  # the model's rules; torch-free for verify's sake
from aibench.workloads import registry

MODES: tuple[str, ...] = ("full", "quick", "preview")

# Workload names aibench defines, built or not: a suite may name one this build lacks (its cases
# are skipped with a reason); a name outside this set and the registry is a typo (an error).
KNOWN_WORKLOADS: frozenset[str] = frozenset({
    "memory.copy", "memory.triad", "gemm", "attention.prefill", "attention.decode",
    "llm.prefill", "llm.decode", "llm.serve", "llm.train", "llm.time_to_quality", "vision.resnet50", "vision.vit_b16",
    "collective.all_reduce", "collective.all_gather", "collective.reduce_scatter",
    "collective.all_to_all", "collective.broadcast",
})
SHAPES_MODULE = "aibench.workloads.shapes"
# Which table of the shapes module holds a workload's shape sets.
SHAPE_SET_TABLES: dict[str, str] = {
    "gemm": "GEMM_SHAPE_SETS",
    "attention.prefill": "ATTENTION_PREFILL_SETS",
    "attention.decode": "ATTENTION_DECODE_SETS",
}



@dataclass(frozen=True)
class Requires:
    gpus: int = 0  # at least this many GPUs
    gpu: bool = False
    fp8: bool = False

    def unmet(self, ctx: PlanContext) -> str | None:
        if self.gpus > ctx.gpus:
            return f"needs {self.gpus} GPUs, {ctx.gpus} visible"
        if self.gpu and not ctx.is_gpu:
            return "needs a GPU (this run is on a CPU)"
        if self.fp8 and not ctx.fp8:
            return "needs fp8 support, which this device lacks"
        return None


@dataclass(frozen=True)
class ModeOverride:
    """An entry's `quick` or `preview` table."""

    shape_set: str | None = None
    sweep: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    skip: bool = False
    backends: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Entry:
    id: str
    workload: str
    params: Mapping[str, Any]
    backends: tuple[str, ...] | None = None
    shape_set: str | None = None
    sweep: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    quick: ModeOverride = field(default_factory=ModeOverride)
    preview: ModeOverride = field(default_factory=ModeOverride)
    requires: Requires = field(default_factory=Requires)
    description: str = ""
    timer: Mapping[str, Any] = field(default_factory=dict)  # TimerConfig fields over the rules'

    def expansion(self, mode: str) -> ModeOverride:
        """What this entry runs in one mode: params, shape set, sweep, backends, skip."""
        if mode == "full":
            return ModeOverride(self.shape_set, dict(self.sweep), dict(self.params), False, self.backends)
        if mode == "quick":
            q = self.quick
            return ModeOverride(q.shape_set or self.shape_set, {**self.sweep, **q.sweep},
                                {**self.params, **q.params}, q.skip, q.backends or self.backends)
        if mode == "preview":
            p = self.preview
            return replace(p, backends=p.backends or self.backends)
        raise UsageError(f"unknown suite mode {mode!r} (modes: {', '.join(MODES)})")


@dataclass(frozen=True)
class PlanContext:
    """What the plan needs to know about the machine."""

    gpus: int = 0
    fp8: bool = False
    is_gpu: bool = False

    @classmethod
    def detect(cls) -> PlanContext:
        """From torch: visible GPUs, and fp8 tensor cores (NVIDIA sm_89+, AMD gfx94x/gfx95x)."""
        if not torch.cuda.is_available():
            return cls()
        fp8 = native_fp8_dtype(torch.device("cuda", 0)) is not None
        return cls(gpus=torch.cuda.device_count(), fp8=fp8, is_gpu=True)


@dataclass(frozen=True)
class PlannedCase:
    entry_id: str
    case_id: str  # unique in the plan: "<entry id>" or "<entry id>/k=v,k=v"
    workload: str
    params: dict[str, Any]  # overrides for run_workload; the rest are the workload's defaults
    backends: tuple[str, ...] | None  # None: every backend
    skip_reason: str | None = None
    timer: Mapping[str, Any] = field(default_factory=dict)  # the entry's timer overrides

    def backend_names(self) -> list[str]:
        """The backends it names, or every backend of its workload, baseline first ([] when the
        workload is not in this build)."""
        if self.backends:
            return list(self.backends)
        wl = registry.REGISTRY.get(self.workload)
        return [b.name for b in wl.ordered_backends()] if wl is not None else []


@dataclass(frozen=True)
class Suite:
    name: str
    version: str
    description: str
    rules: RunRules
    quick_rules: RunRules
    preview_rules: RunRules
    entries: tuple[Entry, ...]
    source: str
    sha256: str

    def rules_for(self, mode: str) -> RunRules:
        rules = {"full": self.rules, "quick": self.quick_rules, "preview": self.preview_rules}
        if mode not in rules:
            raise UsageError(f"unknown suite mode {mode!r} (modes: {', '.join(MODES)})")
        return rules[mode]

    def plan(self, mode: str, context: PlanContext) -> list[PlannedCase]:
        self.rules_for(mode)  # validates the mode name
        return [case for entry in self.entries for case in _plan_entry(entry, mode, context)]


# --------------------------------------------------------------------------- planning


def _plan_entry(entry: Entry, mode: str, ctx: PlanContext) -> list[PlannedCase]:
    run = entry.expansion(mode)

    def skip(reason: str) -> list[PlannedCase]:
        return [PlannedCase(entry.id, entry.id, entry.workload, dict(run.params), run.backends, reason,
                            timer=dict(entry.timer))]

    if run.skip:
        return skip(f"not part of the {mode} run (the entry sets {mode}.skip = true)")
    reason = entry.requires.unmet(ctx) or _unavailable(entry.workload)
    if reason:
        return skip(reason)
    shapes, why = _shapes(entry.workload, run.shape_set)
    if why:
        return skip(why)
    cases: list[PlannedCase] = []
    seen: set[tuple[tuple[str, Any], ...]] = set()
    axes = list(run.sweep)
    wl = registry.REGISTRY.get(entry.workload)
    for shape in shapes:
        for point in itertools.product(*(run.sweep[a] for a in axes)):
            point_varying = {**shape, **dict(zip(axes, point))}
            base = {**run.params, **point_varying}
            # A workload's own sweep parameter (a collective's `sizes`) is one case per point too.
            for params in (wl.expand_overrides(base) if wl is not None else [base]):
                varying = {**point_varying, **{k: v for k, v in params.items() if k not in base or base[k] != v}}
                key = tuple(sorted(params.items(), key=lambda kv: kv[0]))
                if key in seen:  # two shapes of a model with the same dims: measure once
                    continue
                seen.add(key)
                label = ",".join(f"{k}={_fmt(v)}" for k, v in varying.items())
                case_id = f"{entry.id}/{label}" if label else entry.id
                cases.append(PlannedCase(entry.id, case_id, entry.workload, params, run.backends,
                                         timer=dict(entry.timer)))
    return cases


def _fmt(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _unavailable(workload: str) -> str | None:
    reg = registry.load_builtin()
    if workload in reg:
        return None
    # A module of the workload's family that failed to import says why (llm.serve: llm_serve).
    family = workload.split(".")[0]
    errors = [f"{m}: {e}" for m, e in registry.LOAD_ERRORS.items() if m.rsplit(".", 1)[-1].startswith(family)]
    return f"workload {workload} is not available in this build" + (f" ({'; '.join(errors)})" if errors else "")


def shape_table(workload: str) -> tuple[dict[str, Any] | None, str | None]:
    """(name -> shapes, None), or (None, why the shapes cannot be had)."""
    table_name = SHAPE_SET_TABLES.get(workload)
    if table_name is None:
        with_sets = ", ".join(sorted(SHAPE_SET_TABLES))
        return None, f"workload {workload!r} has no shape sets (shape sets exist for {with_sets})"
    try:
        module = importlib.import_module(SHAPES_MODULE)
        return dict(getattr(module, table_name)), None
    except Exception as exc:  # not written yet, or broken: the cases are skipped, not fatal
        return None, f"shape sets are not available in this build ({type(exc).__name__}: {exc})"


def _shapes(workload: str, shape_set: str | None) -> tuple[list[dict[str, Any]], str | None]:
    if shape_set is None:
        return [{}], None
    table, why = shape_table(workload)
    if table is None:
        return [], why
    if shape_set not in table:
        return [], f"unknown shape set {shape_set!r}"
    return [dict(s.params()) for s in table[shape_set]], None
