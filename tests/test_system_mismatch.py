"""bundle.system_check: a system description contradicting the environment fingerprint is an error finding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aibench.bundle.system_check import model_ids, system_findings


def _manifest(system: dict[str, Any], gpus: list[str]) -> dict[str, Any]:
    return {"system": system, "environment": {"gpus": [{"name": n, "memory_total_bytes": None} for n in gpus]}}


@pytest.mark.parametrize(("claimed", "driver"), [
    ("NVIDIA H100-SXM-80GB", "NVIDIA H100 80GB HBM3"),
    ("AMD Instinct MI300X-NPS1-SPX-192GB-750W", "AMD Instinct MI300X"),
    ("NVIDIA GH200 Grace Hopper Superchip 144GB", "NVIDIA GH200 480GB"),
])
def test_vendor_and_driver_names_of_one_model_agree(claimed: str, driver: str) -> None:
    assert system_findings(_manifest({"accelerator_model_name": claimed, "accelerators_per_node": 8},
                                     [driver] * 8)) == []


def test_another_model_is_a_mismatch() -> None:
    found = system_findings(_manifest({"accelerator_model_name": "NVIDIA H200-SXM-141GB",
                                       "accelerators_per_node": 8}, ["NVIDIA H100 80GB HBM3"] * 8))
    assert [(f.severity, f.code) for f in found] == [("error", "system_mismatch")]
    assert "H200-SXM-141GB" in found[0].message and "H100 80GB HBM3" in found[0].message


@pytest.mark.parametrize(("claimed", "gpus"), [(8, 1), ("8", 4), (0, 2), (4, 0)])
def test_another_count_is_a_mismatch(claimed: Any, gpus: int) -> None:
    found = system_findings(_manifest({"accelerators_per_node": claimed}, ["NVIDIA H100 80GB HBM3"] * gpus))
    assert [f.code for f in found] == ["system_mismatch"]
    assert f"found {gpus}" in found[0].message


def test_nothing_to_contradict() -> None:
    assert system_findings({"system": {"accelerators_per_node": 8}, "environment": {}}) == []
    assert system_findings(_manifest({"accelerators_per_node": "8"}, ["NVIDIA H100"] * 8)) == []
    assert model_ids("HBM3 NPS1 PCIe Gen5") == set()


def test_the_report_shows_the_mismatch_of_a_run_directory(tmp_path: Path) -> None:
    from aibench.bundle.load import load_run
    from aibench.report import build_report
    from aibench.results.rundir import RunDir

    def run(root: Path, claimed: str) -> Path:
        r = RunDir.create(root, "t", {
            "comparable": True, "preview": False, "device": {"spec": "cuda:0", "kind": "cuda", "name": "NVIDIA H100"},
            "environment": {"gpus": [{"name": "NVIDIA H100 80GB HBM3"}] * 8, "software": {"torch": "2.11.0"}},
            "environment_sha256": "x", "system": {"accelerator_model_name": claimed, "accelerators_per_node": 8},
            "suite": {"name": "gigafactory", "version": "1.0.0", "sha256": "ab" * 32, "mode": "full"}})
        r.finish(complete=True)
        return r.path

    lying = build_report([load_run(run(tmp_path / "a", "NVIDIA B200-SXM-180GB"))])
    assert any("SYSTEM_MISMATCH" in w and "B200" in w for w in lying.warnings)
    honest = build_report([load_run(run(tmp_path / "b", "NVIDIA H100-SXM-80GB"))])
    assert not any("SYSTEM_MISMATCH" in w for w in honest.warnings)
