"""AMD GPUs through the `amdsmi` Python package (ROCm's AMD SMI), written against its documented API.

Key names moved between amdsmi releases, so each reading accepts both spellings:
- amdsmi_get_power_info(h): watts; `socket_power` (ROCm 7) or `current_socket_power`
  (instantaneous, MI300+), `average_socket_power`; any of them may be the string "N/A".
- amdsmi_get_energy_count(h): `energy_accumulator` (older releases: `power`) times
  `counter_resolution` gives microjoules, as Zeus reads it.
- amdsmi_get_clock_info(h, AmdSmiClkType.GFX | MEM): MHz in `clk` (older: `cur_clk`).
- amdsmi_get_temp_metric(h, AmdSmiTemperatureType.HOTSPOT, AmdSmiTemperatureMetric.CURRENT): deg C.
Only exercised here against a stand-in module; AMD has no clock-event reason mask in this reader.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import torch

from aibench.telemetry.reader import Row, TelemetryUnavailable


def _number(value: object) -> float | None:
    """amdsmi reports a missing sensor as the string 'N/A': None, never 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _first(d: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = _number(d.get(key))
        if value is not None:
            return value
    return None


class AmdReader:
    power_fields = ("power_instant_w", "power_usage_w")
    counter_field = "energy_counter_uj"
    counter_per_j = 1_000_000  # microjoules
    counter_max: float | None = None  # 64-bit accumulator: a decrease is a reset

    def __init__(self, amdsmi: Any, handle: object, index: int,
                 mapping: str = "torch index = amdsmi handle order (no visibility variable set)") -> None:
        self.amdsmi = amdsmi
        self.handle = handle
        self.unavailable: dict[str, str] = {}
        asic = self._get("name", "amdsmi_get_gpu_asic_info") or {}
        self.info: dict[str, object] = {
            "index": index,
            "name": asic.get("market_name") if isinstance(asic, dict) else None,
            "uuid": self._get("uuid", "amdsmi_get_gpu_device_uuid"),
            "index_mapping": mapping,
            "power_fields": {
                "power_instant_w": "amdsmi socket_power / current_socket_power",
                "power_usage_w": "amdsmi average_socket_power",
            },
        }

    def _get(self, field: str, func: str, *args: object) -> Any:
        errors = getattr(self.amdsmi, "AmdSmiException", Exception)
        try:
            return getattr(self.amdsmi, func)(self.handle, *args)
        except (errors, AttributeError, KeyError) as exc:
            self.unavailable[field] = f"{type(exc).__name__}: {exc}"
            return None

    def read(self, t: float, full: bool, counter: bool) -> Row:
        smi = self.amdsmi
        power = self._get("power", "amdsmi_get_power_info") or {}
        energy = (self._get("energy_counter_uj", "amdsmi_get_energy_count") or {}) if counter else {}
        accumulator = _first(energy, "energy_accumulator", "power")
        resolution = _number(energy.get("counter_resolution"))
        clk_type = getattr(smi, "AmdSmiClkType", None)
        gfx = self._get("sm_clock_mhz", "amdsmi_get_clock_info", clk_type.GFX) if clk_type else None
        mem = self._get("mem_clock_mhz", "amdsmi_get_clock_info", clk_type.MEM) if clk_type else None
        row: Row = {
            "power_instant_w": _first(power, "socket_power", "current_socket_power"),
            "power_usage_w": _first(power, "average_socket_power"),
            "energy_counter_uj": accumulator * resolution
            if accumulator is not None and resolution is not None
            else None,
            "sm_clock_mhz": _first(gfx or {}, "clk", "cur_clk"),
            "mem_clock_mhz": _first(mem or {}, "clk", "cur_clk"),
        }
        if full:
            temp_type = getattr(smi, "AmdSmiTemperatureType", None)
            metric = getattr(smi, "AmdSmiTemperatureMetric", None)
            temp = (
                self._get("temperature_c", "amdsmi_get_temp_metric", temp_type.HOTSPOT, metric.CURRENT)
                if temp_type and metric
                else None
            )
            activity = self._get("gpu_util_pct", "amdsmi_get_gpu_activity") or {}
            row["temperature_c"] = _number(temp)
            row["gpu_util_pct"] = _first(activity, "gfx_activity")
        return row

    def close(self) -> None:
        """Nothing per device: `close_amdsmi` shuts the library down once."""


def open_amdsmi(devices: Sequence[torch.device], amdsmi: Any = None) -> tuple[Any, list[AmdReader]]:
    """Initialise amdsmi and make a reader per GPU; raises TelemetryUnavailable with the reason."""
    if amdsmi is None:
        try:
            import amdsmi as amdsmi_module  # type: ignore[import-not-found]
        except Exception as exc:  # ImportError, or a library/driver mismatch raising anything else
            raise TelemetryUnavailable(f"amdsmi is not importable: {exc}") from None
        amdsmi = amdsmi_module
    try:
        flags = getattr(amdsmi, "AmdSmiInitFlags", None)
        amdsmi.amdsmi_init(flags.INIT_AMD_GPUS) if flags is not None else amdsmi.amdsmi_init()
        handles = list(amdsmi.amdsmi_get_processor_handles())
    except Exception as exc:
        raise TelemetryUnavailable(f"amdsmi: {type(exc).__name__}: {exc}") from None
    readers = []
    # ROCm renumbers torch's devices after these; amdsmi lists every GPU of the node regardless.
    hidden = [f"{v}={os.environ[v]}" for v in _VISIBILITY if os.environ.get(v, "").strip()]
    for device in devices:
        index = device.index if device.index is not None else 0
        if hidden:
            position = _handle_by_pci(amdsmi, handles, index)
            if position is None:
                close_amdsmi(amdsmi)
                raise TelemetryUnavailable(
                    f"{', '.join(hidden)} renumbers the GPUs and {device}'s PCI address matches no amdsmi "
                    "device: its energy cannot be told from another GPU's")
            readers.append(AmdReader(amdsmi, handles[position], index, f"matched by PCI address ({', '.join(hidden)})"))
            continue
        if index >= len(handles):
            close_amdsmi(amdsmi)
            raise TelemetryUnavailable(f"no amdsmi device for {device} ({len(handles)} handle(s))")
        readers.append(AmdReader(amdsmi, handles[index], index))
    return amdsmi, readers


_VISIBILITY = ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")


def _handle_by_pci(amdsmi: Any, handles: Sequence[object], torch_index: int) -> int | None:
    """Position in `handles` of the GPU on torch's cuda:torch_index PCI address, or None."""
    try:
        props = torch.cuda.get_device_properties(torch_index)
        want = tuple(int(getattr(props, f"pci_{k}_id")) for k in ("domain", "bus", "device"))
    except Exception:  # no ROCm runtime, or a torch without PCI fields: unknown, not guessed
        return None
    for position, handle in enumerate(handles):
        try:
            bdf = str(amdsmi.amdsmi_get_gpu_device_bdf(handle))  # "0000:c1:00.0"
            domain, bus, rest = bdf.split(":")
            have = (int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16))
        except Exception:  # an older amdsmi, a failing query or an odd format: no match
            continue
        if have == want:
            return position
    return None


def close_amdsmi(amdsmi: Any) -> None:
    # Shutting down a library that failed must not hide the first error.
    with contextlib.suppress(Exception):
        amdsmi.amdsmi_shut_down()
