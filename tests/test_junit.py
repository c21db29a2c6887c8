"""JUnit XML: counts, statuses and escaping of hostile names."""

import xml.etree.ElementTree as ET

from aibench.core.junit import TestCase, junit_xml


def test_counts_and_statuses() -> None:
    cases = [TestCase("gemm", "fp16 4096", "passed", time_s=1.5),
             TestCase("gemm", "fp8 4096", "failed", message="slower by 7%", detail="p=0.001"),
             TestCase("llm", "decode", "skipped", message="no GPU")]
    root = ET.fromstring(junit_xml("aibench compare", cases))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    assert suite.get("time") == "1.500"
    failed = suite.findall("testcase")[1]
    failure = failed.find("failure")
    assert failure is not None and failure.get("message") == "slower by 7%" and failure.text == "p=0.001"
    assert suite.findall("testcase")[2].find("skipped") is not None
    assert suite.findall("testcase")[0].find("failure") is None


def test_markup_in_names_is_escaped() -> None:
    text = junit_xml("s", [TestCase('<a href="x">', "]]>&", "failed", message="<script>")])
    case = ET.fromstring(text).find("testsuite/testcase")
    assert case is not None and case.get("classname") == '<a href="x">' and case.get("name") == "]]>&"
    assert "<script>" not in text
