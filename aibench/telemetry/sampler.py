"""One background sampler per device: reads a `Reader` every `interval_s` into a list of rows.

The sampling step, `sample_once(t)`, is an ordinary method so that tests (and the boundary
samples of an energy window) can drive it synchronously; the thread only calls it on a schedule.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from aibench.telemetry import calc
from aibench.telemetry.reader import Reader, Row

# Slow-moving fields (temperature, utilization, memory used) are read every SLOW_EVERY samples
# (about 200 ms at the 15 ms default): nvmlDeviceGetUtilizationRates took ~0.5 ms on an H200.
# Power, clocks and clock-event reasons (~5-10 us each) are read every sample. The energy
# counter is read only at a window's two boundaries: nvmlDeviceGetTotalEnergyConsumption took
# ~4 ms of CPU per call on an H200 (driver 13.0 era), and it only updates every ~100 ms anyway.
SLOW_EVERY = 13

# The sampler may use at most 2% of one core (the telemetry issue's budget): a sampler that eats
# the CPU slows the very launches it watches. The thread checks its own CPU share every
# BUDGET_CHECK_S of wall time and, over budget (a slow driver, a busy host), stretches its
# interval so the share lands at half the budget, never past MAX_INTERVAL_S: the energy counter
# updates every 20-100 ms (hardware.md), so slower sampling would blur the cross-check.
OVERHEAD_BUDGET = 0.02
BUDGET_CHECK_S = 0.5
MAX_INTERVAL_S = 0.1
_MAX_STRETCHES_KEPT = 20


class Sampler:
    """Samples one reader at a fixed interval in a daemon thread, or on demand."""

    def __init__(
        self,
        reader: Reader,
        interval_s: float = 0.015,
        clock: Callable[[], float] = time.perf_counter,
        slow_every: int = SLOW_EVERY,
        budget: float = OVERHEAD_BUDGET,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"sampling interval must be positive, got {interval_s}")
        if not 0 < budget < 1:
            raise ValueError(f"CPU budget must be a share of one core in (0, 1), got {budget}")
        self.budget = budget  # this sampler's share: Telemetry splits OVERHEAD_BUDGET among its devices
        self.reader = reader
        self.requested_interval_s = interval_s
        self.interval_s = interval_s  # the current one: stretched when over the CPU budget
        self.clock = clock
        self.slow_every = max(1, slow_every)
        self.rows: list[Row] = []
        self._count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Overhead bookkeeping, over every run of the thread since creation.
        self._cpu_s = 0.0
        self._wall_s = 0.0
        # Lateness of each sample against the interval in force then. Bounded: an hour at 15 ms is
        # 240k intervals; the recent ones describe the jitter well enough.
        self._lateness: deque[float] = deque(maxlen=100_000)
        self.stretches: list[dict[str, float]] = []  # when and why the interval was stretched
        self.errors = 0

    def sample_once(self, t: float | None = None, boundary: bool = False) -> Row:
        """Read the device now (or label the reading with t) and append the row.

        A boundary sample (the start or end of a window) reads every field, the energy counter too.
        """
        with self._lock:
            now = self.clock() if t is None else t
            full = boundary or self._count % self.slow_every == 0
            self._count += 1
            try:
                row: Row = {"t": now, "boundary": boundary, **self.reader.read(now, full, boundary)}
            except Exception as exc:  # a reader must not raise; if it does, the thread must not die
                self.errors += 1
                row = {"t": now, "error": f"{type(exc).__name__}: {exc}"}
            self.rows.append(row)
            return row

    def reset(self) -> None:
        """Forget the rows of the previous window (the overhead figures are kept)."""
        with self._lock:
            self.rows = []

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="aibench-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        cpu0 = time.thread_time()  # CPU time of this thread only: the sampler's own cost
        wall0 = prev = self.clock()
        check_cpu, check_wall = cpu0, wall0
        next_t = wall0 + self.interval_s
        try:
            while True:
                delay = next_t - self.clock()
                if self._stop.wait(delay if delay > 0 else 0.0):
                    break
                now = self.clock()
                self.sample_once(now)
                self._lateness.append(now - prev - self.interval_s)
                prev = now
                if now - check_wall >= BUDGET_CHECK_S:
                    cpu = time.thread_time()
                    self._keep_within_budget((cpu - check_cpu) / (now - check_wall), now - wall0)
                    check_cpu, check_wall = cpu, now
                next_t += self.interval_s
                if next_t <= self.clock():
                    # Fell behind (a slow read, a busy host): resume the schedule instead of bursting.
                    next_t = self.clock() + self.interval_s
        finally:
            self._cpu_s += time.thread_time() - cpu0
            self._wall_s += self.clock() - wall0

    def _keep_within_budget(self, cpu_share: float, at_s: float) -> None:
        """Stretch the interval when the last check period cost more than the CPU budget."""
        if cpu_share <= self.budget or self.interval_s >= MAX_INTERVAL_S:
            return
        self.interval_s = min(MAX_INTERVAL_S, self.interval_s * cpu_share / (self.budget / 2))
        if len(self.stretches) < _MAX_STRETCHES_KEPT:
            self.stretches.append({"at_s": at_s, "cpu_share": cpu_share, "interval_s": self.interval_s})

    def overhead(self) -> dict[str, object]:
        """CPU seconds of the thread per wall second, the interval jitter (lateness against the
        interval in force) and any stretching of the interval, over all runs so far."""
        return {
            "interval_s": self.interval_s,
            "requested_interval_s": self.requested_interval_s,
            "budget": self.budget,
            "stretches": list(self.stretches),
            "thread_wall_s": self._wall_s,
            "thread_cpu_s": self._cpu_s,
            "cpu_share_of_one_core": self._cpu_s / self._wall_s if self._wall_s > 0 else None,
            "jitter": calc.jitter_stats(list(self._lateness), 0.0),
            "errors": self.errors,
        }
