"""RAPL path against a tmp folder laid out like /sys/class/powercap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aibench.telemetry import open_telemetry
from aibench.telemetry.rapl import open_rapl

CPU = torch.device("cpu")
MAX_RANGE = 262143328850  # a typical max_energy_range_uj


class FakeClock:
    def __init__(self) -> None:
        self.now_us = 0

    def __call__(self) -> float:
        return self.now_us / 1e6

    def advance(self, seconds: float) -> None:
        self.now_us += round(seconds * 1e6)


def _domain(root: Path, entry: str, name: str, energy_uj: int, max_range: int = MAX_RANGE) -> Path:
    path = root / entry
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range}\n")
    return path


def _set(path: Path, energy_uj: int) -> None:
    (path / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def powercap(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "powercap"
    pkg0 = _domain(root, "intel-rapl:0", "package-0", MAX_RANGE - 30_000_000)  # wraps in the window
    pkg1 = _domain(root, "intel-rapl:1", "package-1", 5_000_000)
    _domain(root, "intel-rapl:0:0", "core", 1)  # a subdomain: part of package-0, not counted again
    _domain(root, "intel-rapl-mmio:0", "package-0", 7)  # the MMIO view of the same package: ignored
    return {"root": root, "pkg0": pkg0, "pkg1": pkg1}


def test_energy_over_a_wrap_around(powercap: dict[str, Path]) -> None:
    clock = FakeClock()
    tele = open_telemetry([CPU], rapl_root=powercap["root"], clock=clock, sleep=clock.advance, inline=True)
    assert tele.available and tele.source == "rapl"
    state = {"pkg0": MAX_RANGE - 30_000_000, "pkg1": 5_000_000}

    def fn() -> None:
        # 0.1 s at 200 W on package-0 (20 J) and 50 W on package-1 (5 J).
        clock.advance(0.1)
        state["pkg0"] = (state["pkg0"] + 20_000_000) % MAX_RANGE
        state["pkg1"] += 5_000_000
        _set(powercap["pkg0"], state["pkg0"])
        _set(powercap["pkg1"], state["pkg1"])

    result = tele.measure_energy(fn, lambda: None, min_duration_s=1.0, work={"images": 2})
    s = result.summary
    json.dumps(s, allow_nan=False)
    assert s["calls"] == 10 and s["duration_s"] == 1.0
    assert s["method"] == "counter"
    assert s["energy_j"] == 250.0  # 10 x (20 + 5) J, package-0 wrapped on the 2nd call
    assert s["energy_per_call_j"] == 25.0
    assert s["per_unit"] == {"j_per_image": 12.5, "images_per_j": 0.08}
    (dev,) = s["devices"]
    assert dev["counted_domains"] == ["package-0", "package-1"]
    assert dev["domains"] == ["package-0", "package-1"]
    assert dev["power_field"] == "power_w"
    assert dev["peak_power_w"] == pytest.approx(250.0)
    assert dev["throttle"] is None  # RAPL has no clock-event reasons
    last = result.samples[-1]
    assert last["rapl_package-0_uj"] == 200_000_000 and last["rapl_package-1_uj"] == 50_000_000


def test_unreadable_energy_is_unavailable_with_reason(
    powercap: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Path.read_text

    def deny(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", deny)
    tele = open_telemetry([CPU], rapl_root=powercap["root"])
    assert tele.available is False
    assert "permission denied" in tele.reason and "intel-rapl:0" in tele.reason


def test_no_domains(tmp_path: Path) -> None:
    tele = open_telemetry([CPU], rapl_root=tmp_path)
    assert tele.available is False and tele.reason == f"no RAPL domains under {tmp_path}"
    missing = open_telemetry([CPU], rapl_root=tmp_path / "absent")
    assert missing.available is False and "no RAPL domains" in missing.reason


def test_psys_counted_only_without_packages(tmp_path: Path) -> None:
    _domain(tmp_path, "intel-rapl:0", "psys", 0)
    assert open_rapl(tmp_path).counted == ["psys"]
    _domain(tmp_path, "intel-rapl:1", "package-0", 0)
    assert open_rapl(tmp_path).counted == ["package-0"]


def test_a_failed_read_leaves_a_gap_not_a_zero(powercap: dict[str, Path]) -> None:
    reader = open_rapl(powercap["root"])
    _set(powercap["pkg1"], 6_000_000)
    row = reader.read(0.01, True)
    assert row["rapl_package-1_uj"] == 1_000_000
    (powercap["pkg1"] / "energy_uj").write_text("garbage\n")
    row = reader.read(0.02, True)
    assert row["rapl_package-1_uj"] is None and row["energy_counter_uj"] is None and row["power_w"] is None
    assert "ValueError" in reader.unavailable["rapl_package-1_uj"]
    _set(powercap["pkg1"], 8_000_000)
    assert reader.read(0.03, True)["rapl_package-1_uj"] == 3_000_000  # the gap's energy is kept
