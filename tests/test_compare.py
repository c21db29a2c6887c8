"""Regression verdicts: large AND significant changes only; failures count; hardware must match."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from aibench.bundle.load import load_run
from aibench.cli import cli
from aibench.core import stats
from aibench.core.errors import UsageError
from aibench.measure.records import Outcome, Record
from aibench.results.compare import VERDICTS, CompareOptions, compare_runs, judge
from aibench.results.rundir import RunDir

OPTS = CompareOptions()


def samples(center: float, n: int = 30, spread: float = 0.01, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def test_mann_whitney_matches_scipy_reference_values() -> None:
    # Reference values from scipy.stats.mannwhitneyu(method="asymptotic", use_continuity=True).
    u, p = stats.mann_whitney_u([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10], [11.0, 12, 13, 14, 15, 16, 17, 18, 19, 20])
    assert u == 0.0 and p == pytest.approx(0.00018267179110955002, rel=1e-12)
    u, p = stats.mann_whitney_u([1.0, 2, 2, 3, 5, 5, 5, 8], [2.0, 4, 4, 5, 6, 7, 9, 9, 10])
    assert u == 18.5 and p == pytest.approx(0.09851354799126623, rel=1e-12)
    assert stats.mann_whitney_u([1.0] * 5, [1.0] * 5) == (12.5, 1.0)
    assert stats.ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]


def test_judge_needs_size_and_significance() -> None:
    base = samples(1.0)
    assert judge(base, samples(1.10, seed=1), OPTS)[0] == "slower"
    assert judge(base, samples(0.90, seed=1), OPTS)[0] == "faster"
    assert judge(base, samples(1.02, seed=1), OPTS)[0] == "same"  # real but under the 5% threshold
    verdict, ratio, p = judge([1.0, 1.3, 0.8], [1.2, 1.5, 0.95], OPTS)  # big but 3 noisy samples
    assert verdict == "noise" and ratio > 1.05 and p >= OPTS.alpha


def test_options_are_validated() -> None:
    with pytest.raises(UsageError):
        CompareOptions(threshold=0)
    with pytest.raises(UsageError):
        CompareOptions(alpha=1.5)


def _record(backend: str, median: float, status: str = "ok", seed: int = 0, method: str = "perf_counter") -> Record:
    timing = None
    if status == "ok":
        s = samples(median, seed=seed)
        timing = {"method": method, "samples_s": s, "n": len(s), "median": stats.median(s),
                  "converged": True, "stop_reason": "test", "total_s": sum(s)}
    return Record(id=f"gemm[m=1]/{backend}", workload="gemm", backend=backend, params={"m": 1},
                  device={"spec": "cuda:0", "kind": "cuda", "name": "NVIDIA H200"}, status=status,
                  reason=None if status == "ok" else "boom", timing=timing)


def _run(root: Path, records: list[Record], device: str = "NVIDIA H200", suite: dict | None = None) -> Path:
    run = RunDir.create(root, "t", {"comparable": True, "preview": False, "device": {"name": device},
                                    "environment_sha256": "x", "suite": suite})
    for r in records:
        run.append(Outcome(r))
    run.finish(complete=True)
    return run.path


def test_compare_runs_end_to_end(tmp_path: Path) -> None:
    base = _run(tmp_path / "a", [_record("torch", 1.0), _record("triton", 1.0), _record("old", 1.0)])
    new = _run(tmp_path / "b", [_record("torch", 1.0, seed=5), _record("triton", 1.2, seed=5),
                                _record("fresh", 1.0)])
    result = compare_runs(load_run(base), load_run(new))
    verdicts = {c.backend: c.verdict for c in result.comparisons}
    assert verdicts == {"torch": "same", "triton": "slower", "old": "missing", "fresh": "new"}
    assert [c.backend for c in result.failing] == ["triton"]
    assert result.comparisons[0].backend == "triton"  # failures first
    assert result.geomean_ratio == pytest.approx((1.2 * 1.0) ** 0.5, rel=0.02)

    broken = _run(tmp_path / "c", [_record("torch", 1.0, status="failed"), _record("triton", 1.0)])
    assert {c.backend: c.verdict for c in compare_runs(load_run(base), load_run(broken)).comparisons}["torch"] \
        == "broken"


def test_a_change_of_timing_method_is_not_a_verdict(tmp_path: Path) -> None:
    """gigafactory 1.1.0 times decode kernels as graph replays: against a 1.0.0 run timed call by
    call, a 3x 'speedup' would be the method's, not the code's."""
    suite = {"name": "ci", "version": "1.0.0", "sha256": "a", "source": "x", "entries": []}
    base = _run(tmp_path / "a", [_record("triton", 3.0, method="cuda_event")], suite=suite)
    new = _run(tmp_path / "b", [_record("triton", 1.0, method="cuda_graph")], suite={**suite, "version": "1.1.0"})
    result = compare_runs(load_run(base), load_run(new))
    (c,) = result.comparisons
    assert c.verdict == "not_comparable" and c.reason == "timed differently: cuda_event vs cuda_graph"
    assert c.ratio is None and not result.failing
    assert any("versions differ (1.0.0 vs 1.1.0)" in w for w in result.warnings)


def test_different_devices_are_refused_unless_allowed(tmp_path: Path) -> None:
    a = load_run(_run(tmp_path / "a", [_record("torch", 1.0)]))
    b = load_run(_run(tmp_path / "b", [_record("torch", 1.0)], device="NVIDIA H100 80GB HBM3"))
    with pytest.raises(UsageError, match="different devices"):
        compare_runs(a, b)
    result = compare_runs(a, b, CompareOptions(allow_different_devices=True))
    assert any("different devices" in w for w in result.warnings)


def test_cli_exit_codes(tmp_path: Path) -> None:
    base = _run(tmp_path / "a", [_record("triton", 1.0)])
    slower = _run(tmp_path / "b", [_record("triton", 1.3, seed=2)])
    same = _run(tmp_path / "c", [_record("triton", 1.0, seed=3)])
    runner = CliRunner()
    bad = runner.invoke(cli, ["compare", str(base), str(slower)])
    assert bad.exit_code == 1 and "got slower" in bad.output and "slower" in bad.output
    assert runner.invoke(cli, ["compare", str(base), str(slower), "--no-fail"]).exit_code == 0
    ok = runner.invoke(cli, ["compare", str(base), str(same), "--json"])
    assert ok.exit_code == 0, ok.output
    import json

    data = json.loads(ok.output)
    assert data["regression"] is False and data["counts"] == {**dict.fromkeys(VERDICTS, 0), "same": 1}
    missing = runner.invoke(cli, ["compare", str(base), str(tmp_path / "nope")])
    assert missing.exit_code == 2


def test_a_tampered_bundle_is_not_read(tmp_path: Path) -> None:
    from bundle_helpers import write_run_dir

    from aibench.bundle import pack
    from aibench.core.errors import AibenchError

    bundle = pack(write_run_dir(tmp_path / "run"), tmp_path / "b.tar.gz")
    assert load_run(bundle).records[0]["backend"] == "torch"
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bundle.write_bytes(bytes(data))
    with pytest.raises(AibenchError, match="does not verify"):
        load_run(bundle)
