"""What can be run here: workloads with their parameters and backends (and whether each backend
is usable on this machine's default device), and the shipped suites."""

from __future__ import annotations

from typing import Any

from aibench.device import devices
from aibench.suite.load import list_suites
from aibench.workloads.registry import LOAD_ERRORS, load_builtin


def catalog() -> dict[str, Any]:
    registry = load_builtin()
    device = devices.resolve("auto")
    workloads = []
    for name in sorted(registry):
        data = registry[name].as_dict()
        for backend in data["backends"]:
            ok, why = registry[name].backends[backend["name"]].available(device)
            backend["available"], backend["reason"] = ok, why
        workloads.append(data)
    suites = [{"name": n, "version": v, "description": d} for n, v, d in list_suites()]
    return {"device": devices.describe(device).as_dict(), "workloads": workloads, "suites": suites,
            "load_errors": dict(LOAD_ERRORS)}
