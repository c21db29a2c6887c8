"""bundle.suite_check: a bundle naming a shipped suite is checked against the shipped file; others are open."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from aibench.bundle.suite_check import division, suite_findings
from aibench.suite.load import load_suite
from aibench.suite.model import PlanContext


def _manifest(name: str = "smoke", mode: str = "full") -> dict[str, Any]:
    """The suite block as a run writes it: one entry per planned case (a sweep's cases are
    "entry/param=..."), each naming its suite entry (suite/run.py)."""
    s = load_suite(name)
    plan = s.plan(mode, PlanContext())
    return {"suite": {"name": s.name, "version": s.version, "sha256": s.sha256, "source": f"builtin:{name}",
                      "mode": mode, "entries": [{"id": c.case_id, "entry": c.entry_id} for c in plan]},
            "run_rules": s.rules_for(mode).as_dict()}


def test_sweep_cases_account_for_their_entry() -> None:
    m = _manifest("gigafactory", "preview")
    swept = {e["entry"] for e in m["suite"]["entries"] if e["id"] != e["entry"]}
    assert swept, "the gigafactory preview plan has sweep or shape-set entries"
    assert suite_findings(m, []) == []


@pytest.mark.parametrize("name", ["smoke", "ci", "gigafactory"])
def test_a_shipped_suite_as_shipped_is_closed(name: str) -> None:
    m = _manifest(name)
    assert suite_findings(m, []) == [] and division(m) == "closed"


def _codes(m: dict[str, Any], records: list[dict[str, Any]] | None = None) -> list[str]:
    return [f.code for f in suite_findings(m, records or []) if f.severity == "error"]


def test_lies_about_the_suite_are_errors() -> None:
    base = _manifest()
    m = copy.deepcopy(base)
    m["suite"]["version"] = "9.9.9"
    assert _codes(m) == ["suite_unknown_version"]
    m = copy.deepcopy(base)
    m["suite"]["sha256"] = "00" * 32
    assert _codes(m) == ["suite_modified"]
    m = copy.deepcopy(base)
    m["run_rules"]["min_samples"] = 1
    found = suite_findings(m, [])
    assert [f.code for f in found] == ["suite_modified"] and "min_samples = 1" in found[0].message
    m = copy.deepcopy(base)
    dropped = m["suite"]["entries"][-1]["entry"]
    m["suite"]["entries"] = [e for e in m["suite"]["entries"] if e["entry"] != dropped]
    assert _codes(m) == ["suite_entry_missing"]
    assert _codes(m, [{"entry": dropped, "status": "skipped"}]) == []  # a skip record accounts for it


def test_a_custom_suite_is_open() -> None:
    m = {"suite": {"name": "my-own", "version": "1", "sha256": "cd" * 32, "entries": []}}
    assert division(m) == "open" and suite_findings(m, []) == []


def test_a_re_signed_bundle_with_a_modified_suite_does_not_verify(tmp_path: Any) -> None:
    from bundle_helpers import manifest, run_files, signed_bundle
    from click.testing import CliRunner
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from aibench.bundle import keys, verify
    from aibench.cli import cli

    vendor = Ed25519PrivateKey.generate()
    lying = _manifest()
    lying["run_rules"]["min_samples"] = 1
    shipped = {k: lying["suite"][k] for k in ("name", "version", "sha256", "mode")}
    m = manifest(suite={**manifest()["suite"], **shipped}, run_rules={**manifest()["run_rules"], "min_samples": 1})
    path = signed_bundle(tmp_path / "b.tar.gz", run_files(m), key=vendor)
    report = verify(path, vendor.public_key())
    assert not report.valid and "suite_modified" in report.codes
    assert report.summary["division"] == "closed"
    pub = tmp_path / "vendor.pub"
    pub.write_bytes(keys.public_pem(vendor.public_key()))
    result = CliRunner().invoke(cli, ["bundle", "verify", str(path), "--pubkey", str(pub)])
    assert result.exit_code == 1 and "suite_modified" in result.output
