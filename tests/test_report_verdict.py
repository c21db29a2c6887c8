"""The verdict's decisions: winners, ties where intervals overlap, geometric means and coverage."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_report_build import H100, H200, two_systems

from aibench.report import build_report, render
from aibench.report.html import render_html
from aibench.report.verdict import Interval, Score, build_verdict, decide, normalised_geomeans


def test_clear_winner_when_intervals_do_not_overlap() -> None:
    winner, tied, note = decide(["a", "b"], [Interval(10.0, 9.5, 10.5), Interval(12.0, 11.0, 13.0)])
    assert (winner, tied, note) == ("b", (), "")


def test_tie_where_intervals_overlap() -> None:
    winner, tied, note = decide(["a", "b", "c"], [Interval(10.0, 9.0, 11.2), Interval(11.5, 11.0, 12.0),
                                                   Interval(5.0, 4.0, 6.0)])
    assert winner is None
    assert tied == ("a", "b")  # c's interval is below b's: it is out of the tie
    assert note == "confidence intervals overlap"


def test_touching_intervals_are_a_tie() -> None:
    assert decide(["a", "b"], [Interval(1.0, 0.5, 2.0), Interval(3.0, 2.0, 4.0)])[1] == ("a", "b")


def test_a_system_without_an_interval_is_not_ranked() -> None:
    assert decide(["a", "b"], [None, Interval(3.0, 2.0, 4.0)]) == ("b", (), "the only system with a figure")
    assert decide(["a", "b"], [None, None])[0] is None
    assert decide(["a"], [Interval(3.0, 2.0, 4.0)]) == (None, (), "one system only: nothing to compare")


def test_geomeans_normalise_to_each_rows_best_and_count_coverage() -> None:
    table = [[2.0, 4.0], [9.0, 3.0], [None, 5.0], [None, None], [0.0, 1.0]]
    a, b = normalised_geomeans(table, 2)
    assert a == Score(pytest.approx(math.sqrt(0.5 * 1.0)), 2, 4)
    assert b.covered == 4 and b.total == 4
    assert b.value == pytest.approx((1.0 * (1 / 3) * 1.0 * 1.0) ** 0.25)


def test_geomean_of_a_system_with_no_figures_is_unavailable() -> None:
    assert normalised_geomeans([[None, 1.0]], 2)[0] == Score(None, 0, 1)


def test_report_verdict_from_records_uses_the_median_interval(tmp_path: Path) -> None:
    report = build_report(two_systems(tmp_path))
    verdict = build_verdict(report)
    texts = {r.label: r.text for r in verdict.rows}
    assert texts["gemm-square"] == f"{H200} wins"  # 770 vs 700 TFLOP/s with a spread of 0.2% of samples
    assert texts["prefill"] == f"{H100} wins (the only system with a figure)"
    overall = {s.system: s.overall for s in verdict.scores}
    assert overall[H200] == Score(1.0, 2, 4)  # best wherever it has a figure: its mean covers 2 of 4
    assert overall[H100].covered == 4 and overall[H100].value is not None and overall[H100].value < 1.0
    assert verdict.scores[0].per_eur is None  # no --tco: no per-EUR score


def test_verdict_comes_first_in_markdown_and_html(tmp_path: Path) -> None:
    report = build_report(two_systems(tmp_path))
    md = render(report, "md")
    assert md.index("## Verdict") < md.index("## Systems") < md.index("## Results")
    assert f"| gemm-square | TFLOP/s | {H200} wins |" in md
    page = render_html(report, charts=False)
    assert page.index("<h2>Verdict</h2>") < page.index("<h2>Systems</h2>")
    assert "0.882 (4 of 4)" in md and "0.882 (4 of 4)" in page
