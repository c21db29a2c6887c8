"""The CI gate: what `aibench compare` must never let through, and what it must never misreport.

Found by running `aibench suite ci` twice and hand-editing the records of the second run.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aibench.bundle.load import load_run
from aibench.cli import cli
from aibench.core import stats
from aibench.measure.records import Outcome, Record
from aibench.results.compare import FAILING, CompareOptions, compare_runs, judge
from aibench.results.rundir import RunDir

OPTS = CompareOptions()
DEVICE = {"spec": "cuda:0", "kind": "cuda", "name": "NVIDIA H200"}


def samples(center: float, n: int = 30, spread: float = 0.01, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def timing(s: list[float], median: float | None = None) -> dict[str, Any]:
    return {"method": "cuda_event", "samples_s": s, "n": len(s),
            "median": stats.median(s) if median is None else median,
            "converged": True, "stop_reason": "test", "total_s": sum(s)}


def rec(entry: str, backend: str, status: str = "ok", s: list[float] | None = None, reason: str | None = None,
        median: float | None = None) -> Record:
    ok = status == "ok"
    return Record(id=f"gemm[m=1]/{backend}", entry=entry, workload="gemm", backend=backend, params={"m": 1},
                  device=DEVICE, status=status, reason=None if ok else (reason or "why"),
                  timing=timing(s if s is not None else samples(1.0), median) if ok else None)


def run_dir(root: Path, records: list[Record], *, complete: bool = True, suite: dict | None = None,
            entries: list[dict[str, Any]] | None = None) -> Path:
    suite = suite if suite is not None else {"name": "ci", "version": "1.2.0", "mode": "full"}
    run = RunDir.create(root, "t", {"comparable": True, "preview": False, "device": {"name": DEVICE["name"]},
                                    "environment_sha256": "x", "suite": {**suite, "entries": entries or []}})
    for r in records:
        run.append(Outcome(r))
    run.finish(complete=complete)
    return run.path


def verdicts(base: Path, new: Path) -> dict[str, str]:
    return {c.key: c.verdict for c in compare_runs(load_run(base), load_run(new)).comparisons}


# --- lost coverage: measured in the base, not measured in the new run -----------------------------

def test_a_kernel_skipped_now_that_ran_before_fails_the_gate(tmp_path: Path) -> None:
    """A branch whose Triton kernel raises Unsupported (or whose backend stops importing) by
    mistake records `skipped`: the gate must not pass on a measurement it no longer makes."""
    base = run_dir(tmp_path / "a", [rec("e", "torch"), rec("e", "triton")])
    new = run_dir(tmp_path / "b", [rec("e", "torch"), rec("e", "triton", "skipped", reason="triton unusable")])
    result = compare_runs(load_run(base), load_run(new))
    (lost,) = [c for c in result.comparisons if c.backend == "triton"]
    assert lost.verdict in FAILING and lost.verdict == "lost"
    assert "triton unusable" in lost.reason
    assert CliRunner().invoke(cli, ["compare", str(base), str(new)]).exit_code == 1


def test_a_workload_that_no_longer_loads_fails_the_gate(tmp_path: Path) -> None:
    """A branch that breaks the import of a workload module (gemm) gets one whole-entry skip
    record (backend "*", entry = the suite entry) instead of the per-shape, per-backend records
    of the base: seen as 9 `missing` + 1 `new` and exit 0 before."""
    entries = [{"id": "gemm-sq/m=1", "entry": "gemm-sq"}, {"id": "gemm-sq/m=2", "entry": "gemm-sq"}]
    base = run_dir(tmp_path / "a", [rec("gemm-sq/m=1", "torch"), rec("gemm-sq/m=2", "triton"),
                                    rec("other", "torch")], entries=entries)
    star = Record(id="gemm[]/*", entry="gemm-sq", workload="gemm", backend="*", params={}, device=DEVICE,
                  status="skipped", reason="workload 'gemm' is not available in this build")
    new = run_dir(tmp_path / "b", [star, rec("other", "torch")], entries=[{"id": "gemm-sq", "entry": "gemm-sq"}])
    v = verdicts(base, new)
    assert v["gemm-sq/m=1::gemm[m=1]/torch"] == "lost" and v["gemm-sq/m=2::gemm[m=1]/triton"] == "lost"
    assert v["other::gemm[m=1]/torch"] == "same"
    result = CliRunner().invoke(cli, ["compare", str(base), str(new)])
    assert result.exit_code == 1, result.output


def test_an_interrupted_new_run_does_not_pass_the_gate(tmp_path: Path) -> None:
    """A kernel that segfaults kills the suite process: the new run is incomplete and every
    measurement after the crash is absent. Before: `missing`, a warning and exit 0."""
    base = run_dir(tmp_path / "a", [rec("e1", "torch"), rec("e2", "torch"), rec("e3", "torch", "skipped")])
    new = run_dir(tmp_path / "b", [rec("e1", "torch")], complete=False)
    v = verdicts(base, new)
    assert v == {"e1::gemm[m=1]/torch": "same", "e2::gemm[m=1]/torch": "lost",
                 "e3::gemm[m=1]/torch": "missing"}  # skipped in the base: nothing was lost
    assert CliRunner().invoke(cli, ["compare", str(base), str(new)]).exit_code == 1
    # An interrupted run of another suite (or mode) never planned what it lacks: not `lost`.
    other = run_dir(tmp_path / "c", [rec("e1", "torch")], complete=False,
                    suite={"name": "smoke", "version": "1.0.0", "mode": "full"})
    assert verdicts(base, other)["e2::gemm[m=1]/torch"] == "missing"


def test_a_measurement_dropped_from_a_complete_run_is_only_missing(tmp_path: Path) -> None:
    """A complete run without a record (a changed shape set renames it) is not a failure."""
    base = run_dir(tmp_path / "a", [rec("e1", "torch"), rec("e2", "torch")])
    new = run_dir(tmp_path / "b", [rec("e1", "torch")])
    assert verdicts(base, new)["e2::gemm[m=1]/torch"] == "missing"


# --- statistics ---------------------------------------------------------------------------------

def test_medians_shown_are_those_of_the_samples_compared(tmp_path: Path) -> None:
    """A record whose stored median disagrees with its samples (hand-edited, or written by another
    tool) showed the stored medians beside a ratio computed from the samples; now such a record is
    refused (summary_mismatch: results/recompute.py) and the comparison calls it broken."""
    base = run_dir(tmp_path / "a", [rec("e", "torch", s=samples(1.0))])
    honest = run_dir(tmp_path / "b", [rec("e", "torch", s=samples(1.3, seed=1))])
    (c,) = compare_runs(load_run(base), load_run(honest)).comparisons
    assert c.verdict == "slower"
    assert c.new_median_s == pytest.approx(stats.median(samples(1.3, seed=1)))
    assert c.new_median_s / c.base_median_s == pytest.approx(c.ratio)
    edited = run_dir(tmp_path / "c", [rec("e", "torch", s=samples(1.3, seed=1), median=1.0)])
    loaded = load_run(edited)
    assert any("summary_mismatch" in w for w in loaded.warnings)
    (c,) = compare_runs(load_run(base), loaded).comparisons
    assert c.verdict == "broken" and c.new_median_s is None


def test_the_rank_test_must_agree_with_the_medians_on_the_direction() -> None:
    """Bimodal samples (clock states): the new median is 20% higher, yet 73% of (base, new) pairs
    have the base slower and the new mean is half the base's. A two-sided test is significant,
    but about a change in the other direction: that is no evidence of a slowdown."""
    base = [1.0] * 33 + [3.0] * 30
    new = [0.9] * 30 + [1.2] * 33
    u, p = stats.mann_whitney_u(base, new)
    assert p < OPTS.alpha and u > len(base) * len(new) / 2  # base stochastically larger
    verdict, ratio, _ = judge(base, new, OPTS)
    assert ratio == pytest.approx(1.2) and verdict == "noise"
    assert judge(new, base, OPTS)[0] == "noise"  # and no "faster" either


@pytest.mark.parametrize(("n1", "n2"), [(1, 1), (1, 3), (2, 2), (2, 3), (3, 2)])
def test_mann_whitney_smallest_p_is_the_least_over_every_arrangement(n1: int, n2: int) -> None:
    """Exhaustive: n1 + n2 values from n1 + n2 levels cover every ranking, ties included."""
    import itertools

    n = n1 + n2
    least = min(stats.mann_whitney_u([float(v) for v in vals[:n1]], [float(v) for v in vals[n1:]])[1]
                for vals in itertools.product(range(n), repeat=n))
    assert stats.mann_whitney_min_p(n1, n2) == pytest.approx(least, rel=1e-12)


def test_mann_whitney_smallest_p_against_alpha() -> None:
    assert stats.mann_whitney_min_p(3, 3) > 0.002 > stats.mann_whitney_min_p(8, 8)
    with pytest.raises(ValueError):
        stats.mann_whitney_min_p(0, 5)


def test_a_change_the_test_cannot_confirm_at_these_sample_counts_says_so(tmp_path: Path) -> None:
    """3 samples a side (preview min_samples): p can never get under 0.002, so a 10x slowdown is
    `noise`; the verdict must say that the sample count, not the spread, decided it."""
    base = run_dir(tmp_path / "a", [rec("e", "triton", s=[1.0, 1.01, 0.99])])
    new = run_dir(tmp_path / "b", [rec("e", "triton", s=[10.0, 10.1, 9.9])])
    result = compare_runs(load_run(base), load_run(new))
    (c,) = result.comparisons
    assert c.verdict == "noise"
    assert "3 and 3 samples" in c.reason
    assert any("too few samples" in w for w in result.warnings)


def test_different_suites_and_modes_are_warned_about(tmp_path: Path) -> None:
    base = run_dir(tmp_path / "a", [rec("e", "torch")], suite={"name": "ci", "version": "1.2.0", "mode": "full"})
    smoke = run_dir(tmp_path / "b", [rec("e", "torch")], suite={"name": "smoke", "version": "1.0.0", "mode": "full"})
    quick = run_dir(tmp_path / "c", [rec("e", "torch")], suite={"name": "ci", "version": "1.2.0", "mode": "quick"})
    warnings = compare_runs(load_run(base), load_run(smoke)).warnings
    assert any("different suites" in w and "'smoke'" in w for w in warnings)
    warnings = compare_runs(load_run(base), load_run(quick)).warnings
    assert any("full vs quick" in w for w in warnings)


# --- the table ----------------------------------------------------------------------------------

def test_the_table_shows_brackets_and_never_crashes_on_a_reason(tmp_path: Path) -> None:
    """Keys hold `[params]` and reasons hold error text: rich read them as markup, so the params
    vanished from every key and a reason with `[/path]` crashed the table with a traceback."""
    base = run_dir(tmp_path / "a", [rec("e", "torch"), rec("e", "triton")])
    new = run_dir(tmp_path / "b", [rec("e", "torch"),
                                   rec("e", "triton", "failed", reason="RuntimeError at [/opt/k.py]")])
    result = CliRunner().invoke(cli, ["compare", str(base), str(new)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "gemm[m=1]/torch" in result.output and "[/opt/k.py]" in result.output


def test_the_table_never_cuts_a_key(tmp_path: Path) -> None:
    """Keys of sweeps differ at their end (`...,seq=1024` vs `...,seq=4096`): cut to the column
    width they were indistinguishable in a CI log."""
    entry = "attention-prefill-llama3-8b/batch=1,heads=32,kv_heads=8,seq=4096,head_dim=128"
    long = "needs a GPU with the Tensor Memory Accelerator (Hopper or newer), which this device lacks"
    records = [rec(entry, "triton"), rec(entry, "triton.tma", "skipped", reason=long)]  # a wide reason column
    base, new = run_dir(tmp_path / "a", records), run_dir(tmp_path / "b", records)
    out = CliRunner().invoke(cli, ["compare", str(base), str(new)]).output
    first_column = "".join(line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│"))
    assert f"{entry}::gemm[m=1]/triton" in first_column


def test_json_names_the_rule_it_applied(tmp_path: Path) -> None:
    base = run_dir(tmp_path / "a", [rec("e", "torch")])
    out = CliRunner().invoke(cli, ["compare", str(base), str(base), "--json", "--threshold", "0.1"]).output
    data = json.loads(out)
    assert data["threshold"] == 0.1 and data["alpha"] == 0.002


def test_a_new_measurement_that_fails_breaks_the_build(tmp_path: Path) -> None:
    """A branch adds a backend whose result is wrong (`invalid`) or that crashes (`failed`): it has
    no base to be compared with, and was `new`, exit 0. Broken on main already: not this change's."""
    base = run_dir(tmp_path / "a", [rec("e", "torch"), rec("old", "torch", "failed")])
    new = run_dir(tmp_path / "b", [rec("e", "torch"), rec("e", "triton", "invalid", reason="max error 3.2"),
                                   rec("e", "fresh"), rec("old", "torch", "failed")])
    v = verdicts(base, new)
    assert v["e::gemm[m=1]/triton"] == "broken" and v["e::gemm[m=1]/fresh"] == "new"
    assert v["old::gemm[m=1]/torch"] == "not_comparable"
    assert CliRunner().invoke(cli, ["compare", str(base), str(new)]).exit_code == 1


