"""CPU package energy from Linux RAPL (/sys/class/powercap/intel-rapl:N), AMD Zen included.

Each top-level domain has `name`, `energy_uj` (a counter in microjoules) and
`max_energy_range_uj` (where the counter wraps back to 0). The reader unwraps every domain at
each read, so its `energy_counter_uj` only grows and a window may span several wraps as long as
the sampler reads more often than one wrap period (minutes at hundreds of watts).
Since Linux 5.10 energy_uj is readable by root only (CVE-2020-8694, "Platypus").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from aibench.telemetry import calc
from aibench.telemetry.reader import Row, TelemetryUnavailable

DEFAULT_ROOT = Path("/sys/class/powercap")
_TOP_LEVEL = re.compile(r"^intel-rapl:\d+$")
MAX_POWER_GAP_S = 1.0


@dataclass
class _Domain:
    name: str
    path: Path
    max_range_uj: int
    last_raw: int | None = None
    total_uj: int = 0


class RaplReader:
    """All top-level RAPL domains; the energy counter sums the package domains."""

    power_fields = ("power_w",)
    counter_field = "energy_counter_uj"
    counter_per_j = 1_000_000  # microjoules
    counter_max: float | None = None  # unwrapped per domain in read()

    def __init__(self, domains: list[_Domain], counted: list[str]) -> None:
        self.domains = domains
        self.counted = counted
        self.unavailable: dict[str, str] = {}
        self._prev: tuple[float, int] | None = None
        self.info: dict[str, object] = {
            "index": None,
            "name": f"CPU RAPL {'+'.join(counted)}",
            "uuid": None,
            "domains": [d.name for d in domains],
            "counted_domains": counted,
            "power_fields": {"power_w": "difference of the RAPL energy counter between samples"},
            "note": "RAPL counts the whole package, other processes included",
        }
        for domain in domains:  # prime: the first read of a window then has a delta to add
            try:
                domain.last_raw = int((domain.path / "energy_uj").read_text().strip())
            except (OSError, ValueError):
                domain.last_raw = None

    def read(self, t: float, full: bool, counter: bool = True) -> Row:
        # Every read follows the counters (cheap file reads): that is how wraps are caught.
        row: Row = {}
        complete = True
        for domain in self.domains:
            key = f"rapl_{domain.name}_uj"
            try:
                raw = int((domain.path / "energy_uj").read_text().strip())
            except (OSError, ValueError) as exc:
                self.unavailable[key] = f"{type(exc).__name__}: {exc}"
                row[key] = None
                complete = complete and domain.name not in self.counted
                continue
            if domain.last_raw is not None:
                delta = calc.counter_delta(domain.last_raw, raw, domain.max_range_uj)
                domain.total_uj += int(delta) if delta is not None else 0
            domain.last_raw = raw
            row[key] = domain.total_uj
        counter = sum(d.total_uj for d in self.domains if d.name in self.counted) if complete else None
        row["energy_counter_uj"] = counter
        power = None
        if counter is not None:
            # Power over the gap since the previous read; not across a long pause between windows.
            if self._prev is not None and 0 < t - self._prev[0] <= MAX_POWER_GAP_S:
                power = (counter - self._prev[1]) * 1e-6 / (t - self._prev[0])
            self._prev = (t, counter)
        row["power_w"] = power
        return row

    def close(self) -> None:
        """Files are opened per read: nothing to release."""


def open_rapl(root: str | Path | None = None) -> RaplReader:
    """Find the readable RAPL domains under root; raises TelemetryUnavailable with the reason."""
    base = Path(root) if root is not None else DEFAULT_ROOT
    try:
        entries = sorted(p for p in base.iterdir() if _TOP_LEVEL.match(p.name))
    except OSError:
        entries = []
    if not entries:
        raise TelemetryUnavailable(f"no RAPL domains under {base}")
    domains: list[_Domain] = []
    problems: list[str] = []
    for path in entries:
        try:
            name = (path / "name").read_text().strip() or path.name
            max_range = int((path / "max_energy_range_uj").read_text().strip())
            int((path / "energy_uj").read_text().strip())
        except PermissionError:
            problems.append(f"{path.name}: permission denied (energy_uj is root-only since Linux 5.10)")
            continue
        except (OSError, ValueError) as exc:
            problems.append(f"{path.name}: {type(exc).__name__}: {exc}")
            continue
        domains.append(_Domain(name=name, path=path, max_range_uj=max_range))
    if not domains:
        raise TelemetryUnavailable(f"RAPL unreadable under {base}: " + "; ".join(problems))
    names = [d.name for d in domains]
    # Package domains do not overlap each other; psys (the platform) contains them, so it is
    # counted only when no package domain is readable.
    counted = [n for n in names if n.startswith("package")] or [n for n in names if n != "psys"] or names
    return RaplReader(domains, counted)
