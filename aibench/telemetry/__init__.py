"""Power, energy and clock telemetry: every measurement says how much energy it took and under
what conditions, or why it cannot; never a made-up or TDP-guessed number.

Sources: NVML (NVIDIA), amdsmi (AMD), RAPL (CPU packages); `unavailable` elsewhere, with a reason.
Libraries are imported only when `open_telemetry` is called, never at import.
"""

from __future__ import annotations

from aibench.telemetry.calc import THROTTLE_REASONS, decode_reasons
from aibench.telemetry.core import (
    DEFAULT_INTERVAL_S,
    Telemetry,
    TelemetryResult,
    open_telemetry,
    unavailable_summary,
)
from aibench.telemetry.reader import TelemetryUnavailable

__all__ = [
    "DEFAULT_INTERVAL_S",
    "THROTTLE_REASONS",
    "Telemetry",
    "TelemetryResult",
    "TelemetryUnavailable",
    "decode_reasons",
    "open_telemetry",
    "unavailable_summary",
]
