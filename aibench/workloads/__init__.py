"""Workloads: what aibench measures. See registry.py for how one is defined."""

from __future__ import annotations

from aibench.core.checks import Check
from aibench.measure.case import Case, CustomMeasurement, Param, Workload
from aibench.workloads.registry import REGISTRY, get, load_builtin, workload

__all__ = [
    "REGISTRY",
    "Case",
    "Check",
    "CustomMeasurement",
    "Param",
    "Workload",
    "get",
    "load_builtin",
    "workload",
]
