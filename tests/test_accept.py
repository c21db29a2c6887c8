"""Acceptance against a vendor's commitments: PASS, FAIL or UNSURE from the raw samples; the 90% re-test."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from bundle_helpers import signed_bundle, write_run_dir
from click.testing import CliRunner

from aibench.bundle.load import load_run
from aibench.cli import cli
from aibench.core import stats
from aibench.core.errors import UsageError
from aibench.measure.records import Outcome, Record
from aibench.results.accept import FAIL, PASS, UNSURE, accept_run, judge, retest_run
from aibench.results.commitments import Commitment, commitments_from_run, parse_commitments, render_toml
from aibench.results.rundir import RunDir

FLOPS = 2 * 4096**3  # a 4096^3 matmul per call


def samples(center: float, n: int = 40, spread: float = 0.005, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def _record(name: str, median: float, status: str = "ok", spread: float = 0.005, seed: int = 0) -> Record:
    timing = None
    metrics: dict[str, float] = {}
    if status == "ok":
        s = samples(median, spread=spread, seed=seed)
        timing = {"method": "cuda_event", "samples_s": s, "n": len(s), "median": stats.median(s),
                  "converged": True, "stop_reason": "test", "total_s": sum(s)}
        metrics = {"tflops": FLOPS / stats.median(s) / 1e12}
    return Record(id=f"gemm[{name}]/torch", entry=name, workload="gemm", backend="torch", params={},
                  device={"spec": "cuda:0", "kind": "cuda", "name": "NVIDIA H100"}, status=status,
                  reason=None if status == "ok" else "CUDA error: out of memory", timing=timing,
                  metrics=metrics, work={"flops": float(FLOPS)} if status == "ok" else {})


def _run(root: Path, records: list[Record]) -> Path:
    run = RunDir.create(root, "t", {"comparable": True, "preview": False, "device": {"name": "NVIDIA H100"},
                                    "environment_sha256": "x", "suite": None})
    for r in records:
        run.append(Outcome(r))
    run.finish(complete=True)
    return run.path


def _vendor(root: Path, scale: float = 1.0, seed: int = 0) -> Path:
    """Two measurements; `scale` multiplies every time (1 / scale of the throughput)."""
    return _run(root, [_record("big", 2e-3 * scale, seed=seed), _record("small", 1e-4 * scale, seed=seed + 1)])


def _bid(tmp_path: Path, run: Path, raise_by: float = 1.0) -> Path:
    items = [Commitment(c.key, c.metric, c.value * raise_by if c.metric != "median_s" else c.value / raise_by)
             for c in commitments_from_run(load_run(run))]
    path = tmp_path / "bid.toml"
    path.write_text(render_toml(items, {"source": str(run)}), encoding="utf-8")
    return path


def test_commitments_round_trip_through_toml(tmp_path: Path) -> None:
    run = load_run(_vendor(tmp_path / "v"))
    items = commitments_from_run(run, tolerance=0.03)
    assert {(c.key, c.metric) for c in items} == {(f"{e}::gemm[{e}]/torch", m) for e in ("big", "small")
                                                  for m in ("tflops", "median_s")}
    big = next(c for c in items if c.key.startswith("big") and c.metric == "tflops")
    assert big.value == run.records[0]["metrics"]["tflops"]  # the value the vendor's run reports
    hostile = Commitment('a"b\\c\n\x1b[31m::x', "median_s", 1e-3)
    text = render_toml([*items, hostile], {"source": 'dir "quoted"\\'})
    assert parse_commitments(text.encode(), "bid.toml") == [*items, hostile]


def test_a_run_passes_its_own_commitments(tmp_path: Path) -> None:
    vendor = _vendor(tmp_path / "v")
    delivered = _vendor(tmp_path / "d", seed=7)  # re-measured: other samples, same system
    bid = _bid(tmp_path, vendor)
    result = accept_run(load_run(delivered), parse_commitments(bid.read_bytes(), str(bid)), str(bid))
    assert result.counts() == {PASS: 4, FAIL: 0, UNSURE: 0}
    out = CliRunner().invoke(cli, ["accept", "--commitments", str(bid), str(delivered)])
    assert out.exit_code == 0, out.output
    assert "4 PASS, 0 FAIL, 0 UNSURE" in out.output


def test_commitments_raised_by_20_percent_fail_with_junit(tmp_path: Path) -> None:
    vendor = _vendor(tmp_path / "v")
    bid = _bid(tmp_path, vendor, raise_by=1.2)
    junit = tmp_path / "accept.xml"
    out = CliRunner().invoke(cli, ["accept", "--commitments", str(bid), str(vendor), "--junit", str(junit),
                                   "--tolerance", "5%"])
    assert out.exit_code == 1 and "4 of 4 commitment(s) not met" in out.output
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "4" and suite.get("failures") == "4"
    names = sorted(c.get("name") or "" for c in suite.iter("testcase") if c.find("failure") is not None)
    assert names == sorted(f"{e}::gemm[{e}]/torch {m}" for e in ("big", "small") for m in ("median_s", "tflops"))
    # The same raise passes inside a 20% tolerance: tolerance is honoured, not ignored.
    assert CliRunner().invoke(cli, ["accept", "--commitments", str(bid), str(vendor), "--tolerance", "0.2"]
                              ).exit_code == 0


def test_a_noisy_measurement_near_the_limit_is_unsure(tmp_path: Path) -> None:
    run = load_run(_run(tmp_path / "n", [_record("big", 2e-3, spread=0.3, seed=3)]))
    rec = run.records[0]
    median = stats.median(rec["timing"]["samples_s"])
    # Committed so that the limit (5% below) sits at the measured median: the interval straddles it.
    c = Commitment(rec["entry"] + "::" + rec["id"], "tflops", FLOPS / median / 1e12 / 0.95)
    v = judge(c, rec, tolerance=0.05, confidence=0.95)
    assert v.verdict == UNSURE and v.bound is not None and v.bound < v.limit < (v.measured or 0) * 1.0001
    # The same figures with quiet samples decide.
    quiet = load_run(_run(tmp_path / "q", [_record("big", 2e-3, spread=0.001, seed=3)])).records[0]
    assert judge(Commitment(c.key, "tflops", c.value * 0.9), quiet, 0.05, 0.95).verdict == PASS
    assert judge(Commitment(c.key, "tflops", c.value * 1.1), quiet, 0.05, 0.95).verdict == FAIL
    # Through the command: every figure raised so that its 5% limit is the measured median.
    bid = _bid(tmp_path, Path(run.source), raise_by=1 / 0.95)
    out = CliRunner().invoke(cli, ["accept", "--commitments", str(bid), run.source, "--json"])
    assert out.exit_code == 0, out.output  # UNSURE alone does not fail acceptance
    assert json.loads(out.stdout)["counts"] == {PASS: 0, FAIL: 0, UNSURE: 2}


@pytest.mark.parametrize(("fraction", "verdict", "code"), [(0.92, PASS, 0), (0.85, FAIL, 1)])
def test_retest_must_reach_90_percent_of_installation(tmp_path: Path, fraction: float, verdict: str,
                                                       code: int) -> None:
    installation = _vendor(tmp_path / "i")
    retest = _vendor(tmp_path / "r", scale=1 / fraction, seed=11)  # throughput at `fraction` of installation
    result = retest_run(load_run(retest), load_run(installation))
    assert {v.verdict for v in result.verdicts} == {verdict} and len(result.verdicts) == 4
    assert all(v.tolerance == pytest.approx(0.10) for v in result.verdicts)
    out = CliRunner().invoke(cli, ["accept", str(retest), "--baseline", str(installation), "--json"])
    assert out.exit_code == code, out.output
    assert json.loads(out.stdout)["accepted"] is (code == 0)


def test_missing_and_failed_measurements_fail(tmp_path: Path) -> None:
    vendor = _vendor(tmp_path / "v")
    bid = _bid(tmp_path, vendor)
    delivered = _run(tmp_path / "d", [_record("big", 2e-3, status="failed")])  # "small" never measured
    result = accept_run(load_run(delivered), parse_commitments(bid.read_bytes(), "bid"), "bid")
    reasons = {(v.key.split("::")[0], v.metric): (v.verdict, v.reason) for v in result.verdicts}
    assert reasons[("big", "tflops")] == (FAIL, "failed: CUDA error: out of memory")
    assert reasons[("small", "median_s")][0] == FAIL and "not measured" in reasons[("small", "median_s")][1]
    assert result.counts()[FAIL] == 4
    # A metric the record's samples cannot give is a FAIL too, never a guess.
    rec = load_run(vendor).records[0]
    assert judge(Commitment("k", "gbps", 1.0), rec, 0.05, 0.95).verdict == FAIL


@pytest.mark.parametrize(("text", "message"), [
    (b"[[commitment]]\nkey = \"a\"\nmetric = ", "not a valid TOML file"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[commitments]\nsource = \"x\"\n", "no [[commitment]] tables"),
    (b"[[commitment]]\nkey = \"a\"\nmetric = \"tflops\"\nvalue = nan\n", "value must be a finite number > 0"),
    (b"[[commitment]]\nkey = \"a\"\nmetric = \"tflops\"\nvalue = -1\n", "value must be a finite number > 0"),
    (b"[[commitment]]\nkey = \"a\"\nmetric = \"tflops\"\nvalue = \"12\"\n", "value must be a finite number > 0"),
    (b"[[commitment]]\nkey = 3\nmetric = \"tflops\"\nvalue = 1\n", "key must be a non-empty string"),
    (b"[[commitment]]\nkey = \"a\"\nmetric = \"tflops\"\nvalue = 1\ntolerance = 1.5\n", "tolerance must be"),
    (b"[[commitment]]\nkey = \"a\"\nmetric = \"tflops\"\nvalue = 1\nvalu = 2\n", "unknown field(s) 'valu'"),
    (b"[[commitment]]\nkey = \"a\"\nmetric = \"m\"\nvalue = 1\n[[commitment]]\nkey = \"a\"\nmetric = \"m\"\n"
     b"value = 2\n", "committed twice"),
    (b"commitment = [" * 5000, "not a valid TOML file"),
])
def test_a_hostile_commitments_file_is_a_clear_usage_error(tmp_path: Path, text: bytes, message: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_commitments(text, "bid.toml")
    assert str(exc.value).startswith("bid.toml: ") and message in str(exc.value)
    bid = tmp_path / "bid.toml"
    bid.write_bytes(text)
    out = CliRunner().invoke(cli, ["accept", "--commitments", str(bid), str(_vendor(tmp_path / "v"))])
    assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output


def test_too_few_samples_are_unsure_never_decided(tmp_path: Path) -> None:
    rec = load_run(_vendor(tmp_path / "v")).records[0]
    key = f"{rec['entry']}::{rec['id']}"
    few = {**rec, "timing": {**rec["timing"], "samples_s": rec["timing"]["samples_s"][:3]}}
    # Far below or far above the figure, three samples bound no median at 95% (0.5^3 = 12.5%).
    for value in (1e-9, 1e9):
        v = judge(Commitment(key, "tflops", value), few, 0.05, 0.95)
        assert v.verdict == UNSURE and "at least 5 needed" in v.reason
    assert judge(Commitment(key, "tflops", 1e-9), rec, 0.05, 0.95).verdict == PASS


def test_cli_usage_errors(tmp_path: Path) -> None:
    vendor = _vendor(tmp_path / "v")
    runner = CliRunner()
    assert runner.invoke(cli, ["accept", str(vendor)]).exit_code == 2
    bad = runner.invoke(cli, ["accept", "--commitments", str(_bid(tmp_path, vendor)), str(vendor),
                              "--tolerance", "lots"])
    assert bad.exit_code == 2 and "--tolerance 'lots'" in bad.output
    fixed = runner.invoke(cli, ["accept", "--baseline", str(vendor), str(vendor), "--tolerance", "3%"])
    assert fixed.exit_code == 2 and "fixes it at 10%" in fixed.output
    unwritable = runner.invoke(cli, ["commitments", str(vendor), "-o", str(tmp_path / "no" / "bid.toml")])
    assert unwritable.exit_code == 1 and "cannot write" in unwritable.output


def test_commitments_then_accept_as_real_processes(tmp_path: Path) -> None:
    vendor = _vendor(tmp_path / "v")
    bid, junit = tmp_path / "bid.toml", tmp_path / "j.xml"
    made = subprocess.run([sys.executable, "-m", "aibench", "commitments", str(vendor), "-o", str(bid)],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "4 commitment(s) written" in made.stderr
    run = subprocess.run([sys.executable, "-m", "aibench", "accept", "--commitments", str(bid), str(vendor),
                          "--json", "--junit", str(junit)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["counts"] == {PASS: 4, FAIL: 0, UNSURE: 0}
    assert ET.parse(junit).getroot().get("failures") == "0"


def test_a_verified_bundle_is_accepted_like_its_directory(tmp_path: Path) -> None:
    bid = _bid(tmp_path, write_run_dir(tmp_path))
    bundle = signed_bundle(tmp_path / "vendor.tar.gz")
    out = CliRunner().invoke(cli, ["accept", "--commitments", str(bid), str(bundle), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["counts"] == {PASS: 4, FAIL: 0, UNSURE: 0}
