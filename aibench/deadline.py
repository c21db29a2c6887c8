"""A per-case time limit for in-process work: a watchdog that interrupts the main thread.

A hung workload (a serving loop that never drains, a pathological autotune) must become a
`failed: timeout` record so that the suite goes on. The watchdog raises KeyboardInterrupt in the
main thread through `_thread.interrupt_main`; `Deadline` tells that apart from a real Ctrl-C by
its `fired` flag. A GPU kernel already queued finishes first: Python only sees the interrupt
between bytecodes, e.g. at the next synchronisation that returns.
"""

from __future__ import annotations

import _thread
import threading
from types import TracebackType


class Deadline:
    """`with Deadline(60) as d:` ... `except KeyboardInterrupt: if d.fired: <timeout>`.

    Only the main thread can be interrupted; elsewhere (or with seconds=None) it is a no-op.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.fired = False
        self._active = False
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def _fire(self) -> None:
        with self._lock:  # never interrupt after __exit__ has run
            if self._active:
                self.fired = True
                _thread.interrupt_main()

    def __enter__(self) -> Deadline:
        if self.seconds is not None and threading.current_thread() is threading.main_thread():
            self._active = True
            self._timer = threading.Timer(self.seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._lock:
            self._active = False
        if self._timer is not None:
            self._timer.cancel()
