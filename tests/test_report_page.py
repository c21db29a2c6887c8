"""The HTML page: each chart beside its table, PREVIEW marks, log axes, and a 1400 px page in Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_report_build import two_systems

from aibench.report import build_report
from aibench.report.charts import HAS_MATPLOTLIB, needs_log_scale
from aibench.report.html import render_html
from aibench.results.commitments import commitments_from_run


def test_log_scale_only_beyond_a_hundredfold_span() -> None:
    assert needs_log_scale([1.0, 100.5])
    assert not needs_log_scale([1.0, 100.0])
    assert not needs_log_scale([5.0]) and not needs_log_scale([0.0, 0.5, 20.0])  # a 0 is not a span


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed: no charts are drawn")
def test_each_chart_sits_beside_its_table(tmp_path: Path) -> None:
    page = render_html(build_report(two_systems(tmp_path)))
    pairs = page.split('<div class="pair">')[1:]
    assert pairs and all("<table>" in p.split("</div>")[0] for p in pairs)
    assert sum("<img" in p.split("</div>")[0] for p in pairs) >= 1


def _chromium() -> str | None:
    return next((p for name in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(name))), None)


def test_page_fits_1400px_in_headless_chromium(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: no headless Chromium")
    if _chromium() is None:
        pytest.skip("no chromium, chromium-browser or google-chrome on PATH")
    page_file = tmp_path / "report.html"
    runs = two_systems(tmp_path)  # with the commitments section: its long measurement names wrap too
    report = build_report(runs, commitments=commitments_from_run(runs[0]), commitments_source="bid.toml")
    page_file.write_text(render_html(report), encoding="utf-8")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium())
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(page_file.as_uri())
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        browser.close()
    assert (tmp_path / "report.png").stat().st_size > 0
    assert width <= 1400
