"""The environment fingerprint: what software and hardware a run measured, as found.

`collect_environment()` returns a JSON-safe dict with the sections "aibench", "python",
"software", "gpus" (a list, one dict per GPU), "cpu", "memory", "os", "host" and "env_vars".
Values are plain (a consumer reads `env["software"]["torch"]`); a value that cannot be read is
`None`, and its reason sits in a sibling `"unavailable": {"field": "reason"}` map at the same
level (the top-level map holds the reason for an empty "gpus" list). Nothing is guessed: an
unreadable clock is `None` with the NVML error, never 0 (../shared/reference/hardware.md: aibench
measures the card as found, and records its state without changing it).

In "env_vars", `None` means "not set" (the watched names are fixed by this module).

`environment_sha256(env)` hashes the canonical JSON of the whole fingerprint: records carry that
hash to point at the fingerprint stored once in the run manifest.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import aibench
from aibench.core.jsonutil import canonical_sha256

SCHEMA_VERSION = 1

# Variables that change what a benchmark measures (device visibility, math modes, allocator,
# launch behaviour, threading, collectives). Values are recorded verbatim.
WATCHED_ENV_VARS: tuple[str, ...] = (
    "CUDA_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "CUDA_LAUNCH_BLOCKING",
    "CUDA_DEVICE_MAX_CONNECTIONS",
    "CUDA_MODULE_LOADING",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUBLASLT_WORKSPACE_SIZE",
    "NVIDIA_TF32_OVERRIDE",
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
    "PYTORCH_CUDA_ALLOC_CONF",
    "PYTORCH_HIP_ALLOC_CONF",
    "PYTORCH_NO_CUDA_MEMORY_CACHING",
    "PYTORCH_TUNABLEOP_ENABLED",
    "TORCH_BLAS_PREFER_HIPBLASLT",
    "TORCHINDUCTOR_MAX_AUTOTUNE",
    "TRITON_INTERPRET",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
)
# Whole families recorded when set (NCCL_ALGO, NCCL_PROTO, AIBENCH_...).
WATCHED_ENV_PREFIXES: tuple[str, ...] = ("NCCL_", "AIBENCH_", "TORCH_NCCL_")
# Never recorded, whatever the prefix: fingerprints end up in published bundles.
_SECRET_MARKERS: tuple[str, ...] = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSPHRASE", "CREDENTIAL")

_GIT_TIMEOUT_S = 2.0
_CPU_SYSFS = Path("/sys/devices/system/cpu")  # cpuN/cpufreq/scaling_governor
_CODE_DIRS: tuple[str, ...] = ("aibench", "suites")  # pyproject.toml's package-dir


def collect_environment() -> dict[str, Any]:
    """The fingerprint of this process's environment (JSON-safe; see the module docstring)."""
    unavailable: dict[str, str] = {}
    nvml = _Nvml.open()
    try:
        gpus, gpus_reason = _gpus(nvml)
        if gpus_reason:
            unavailable["gpus"] = gpus_reason
        return {
            "kind": "aibench.environment",
            "schema_version": SCHEMA_VERSION,
            "aibench": _aibench(),
            "python": _python(),
            "software": _software(nvml),
            "gpus": gpus,
            "cpu": _cpu(),
            "memory": _memory(),
            "os": _os(),
            "host": _host(),
            "env_vars": _env_vars(os.environ),
            "unavailable": unavailable,
        }
    finally:
        nvml.close()


def environment_sha256(env: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace) of a fingerprint."""
    return canonical_sha256(env)


# --------------------------------------------------------------------------- helpers


class _Section:
    """A dict under construction whose failed reads land in its "unavailable" map."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.unavailable: dict[str, str] = {}

    def set(self, key: str, value: Any, reason: str | None = None) -> None:
        self.values[key] = value
        if value is None:
            self.unavailable[key] = reason or "not reported"
        else:
            self.unavailable.pop(key, None)

    def read(self, key: str, getter: Callable[[], Any]) -> None:
        """Store getter()'s value, or None with the exception as the reason."""
        try:
            self.set(key, getter())
        except Exception as exc:  # any failed read must cost one field, never the fingerprint
            self.set(key, None, _why(exc))

    def done(self) -> dict[str, Any]:
        return {**self.values, "unavailable": dict(self.unavailable)}


