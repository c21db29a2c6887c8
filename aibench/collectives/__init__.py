"""Collective micro-benchmarks (all_reduce, all_gather, ...) across the GPUs of one node.

`busbw` holds the pure nccl-tests formulas (algbw, bus_factor, busbw), `worker` the per-rank loop,
`launch` the pool of spawned rank processes; the `collective.*` workloads
(aibench.workloads.collectives) tie them to the runner. Importing this package starts nothing.
(Nothing is re-exported here: a function `busbw` would shadow the `busbw` module.)
"""

from __future__ import annotations
