"""Operand rotation: each call of a timed function reads a different copy of its inputs.

The timer's event mode flushes the L2 before every sample (a memset of a buffer twice its size),
but its CUDA-graph mode captures `graph_calls` calls back to back with no flush in between: a
decode-sized kernel whose operands fit in L2 (a 32 MB weight against the H100's 50 MB or the
H200's 60 MB L2, ../shared/reference/hardware.md) would then read them from cache from the
second call on, and report a bandwidth the HBM never delivered. Cycling through enough copies
that the bytes read between two uses of one copy exceed twice the L2 keeps every call cold, as
nvbench's and tritonbench's rotating buffers do. Operands that alone exceed twice the L2 evict
themselves and are not copied. "L2" here is every cache that can hold operands between calls
(devices.cache_bytes: on an MI300 also its 256 MB Infinity Cache).

A graph replays the same captured calls, so the rotation restarts with every replay: unless the
number of copies divides the calls of a replay, a copy used near the end of one replay is used
again near the start of the next, after fewer calls than there are copies (9 copies in 20 calls:
after 2). The copy count is therefore a divisor of the replay's calls whenever memory allows, and
`evicted` judges the shortest distance between two uses, the replay boundary included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import torch

from aibench.device import devices
from aibench.measure.timer import TimerConfig

T = TypeVar("T")

# Calls captured per graph replay (TimerConfig.graph_calls): more copies than calls in a replay
# buy nothing, and bound the memory of tiny operands.
GRAPH_CALLS: int = TimerConfig.graph_calls
MAX_COPIES = GRAPH_CALLS
MAX_FREE_FRACTION = 0.25  # the copies may take at most this share of the device's free memory


def copies_for_cold_l2(nbytes: int, l2_bytes: int | None, free_bytes: int | None = None) -> int:
    """How many copies of operands of `nbytes` a rotation needs so that each call finds them
    evicted from an L2 of `l2_bytes`: 1 + ceil(2 * L2 / nbytes) rounded up to a divisor of
    GRAPH_CALLS (so that graph replays keep the cycle, module docstring), or 1 when there is no
    L2 to defeat (CPU) or the operands alone are at least twice its size. Capped at MAX_COPIES
    and, when `free_bytes` is known, at MAX_FREE_FRACTION of it (fewer copies, warmer cache,
    never an out-of-memory error)."""
    if nbytes <= 0:
        raise ValueError(f"operand bytes must be positive, got {nbytes}")
    if not l2_bytes or nbytes >= 2 * l2_bytes:
        return 1
    need = 1 + math.ceil(2 * l2_bytes / nbytes)
    copies = next((c for c in range(need, MAX_COPIES + 1) if GRAPH_CALLS % c == 0), MAX_COPIES)
    if free_bytes is not None:
        copies = min(copies, max(1, int(MAX_FREE_FRACTION * free_bytes) // nbytes))
    return copies


def reuse_distance(copies: int, calls: int = GRAPH_CALLS) -> int:
    """The fewest calls from one use of a copy to its next, calls made one by one or as replays
    of a graph of `calls` calls: `copies` when the cycle divides the replay, else the remainder
    (the replay boundary restarts the captured cycle)."""
    return calls % copies or copies


def evicted(copies: int, nbytes: int, l2_bytes: int | None) -> bool | None:
    """Whether the bytes read between two uses of one copy reach twice the L2 (every call cold),
    eagerly and in graph replays alike; None when the cache's size is unknown (a CPU)."""
    if not l2_bytes:
        return None
    return nbytes >= 2 * l2_bytes or (reuse_distance(copies) - 1) * nbytes >= 2 * l2_bytes


class Rotation(Generic[T]):
    """Hands out its items in turn, one per call: `a, b = rotation()`."""

    def __init__(self, items: Sequence[T]) -> None:
        if not items:
            raise ValueError("a rotation needs at least one item")
        self.items = list(items)
        self._next = 0

    def __len__(self) -> int:
        return len(self.items)

    def __call__(self) -> T:
        item = self.items[self._next]
        self._next = (self._next + 1) % len(self.items)
        return item


def rotation(first: tuple[torch.Tensor, ...], device: torch.device) -> tuple[Rotation[tuple[torch.Tensor, ...]], dict]:
    """A rotation over `first` and enough clones of it to keep the L2 cold on `device`, and the
    details a record keeps about it (copies, operand bytes, whether each call is cold)."""
    nbytes = sum(t.numel() * t.element_size() for t in first)
    l2 = devices.cache_bytes(device)
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    copies = copies_for_cold_l2(nbytes, l2, free)
    items = [first] + [tuple(t.clone() for t in first) for _ in range(copies - 1)]
    cold = evicted(copies, nbytes, l2)
    details = {"operand_copies": copies, "operand_bytes": nbytes, "cache_bytes": l2, "cold_l2_every_call": cold}
    if cold is None:
        details["cold_l2_unknown"] = f"no cache size known for {device.type}: one copy, not claimed cold"
    return Rotation(items), details


def rotating(fn: Callable[..., T], rot: Rotation[tuple[torch.Tensor, ...]]) -> Callable[[], T]:
    """A zero-argument callable applying `fn` to the rotation's next operands."""

    def call() -> T:
        return fn(*rot())

    return call