class _Unreadable(Exception):
    """A read that failed for a reason already phrased for the reader."""


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, _Unreadable):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _text(value: Any) -> str:
    """NVML returns bytes from old bindings and str from new ones."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _package_version(dist: str) -> str:
    # Metadata only: importing triton here would fix TRITON_INTERPRET before the CLI sets it.
    return importlib.metadata.version(dist)


# --------------------------------------------------------------------------- sections


def _aibench() -> dict[str, Any]:
    s = _Section()
    s.set("version", aibench.__version__)
    checkout = Path(aibench.__file__).resolve().parent.parent
    commit, dirty, reason = _git_state(checkout)
    s.set("git_commit", commit, reason)
    s.set("git_dirty", dirty, reason)
    return s.done()


def _git_state(checkout: Path) -> tuple[str | None, bool | None, str | None]:
    """(commit, dirty, reason): only when `checkout` itself is the top of a git work tree."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(checkout), *args],
            capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[0] if done.stderr.strip() else "git failed")
        return done.stdout.strip()

    try:
        top = git("rev-parse", "--show-toplevel")
        # A package installed inside some other repository (a venv in a checkout) is not ours.
        if Path(top).resolve() != checkout:
            return None, None, f"aibench is not run from a git checkout (package under {checkout})"
        commit = git("rev-parse", "HEAD")
        # Dirty = any change, untracked files included, in the code that runs (the package and the
        # folders installed into it); results, caches and venvs elsewhere in the checkout don't count.
        code = [d for d in _CODE_DIRS if (checkout / d).is_dir()]
        dirty = bool(git("status", "--porcelain", "--", *code)) if code else None
        if dirty is None:
            return commit, None, f"no {'/'.join(_CODE_DIRS)} folder in {checkout}"
        return commit, dirty, None
    except FileNotFoundError:
        return None, None, "git is not installed"
    except subprocess.TimeoutExpired:
        return None, None, f"git did not answer within {_GIT_TIMEOUT_S} s"
    except (OSError, RuntimeError) as exc:
        return None, None, f"not a git checkout: {exc}"


def _python() -> dict[str, Any]:
    s = _Section()
    s.set("version", platform.python_version())
    s.set("implementation", platform.python_implementation())
    s.set("executable", sys.executable or None, "sys.executable is empty")
    return s.done()


def _software(nvml: _Nvml) -> dict[str, Any]:
    s = _Section()
    s.set("torch", torch.__version__)
    s.read("torch_git", lambda: torch.version.git_version)
    s.read("triton", lambda: _package_version("triton"))
    s.read("numpy", lambda: _package_version("numpy"))
    s.read("nvidia_ml_py", lambda: _package_version("nvidia-ml-py"))
    cuda, hip = torch.version.cuda, getattr(torch.version, "hip", None)
    s.set("cuda_runtime", cuda, "torch is built without CUDA")
    s.set("hip_runtime", hip, "torch is built without ROCm")
    s.read("cudnn", lambda: _cudnn_version())
    s.read("nccl", lambda: ".".join(str(x) for x in torch.cuda.nccl.version()))
    # Process state that changes fp32 matmul results (TF32); the runner may set it later.
    s.read("float32_matmul_precision", torch.get_float32_matmul_precision)
    s.read("driver_version", lambda: _text(nvml.call("nvmlSystemGetDriverVersion")))
    s.read("cuda_driver_version", lambda: _cuda_version_text(nvml.call("nvmlSystemGetCudaDriverVersion")))
    s.read("nvml_version", lambda: _text(nvml.call("nvmlSystemGetNVMLVersion")))
    return s.done()


def _cudnn_version() -> str:
    version = torch.backends.cudnn.version()
    if version is None:
        raise _Unreadable("torch is built without cuDNN")
    return str(version)


def _cuda_version_text(raw: int) -> str:
    # NVML encodes CUDA 12.4 as 12040 (1000 * major + 10 * minor).
    return f"{raw // 1000}.{(raw % 1000) // 10}"


