"""The example GPU workflow parses and runs the commands this project has, as they are spelled."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "gpu-regression.yml"


def _steps(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_workflow_parses_and_gates_on_compare() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert set(triggers) >= {"push", "pull_request"}
    tests, gpu = doc["jobs"]["tests"], doc["jobs"]["gpu-regression"]
    assert "bash .ci/run" in _steps(tests) and (ROOT / ".ci" / "run").is_file()
    assert "self-hosted" in gpu["runs-on"] and "fork" in WORKFLOW.read_text(encoding="utf-8")
    script = _steps(gpu)
    assert "aibench suite ci --out ci-run" in script and (ROOT / "suites" / "ci.toml").is_file()
    assert "--markdown compare.md --junit compare.xml" in script
    assert "gh pr comment" in script and "aibench history add" in script
    assert 'exit 1' in gpu["steps"][-1]["run"]  # the last step turns compare's exit code into the verdict
