"""Workloads: what aibench measures. See registry.py for how one is defined."""

from __future__ import annotations

from aibench.workloads.registry import (
    REGISTRY,
    Case,
    Check,
    CustomMeasurement,
    Param,
    Workload,
    get,
    load_builtin,
    workload,
)

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
