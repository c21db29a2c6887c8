"""The cyclic garbage collector paused while a reader builds its objects.

Loading 50 runs x 1,000 records makes millions of dicts, lists and floats that live until the
report is written. CPython's collector runs whenever allocations outnumber frees by its
threshold, and each full pass walks every live container: on 2 cores it took 3 s of a 7 s report
(50 runs x 1,000 records). Records are JSON (trees, no cycles), so reference counting frees all
their garbage; the collector is only paused, and runs again at the end. A caller lets go of what
it built before the block ends (the first full pass after it would walk it all: 0.25 s for the
50-run report), rather than freezing it: frozen, triton's own cycles were reported as leaked.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector (if it is on) for the block; resume it after, even on error."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
