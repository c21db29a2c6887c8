"""JUnit XML for CI systems: one <testsuite> of <testcase>s, each passed, failed or skipped.

The format is the one Jenkins, GitLab and GitHub test reporters read (the "JUnit XML" of Ant's
junitreport): failures carry a one-line message and a detail text. Pure: builds a string, the
caller writes it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Status = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class TestCase:
    """One verdict: `classname` groups (e.g. the suite entry), `name` is the measurement."""

    __test__ = False  # not a pytest class, despite its name

    classname: str
    name: str
    status: Status
    message: str = ""
    detail: str = ""
    time_s: float = 0.0


def junit_xml(suite_name: str, cases: Sequence[TestCase]) -> str:
    """The XML text (UTF-8 declaration included) of one test suite holding `cases`."""
    failures = sum(c.status == "failed" for c in cases)
    skipped = sum(c.status == "skipped" for c in cases)
    root = ET.Element("testsuites", name=suite_name, tests=str(len(cases)), failures=str(failures))
    suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(cases)),
                          failures=str(failures), errors="0", skipped=str(skipped),
                          time=f"{sum(c.time_s for c in cases):.3f}")
    for case in cases:
        element = ET.SubElement(suite, "testcase", classname=case.classname, name=case.name,
                                time=f"{case.time_s:.3f}")
        if case.status == "failed":
            failure = ET.SubElement(element, "failure", message=case.message, type="failure")
            failure.text = case.detail or case.message
        elif case.status == "skipped":
            ET.SubElement(element, "skipped", message=case.message)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