def test_a_change_of_l2_flush_is_not_a_verdict(tmp_path: Path) -> None:
    """Timed from a warm L2 a memory-bound kernel runs up to 2x faster: like a change of timing
    method, a suite that stops flushing would otherwise read as a speedup of every kernel."""
    cold = rec("e", "torch", s=samples(2.0))
    warm = rec("e", "torch", s=samples(1.0))
    cold.timing["l2_flush"], warm.timing["l2_flush"] = True, False
    (c,) = compare_runs(load_run(run_dir(tmp_path / "a", [cold])), load_run(run_dir(tmp_path / "b", [warm]))).comparisons
    assert c.verdict == "not_comparable" and "L2" in c.reason and c.ratio is None


def test_a_tiny_ratio_is_not_printed_as_zero(tmp_path: Path) -> None:
    base = run_dir(tmp_path / "a", [rec("e", "torch", s=samples(1.0))])
    new = run_dir(tmp_path / "b", [rec("e", "torch", s=samples(1e-4))])
    out = CliRunner().invoke(cli, ["compare", str(base), str(new)]).output
    assert "0.000 " not in out and "1.00e-04" in out


def test_the_failure_message_states_the_threshold_used(tmp_path: Path) -> None:
    """`--threshold 0.004` was printed as "threshold 0%"."""
    base = run_dir(tmp_path / "a", [rec("e", "torch", s=samples(1.0, spread=0.001))])
    new = run_dir(tmp_path / "b", [rec("e", "torch", s=samples(1.01, spread=0.001, seed=1))])
    result = CliRunner().invoke(cli, ["compare", str(base), str(new), "--threshold", "0.004"])
    assert result.exit_code == 1 and "threshold 0.4%" in result.output


