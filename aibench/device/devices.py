"""Which device a workload runs on: detection, `--device` parsing, synchronisation."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from aibench.core.errors import UsageError
from aibench.device.specs import DeviceSpec, match_spec


@dataclass(frozen=True)
class DeviceInfo:
    """What a record says about the device it measured."""

    spec: str  # "cpu", "cuda:0"
    kind: str  # "cpu" | "cuda" | "rocm"
    name: str
    index: int | None

    @property
    def is_gpu(self) -> bool:
        return self.kind in ("cuda", "rocm")

    def as_dict(self) -> dict[str, object]:
        return {"spec": self.spec, "kind": self.kind, "name": self.name, "index": self.index}


def gpu_backend() -> str | None:
    """'cuda' on NVIDIA, 'rocm' on AMD (torch.version.hip), None when no GPU is usable."""
    if not torch.cuda.is_available():
        return None
    return "rocm" if getattr(torch.version, "hip", None) else "cuda"


def resolve(spec: str = "auto") -> torch.device:
    """Parse `auto|cpu|cuda|cuda:N` (ROCm GPUs also answer to `cuda`, as in torch)."""
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if gpu_backend() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if gpu_backend() is None:
            raise UsageError(f"device {spec!r} asked for, but no CUDA/ROCm GPU is visible (use --device cpu)")
        index_text = text.partition(":")[2] or str(torch.cuda.current_device())
        if not index_text.isdigit():
            raise UsageError(f"bad device {spec!r}: expected cuda:N with N a GPU index")
        index = int(index_text)
        count = torch.cuda.device_count()
        if index >= count:
            raise UsageError(f"device {spec!r} does not exist: {count} GPU(s) visible (cuda:0..cuda:{count - 1})")
        return torch.device("cuda", index)
    raise UsageError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N")


def describe(device: torch.device) -> DeviceInfo:
    if device.type == "cpu":
        return DeviceInfo("cpu", "cpu", _cpu_name(), None)
    index = device.index if device.index is not None else torch.cuda.current_device()
    kind = gpu_backend() or "cuda"
    return DeviceInfo(f"cuda:{index}", kind, torch.cuda.get_device_name(index), index)


def spec_for(device: torch.device) -> DeviceSpec | None:
    """The datasheet row for a GPU; CPUs have none (no % of peak)."""
    if device.type == "cpu":
        return None
    return match_spec(describe(device).name)


def no_peak_reason(device: torch.device, spec: DeviceSpec | None, what: str) -> str:
    """Why a "% of peak" (MFU, MBU) has no value: no datasheet row, or none for `what`."""
    if spec is None:
        return f"no datasheet peak known for {describe(device).name!r}"
    return f"datasheet row {spec.name!r} has no {what} peak"


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on the device (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def l2_cache_bytes(device: torch.device) -> int | None:
    """The L2 size torch reports (on AMD: one XCD's L2)."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    size = getattr(props, "L2_cache_size", None)
    return int(size) if size else None


# AMD CDNA3/CDNA4 (gfx94x: MI300X/A, MI325X; gfx95x: MI350/MI355X) put a memory-side "Infinity
# Cache" of 256 MB in front of HBM, and one 4 MB L2 on each of up to 8 XCDs, of which torch reports
# one (ROCm docs, "AMD Instinct MI300 series microarchitecture"; AMD's CDNA 4 white paper).
_AMD_INFINITY_CACHE_BYTES = {"gfx94": 256 * 2**20, "gfx95": 256 * 2**20}
_AMD_MAX_XCDS = 8


def cache_bytes(device: torch.device) -> int | None:
    """Bytes of cache that can keep a kernel's operands between two calls: what an L2 flush or an
    operand rotation must exceed to time reads from memory. NVIDIA: the L2. AMD CDNA3/4: every
    XCD's L2 plus the Infinity Cache, so that an MI300's decode kernels are not timed from a
    256 MB cache an H100 lacks. None on a CPU or when torch reports nothing."""
    l2 = l2_cache_bytes(device)
    if l2 is None or not getattr(torch.version, "hip", None):
        return l2
    arch = getattr(torch.cuda.get_device_properties(device), "gcnArchName", "") or ""
    infinity = _AMD_INFINITY_CACHE_BYTES.get(arch[:5], 0)
    return l2 * _AMD_MAX_XCDS + infinity if infinity else l2


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "cpu"


def triton_usable(device: torch.device) -> tuple[bool, str | None]:
    """Whether Triton kernels can run on this device, and why not when they cannot.

    On a CPU Triton only runs in interpreter mode, which must be switched on before triton
    is imported (TRITON_INTERPRET=1); the CLI does that when no GPU driver is present.
    """
    try:
        import triton  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising anything else
        return False, f"triton is not importable: {exc}"
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return False, "Triton on a CPU needs TRITON_INTERPRET=1 set before start"
    return True, None


def is_interpreted(device: torch.device) -> bool:
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"
