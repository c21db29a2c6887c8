"""aibench.device.env: the fingerprint is JSON-safe, never invents a value, and survives NVML failures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aibench.device import env as env_mod
from aibench.device.env import collect_environment, environment_sha256

SECTIONS = ("aibench", "python", "software", "cpu", "memory", "os", "host")


class FakeNvml:
    """A stand-in `pynvml` module: N fake H100s; `fail[(function, index)]` raises NVMLError."""

    def __init__(self, count: int = 2, fail: dict[tuple[str, int | None], str] | None = None,
                 init_error: bool = False) -> None:
        self.count, self.fail, self.init_error = count, fail or {}, init_error
        self.calls: list[str] = []

    def module(self) -> types.ModuleType:
        mod = types.ModuleType("pynvml")

        class NVMLError(Exception):
            pass

        class NVMLError_NotSupported(NVMLError):
            pass

        mod.NVMLError = NVMLError  # type: ignore[attr-defined]
        mod.NVMLError_NotSupported = NVMLError_NotSupported  # type: ignore[attr-defined]
        mod.NVML_CLOCK_SM, mod.NVML_CLOCK_MEM = 1, 2  # type: ignore[attr-defined]

        def fn(name: str, result: Any) -> Any:
            def call(*args: Any) -> Any:
                self.calls.append(name)
                index = args[0] if args and isinstance(args[0], int) else None
                for key in ((name, index), (name, None)):
                    if key in self.fail:
                        raise NVMLError_NotSupported(self.fail[key])
                return result(*args) if callable(result) else result
            return call

        def init() -> None:
            self.calls.append("nvmlInit")
            if self.init_error:
                raise NVMLError("Driver Not Loaded")

        mod.nvmlInit = init  # type: ignore[attr-defined]
        table: dict[str, Any] = {
            "nvmlShutdown": None,
            "nvmlDeviceGetCount": self.count,
            "nvmlDeviceGetHandleByIndex": lambda i: i,
            "nvmlDeviceGetName": b"NVIDIA H100 80GB HBM3",  # old bindings return bytes
            "nvmlDeviceGetUUID": lambda h: f"GPU-0000000{h}-1111-2222-3333-444444444444",
            "nvmlDeviceGetMemoryInfo": SimpleNamespace(total=81559 * 2**20, used=0, free=81559 * 2**20),
            "nvmlDeviceGetClockInfo": lambda h, kind: 1980 if kind == 1 else 2619,
            "nvmlDeviceGetMaxClockInfo": lambda h, kind: 1980 if kind == 1 else 2619,
            "nvmlDeviceGetApplicationsClock": lambda h, kind: 1755 if kind == 1 else 2619,
            "nvmlDeviceGetPowerManagementLimit": 650_000,  # milliwatts
            "nvmlDeviceGetPowerManagementDefaultLimit": 700_000,
            "nvmlDeviceGetEnforcedPowerLimit": 500_000,  # an out-of-band cap under the 650 W limit
            "nvmlDeviceGetEccMode": (1, 1),
            "nvmlDeviceGetMigMode": (0, 0),
            "nvmlDeviceGetPersistenceMode": 1,
            "nvmlDeviceGetPciInfo": lambda h: SimpleNamespace(busId=f"00000000:{0x18 + h:02X}:00.0".encode()),
            "nvmlDeviceGetMaxPcieLinkGeneration": 5,
            "nvmlDeviceGetMaxPcieLinkWidth": 16,
            "nvmlDeviceGetVbiosVersion": "96.00.99.00.01",
            "nvmlSystemGetDriverVersion": "550.54.15",
            "nvmlSystemGetCudaDriverVersion": 12040,
            "nvmlSystemGetNVMLVersion": "12.550.54.15",
        }
        for name, result in table.items():
            setattr(mod, name, fn(name, result))
        return mod


@pytest.fixture
def no_torch_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env_mod, "_torch_devices", lambda: ({}, "torch sees no CUDA/ROCm device"))


def _install(monkeypatch: pytest.MonkeyPatch, fake: FakeNvml) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())


def _assert_reasons(section: dict[str, Any], where: str) -> None:
    """Every None has a non-empty reason next to it; every reason belongs to a None."""
    reasons = section["unavailable"]
    for key, value in section.items():
        if key != "unavailable" and value is None:
            assert reasons.get(key), f"{where}.{key} is None without a reason"
    for key in reasons:
        assert section.get(key) is None, f"{where}: reason for {key} but it has a value"


def test_cpu_machine_json_safe_with_reasons(monkeypatch: pytest.MonkeyPatch, no_torch_gpu: None) -> None:
    _install(monkeypatch, FakeNvml(init_error=True))  # as on a machine without the driver
    env = collect_environment()
    text = json.dumps(env, allow_nan=False)
    assert json.loads(text) == env
    for name in (*SECTIONS, "gpus", "env_vars"):
        assert name in env
    assert env["gpus"] == []
    assert "Driver Not Loaded" in env["unavailable"]["gpus"]
    sw = env["software"]
    assert sw["driver_version"] is None and "Driver Not Loaded" in sw["unavailable"]["driver_version"]
    assert sw["torch"] and sw["triton"]
    for name in SECTIONS:
        _assert_reasons(env[name], name)
    assert env["cpu"]["logical_cores"] >= 1
    assert env["memory"]["total_bytes"] is None or env["memory"]["total_bytes"] > 0


def test_pynvml_not_installed(monkeypatch: pytest.MonkeyPatch, no_torch_gpu: None) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    env = collect_environment()
    assert env["gpus"] == []
    assert "pynvml is not installed" in env["software"]["unavailable"]["driver_version"]


def test_fake_gpus_come_through(monkeypatch: pytest.MonkeyPatch, no_torch_gpu: None) -> None:
    fake = FakeNvml(count=2)
    _install(monkeypatch, fake)
    env = collect_environment()
    json.dumps(env, allow_nan=False)
    assert env["software"]["driver_version"] == "550.54.15"
    assert env["software"]["cuda_driver_version"] == "12.4"
    assert len(env["gpus"]) == 2
    gpu = env["gpus"][1]
    assert gpu["index"] == 1
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["uuid"].startswith("GPU-00000001")
    assert gpu["memory_total_bytes"] == 81559 * 2**20
    assert (gpu["max_sm_clock_mhz"], gpu["max_mem_clock_mhz"]) == (1980, 2619)
    assert (gpu["app_sm_clock_mhz"], gpu["app_mem_clock_mhz"]) == (1755, 2619)
    assert (gpu["power_limit_w"], gpu["default_power_limit_w"]) == (650.0, 700.0)
    assert gpu["enforced_power_limit_w"] == 500.0  # what the driver enforces, all limiters included
    assert gpu["ecc_enabled"] is True and gpu["mig_enabled"] is False
    assert gpu["pci_bus_id"] == "00000000:19:00.0"
    assert gpu["vbios_version"] == "96.00.99.00.01"
    assert (gpu["pcie_max_link_gen"], gpu["pcie_max_link_width"]) == (5, 16)
    # torch does not see these GPUs: its fields are None with the reason, not guessed.
    assert gpu["sm_count"] is None and gpu["torch_index"] is None
    assert gpu["unavailable"]["sm_count"]
    _assert_reasons(gpu, "gpus[1]")
    assert fake.calls[0] == "nvmlInit" and fake.calls[-1] == "nvmlShutdown"


def test_nvml_error_on_one_field_costs_that_field_only(monkeypatch: pytest.MonkeyPatch,
                                                       no_torch_gpu: None) -> None:
    fake = FakeNvml(count=2, fail={("nvmlDeviceGetPowerManagementDefaultLimit", 1): "Not Supported",
                                   ("nvmlSystemGetNVMLVersion", None): "Not Supported"})
    _install(monkeypatch, fake)
    env = collect_environment()
    bad, good = env["gpus"][1], env["gpus"][0]
    assert bad["default_power_limit_w"] is None
    reason = bad["unavailable"]["default_power_limit_w"]
    assert "nvmlDeviceGetPowerManagementDefaultLimit" in reason and "Not Supported" in reason
    assert bad["power_limit_w"] == 650.0 and bad["name"] == "NVIDIA H100 80GB HBM3"
    # Only that field, and the torch fields of a GPU torch does not see.
    assert set(bad["unavailable"]) == {"default_power_limit_w", "sm_count", "compute_capability",
                                       "l2_cache_bytes", "torch_index"}
    assert good["default_power_limit_w"] == 700.0
    assert env["software"]["nvml_version"] is None
    assert env["software"]["driver_version"] == "550.54.15"


def test_handle_failure_leaves_device_listed_with_reasons(monkeypatch: pytest.MonkeyPatch,
                                                          no_torch_gpu: None) -> None:
    _install(monkeypatch, FakeNvml(count=1, fail={("nvmlDeviceGetHandleByIndex", 0): "GPU is lost"}))
    gpu = collect_environment()["gpus"][0]
    assert gpu["name"] is None and "GPU is lost" in gpu["unavailable"]["name"]
    _assert_reasons(gpu, "gpus[0]")


def test_torch_view_is_matched_by_uuid_not_position(monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, FakeNvml(count=2))
    # CUDA_VISIBLE_DEVICES=1: torch's device 0 is NVML's device 1.
    props = SimpleNamespace(uuid="00000001-1111-2222-3333-444444444444", multi_processor_count=132,
                            major=9, minor=0, L2_cache_size=50 * 2**20, total_memory=80 * 2**30,
                            name="NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(env_mod, "_torch_devices", lambda: ({0: props}, None))
    gpus = collect_environment()["gpus"]
    assert len(gpus) == 2
    assert gpus[1]["torch_index"] == 0 and gpus[1]["sm_count"] == 132
    assert gpus[1]["compute_capability"] == "9.0" and gpus[1]["l2_cache_bytes"] == 50 * 2**20
    assert gpus[0]["torch_index"] is None and gpus[0]["sm_count"] is None


def test_torch_only_device_when_nvml_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    props = SimpleNamespace(multi_processor_count=304, major=9, minor=4, L2_cache_size=4 * 2**20,
                            total_memory=192 * 2**30, name="AMD Instinct MI300X", gcnArchName="gfx942:sramecc+")
    monkeypatch.setattr(env_mod, "_torch_devices", lambda: ({0: props}, None))
    env = collect_environment()
    (gpu,) = env["gpus"]
    assert gpu["name"] == "AMD Instinct MI300X" and gpu["sm_count"] == 304
    assert gpu["memory_total_bytes"] == 192 * 2**30 and gpu["gcn_arch"].startswith("gfx942")
    assert gpu["power_limit_w"] is None and "pynvml" in gpu["unavailable"]["power_limit_w"]
    assert "gpus" not in env["unavailable"]
    _assert_reasons(gpu, "gpus[0]")


def test_env_vars_recorded_and_secrets_never(monkeypatch: pytest.MonkeyPatch, no_torch_gpu: None) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    monkeypatch.setenv("NCCL_ALGO", "Ring")
    monkeypatch.setenv("AIBENCH_SIGNING_KEY", "do-not-leak")
    monkeypatch.setenv("NCCL_IB_PASSWORD", "do-not-leak")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    variables = collect_environment()["env_vars"]
    assert variables["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert variables["NCCL_ALGO"] == "Ring"
    assert variables["TRITON_INTERPRET"] is None  # watched, not set
    assert "do-not-leak" not in json.dumps(variables)


def test_sha256_is_canonical() -> None:
    a = {"x": 1, "y": {"b": [1, 2], "a": None}}
    b = {"y": {"a": None, "b": [1, 2]}, "x": 1}
    assert environment_sha256(a) == environment_sha256(b)
    assert len(environment_sha256(a)) == 64
    assert environment_sha256(a) != environment_sha256({**a, "x": 2})


def test_sha256_of_a_real_fingerprint_is_stable(monkeypatch: pytest.MonkeyPatch, no_torch_gpu: None) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    env = collect_environment()
    assert environment_sha256(env) == environment_sha256(json.loads(json.dumps(env)))


def test_sha256_stable_while_clocks_move_and_changes_with_settings(monkeypatch: pytest.MonkeyPatch,
                                                                  no_torch_gpu: None) -> None:
    """Two runs on one machine: the current SM clock is 345 MHz idle, 1980 MHz just after work.
    That reading (the idle baseline records it) must not change the fingerprint; the settings
    that change numbers (application clocks, power limit, versions) must."""
    fake = FakeNvml(count=1)
    module = fake.module()
    readings = iter([345, 1980])
    clock_info = module.nvmlDeviceGetClockInfo
    module.nvmlDeviceGetClockInfo = lambda h, kind: next(readings) if kind == 1 else clock_info(h, kind)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    first, second = collect_environment(), collect_environment()
    assert environment_sha256(first) == environment_sha256(second)
    assert first["gpus"][0]["app_sm_clock_mhz"] == 1755
    module.nvmlDeviceGetApplicationsClock = lambda h, kind: 1410 if kind == 1 else 2619  # nvidia-smi -ac
    assert environment_sha256(collect_environment()) != environment_sha256(first)
    newer = {**first, "software": {**first["software"], "triton": "9.9.9"}}
    assert environment_sha256(newer) != environment_sha256(first)


def test_cpu_frequency_governor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_torch_gpu: None) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    for cpu, governor in (("cpu0", "performance"), ("cpu1", "performance"), ("cpu2", "powersave")):
        (tmp_path / cpu / "cpufreq").mkdir(parents=True)
        (tmp_path / cpu / "cpufreq" / "scaling_governor").write_text(governor + "\n")
    (tmp_path / "cpufreq").mkdir()  # the policy folder, not a CPU
    monkeypatch.setattr(env_mod, "_CPU_SYSFS", tmp_path)
    cpu = collect_environment()["cpu"]
    assert cpu["governor"] == "performance,powersave"  # every governor in use, sorted
    (tmp_path / "cpu2" / "cpufreq" / "scaling_governor").write_text("performance\n")
    assert collect_environment()["cpu"]["governor"] == "performance"
    monkeypatch.setattr(env_mod, "_CPU_SYSFS", tmp_path / "absent")
    cpu = collect_environment()["cpu"]
    assert cpu["governor"] is None and "cpufreq" in cpu["unavailable"]["governor"]
    _assert_reasons(cpu, "cpu")


def test_git_state_outside_a_checkout(tmp_path: Path) -> None:
    commit, dirty, reason = env_mod._git_state(tmp_path)
    assert commit is None and dirty is None and reason


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_state_of_a_checkout(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "aibench").mkdir()
    (tmp_path / "aibench" / "f.py").write_text("a")
    git("add", "aibench/f.py")
    git("commit", "-q", "-m", "first")
    commit, dirty, reason = env_mod._git_state(tmp_path.resolve())
    assert reason is None and dirty is False and commit is not None and len(commit) == 40
    (tmp_path / "results.json").write_text("{}")  # untracked outside the code: still clean
    assert env_mod._git_state(tmp_path.resolve())[1] is False
    (tmp_path / "aibench" / "new.py").write_text("b")  # untracked code: dirty
    assert env_mod._git_state(tmp_path.resolve())[1] is True
    (tmp_path / "aibench" / "new.py").unlink()
    (tmp_path / "aibench" / "f.py").write_text("b")  # modified code: dirty
    assert env_mod._git_state(tmp_path.resolve())[1] is True
    # A subfolder of a checkout is not a checkout of aibench.
    sub = tmp_path / "sub"
    sub.mkdir()
    assert env_mod._git_state(sub.resolve())[0] is None


def test_cpu_topology_parsing() -> None:
    info = [("processor", "0"), ("physical id", "0"), ("core id", "0"),
            ("processor", "1"), ("physical id", "0"), ("core id", "0"),  # SMT sibling
            ("processor", "2"), ("physical id", "1"), ("core id", "0"),
            ("processor", "3"), ("physical id", "1"), ("core id", "1")]
    assert env_mod._topology(info) == (2, 3)
    assert env_mod._topology([("processor", "0")]) == (None, None)


@pytest.mark.gpu
def test_real_gpu_fingerprint() -> None:
    """On a GPU machine: NVML and torch agree on the device torch uses, and nothing is invented."""
    import torch

    env = collect_environment()
    json.dumps(env, allow_nan=False)
    seen = [g for g in env["gpus"] if g["torch_index"] is not None]
    assert len(seen) == torch.cuda.device_count()
    gpu = next(g for g in seen if g["torch_index"] == 0)
    props = torch.cuda.get_device_properties(0)
    assert gpu["sm_count"] == props.multi_processor_count
    assert gpu["memory_total_bytes"] and gpu["memory_total_bytes"] >= props.total_memory
    if not torch.version.hip:
        assert gpu["name"] == props.name and gpu["uuid"] and gpu["pci_bus_id"]
        assert env["software"]["driver_version"] and env["software"]["cuda_runtime"] == torch.version.cuda
    for i, g in enumerate(env["gpus"]):
        _assert_reasons(g, f"gpus[{i}]")
    for name in SECTIONS:
        _assert_reasons(env[name], name)
