"""The serving chart: the Pareto frontier exactly, and a report over two 3-point sweeps that draws it."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from test_report_build import H100, H200, make_run, rec

from aibench.bundle.load import load_run
from aibench.measure.records import Record
from aibench.report import build_report, render
from aibench.report.charts import HAS_MATPLOTLIB, serving_charts
from aibench.report.html import render_html
from aibench.report.pareto import dominates, pareto_frontier

# --- the frontier, on hand-made points -----------------------------------------------------------


def test_frontier_drops_dominated_points_and_sorts_by_x() -> None:
    points = [(50.0, 1500.0), (100.0, 500.0), (80.0, 400.0), (10.0, 1400.0), (70.0, 900.0)]
    # (80, 400) is beaten by (100, 500); (10, 1400) by (50, 1500); the rest trade one axis for the other.
    assert pareto_frontier(points) == [(50.0, 1500.0), (70.0, 900.0), (100.0, 500.0)]


def test_frontier_of_one_point_and_of_none() -> None:
    assert pareto_frontier([(3.0, 4.0)]) == [(3.0, 4.0)]
    assert pareto_frontier([]) == []


def test_frontier_ties() -> None:
    # The same point twice is one position on the frontier.
    assert pareto_frontier([(1.0, 2.0), (1.0, 2.0)]) == [(1.0, 2.0)]
    # Same x: the higher y dominates; same y: the higher x dominates.
    assert pareto_frontier([(5.0, 1.0), (5.0, 3.0), (2.0, 3.0)]) == [(5.0, 3.0)]
    # Equal on one axis but each better on the other is no tie: both stay.
    assert pareto_frontier([(1.0, 9.0), (2.0, 9.0), (2.0, 1.0), (3.0, 1.0)]) == [(2.0, 9.0), (3.0, 1.0)]


def test_frontier_is_every_non_dominated_point() -> None:
    # Checked against the definition on a grid with many ties (both orders of the input).
    points = [(float(x), float((x * 7 + 3) % 5)) for x in range(12)] + [(4.0, 4.0), (4.0, 4.0), (11.0, 0.0)]
    expected = sorted({p for p in points if not any(dominates(q, p) for q in points)})
    assert pareto_frontier(points) == expected == pareto_frontier(reversed(points))
    assert all(a[1] > b[1] for a, b in pairwise(expected))  # y falls strictly as x rises


def test_dominance_and_non_finite_points() -> None:
    assert dominates((2.0, 2.0), (1.0, 2.0)) and not dominates((2.0, 2.0), (2.0, 2.0))
    assert not dominates((2.0, 1.0), (1.0, 2.0))
    for bad in ((float("nan"), 1.0), (1.0, float("inf"))):
        with pytest.raises(ValueError, match="finite"):
            pareto_frontier([(1.0, 1.0), bad])


# --- the chart in a report -----------------------------------------------------------------------


def _point(device: str, concurrency: int, interactivity: float, per_gpu: float | None,
           why: str | None = "the test says why", **kw: Any) -> Record:
    """One record of an `openai` sweep, with the metric names aibench.serving.metrics writes."""
    metrics = {"output_tokens_per_s": 2 * (per_gpu or 300.0), "tokens_per_s": 2 * (per_gpu or 300.0),
               "ttft_p99_s": 0.2, "tpot_p99_s": 0.01, "goodput_rps": 4.0, "interactivity_tok_s_user": interactivity}
    unavailable = {}
    if per_gpu is not None:
        metrics["output_tokens_per_s_per_gpu"] = per_gpu
    elif why is not None:
        unavailable["output_tokens_per_s_per_gpu"] = why
    return rec("llm.serve", {"model": "tiny", "engine": "aibench", "max_concurrency": concurrency}, device,
               backend="openai", entry=f"serve-http/max_concurrency={concurrency}", metrics=metrics,
               unavailable=unavailable, work={"tokens": 64.0}, **kw)


def _sweeps(tmp_path: Path, preview: bool = False) -> Any:
    a = [_point(H100, 1, 100.0, 500.0), _point(H100, 2, 80.0, 400.0), _point(H100, 4, 50.0, 1500.0)]
    b = [_point(H200, 1, 120.0, 700.0), _point(H200, 2, 90.0, 1200.0), _point(H200, 4, 60.0, None)]
    runs = [load_run(make_run(tmp_path / "a", H100, a, preview=preview)), load_run(make_run(tmp_path / "b", H200, b))]
    return build_report(runs, backend="openai")


def test_a_sweep_is_one_curve_with_each_system_s_points(tmp_path: Path) -> None:
    report = _sweeps(tmp_path)
    (curve,) = report.serving_curves
    assert curve.title == "serve-http" and curve.backend == "openai"
    h100, h200 = curve.points
    assert [(p.interactivity.value, p.per_gpu.value) for p in h100] == [(100.0, 500.0), (80.0, 400.0), (50.0, 1500.0)]
    assert [p.label for p in h100] == [f"serve-http/max_concurrency={c}" for c in (1, 2, 4)]
    assert [p.ok for p in h200] == [True, True, False]
    assert h200[2].per_gpu.value is None and h200[2].per_gpu.reason == "output_tokens_per_s_per_gpu: the test says why"
    rows = [r for r in report.rows if r.workload == "llm.serve"]
    assert [p.ref for p in h100] == [r.cells[0].ref for r in rows]  # each point is its results row's record


def test_a_record_without_a_coordinate_or_not_ok_is_no_point_and_says_why(tmp_path: Path) -> None:
    old = _point(H100, 1, 100.0, None, why=None)  # an older in-process record: no per-GPU output rate
    failed = _point(H100, 2, 80.0, 400.0, status="failed", reason="engine died")
    report = build_report([load_run(make_run(tmp_path, H100, [old, failed]))], backend="openai")
    (curve,) = report.serving_curves
    (points,) = curve.points
    assert [p.ok for p in points] == [False, False]
    assert points[0].per_gpu.reason == "output_tokens_per_s_per_gpu: not in the record"
    assert points[1].interactivity.reason == "status failed"
    charts, notes = serving_charts(report)
    assert charts == [] and notes == ["serve-http (openai): no serving chart: none of its 2 record(s) has both "
                                      "output tokens/s per GPU and interactivity"]


def test_other_workloads_make_no_curve(tmp_path: Path) -> None:
    gemm = rec("gemm", {"m": 64}, H100, entry="gemm", metrics={"tflops": 1.0}, work={"flops": 1e9})
    assert build_report([load_run(make_run(tmp_path, H100, [gemm]))]).serving_curves == ()


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed: no charts are drawn")
def test_html_report_draws_the_chart_and_names_its_points(tmp_path: Path) -> None:
    report = _sweeps(tmp_path)
    (curve,) = report.serving_curves
    (a1, a2, a4), (b1, b2, b4) = curve.points
    (chart,), notes = serving_charts(report)
    assert notes == [] and chart.png_base64 and not chart.preview
    # Points in interactivity order with their coordinates; the frontier by reference.
    assert (f"{H100}: 3 point(s) {a4.ref} (50.00, 1,500), {a2.ref} (80.00, 400.0), {a1.ref} (100.0, 500.0); "
            f"Pareto frontier {a4.ref}, {a1.ref}") in chart.caption
    assert f"{H200}: 2 point(s) {b2.ref} (90.00, 1,200), {b1.ref} (120.0, 700.0); Pareto frontier {b2.ref}, {b1.ref}" \
        in chart.caption
    assert chart.caption.endswith(f"1 point(s) left out, lacking output tokens/s per GPU or interactivity: "
                                  f"{b4.ref} of {H200} (output_tokens_per_s_per_gpu: the test says why)")
    page = render_html(report)
    figure = page.split('<figure class="serving">')[1].split("</figure>")[0]
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', figure)
    assert f"Pareto frontier {a4.ref}, {a1.ref}" in figure and "PREVIEW" not in figure


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed: no charts are drawn")
def test_chart_of_a_preview_run_is_marked(tmp_path: Path) -> None:
    report = _sweeps(tmp_path, preview=True)
    (chart,), _ = serving_charts(report)
    assert chart.preview
    page = render_html(report)
    figure = page.split('<figure class="serving preview">')[1].split("</figure>")[0]
    assert "PREVIEW: not comparable" in figure and "<img" in figure


def test_html_without_charts_has_no_serving_section(tmp_path: Path) -> None:
    assert "Serving: output tokens/s per GPU" not in render_html(_sweeps(tmp_path), charts=False)


def test_markdown_lists_the_points_with_the_frontier_marked(tmp_path: Path) -> None:
    report = _sweeps(tmp_path)
    (curve,) = report.serving_curves
    (a1, a2, a4), (_, _, b4) = curve.points
    text = render(report, "md")
    section = text.split("### Serving: output tokens/s per GPU against interactivity")[1].split("## Energy")[0]
    lines = {line.split(" | ")[-1].rstrip(" |"): line for line in section.splitlines() if line.startswith("| serve")}
    assert len(lines) == 6
    assert "| 100.0 tok/s | 500.0 tok/s | frontier |" in lines[a1.ref]
    assert "| 80.00 tok/s | 400.0 tok/s | dominated |" in lines[a2.ref]
    assert "| frontier |" in lines[a4.ref]
    assert "| unavailable: output_tokens_per_s_per_gpu: the test says why | left out: output_tokens_per_s_per_gpu: " \
        "the test says why |" in lines[b4.ref]
