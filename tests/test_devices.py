"""Device parsing and the datasheet table: a known name gets its row, an unknown one none."""

from __future__ import annotations

import pytest
import torch

from aibench.core.errors import UsageError
from aibench.device import devices
from aibench.device.specs import match_spec


@pytest.mark.parametrize(("name", "row", "bf16", "bw"), [
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5 80GB", 989.4, 3350),
    ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe 80GB", 756, 2000),
    ("NVIDIA H200", "NVIDIA H200 SXM 141GB", 989.4, 4800),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 SXM4 80GB", 312, 2039),
    ("AMD Instinct MI300X", "AMD Instinct MI300X", 1307.4, 5300),
])
def test_known_devices_match_their_datasheet_row(name: str, row: str, bf16: float, bw: float) -> None:
    spec = match_spec(name)
    assert spec is not None and spec.name == row
    assert spec.peak_for("bfloat16") == bf16 and spec.bandwidth_gbps == bw
    assert "hardware.md" in spec.source


@pytest.mark.parametrize("name", ["NVIDIA GeForce RTX 4090", "Tesla T4", "", None, "AMD EPYC 7763"])
def test_unknown_devices_get_no_row(name: str | None) -> None:
    assert match_spec(name) is None


def test_a100_has_no_fp8_peak() -> None:
    assert match_spec("NVIDIA A100-SXM4-80GB").peak_for("float8_e4m3fn") is None


def test_resolve_cpu_and_errors() -> None:
    assert devices.resolve("cpu") == torch.device("cpu")
    assert devices.resolve(" CPU ") == torch.device("cpu")
    with pytest.raises(UsageError, match="unknown device"):
        devices.resolve("tpu:0")
    if not torch.cuda.is_available():
        assert devices.resolve("auto") == torch.device("cpu")
        with pytest.raises(UsageError, match="no CUDA/ROCm GPU"):
            devices.resolve("cuda:1")
    assert devices.spec_for(torch.device("cpu")) is None
    info = devices.describe(torch.device("cpu"))
    assert info.kind == "cpu" and not info.is_gpu and info.name


@pytest.mark.parametrize(
    ("hip", "arch", "l2", "expected"),
    [
        (None, "", 50 * 2**20, 50 * 2**20),  # NVIDIA H100: the L2 torch reports
        ("6.4", "gfx942:sramecc+:xnack-", 4 * 2**20, 8 * 4 * 2**20 + 256 * 2**20),  # MI300X: 8 L2s + Infinity Cache
        ("6.4", "gfx950:sramecc+:xnack-", 4 * 2**20, 8 * 4 * 2**20 + 256 * 2**20),  # MI355X
        ("6.4", "gfx90a:sramecc+:xnack-", 8 * 2**20, 8 * 2**20),  # MI250X: no Infinity Cache
        (None, "", 0, None),  # torch reports no L2
    ],
    ids=["h100", "mi300x", "mi355x", "mi250x", "unknown"],
)
def test_cache_bytes_counts_what_can_hold_operands(monkeypatch: pytest.MonkeyPatch, hip: str | None, arch: str,
                                                   l2: int, expected: int | None) -> None:
    props = type("Props", (), {"L2_cache_size": l2, "gcnArchName": arch})()
    monkeypatch.setattr(torch.version, "hip", hip)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
    assert devices.l2_cache_bytes(torch.device("cuda")) == (l2 or None)
    assert devices.cache_bytes(torch.device("cuda")) == expected
    assert devices.cache_bytes(torch.device("cpu")) is None


# Names torch/NVML report for parts that share a chip with a datasheet row but not its numbers:
# the NVL boards (H100 NVL 835 TFLOP/s bf16, 3.9 TB/s; H200 NVL 600 W), Grace Hopper (GH200:
# its own HBM and power), the A100 PCIe board (1.935 TB/s, 300 W) and MIG slices (a fraction of
# the SMs and of the memory bandwidth). Matching them to the SXM rows would print a % of peak
# against numbers they cannot reach: no row, hence no percentage.
@pytest.mark.parametrize("name", [
    "NVIDIA H100 NVL",
    "NVIDIA H200 NVL",
    "NVIDIA GH200 480GB",
    "NVIDIA GH200 144G HBM3e",
    "NVIDIA A100 80GB PCIe",
    "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
    "NVIDIA H200 MIG 3g.71gb",
    "NVIDIA A100-SXM4-80GB MIG 2g.20gb",
])
def test_other_boards_of_a_known_chip_get_no_row(name: str) -> None:
    assert match_spec(name) is None


@pytest.mark.parametrize(("name", "row"), [
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5 80GB"),
    ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe 80GB"),
    ("NVIDIA H200", "NVIDIA H200 SXM 141GB"),
    ("NVIDIA B200", "NVIDIA B200 (HGX)"),
    ("NVIDIA L40S", "NVIDIA L40S"),
    ("AMD Instinct MI300X", "AMD Instinct MI300X"),
    ("AMD Instinct MI300X VF", "AMD Instinct MI300X"),  # SR-IOV virtual function: the whole chip
    ("AMD Instinct MI325X", "AMD Instinct MI325X"),
])
def test_the_names_gpus_report_keep_their_row(name: str, row: str) -> None:
    spec = match_spec(name)
    assert spec is not None and spec.name == row
