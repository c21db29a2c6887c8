"""`aibench compare --junit / --markdown`: what a CI system reads and what a pull request shows."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from click.testing import CliRunner
from test_compare import _record, _run

from aibench.bundle.load import load_run
from aibench.cli import cli
from aibench.results.compare import compare_junit, compare_runs, geomean_phrase
from aibench.results.compare_markdown import compare_markdown

JUNIT_XSD = Path(__file__).parent / "data" / "junit-10.xsd"  # Jenkins xunit-plugin's schema


@pytest.fixture()
def runs(tmp_path: Path) -> tuple[Path, Path]:
    """One measurement of each kind: slower, faster, same, broken, missing, new."""
    base = _run(tmp_path / "a", [_record("slow", 1.0), _record("fast", 1.0), _record("same", 1.0),
                                 _record("crash", 1.0), _record("gone|pipe", 1.0)])
    new = _run(tmp_path / "b", [_record("slow", 1.2, seed=5), _record("fast", 0.8, seed=5),
                                _record("same", 1.0, seed=5), _record("crash", 1.0, status="failed"),
                                _record("added", 1.0)])
    return base, new


def test_junit_is_valid_against_the_jenkins_schema(runs: tuple[Path, Path]) -> None:
    result = compare_runs(load_run(runs[0]), load_run(runs[1]))
    text = compare_junit(result)
    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    schema.validate(text)  # raises on any deviation from the schema
    assert not schema.is_valid(text.replace(' name="gemm', ' title="gemm'))  # the schema does check
    cases = {c.get("name"): c for c in ET.fromstring(text).iter("testcase")}
    assert len(cases) == len(result.comparisons) == 6  # one test case per measurement
    assert cases["gemm[m=1]/slow [slow]"].find("failure") is not None
    assert cases["gemm[m=1]/crash [crash]"].find("failure") is not None
    assert cases["gemm[m=1]/slow [slow]"].find("failure").get("message").startswith("slower: new/base time 1.")
    assert cases["gemm[m=1]/fast [fast]"].find("failure") is None
    assert cases["gemm[m=1]/gone|pipe [gone|pipe]"].find("skipped") is not None  # missing: not judged
    suite = ET.fromstring(text).find("testsuite")
    assert suite is not None and suite.get("failures") == "2" and suite.get("tests") == "6"


def test_markdown_puts_the_changes_first(runs: tuple[Path, Path]) -> None:
    md = compare_markdown(compare_runs(load_run(runs[0]), load_run(runs[1])))
    assert "**Regression**" in md and "geomean new/base time = " in md
    changes, _, everything = md.partition("<details>")
    assert "### Changes" in changes and "All 6 measurements" in everything
    # The failures lead the changes, then the speedup; unchanged measurements wait in the fold.
    assert changes.index("gemm[m=1]/slow") < changes.index("gemm[m=1]/fast")
    assert changes.index("gemm[m=1]/crash") < changes.index("gemm[m=1]/fast")
    assert "gemm[m=1]/same" not in changes and "gemm[m=1]/same" in everything
    assert "gone\\|pipe" in everything  # a `|` in a key does not split the table row


def test_markdown_without_changes_says_so(tmp_path: Path) -> None:
    base = _run(tmp_path / "a", [_record("t", 1.0)])
    new = _run(tmp_path / "b", [_record("t", 1.0, seed=3)])
    md = compare_markdown(compare_runs(load_run(base), load_run(new)))
    assert "**No regression**" in md and "No measurement changed." in md


def test_the_geometric_mean_names_its_direction() -> None:
    assert geomean_phrase(1.03) == "geomean new/base time = 1.03 (3% slower)"
    assert geomean_phrase(0.9) == "geomean new/base time = 0.9 (10% faster)"
    assert geomean_phrase(1.0) == "geomean new/base time = 1 (no change)"


def test_cli_writes_both_files_even_when_the_gate_fails(runs: tuple[Path, Path], tmp_path: Path) -> None:
    junit, md = tmp_path / "out.xml", tmp_path / "comment.md"
    result = CliRunner().invoke(cli, ["compare", str(runs[0]), str(runs[1]), "--junit", str(junit),
                                      "--markdown", str(md)])
    assert result.exit_code == 1, result.output
    assert "geomean new/base time" in result.output
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(str(junit))
    assert md.read_text(encoding="utf-8").startswith("## aibench compare")
    unwritable = CliRunner().invoke(cli, ["compare", str(runs[0]), str(runs[1]),
                                          "--junit", str(tmp_path / "no" / "such" / "dir.xml")])
    assert unwritable.exit_code == 1 and "cannot write" in unwritable.output


def test_a_real_process_writes_the_ci_files(runs: tuple[Path, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    junit, md = tmp_path / "out.xml", tmp_path / "comment.md"
    done = subprocess.run([sys.executable, "-m", "aibench", "compare", str(runs[0]), str(runs[1]),
                           "--junit", str(junit), "--markdown", str(md), "--no-fail"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert xmlschema.XMLSchema(str(JUNIT_XSD)).is_valid(str(junit))
    assert "### Changes" in md.read_text(encoding="utf-8")
