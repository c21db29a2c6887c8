"""Run a registered workload by name: the registry's lookup in front of the runner."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from aibench.measure.records import Outcome
from aibench.measure.runner import RunOptions, run_backends
from aibench.workloads.registry import get


def run_workload(
    name: str,
    overrides: dict[str, Any] | None = None,
    device: torch.device | None = None,
    backends: Iterable[str] | None = None,
    options: RunOptions | None = None,
    telemetry: Any = None,
    entry: str | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """`run_backends` of the workload registered as `name` (UsageError for an unknown name)."""
    return run_backends(get(name), overrides, device, backends, options, telemetry, entry, on_outcome)
