"""Enough samples that compare can call a change: the CI suite in every mode, the CPU preview
rules, and compare naming the measurements where no change can ever be called (issue 18)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_compare_gate import rec, run_dir

from aibench.bundle.load import load_run
from aibench.core import stats
from aibench.results.compare import CompareOptions, compare_runs
from aibench.suite.load import load_suite
from aibench.suite.model import MODES
from aibench.suite.session import PREVIEW_RULES

NEEDED = stats.mann_whitney_samples_needed(CompareOptions().alpha)


def test_samples_needed_is_where_the_smallest_p_crosses_alpha() -> None:
    assert NEEDED == 8
    assert stats.mann_whitney_u(list(range(7)), [7.0 + i for i in range(7)])[1] >= 0.002
    assert stats.mann_whitney_u(list(range(8)), [8.0 + i for i in range(8)])[1] < 0.002


@pytest.mark.parametrize("mode", MODES)
def test_the_ci_suite_takes_enough_samples_in_every_mode(mode: str) -> None:
    assert load_suite("ci").rules_for(mode).min_samples >= NEEDED


def test_the_cpu_preview_rules_take_enough_samples() -> None:
    assert PREVIEW_RULES.min_samples >= NEEDED


def test_compare_names_the_measurements_that_cannot_reach_significance(tmp_path: Path) -> None:
    few = [1.0, 1.01, 0.99, 1.02, 0.98]
    base = run_dir(tmp_path / "a", [rec("e", "triton", s=few), rec("e", "torch", s=few), rec("e", "cutlass")])
    # triton doubles (`noise`: it cannot be confirmed), torch stays (`same`, but no evidence either).
    new = run_dir(tmp_path / "b", [rec("e", "triton", s=[x * 2 for x in few]), rec("e", "torch", s=few),
                                   rec("e", "cutlass")])
    result = compare_runs(load_run(base), load_run(new))
    assert result.too_few_samples == ["e::gemm[m=1]/triton", "e::gemm[m=1]/torch"]
    assert result.as_dict()["too_few_samples"] == result.too_few_samples
    (warning,) = [w for w in result.warnings if "too few samples" in w]
    assert "e::gemm[m=1]/triton" in warning and "e::gemm[m=1]/torch" in warning
    assert "cutlass" not in warning and "at least 8 a side" in warning
