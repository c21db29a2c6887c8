"""Ctrl-C that survives Python: a suite or `aibench run` stops at the next record after it.

Used by aibench/suite/run.py and aibench/suite/session.py (`aibench run`).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from aibench.core.deadline import interrupt_is_a_timeout


class CtrlC:
    """Remembers a Ctrl-C for the length of a run, and raises it again at the next record (`check`).

    Python's handler raises KeyboardInterrupt in whatever code runs next; when that is a weakref
    callback or a __del__ (garbage collection after every case), Python prints "Exception ignored
    in ..." and goes on: the suite ran to its end and said complete. The deadline's own interrupt
    (a case past case_timeout_s) runs the same handler and is not a Ctrl-C.
    """

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None

    def __enter__(self) -> CtrlC:
        # Only in the main thread, and only over Python's default handler: a SIGINT the shell set
        # to be ignored (a background job) stays ignored.
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if not interrupt_is_a_timeout():
            self.seen = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.seen:
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