def _cpu() -> dict[str, Any]:
    s = _Section()
    info = _read_cpuinfo()
    model = next((v for k, v in info if k == "model name"), None) or platform.processor() or None
    s.set("model", model, "neither /proc/cpuinfo nor platform.processor() names the CPU")
    s.set("architecture", platform.machine() or None, "platform.machine() is empty")
    s.set("logical_cores", os.cpu_count(), "os.cpu_count() returned None")
    try:
        s.set("usable_cores", len(os.sched_getaffinity(0)))  # what this process may run on
    except (AttributeError, OSError) as exc:
        s.set("usable_cores", None, _why(exc))
    sockets, physical = _topology(info)
    topo_reason = "/proc/cpuinfo has no 'physical id'/'core id' lines (VM or non-x86 kernel)"
    s.set("sockets", sockets, topo_reason)
    s.set("physical_cores", physical, topo_reason)
    # The frequency governor moves host-bound numbers (launch overhead, small kernels, preview).
    s.read("governor", _cpu_governor)
    return s.done()


def _cpu_governor() -> str:
    """Every cpufreq governor in use, sorted and comma-joined ("performance" on a tuned node)."""
    found = set()
    for path in _CPU_SYSFS.glob("cpu[0-9]*/cpufreq/scaling_governor"):
        with contextlib.suppress(OSError):
            found.add(path.read_text().strip())
    found.discard("")
    if not found:
        raise _Unreadable(f"no cpufreq scaling_governor under {_CPU_SYSFS} (no cpufreq driver, or a VM)")
    return ",".join(sorted(found))


def _read_cpuinfo() -> list[tuple[str, str]]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return [
                (k.strip().lower(), v.strip())
                for k, sep, v in (line.partition(":") for line in f)
                if sep
            ]
    except OSError:
        return []


def _topology(info: list[tuple[str, str]]) -> tuple[int | None, int | None]:
    """(sockets, physical cores) from /proc/cpuinfo's (physical id, core id) pairs."""
    cores: set[tuple[str, str]] = set()
    socket_id: str | None = None
    for key, value in info:
        if key == "processor":
            socket_id = None
        elif key == "physical id":
            socket_id = value
        elif key == "core id" and socket_id is not None:
            cores.add((socket_id, value))
    if not cores:
        return None, None
    return len({sid for sid, _ in cores}), len(cores)


def _memory() -> dict[str, Any]:
    s = _Section()
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            fields = {k.strip(): v.split() for k, _, v in (line.partition(":") for line in f)}
        total = fields.get("MemTotal")
        if not total or total[-1:] != ["kB"]:
            raise ValueError("no MemTotal line in kB")
        s.set("total_bytes", int(total[0]) * 1024)  # /proc/meminfo's "kB" is KiB
    except (OSError, ValueError) as exc:
        s.set("total_bytes", None, f"/proc/meminfo: {_why(exc)}")
    return s.done()


def _os() -> dict[str, Any]:
    s = _Section()
    s.set("system", platform.system() or None, "platform.system() is empty")
    s.set("kernel", platform.release() or None, "platform.release() is empty")
    s.set("kernel_version", platform.version() or None, "platform.version() is empty")
    try:
        release = platform.freedesktop_os_release()
        s.set("distribution", release.get("PRETTY_NAME") or release.get("NAME"), "os-release has no NAME")
    except (OSError, AttributeError) as exc:
        s.set("distribution", None, f"no /etc/os-release: {_why(exc)}")
    return s.done()


def _host() -> dict[str, Any]:
    s = _Section()
    s.read("hostname", socket.gethostname)
    return s.done()


def _env_vars(environ: Any) -> dict[str, str | None]:
    names = set(WATCHED_ENV_VARS) | {n for n in environ if n.startswith(WATCHED_ENV_PREFIXES)}
    names = {n for n in names if not any(marker in n.upper() for marker in _SECRET_MARKERS)}
    return {name: environ.get(name) for name in sorted(names)}


# --------------------------------------------------------------------------- GPUs


class _Nvml:
    """A lazily imported, initialised pynvml, or the reason there is none."""

    def __init__(self, module: Any, reason: str | None) -> None:
        self.module = module
        self.reason = reason

    @classmethod
    def open(cls) -> _Nvml:
        try:
            import pynvml
        except ImportError as exc:
            return cls(None, f"pynvml is not installed ({exc})")
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound on machines without a driver
            return cls(None, f"NVML unavailable: {_why(exc)}")
        return cls(pynvml, None)

    def call(self, name: str, *args: Any) -> Any:
        if self.module is None:
            raise _Unreadable(self.reason)
        fn = getattr(self.module, name, None)
        if fn is None:
            raise _Unreadable(f"this pynvml has no {name}")
        try:
            return fn(*args)
        except Exception as exc:  # NVMLError_NotSupported, _NoPermission, ...
            raise _Unreadable(f"{name}: {_why(exc)}") from exc

    def const(self, name: str) -> Any:
        return getattr(self.module, name)

    def close(self) -> None:
        if self.module is not None:
            # Shutting down a half-initialised NVML must not fail a run.
            with contextlib.suppress(Exception):
                self.module.nvmlShutdown()


