"""The workload registry: a workload is one `workload(...)` call, a backend one decorated function.

    copy = workload("memory.copy", "Device-to-device copy bandwidth",
                    params=[Param("mib", int, 1024, "buffer size in MiB", preview=8)])

    @copy.backend("torch", baseline=True)
    def _copy_torch(p: dict, device: torch.device) -> Case:
        src = torch.randn(...); dst = torch.empty_like(src)      # setup: not timed
        return Case(fn=lambda: dst.copy_(src), check=..., bytes=2 * src.nbytes)

A backend's setup allocates inputs (never timed) and returns a `Case`: a zero-argument callable
to time, a correctness check against a reference, and the FLOP/byte/work counts per call from
which the runner derives TFLOP/s, GB/s, % of peak and energy per unit of work.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from aibench.core.errors import UsageError
from aibench.core.text import did_you_mean
from aibench.measure.case import Param, Workload

REGISTRY: dict[str, Workload] = {}


def workload(name: str, description: str, params: Iterable[Param] = (),
             validate: Callable[[dict[str, Any]], None] | None = None,
             expand: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None) -> Workload:
    """Create and register a workload; its backends are added with `@wl.backend(...)`.
    `validate(params)` raises UsageError for parameters no backend can take; `expand(overrides)`
    turns one set of overrides into several cases (a sweep parameter)."""
    if name in REGISTRY:
        raise ValueError(f"workload {name!r} registered twice")
    wl = Workload(name, description, tuple(params), validate=validate, expand=expand)
    REGISTRY[name] = wl
    return wl


# The built-in workload modules, imported explicitly (no plugin magic). A module that fails
# to import (a missing optional dependency) is reported by `aibench list`, never fatal.
BUILTIN_MODULES: tuple[str, ...] = (
    "aibench.workloads.memory",
    "aibench.workloads.gemm",
    "aibench.workloads.attention",
    "aibench.workloads.llm",
    "aibench.workloads.llm_serve",
    "aibench.workloads.llm_serve_openai",
    "aibench.workloads.llm_train",
    "aibench.workloads.llm_ttq",
    "aibench.workloads.vision",
    "aibench.workloads.collectives",
)

LOAD_ERRORS: dict[str, str] = {}
_loaded = False


def load_builtin() -> dict[str, Workload]:
    global _loaded
    if not _loaded:
        for module in BUILTIN_MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name == module:  # not written yet: nothing to report
                    continue
                LOAD_ERRORS[module] = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # an optional backend must never break the CLI
                LOAD_ERRORS[module] = f"{type(exc).__name__}: {exc}"
        _loaded = True
    return REGISTRY


def get(name: str) -> Workload:
    load_builtin()
    if name not in REGISTRY:
        hint = did_you_mean(name, REGISTRY)
        raise UsageError(f"unknown workload {name!r}{hint}; `aibench list` shows them all")
    return REGISTRY[name]
