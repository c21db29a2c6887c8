"""aibench: GPU inference benchmarking for AI factory procurement.

Data flows one way: suite -> workloads -> measurement (timer + telemetry) -> records
-> run directory -> bundle -> verify -> report / compare.
"""

from __future__ import annotations

__version__ = "0.1.0"