def _gpus(nvml: _Nvml) -> tuple[list[dict[str, Any]], str | None]:
    """Every GPU NVML sees (the whole node), merged with torch's view of the visible ones."""
    torch_props, torch_reason = _torch_devices()
    gpus: list[dict[str, Any]] = []
    count = 0
    nvml_reason = nvml.reason
    if nvml.module is not None:
        try:
            count = int(nvml.call("nvmlDeviceGetCount"))
        except Exception as exc:
            nvml_reason = _why(exc)
    matched: set[int] = set()
    for index in range(count):
        s = _Section()
        s.set("index", index)
        _nvml_fields(nvml, index, s)
        torch_index = _match_torch(s.values, torch_props, matched)
        if torch_index is not None:
            matched.add(torch_index)
        _torch_fields(s, torch_props.get(torch_index) if torch_index is not None else None,
                      torch_index, torch_reason or "not visible to torch (CUDA_VISIBLE_DEVICES or a CPU build)")
        gpus.append(s.done())
    # Devices torch sees but NVML does not (ROCm, or no NVML): torch's view alone.
    for torch_index, props in sorted(torch_props.items()):
        if torch_index in matched:
            continue
        s = _Section()
        s.set("index", len(gpus))
        for key in _NVML_KEYS:
            s.set(key, None, nvml_reason or "NVML does not list this device")
        _torch_fields(s, props, torch_index, None)
        if s.values.get("name") is None and getattr(props, "name", None):
            s.set("name", props.name)
        gpus.append(s.done())
    if gpus:
        return gpus, None
    return gpus, f"no GPU found: {nvml_reason or 'NVML lists none'}; torch: {torch_reason or 'sees none'}"


_NVML_KEYS: tuple[str, ...] = (
    "name", "uuid", "memory_total_bytes", "app_sm_clock_mhz", "app_mem_clock_mhz", "max_sm_clock_mhz",
    "max_mem_clock_mhz", "power_limit_w", "default_power_limit_w", "enforced_power_limit_w", "ecc_enabled", "mig_enabled",
    "persistence_mode", "pci_bus_id", "pcie_max_link_gen", "pcie_max_link_width", "vbios_version",
)


