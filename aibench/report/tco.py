"""Total cost of ownership: prices per system (a TOML file) and the pure arithmetic built on them.

The formulas follow InferenceX (../shared/reference/methods.md, "LLM serving metrics"):
hourly TCO = amortised purchase + operating cost + energy; cost per million tokens =
hourly TCO / (tokens/s x 3600) x 1e6; tokens per provisioned MW. Energy is always the MEASURED
average power of a record's energy window times the facility PUE: no power reading, no energy
cost, and no figure built on it (never a TDP guess, never 0).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aibench.core.errors import UsageError
from aibench.device.specs import match_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

HOURS_PER_YEAR = 8760.0  # 365 days; straight-line amortisation ignores leap days
CURRENCY = "EUR"


@dataclass(frozen=True)
class Prices:
    """What one accelerator of a system costs (every figure per accelerator)."""

    capex_eur: float  # purchase price
    lifetime_years: float  # straight-line amortisation period
    power_eur_per_kwh: float
    pue: float  # facility overhead on the measured accelerator power (>= 1)
    opex_eur_per_year: float = 0.0  # maintenance, hosting


# key -> (required, lower bound, bound is inclusive, what the value means)
_FIELDS: dict[str, tuple[bool, float, bool, str]] = {
    "capex_eur": (True, 0.0, True, "purchase price per accelerator in EUR"),
    "lifetime_years": (True, 0.0, False, "amortisation period in years"),
    "opex_eur_per_year": (False, 0.0, True, "operating cost per accelerator and year in EUR"),
    "power_eur_per_kwh": (True, 0.0, True, "electricity price in EUR per kWh"),
    "pue": (True, 1.0, True, "power usage effectiveness of the facility"),
}


def parse_prices(data: Any, source: str) -> dict[str, Prices]:
    """`{"systems": {name: {...}}}` -> name -> Prices; UsageError naming the source, key and problem."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a table with a [systems.\"NAME\"] section per system")
    unknown = sorted(set(data) - {"systems"})
    if unknown:
        raise UsageError(f"{source}: unknown top-level key {unknown[0]!r} (only [systems.\"NAME\"] tables)")
    systems = data.get("systems")
    if not isinstance(systems, dict) or not systems:
        raise UsageError(f"{source}: no [systems.\"NAME\"] table (one per system, named by system or device name)")
    out: dict[str, Prices] = {}
    for name, entry in systems.items():
        where = f"systems.{_quote(name)}"
        if not isinstance(entry, dict):
            raise UsageError(f"{source}: {where}: expected a table of prices, got {_type(entry)}")
        extra = sorted(set(entry) - set(_FIELDS))
        if extra:
            raise UsageError(f"{source}: {where}.{extra[0]}: unknown key (known: {', '.join(_FIELDS)})")
        values: dict[str, float] = {}
        for key, (required, low, inclusive, meaning) in _FIELDS.items():
            if key not in entry:
                if required:
                    raise UsageError(f"{source}: {where}.{key}: missing ({meaning})")
                continue
            value = entry[key]
            ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok_type or not math.isfinite(value) or value < low or (value == low and not inclusive):
                bound = f">= {low:g}" if inclusive else f"> {low:g}"
                raise UsageError(f"{source}: {where}.{key}: must be a number {bound} ({meaning}), got {value!r}")
            values[key] = float(value)
        out[str(name)] = Prices(**values)
    return out


def load_prices(path: str | Path) -> dict[str, Prices]:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{p}: cannot read the prices file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{p}: the prices file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{p}: not valid TOML ({exc})") from None
    return parse_prices(data, str(p))


def prices_for(prices: dict[str, Prices], label: str, device_name: str | None,
               device_kind: str | None = None) -> tuple[Prices | None, str]:
    """The entry of a run: by its label (system name, else device), then by device name, then by
    the datasheet name of the board that device name is (device/specs.py: "NVIDIA H100 SXM5 80GB"
    for the "NVIDIA H100 80GB HBM3" that NVML reports, so a price list can name products as their
    vendors sell them), then by device kind ("cpu": one entry for any CPU, whose model name differs
    from machine to machine).

    Returns (prices, the key used) or (None, why there is none).
    """
    spec = match_spec(device_name)
    product = spec.name if spec is not None else None
    for key in (label, device_name, product, device_kind):
        if key and key in prices:
            return prices[key], key
    names = " or ".join(repr(k) for k in dict.fromkeys(k for k in (label, device_name, product) if k))
    return None, f"no prices for {names} in the prices file"


# --- the arithmetic (pure; exact unit tests in tests/test_report_tco.py) ---------------------------


def hourly_fixed_eur(p: Prices) -> float:
    """Amortised purchase plus operating cost per hour, the part that needs no power reading."""
    return p.capex_eur / (p.lifetime_years * HOURS_PER_YEAR) + p.opex_eur_per_year / HOURS_PER_YEAR


def hourly_energy_eur(avg_power_w: float, p: Prices) -> float:
    """Energy cost per hour: measured accelerator kW x PUE x price per kWh."""
    return avg_power_w / 1000.0 * p.pue * p.power_eur_per_kwh


def hourly_eur(avg_power_w: float, p: Prices) -> float:
    return hourly_fixed_eur(p) + hourly_energy_eur(avg_power_w, p)


def cost_per_million(hourly: float, units_per_s: float) -> float:
    """InferenceX: hourly / (units/s x 3600) x 1e6 (tokens, images...)."""
    return hourly / (units_per_s * 3600.0) * 1e6


def cost_per_pflop(hourly: float, tflops: float) -> float:
    """Cost per 1e15 FLOP at a sustained TFLOP/s."""
    return hourly / (tflops * 1e12 * 3600.0) * 1e15


def units_per_provisioned_mw(units_per_s: float, avg_power_w: float, pue: float) -> float:
    """Throughput a megawatt of facility power buys: units/s / (kW x PUE / 1000)."""
    return units_per_s / (avg_power_w / 1000.0 * pue / 1000.0)


def _quote(name: object) -> str:
    text = str(name)
    return text if text.replace("_", "").replace("-", "").isalnum() else '"' + text.replace('"', '\\"') + '"'


def _type(value: object) -> str:
    return {dict: "a table", list: "an array", str: "a string"}.get(type(value), type(value).__name__)
