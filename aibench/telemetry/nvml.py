"""NVIDIA GPUs through NVML (module `pynvml` from the nvidia-ml-py distribution).

Facts used here are from shared/reference/hardware.md (NVML section): the energy counter is mJ
since driver load (Volta+); nvmlDeviceGetPowerUsage is a 1 s average on Ampere (except GA100)
and newer, so the instantaneous field NVML_FI_DEV_POWER_INSTANT is read beside it, each labelled
as what it is. aibench never changes clocks, power limits or persistence mode: it reads them.
pynvml is imported inside `open_nvml`, so tests can pass a stand-in module.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from aibench.telemetry.reader import Row, TelemetryUnavailable

# nvmlValueType_t -> member of the c_nvmlValue_t union holding the value.
_VALUE_MEMBER = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


class NvmlReader:
    """Reads one GPU. Each field that raises NVMLError is None in the row and listed in
    `unavailable` with the reason; NotSupported, NoPermission and FunctionNotFound stop the
    field being asked again (they will not change), other errors are retried every sample."""

    power_fields = ("power_instant_w", "power_usage_w")
    counter_field = "energy_counter_mj"
    counter_per_j = 1000  # NVML's energy counter is in millijoules
    counter_max: float | None = None  # a decrease is a reset (driver reload), never a wrap

    def __init__(self, nvml: Any, handle: object, nvml_index: int, torch_index: int | None) -> None:
        self.nvml = nvml
        self.handle = handle
        self.unavailable: dict[str, str] = {}
        self._disabled: set[str] = set()
        self._permanent = {
            getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", 3),
            getattr(nvml, "NVML_ERROR_NO_PERMISSION", 4),
            getattr(nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", 13),
        }
        self._reasons_api = "nvmlDeviceGetCurrentClocksEventReasons"
        self._instant_field = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", None)
        if self._instant_field is None:  # bindings older than the field
            self._disabled.add("power_instant_w")
            self.unavailable["power_instant_w"] = "pynvml has no NVML_FI_DEV_POWER_INSTANT"
        h = handle
        limit_mw = self._get("power_limit_w", "nvmlDeviceGetPowerManagementLimit", h)
        default_mw = self._get("default_power_limit_w", "nvmlDeviceGetPowerManagementDefaultLimit", h)
        self.info: dict[str, object] = {
            "index": torch_index,
            "nvml_index": nvml_index,
            "name": _text(self._get("name", "nvmlDeviceGetName", h)),
            "uuid": _text(self._get("uuid", "nvmlDeviceGetUUID", h)),
            "driver_version": _text(self._get("driver_version", "nvmlSystemGetDriverVersion")),
            "power_limit_w": limit_mw / 1000.0 if limit_mw is not None else None,
            "default_power_limit_w": default_mw / 1000.0 if default_mw is not None else None,
            "power_fields": {
                "power_instant_w": "NVML_FI_DEV_POWER_INSTANT via nvmlDeviceGetFieldValues (instantaneous)",
                "power_usage_w": "nvmlDeviceGetPowerUsage (a 1 s average on Ampere except GA100, and newer)",
            },
        }

    # -- one field, with its failure recorded ---------------------------------------------------
    def _get(self, field: str, func: str | Callable[..., Any], *args: object) -> Any:
        if field in self._disabled:
            return None
        fn = getattr(self.nvml, func, None) if isinstance(func, str) else func
        if fn is None:
            self._disabled.add(field)
            self.unavailable[field] = f"pynvml has no {func}"
            return None
        try:
            return fn(*args)
        except self.nvml.NVMLError as exc:
            if getattr(exc, "value", None) in self._permanent:
                self._disabled.add(field)
            self.unavailable[field] = f"{type(exc).__name__}: {exc}"
            return None

    def _instant_power_mw(self) -> float:
        nvml = self.nvml
        value = nvml.nvmlDeviceGetFieldValues(self.handle, [self._instant_field])[0]
        # The call succeeds as a whole while each field carries its own return code.
        if value.nvmlReturn != getattr(nvml, "NVML_SUCCESS", 0):
            raise nvml.NVMLError(value.nvmlReturn)
        return float(getattr(value.value, _VALUE_MEMBER.get(int(value.valueType), "uiVal")))

    def _clock_event_reasons(self) -> int | None:
        if self._reasons_api == "nvmlDeviceGetCurrentClocksEventReasons":
            mask = self._get("clocks_event_reasons", self._reasons_api, self.handle)
            if "clocks_event_reasons" not in self._disabled:
                return mask
            # Drivers and bindings before the rename only have the ...ThrottleReasons spelling.
            self._disabled.discard("clocks_event_reasons")
            self._reasons_api = "nvmlDeviceGetCurrentClocksThrottleReasons"
            self.info["clocks_event_api"] = self._reasons_api
        return self._get("clocks_event_reasons", self._reasons_api, self.handle)

    def read(self, t: float, full: bool, counter: bool) -> Row:
        nvml, h = self.nvml, self.handle
        instant_mw = self._get("power_instant_w", self._instant_power_mw)
        usage_mw = self._get("power_usage_w", "nvmlDeviceGetPowerUsage", h)
        row: Row = {
            "power_instant_w": instant_mw / 1000.0 if instant_mw is not None else None,
            "power_usage_w": usage_mw / 1000.0 if usage_mw is not None else None,
            # ~4 ms of CPU per call on an H200: read at a window's boundaries only (sampler.py).
            "energy_counter_mj": self._get("energy_counter_mj", "nvmlDeviceGetTotalEnergyConsumption", h)
            if counter
            else None,
            "sm_clock_mhz": self._get("sm_clock_mhz", "nvmlDeviceGetClockInfo", h, getattr(nvml, "NVML_CLOCK_SM", 1)),
            "mem_clock_mhz": self._get(
                "mem_clock_mhz", "nvmlDeviceGetClockInfo", h, getattr(nvml, "NVML_CLOCK_MEM", 2)
            ),
            "clocks_event_reasons": self._clock_event_reasons(),
        }
        if full:
            util = self._get("gpu_util_pct", "nvmlDeviceGetUtilizationRates", h)
            memory = self._get("memory_used_bytes", "nvmlDeviceGetMemoryInfo", h)
            row["temperature_c"] = self._get(
                "temperature_c", "nvmlDeviceGetTemperature", h, getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
            )
            row["gpu_util_pct"] = getattr(util, "gpu", None) if util is not None else None
            row["mem_util_pct"] = getattr(util, "memory", None) if util is not None else None
            row["memory_used_bytes"] = getattr(memory, "used", None) if memory is not None else None
        return row

    def close(self) -> None:
        """Nothing per device: `close_nvml` shuts the library down once."""


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def open_nvml(devices: Sequence[torch.device], nvml: Any = None) -> tuple[Any, list[NvmlReader]]:
    """Initialise NVML and make a reader per CUDA device; raises TelemetryUnavailable with the reason."""
    if nvml is None:
        try:
            import pynvml as nvml_module
        except Exception as exc:  # ImportError, or a broken install raising anything else
            raise TelemetryUnavailable(f"pynvml is not importable: {exc}") from None
        nvml = nvml_module
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise TelemetryUnavailable(f"pynvml: {exc}") from None
    try:
        count = int(nvml.nvmlDeviceGetCount())
        readers = []
        for device in devices:
            torch_index = device.index if device.index is not None else _current_cuda_index()
            nvml_index = nvml_index_for(torch_index, nvml, count)
            if nvml_index is None or not 0 <= nvml_index < count:
                raise TelemetryUnavailable(f"no NVML device matches {device} ({count} NVML device(s))")
            handle = nvml.nvmlDeviceGetHandleByIndex(nvml_index)
            readers.append(NvmlReader(nvml, handle, nvml_index, torch_index))
    except nvml.NVMLError as exc:
        close_nvml(nvml)
        raise TelemetryUnavailable(f"pynvml: {exc}") from None
    except TelemetryUnavailable:
        close_nvml(nvml)
        raise
    return nvml, readers


def close_nvml(nvml: Any) -> None:
    # Shutting down a library that failed must not hide the first error.
    with contextlib.suppress(Exception):
        nvml.nvmlShutdown()


def _current_cuda_index() -> int:
    try:
        return int(torch.cuda.current_device())
    except Exception:  # no CUDA runtime here (a stand-in NVML in tests): the first device
        return 0


def nvml_index_for(torch_index: int, nvml: Any, count: int, torch_uuid: str | None = None) -> int | None:
    """NVML's index of torch's cuda:N. CUDA orders and filters devices (CUDA_VISIBLE_DEVICES,
    CUDA_DEVICE_ORDER) while NVML always sees every GPU in PCI order, so match by UUID first."""
    visible = [p.strip() for p in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if p.strip()]
    entry = visible[torch_index] if torch_index < len(visible) else None
    candidates = [torch_uuid if torch_uuid is not None else _torch_uuid(torch_index)]
    if entry is not None and not entry.isdigit():
        candidates.append(entry)  # CUDA_VISIBLE_DEVICES=GPU-xxxx,...
    for uuid in filter(None, candidates):
        want = uuid.lower().removeprefix("gpu-")
        for i in range(count):
            try:
                have = _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) or ""
            except nvml.NVMLError:
                continue
            have = have.lower().removeprefix("gpu-")
            if have == want or (len(want) >= 8 and have.startswith(want)):
                return i
    if entry is not None and entry.isdigit():
        return int(entry)
    if entry is not None:
        # A UUID NVML does not list (a MIG instance, a typo): torch's position says nothing about
        # which GPU that is, and reading another GPU would charge its energy to this case.
        return None
    return torch_index


def _torch_uuid(torch_index: int) -> str | None:
    try:
        uuid = getattr(torch.cuda.get_device_properties(torch_index), "uuid", None)
    except Exception:  # no CUDA runtime, or a torch without device UUIDs
        return None
    return str(uuid) if uuid else None