def _nvml_fields(nvml: _Nvml, index: int, s: _Section) -> None:
    """One guarded NVML call per field: an NVMLError costs that field only."""
    try:
        handle = nvml.call("nvmlDeviceGetHandleByIndex", index)
    except Exception as exc:
        for key in _NVML_KEYS:
            s.set(key, None, _why(exc))
        return

    def clock(getter: str, kind: str) -> Callable[[], int]:
        return lambda: int(nvml.call(getter, handle, nvml.const(kind)))

    s.read("name", lambda: _text(nvml.call("nvmlDeviceGetName", handle)))
    s.read("uuid", lambda: _text(nvml.call("nvmlDeviceGetUUID", handle)))
    s.read("memory_total_bytes", lambda: int(nvml.call("nvmlDeviceGetMemoryInfo", handle).total))
    # Clock settings, not the current clocks: those move from sample to sample (345 MHz idle,
    # 1980 MHz after work) and would make two runs on one machine hash differently; the idle
    # baseline and every energy window record them. Application clocks are `nvidia-smi -ac`.
    s.read("app_sm_clock_mhz", clock("nvmlDeviceGetApplicationsClock", "NVML_CLOCK_SM"))
    s.read("app_mem_clock_mhz", clock("nvmlDeviceGetApplicationsClock", "NVML_CLOCK_MEM"))
    s.read("max_sm_clock_mhz", clock("nvmlDeviceGetMaxClockInfo", "NVML_CLOCK_SM"))
    s.read("max_mem_clock_mhz", clock("nvmlDeviceGetMaxClockInfo", "NVML_CLOCK_MEM"))
    # NVML reports power limits in milliwatts.
    s.read("power_limit_w", lambda: nvml.call("nvmlDeviceGetPowerManagementLimit", handle) / 1000.0)
    s.read("default_power_limit_w",
           lambda: nvml.call("nvmlDeviceGetPowerManagementDefaultLimit", handle) / 1000.0)
    # The limit in force after every limiter (an out-of-band BMC cap too): it can sit below the
    # management limit, and it is the one that decides the clocks under load.
    s.read("enforced_power_limit_w", lambda: nvml.call("nvmlDeviceGetEnforcedPowerLimit", handle) / 1000.0)
    # Ecc/Mig modes come back as (current, pending): the current one is what was measured.
    s.read("ecc_enabled", lambda: bool(nvml.call("nvmlDeviceGetEccMode", handle)[0]))
    s.read("mig_enabled", lambda: bool(nvml.call("nvmlDeviceGetMigMode", handle)[0]))
    s.read("persistence_mode", lambda: bool(nvml.call("nvmlDeviceGetPersistenceMode", handle)))
    s.read("pci_bus_id", lambda: _text(nvml.call("nvmlDeviceGetPciInfo", handle).busId))
    s.read("pcie_max_link_gen", lambda: int(nvml.call("nvmlDeviceGetMaxPcieLinkGeneration", handle)))
    s.read("pcie_max_link_width", lambda: int(nvml.call("nvmlDeviceGetMaxPcieLinkWidth", handle)))
    s.read("vbios_version", lambda: _text(nvml.call("nvmlDeviceGetVbiosVersion", handle)))


def _torch_devices() -> tuple[dict[int, Any], str | None]:
    try:
        if not torch.cuda.is_available():
            return {}, "torch sees no CUDA/ROCm device"
        return {i: torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())}, None
    except Exception as exc:
        return {}, f"torch.cuda failed: {_why(exc)}"


def _norm_uuid(text: Any) -> str:
    value = _text(text).strip().lower()
    return value[4:] if value.startswith("gpu-") else value


def _match_torch(values: dict[str, Any], torch_props: dict[int, Any], taken: set[int]) -> int | None:
    """The torch index of an NVML device: by UUID, else by PCI address (indices differ under
    CUDA_VISIBLE_DEVICES, so position is never used)."""
    uuid, bus = values.get("uuid"), values.get("pci_bus_id")
    for index, props in torch_props.items():
        if index in taken:
            continue
        torch_uuid = getattr(props, "uuid", None)
        if uuid and torch_uuid is not None and _norm_uuid(torch_uuid) == _norm_uuid(uuid):
            return index
        if bus and _pci_matches(bus, props):
            return index
    return None


def _pci_matches(bus_id: str, props: Any) -> bool:
    domain, bus, device = (getattr(props, f"pci_{k}_id", None) for k in ("domain", "bus", "device"))
    if None in (domain, bus, device):
        return False
    try:  # NVML: "00000000:18:00.0" = domain:bus:device.function, hexadecimal
        dom_text, bus_text, rest = bus_id.split(":")
        return (int(dom_text, 16), int(bus_text, 16), int(rest.split(".")[0], 16)) == (domain, bus, device)
    except ValueError:
        return False


def _torch_fields(s: _Section, props: Any, torch_index: int | None, reason: str | None) -> None:
    why = reason or "torch does not report it"
    s.set("torch_index", torch_index, why)
    if props is None:
        for key in ("sm_count", "compute_capability", "l2_cache_bytes"):
            s.set(key, None, why)
        return
    s.set("sm_count", getattr(props, "multi_processor_count", None), "torch reports no SM count")
    major, minor = getattr(props, "major", None), getattr(props, "minor", None)
    cc = f"{major}.{minor}" if major is not None and minor is not None else None
    s.set("compute_capability", cc, "torch reports no compute capability")
    s.set("l2_cache_bytes", getattr(props, "L2_cache_size", None) or None, "torch reports no L2 size")
    arch = getattr(props, "gcnArchName", None)  # ROCm: "gfx942:sramecc+:xnack-"
    if arch:
        s.set("gcn_arch", arch)
    if s.values.get("memory_total_bytes") is None and getattr(props, "total_memory", None):
        s.set("memory_total_bytes", int(props.total_memory))