def test_an_entry_skipped_by_another_suite_mode_or_version_is_only_missing(tmp_path: Path) -> None:
    """`quick = { skip = true }` skips a whole entry in quick mode: against a full run that is a
    difference of configuration (warned about), not a kernel that stopped working."""
    base = run_dir(tmp_path / "a", [rec("nc", "torch")], entries=[{"id": "nc", "entry": "nc"}])
    star = Record(id="attention[]/*", entry="nc", workload="attention", backend="*", params={}, device=DEVICE,
                  status="skipped", reason="not part of the quick run (the entry sets quick.skip = true)")
    for suite in ({"name": "ci", "version": "1.2.0", "mode": "quick"}, {"name": "ci", "version": "1.3.0", "mode": "full"}):
        new = run_dir(tmp_path / suite["mode"] / suite["version"], [star], suite=suite)
        assert verdicts(base, new)["nc::gemm[m=1]/torch"] == "missing"


def test_a_duplicated_measurement_counts_once_its_first_record_as_in_report(tmp_path: Path) -> None:
    base = run_dir(tmp_path / "b", [rec("gemm-sq", "torch", s=samples(1.0))])
    new = run_dir(tmp_path / "n", [rec("gemm-sq", "torch", s=samples(1.0, seed=1)),
                                   rec("gemm-sq", "torch", s=samples(2.0, seed=2))])  # a repeat, twice as slow
    (c,) = compare_runs(load_run(base), load_run(new)).comparisons
    assert c.verdict == "same" and c.new_median_s == pytest.approx(1.0, rel=0.02)


def test_control_characters_in_record_ids_reach_the_terminal_as_escapes(tmp_path: Path) -> None:
    evil = rec("gemm-sq", "torch", s=samples(1.0))
    evil = dataclasses.replace(evil, id="gemm\x1b[2J[m=1]/torch")
    base, new = run_dir(tmp_path / "b", [evil]), run_dir(tmp_path / "n", [evil])
    out = CliRunner().invoke(cli, ["compare", str(base), str(new)]).output
    assert "\x1b" not in out and "gemm\\x1b[2J[m=1]" in out
