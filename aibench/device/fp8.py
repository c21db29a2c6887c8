"""Which fp8 encoding a device's matrix units multiply: a fact about the device, asked by the
suite plan (does this machine run the fp8 entries?) and by the matmul kernels alike."""

from __future__ import annotations

import torch


def native_fp8_dtype(device: torch.device) -> torch.dtype | None:
    """The fp8 e4m3 encoding `device`'s matrix units multiply, or None without fp8 MMA."""
    if device.type != "cuda":
        return None
    if getattr(torch.version, "hip", None):
        arch = getattr(torch.cuda.get_device_properties(device), "gcnArchName", "") or ""
        if arch.startswith("gfx94"):  # CDNA3, MI300: its own variant, not the OCP one
            return torch.float8_e4m3fnuz
        return torch.float8_e4m3fn if arch.startswith("gfx95") else None  # CDNA4, MI350: OCP
    return torch.float8_e4m3fn if torch.cuda.get_device_capability(device) >= (8, 9) else None
