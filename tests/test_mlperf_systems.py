"""Real MLPerf Inference system descriptions (tests/data/mlperf_systems/README.md) load as vendors wrote them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aibench.cli import cli
from aibench.device.system import SystemDescriptionError, build_system_description, required_fields

DATA = Path(__file__).parent / "data" / "mlperf_systems"
FILES = sorted(DATA.glob("*.json"))


def test_six_vendors_are_here() -> None:
    assert len(FILES) == 6
    submitters = {json.loads(p.read_text("utf-8"))["submitter"] for p in FILES}
    assert submitters == {"NVIDIA", "AMD", "Intel", "Google"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_published_file_loads_and_keeps_every_field(path: Path) -> None:
    given = json.loads(path.read_text("utf-8"))
    desc = build_system_description(path, {})
    assert desc["missing"] == [] and desc["source"] == str(path)
    for key, value in given.items():  # extra vendor fields (disk_drives, nics_enabled_os...) are kept
        expected = int(value) if key in ("number_of_nodes", "host_processors_per_node",
                                         "host_processor_core_count", "accelerators_per_node") else value
        assert desc[key] == expected, key


def test_cpu_only_and_object_stack() -> None:
    intel = build_system_description(DATA / "Intel_1-node-2S-EMR-PyTorch.json", {})
    assert intel["accelerators_per_node"] == 0
    google = build_system_description(DATA / "Google_tpu_v6_x4_flax.json", {})
    assert google["other_software_stack"] == {"JAX TPU runtime": "flax==0.8.5, jax[tpu]==0.4.30"}


def test_required_is_mlperfs_list() -> None:
    # tools/submission/submission_checker.py, SYSTEM_DESC_REQUIRED_FIELDS (v4.1+): 33 keys
    fields = required_fields()
    assert len(fields) == 33 and "host_storage_capacity" in fields and "accelerator_on-chip_memories" in fields


def _variant(tmp_path: Path, **changes: Any) -> Path:
    data = json.loads((DATA / "NVIDIA_DGX-H100_H100-SXM-80GBx8_TRT.json").read_text("utf-8"))
    for key, value in changes.items():
        if value is None:
            data.pop(key.replace("__", "-"))
        else:
            data[key.replace("__", "-")] = value
    path = tmp_path / "system.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(("changes", "message"), [
    ({"accelerators_per_node": -1}, "accelerators_per_node: expected a whole number >= 0"),
    ({"number_of_nodes": 0}, "number_of_nodes: expected a whole number >= 1"),
    ({"other_software_stack": ["CUDA"]}, "other_software_stack"),
    ({"other_software_stack": {"CUDA": 12}}, "other_software_stack"),
    ({"submitter": ""}, "submitter: '' should be non-empty"),
    ({"disk_drives": [1]}, "disk_drives"),
    ({"host_storage_capacity": None}, "missing required fields: host_storage_capacity"),
])
def test_wrong_types_are_still_rejected(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SystemDescriptionError) as info:
        build_system_description(_variant(tmp_path, **changes), {})
    assert message in str(info.value)


def test_plan_validates_the_system_file(tmp_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(cli, ["suite", "smoke", "--plan", "--system", str(DATA / "AMD_8xMI300X_2xEPYC-9374F.json")])
    assert good.exit_code == 0, good.output
    bad = runner.invoke(cli, ["suite", "smoke", "--plan", "--system", str(_variant(tmp_path, number_of_nodes="x"))])
    assert bad.exit_code != 0
    assert "number_of_nodes: expected a whole number >= 1" in bad.output
