"""aibench.device.system: MLPerf-style system descriptions, filled from the fingerprint, file wins."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from aibench.core.errors import UsageError
from aibench.device.system import (
    SystemDescriptionError,
    build_system_description,
    fields_from_environment,
    required_fields,
    schema,
)

VENDOR: dict[str, Any] = {
    "division": "closed",
    "submitter": "Acme Servers",
    "status": "available",
    "system_name": "Acme X8-H100",
    "system_type": "datacenter",
    "number_of_nodes": 1,
    "host_processor_model_name": "Intel Xeon Platinum 8480+",
    "host_processors_per_node": 2,
    "host_processor_core_count": 56,
    "host_memory_capacity": "2 TB",
    "host_storage_type": "NVMe SSD",
    "host_networking": "8x 400 Gb/s InfiniBand NDR",
    "accelerators_per_node": 8,
    "accelerator_model_name": "NVIDIA H100-SXM5-80GB",
    "accelerator_memory_capacity": "80 GB",
    "accelerator_host_interconnect": "PCIe Gen5 x16",
    "accelerator_interconnect": "NVLink 4, 900 GB/s",
    "accelerator_interconnect_topology": "NVSwitch",
    "framework": "PyTorch 2.11",
    "operating_system": "Ubuntu 22.04",
    "other_software_stack": "CUDA 13.0, driver 580",
    "cooling": "air",
    "hw_notes": "",
    "sw_notes": "",
    # MLPerf's checker requires these keys too (empty where the vendor has nothing to say)
    "host_storage_capacity": "4 TB", "host_processor_frequency": "", "host_processor_caches": "",
    "host_memory_configuration": "", "host_processor_interconnect": "", "host_networking_topology": "",
    "accelerator_frequency": "", "accelerator_memory_configuration": "HBM3", "accelerator_on-chip_memories": "",
}

# The env-derived fields a vendor may leave out.
AUTO = ("accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
        "accelerator_host_interconnect", "host_processor_model_name", "host_processors_per_node",
        "host_processor_core_count", "host_memory_capacity", "operating_system", "framework",
        "other_software_stack")


def fake_env(gpus: int = 8) -> dict[str, Any]:
    gpu = {"name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 81559 * 2**20,
           "pcie_max_link_gen": 5, "pcie_max_link_width": 16, "unavailable": {}}
    return {
        "aibench": {"version": "0.1.0", "unavailable": {}},
        "python": {"version": "3.12.3", "unavailable": {}},
        "software": {"torch": "2.11.0+cu130", "triton": "3.6.0", "cuda_runtime": "13.0", "hip_runtime": None,
                     "cudnn": "91000", "nccl": "2.27.3", "driver_version": "580.65.06",
                     "unavailable": {"hip_runtime": "torch is built without ROCm"}},
        "gpus": [dict(gpu, index=i) for i in range(gpus)],
        "cpu": {"model": "Intel(R) Xeon(R) Platinum 8480+", "sockets": 2, "physical_cores": 112,
                "logical_cores": 224, "unavailable": {}},
        "memory": {"total_bytes": 2 * 1024**4, "unavailable": {}},
        "os": {"system": "Linux", "kernel": "5.15.0-119-generic", "distribution": "Ubuntu 22.04.4 LTS",
               "unavailable": {}},
        "unavailable": {},
    }


def _toml(fields: dict[str, Any]) -> str:
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())


def _validate_output(desc: dict[str, Any], partial: bool) -> None:
    errors = [e for e in jsonschema.Draft202012Validator(schema()).iter_errors(desc)
              if not (partial and e.validator == "required")]
    assert not errors, [e.message for e in errors]


def test_complete_toml_file_wins_over_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "system.toml"
    path.write_text(_toml({**VENDOR, "accelerators_per_node": "8"}), encoding="utf-8")
    desc = build_system_description(path, fake_env())
    assert desc["accelerator_model_name"] == "NVIDIA H100-SXM5-80GB"  # the file's, not NVML's
    assert desc["accelerators_per_node"] == 8  # MLPerf writes counts as strings: normalised
    assert desc["auto_filled"] == [] and desc["missing"] == []
    assert desc["source"] == str(path)
    # Where the file and the measurement disagree, the measured value is kept alongside.
    assert desc["measured_differs"]["accelerator_model_name"] == "NVIDIA H100 80GB HBM3"
    assert "accelerators_per_node" not in desc["measured_differs"]
    _validate_output(desc, partial=False)


def test_json_file_gets_the_rest_from_the_environment(tmp_path: Path) -> None:
    given = {k: v for k, v in VENDOR.items() if k not in AUTO}
    path = tmp_path / "system.json"
    path.write_text(json.dumps(given), encoding="utf-8")
    desc = build_system_description(path, fake_env(gpus=8))
    assert sorted(desc["auto_filled"]) == sorted(AUTO)
    assert desc["accelerators_per_node"] == 8
    assert desc["accelerator_model_name"] == "NVIDIA H100 80GB HBM3"
    assert desc["accelerator_memory_capacity"] == "79.6 GiB"  # as measured, never rounded to "80 GB"
    assert desc["accelerator_host_interconnect"] == "PCIe Gen5 x16"
    assert desc["host_processors_per_node"] == 2 and desc["host_processor_core_count"] == 56
    assert desc["host_memory_capacity"] == "2048.0 GiB"
    assert desc["operating_system"] == "Ubuntu 22.04.4 LTS (Linux 5.15.0-119-generic)"
    assert desc["framework"] == "PyTorch 2.11.0+cu130, CUDA 13.0, Triton 3.6.0"
    assert "driver 580.65.06" in desc["other_software_stack"] and "NCCL 2.27.3" in desc["other_software_stack"]
    _validate_output(desc, partial=False)


def test_missing_fields_are_named_in_one_error(tmp_path: Path) -> None:
    given = {k: v for k, v in VENDOR.items() if k not in ("submitter", "cooling", "accelerator_model_name")}
    path = tmp_path / "system.json"
    path.write_text(json.dumps(given), encoding="utf-8")
    with pytest.raises(SystemDescriptionError) as info:
        build_system_description(path, fake_env(gpus=0))  # no GPU: nothing fills the accelerator name
    assert isinstance(info.value, UsageError)
    assert info.value.missing == ["submitter", "accelerator_model_name", "cooling"]
    assert "missing required fields: submitter, accelerator_model_name, cooling" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("accelerators_per_node", "eight", "accelerators_per_node: expected a whole number >= 0, got 'eight'"),
    ("number_of_nodes", 0, "number_of_nodes: expected a whole number >= 1, got 0"),
    ("host_processor_core_count", 2.5, "host_processor_core_count: expected a whole number"),
    ("division", "semi-closed", "division: 'semi-closed' is not one of"),
    ("status", "soon", "status: 'soon' is not one of"),
    ("submitter", 5, "submitter: 5 is not of type 'string'"),
    ("system_name", "", "system_name: '' should be non-empty"),
    ("vendor_extra", [1, 2], "vendor_extra: [1, 2] is not of type"),
])
def test_bad_types_are_named(tmp_path: Path, field: str, value: Any, message: str) -> None:
    path = tmp_path / "system.json"
    path.write_text(json.dumps({**VENDOR, field: value}), encoding="utf-8")
    with pytest.raises(SystemDescriptionError) as info:
        build_system_description(path, fake_env())
    assert message in str(info.value)
    assert info.value.missing == [] and len(info.value.problems) == 1


def test_every_problem_at_once(tmp_path: Path) -> None:
    fields = {**VENDOR, "status": "soon", "accelerators_per_node": "x"}
    del fields["cooling"]
    path = tmp_path / "system.toml"
    path.write_text(_toml(fields), encoding="utf-8")
    with pytest.raises(SystemDescriptionError) as info:
        build_system_description(path, fake_env())
    assert info.value.missing == ["cooling"]
    assert [p.split(":")[0] for p in info.value.problems] == ["accelerators_per_node", "status"]


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SystemDescriptionError, match=r"cannot read system description .*nope\.toml"):
        build_system_description(tmp_path / "nope.toml", fake_env())
    with pytest.raises(SystemDescriptionError, match="cannot read system description"):
        build_system_description(tmp_path, fake_env())  # a directory
    bad_json = tmp_path / "s.json"
    bad_json.write_text('{\n  "division": "closed",\n  oops\n}', encoding="utf-8")
    with pytest.raises(SystemDescriptionError, match="not valid JSON: line 3"):
        build_system_description(bad_json, fake_env())
    bad_toml = tmp_path / "s.toml"
    bad_toml.write_text('division = "closed"\nsubmitter = \n', encoding="utf-8")
    with pytest.raises(SystemDescriptionError, match=r"not valid TOML: .*line 2"):
        build_system_description(bad_toml, fake_env())
    array = tmp_path / "s.json"
    array.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(SystemDescriptionError, match="expected an object of fields, got list"):
        build_system_description(array, fake_env())
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps({**VENDOR, "missing": []}), encoding="utf-8")
    with pytest.raises(SystemDescriptionError, match="missing are set by aibench"):
        build_system_description(clash, fake_env())


def test_unknown_suffix_tries_json_then_toml(tmp_path: Path) -> None:
    path = tmp_path / "system.desc"
    path.write_text(_toml(VENDOR), encoding="utf-8")
    assert build_system_description(path, {})["system_name"] == "Acme X8-H100"


def test_without_a_file_a_partial_description_lists_what_is_missing() -> None:
    desc = build_system_description(None, fake_env(gpus=1))
    assert desc["source"] is None
    assert desc["accelerators_per_node"] == 1
    assert set(desc["missing"]) == set(required_fields()) - set(AUTO)
    assert "submitter" in desc["missing"] and "accelerator_model_name" not in desc["missing"]
    _validate_output(desc, partial=True)


def test_an_empty_environment_fills_nothing() -> None:
    desc = build_system_description(None, {})
    assert desc["auto_filled"] == [] and desc["missing"] == required_fields()
    assert fields_from_environment({"gpus": [{"name": None}], "cpu": {"sockets": None}}) == {
        "accelerators_per_node": 1}


def test_odd_topologies_are_not_guessed() -> None:
    env = fake_env(gpus=2)
    env["cpu"] = {"model": "Some CPU", "sockets": None, "physical_cores": None}
    env["gpus"][1] = {**env["gpus"][1], "name": "NVIDIA H200", "memory_total_bytes": None}
    fields = fields_from_environment(env)
    assert "host_processors_per_node" not in fields and "host_processor_core_count" not in fields
    assert fields["accelerator_model_name"] == "NVIDIA H100 80GB HBM3 + NVIDIA H200"
    assert "accelerator_memory_capacity" not in fields  # one GPU's memory is unknown


def test_real_fingerprint_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from aibench.device.env import collect_environment

    monkeypatch.setitem(sys.modules, "pynvml", None)
    desc = build_system_description(None, collect_environment())
    assert desc["framework"].startswith("PyTorch ")
    assert "submitter" in desc["missing"]
    _validate_output(desc, partial=True)
