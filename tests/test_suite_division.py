"""bundle.suite_check: a bundle naming a shipped suite is checked against the shipped file; others are open."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from aibench.bundle.suite_check import division, suite_findings
from aibench.suite.load import load_suite


def _manifest(name: str = "smoke", mode: str = "full") -> dict[str, Any]:
    s = load_suite(name)
    return {"suite": {"name": s.name, "version": s.version, "sha256": s.sha256, "source": f"builtin:{name}",
                      "mode": mode, "entries": [{"id": e.id} for e in s.entries]},
            "run_rules": s.rules_for(mode).as_dict()}


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
    dropped = m["suite"]["entries"].pop()["id"]
    assert _codes(m) == ["suite_entry_missing"]
    assert _codes(m, [{"entry": dropped, "status": "skipped"}]) == []  # a skip record accounts for it


def test_a_custom_suite_is_open() -> None:
    m = {"suite": {"name": "my-own", "version": "1", "sha256": "cd" * 32, "entries": []}}
    assert division(m) == "open" and suite_findings(m, []) == []
