"""Which physical GPU a sampler reads: never another GPU than the one torch runs on.

CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES renumber torch's devices while
NVML and amdsmi list every GPU of the node in their own order: a case on the 4th GPU charged the
(idle) energy of the 1st would look four times as efficient.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch
from load_helpers import FAKE_PYNVML, load_module

from aibench.telemetry import nvml as nvml_module
from aibench.telemetry import open_telemetry
from aibench.telemetry.nvml import nvml_index_for

_VISIBILITY = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")


fake = load_module("aibench_test_fake_pynvml_mapping", FAKE_PYNVML)
core_tests = load_module("aibench_test_core_mapping", Path(__file__).parent / "test_telemetry_core.py")


@pytest.fixture
def no_visibility(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VISIBILITY:
        monkeypatch.delenv(name, raising=False)


def test_an_unlisted_uuid_in_cuda_visible_devices_is_not_a_position(
    monkeypatch: pytest.MonkeyPatch, no_visibility: None
) -> None:
    """CUDA_VISIBLE_DEVICES=MIG-... (or a GPU UUID NVML does not list): torch's cuda:0 is not
    NVML's GPU 0; mapping it there measured another GPU."""
    nvml = fake.make_module(fake.FakeClock(), device_count=4)
    monkeypatch.setattr(nvml_module, "_torch_uuid", lambda index: None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-7a1b2c3d-0000-5555-8888-0123456789ab")
    assert nvml_index_for(0, nvml, 4) is None
    tele = open_telemetry([torch.device("cuda", 0)], nvml=nvml, inline=True)
    assert tele.available is False and "no NVML device matches cuda:0" in tele.reason
    # A listed UUID still maps, and plain positions still apply.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-00000003-aaaa")
    assert nvml_index_for(0, nvml, 4) == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert nvml_index_for(1, nvml, 4) == 3


def _amdsmi_with_bdfs(bdfs: list[str]) -> ModuleType:
    smi = core_tests._fake_amdsmi()
    smi.amdsmi_get_processor_handles = lambda: [f"gpu{i}" for i in range(len(bdfs))]  # type: ignore[attr-defined]
    smi.amdsmi_get_gpu_device_bdf = lambda h: bdfs[int(h[3:])]  # type: ignore[attr-defined]
    return smi


def _torch_pci(monkeypatch: pytest.MonkeyPatch, buses: dict[int, int]) -> None:
    """torch's cuda:i sits on PCI bus buses[i] (as hipDeviceProp reports it)."""
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: SimpleNamespace(pci_domain_id=0, pci_bus_id=buses[i], pci_device_id=0))


def test_amd_devices_follow_hip_visible_devices_by_pci_address(
    monkeypatch: pytest.MonkeyPatch, no_visibility: None
) -> None:
    smi = _amdsmi_with_bdfs(["0000:05:00.0", "0000:26:00.0", "0000:46:00.0", "0000:65:00.0"])
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "2")
    _torch_pci(monkeypatch, {0: 0x46})  # torch's only device is the node's third GPU
    tele = open_telemetry([torch.device("cuda", 0)], amdsmi=smi, inline=True)
    assert tele.available, tele.reason
    assert tele.readers[0].handle == "gpu2" and tele.readers[0].info["index"] == 0
    tele.close()


def test_amd_device_that_cannot_be_matched_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, no_visibility: None
) -> None:
    smi = _amdsmi_with_bdfs(["0000:05:00.0", "0000:26:00.0"])
    monkeypatch.setenv("ROCR_VISIBLE_DEVICES", "1")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace())  # no PCI fields
    tele = open_telemetry([torch.device("cuda", 0)], amdsmi=smi, inline=True)
    assert tele.available is False
    assert "ROCR_VISIBLE_DEVICES" in tele.reason and "cuda:0" in tele.reason


def test_amd_without_visibility_variables_keeps_handle_order(no_visibility: None) -> None:
    smi = _amdsmi_with_bdfs(["0000:05:00.0", "0000:26:00.0"])
    tele = open_telemetry([torch.device("cuda", 1)], amdsmi=smi, inline=True)
    assert tele.available and tele.readers[0].handle == "gpu1"
    tele.close()
