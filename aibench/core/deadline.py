"""A per-case time limit for in-process work: a watchdog that interrupts the main thread.

A hung workload (a serving loop that never drains, a pathological autotune) must become a
`failed: timeout` record so that the suite goes on. The watchdog raises KeyboardInterrupt in the
main thread through `_thread.interrupt_main`; `Deadline` tells that apart from a real Ctrl-C by
its `fired` flag. A GPU kernel already queued finishes first: Python only sees the interrupt
between bytecodes, e.g. at the next synchronisation that returns.
"""

from __future__ import annotations

import _thread
import signal
import threading
from types import FrameType, TracebackType

_ACTIVE: list[Deadline] = []  # deadlines inside their `with`, outermost first
# The deadline of the case running now (the runner's), kept past its `with` until the case's own
# except clauses are done, so that a SIGINT handler (a suite's) can tell the deadline's interrupt
# (`_thread.interrupt_main` runs the same handler) from the user's Ctrl-C.
_CASES: list[Deadline] = []


def case_started(deadline: Deadline) -> None:
    _CASES.append(deadline)


def case_ended(deadline: Deadline) -> None:
    _CASES.remove(deadline)


def interrupt_is_a_timeout() -> bool:
    """Whether a KeyboardInterrupt arriving now is the running case's deadline, not a Ctrl-C."""
    return bool(_CASES) and _CASES[-1].fired


class Deadline:
    """`with Deadline(60) as d:` ... `except KeyboardInterrupt: if d.fired: <timeout>`.

    Only the main thread can be interrupted; elsewhere (or with seconds=None) it is a no-op.
    """

    def __init__(self, seconds: float | None, repeat_s: float = 5.0) -> None:
        self.seconds = seconds
        # Python drops an interrupt that lands in a __del__ or a weakref callback ("Exception
        # ignored in ..."), and code may catch it: until the case ends, interrupt again.
        self.repeat_s = repeat_s
        self.fired = False
        self._active = False
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._ignored = False  # SIGINT was ignored (a background job): our handler stands in

    def _fire(self) -> None:
        with self._lock:  # never interrupt after __exit__ has run
            if self._active:
                self.fired = True
                _thread.interrupt_main()
                self._arm(self.repeat_s)

    def _arm(self, seconds: float) -> None:
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _only_ours(self, signum: int, frame: FrameType | None) -> None:
        # A deadline's interrupt (this one's, or a nested one's: gpu_check's per-case cut around
        # the runner's per-backend limit); a SIGINT from outside stays ignored, as the shell asked.
        if any(d.fired for d in _ACTIVE):
            raise KeyboardInterrupt

    def __enter__(self) -> Deadline:
        if self.seconds is not None and threading.current_thread() is threading.main_thread():
            # interrupt_main does nothing while SIGINT is ignored (`aibench suite ci &` in a
            # script): a hung case would never time out.
            if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
                signal.signal(signal.SIGINT, self._only_ours)
                self._ignored = True
            self._active = True
            _ACTIVE.append(self)
            self._arm(self.seconds)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._lock:  # after this no _fire interrupts or re-arms
            was_active, self._active = self._active, False
            timer = self._timer
        if was_active:
            _ACTIVE.remove(self)
        if timer is not None:
            timer.cancel()
        if self._ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self._ignored = False
