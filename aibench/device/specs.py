"""Datasheet peaks of known accelerators, matched by device name, for "% of peak".

Source of every row: ../shared/reference/hardware.md ("Datasheet peaks (dense, no sparsity)"),
which reproduces NVIDIA and AMD datasheets. These are leads, not truth: a report shows
"% of peak" only where a row matches, and an unknown device gets no percentage at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    # Dense peak TFLOP/s per dtype name ("bfloat16", "float16", "float8_e4m3fn", "float32").
    peak_tflops: dict[str, float] = field(default_factory=dict)
    memory_gb: float | None = None
    bandwidth_gbps: float | None = None  # GB/s (10^9 bytes per second)
    board_power_w: float | None = None
    source: str = ""
    # Regex over the lower-cased device name as torch/NVML report it.
    pattern: str = ""

    def peak_for(self, dtype: str) -> float | None:
        # The datasheets' fp8 column is per chip: one rate whichever e4m3 encoding the chip takes.
        return self.peak_tflops.get("float8_e4m3fn" if dtype.startswith("float8_e4m3") else dtype)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "peak_tflops": dict(self.peak_tflops),
            "memory_gb": self.memory_gb,
            "bandwidth_gbps": self.bandwidth_gbps,
            "board_power_w": self.board_power_w,
            "source": self.source,
        }


_SRC_NV = "NVIDIA datasheet via ../shared/reference/hardware.md"
_SRC_AMD = "AMD datasheet via ../shared/reference/hardware.md (third-party pages disagree; check)"


def _fp(bf16: float, fp8: float | None, fp32: float | None = None) -> dict[str, float]:
    peaks = {"bfloat16": bf16, "float16": bf16}
    if fp8 is not None:
        peaks["float8_e4m3fn"] = fp8
    if fp32 is not None:
        peaks["float32"] = fp32
    return peaks


# Order matters: the first pattern that matches wins (PCIe before the generic H100 row). A
# pattern names one board, not a chip: the same chip on another board has other peaks (H100 NVL:
# 835 TFLOP/s bf16 and 3.9 TB/s; H200 NVL: 600 W; GH200 ("NVIDIA GH200 480GB"): its own HBM; A100
# PCIe ("NVIDIA A100 80GB PCIe"): 1.935 TB/s, 300 W), and none of those has a row here.
SPECS: tuple[DeviceSpec, ...] = (
    DeviceSpec("NVIDIA H100 PCIe 80GB", _fp(756, 1513), 80, 2000, 350, _SRC_NV, r"\bh100\b.*pcie"),
    # H100 SXM5 ("NVIDIA H100 80GB HBM3"): fp32 (non-tensor) 67 TFLOP/s per the same datasheet
    # (H200.md of the device tool).
    DeviceSpec("NVIDIA H100 SXM5 80GB", _fp(989.4, 1978.9, 67), 80, 3350, 700, _SRC_NV, r"\bh100\b(?!.*\bnvl\b)"),
    DeviceSpec("NVIDIA H200 SXM 141GB", _fp(989.4, 1978.9, 67), 141, 4800, 700, _SRC_NV, r"\bh200\b(?!.*\bnvl\b)"),
    DeviceSpec("NVIDIA B200 (HGX)", _fp(2250, 4500), 180, 8000, 1000, _SRC_NV, r"\bb200"),
    DeviceSpec("NVIDIA A100 SXM4 80GB", _fp(312, None), 80, 2039, 400, _SRC_NV, r"\ba100-sxm.*80"),
    DeviceSpec("NVIDIA L40S", _fp(362.05, 733), 48, 864, 350, _SRC_NV, r"l40s"),
    DeviceSpec("AMD Instinct MI325X", _fp(1307.4, 2614.9), 256, 6000, 1000, _SRC_AMD, r"mi325x"),
    DeviceSpec("AMD Instinct MI300X", _fp(1307.4, 2614.9), 192, 5300, 750, _SRC_AMD, r"mi300x"),
)


def match_spec(device_name: str | None) -> DeviceSpec | None:
    """The spec row for a device name, or None when no row matches (never a guess)."""
    if not device_name:
        return None
    lowered = device_name.lower()
    if re.search(r"\bmig\b", lowered):
        # A MIG slice ("NVIDIA H100 80GB HBM3 MIG 1g.10gb") has a fraction of the chip's SMs and
        # memory bandwidth: the whole board's datasheet peak would understate its % of peak.
        return None
    for spec in SPECS:
        if re.search(spec.pattern, lowered):
            return spec
    return None
