"""What every telemetry source provides: a `Reader` per device, and the reason when there is none."""

from __future__ import annotations

from typing import Any, Protocol

from aibench.core.errors import AibenchError

Row = dict[str, Any]  # one sample: "t" and the readings, None where a read failed


class TelemetryUnavailable(AibenchError):
    """A telemetry source cannot be opened here; the message is the reason a record will carry.

    Never escapes `open_telemetry`: it becomes `available: False` with this reason.
    """


class Reader(Protocol):
    """One device read through one library (NVML, amdsmi, RAPL, or a test's stand-in).

    `counter_field` names the row key of a cumulative energy counter (None when the device has
    none), counting `counter_per_j` units per joule; `counter_max` is its wrap-around range (RAPL) or
    None when a decrease can only mean a reset.
    """

    info: dict[str, object]  # index, name, uuid and the conditions read once (power limit, ...)
    power_fields: tuple[str, ...]  # row keys holding power in W, the one to integrate first
    counter_field: str | None
    counter_per_j: float
    counter_max: float | None
    unavailable: dict[str, str]  # field -> why it could not be read

    def read(self, t: float, full: bool, counter: bool) -> Row:
        """One row of readings at clock time t (None where a field failed); never raises.

        `full` asks for the slow-moving fields too (temperature, utilization, memory); `counter`
        for the energy counter, which the window's boundary samples need and others may skip.
        """
        ...

    def close(self) -> None: ...
