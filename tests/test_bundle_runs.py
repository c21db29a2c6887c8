"""aibench/results/runs.py: how `report` and `compare` read a run, a directory or a bundle, when it is broken.

Whatever the input, the answer is a LoadedRun or one AibenchError naming what is wrong (a
UsageError, exit 2, when the user's own key file is unusable): never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bundle_helpers import manifest, run_files, signed_bundle, write_run_dir
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aibench.bundle import keys
from aibench.bundle.load import load_run
from aibench.core.errors import AibenchError, UsageError

KEY = Ed25519PrivateKey.generate()
_DEEP = b"[" * 100_000 + b"]" * 100_000 + b"\n"  # past the interpreter's recursion limit in json


def test_a_clean_run_directory_loads(tmp_path: Path) -> None:
    run = load_run(write_run_dir(tmp_path))
    assert len(run.records) == 2 and run.warnings == []


@pytest.mark.parametrize("member", ["manifest.json", "records.jsonl"])
def test_deeply_nested_json_in_a_run_directory_is_an_error(tmp_path: Path, member: str) -> None:
    run = write_run_dir(tmp_path)
    if member == "manifest.json":
        (run / member).write_bytes(_DEEP)
    else:
        (run / member).write_bytes((run / member).read_bytes() + _DEEP)
    with pytest.raises(AibenchError, match="unreadable run"):
        load_run(run)


def test_a_run_directory_whose_records_file_is_a_directory_is_an_error(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path)
    (run / "records.jsonl").unlink()
    (run / "records.jsonl").mkdir()
    with pytest.raises(AibenchError, match="unreadable run"):
        load_run(run)


def test_an_unusable_public_key_file_is_a_usage_error(tmp_path: Path) -> None:
    """As for `aibench bundle verify`: a bad key is the user's mistake (exit 2), not a bad bundle (exit 1),
    which `compare` in CI would read as a regression."""
    bundle = signed_bundle(tmp_path / "b.tar.gz", key=KEY)
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key")
    with pytest.raises(UsageError, match="not a PEM public key"):
        load_run(bundle, junk)
    with pytest.raises(UsageError, match="cannot read key file"):
        load_run(bundle, tmp_path / "missing.pub")


def test_a_public_key_given_for_a_run_directory_is_said_to_check_nothing(tmp_path: Path) -> None:
    pub = tmp_path / "vendor.pub"
    pub.write_bytes(keys.public_pem(KEY.public_key()))
    run = load_run(write_run_dir(tmp_path), pub)
    assert any("not signed" in w for w in run.warnings)
    bundle = load_run(signed_bundle(tmp_path / "b.tar.gz", key=KEY), pub)
    assert not any("not signed" in w for w in bundle.warnings)


@pytest.mark.parametrize("field,value", [("suite", 5), ("device", ["gpu"]), ("system", "big box"),
                                         ("complete", "yes"), ("run_id", None), ("environment_sha256", 3)])
def test_a_run_directory_manifest_field_of_the_wrong_type_is_an_error(tmp_path: Path, field: str,
                                                                       value: object) -> None:
    """A bundle's manifest is schema-checked by verify; a directory's is read as it is, so the
    fields that report and compare read must at least have their types (a number as `suite`
    crashed compare)."""
    run = write_run_dir(tmp_path, run_files(man={**manifest(), field: value}))
    with pytest.raises(AibenchError, match=field):
        load_run(run)


def test_a_run_directory_manifest_may_lack_optional_fields(tmp_path: Path) -> None:
    """Old or hand-made run directories without device, system or suite still load."""
    man = manifest()
    for field in ("system", "suite", "telemetry", "run_rules"):
        del man[field]
    assert len(load_run(write_run_dir(tmp_path, run_files(man=man))).records) == 2
