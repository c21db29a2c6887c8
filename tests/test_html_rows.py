"""html_rows writes the long tables' rows in Python: each value must come out exactly as the
autoescaping template printed it (its finalize, then markupsafe's escape)."""

from __future__ import annotations

import jinja2
import markupsafe
import pytest

from aibench.report import html_rows
from aibench.report.html import _inert

HOSTILE = ['<script>alert("x")</script>', "a & b", "it's", '"quoted"', "&amp; already", "\x1b[31mred\x1b[0m",
           "line\nbreak\ttab", "\u202eright-to-left", "", "plain", "<<>>&&''\"\""]


@pytest.mark.parametrize("value", [*HOSTILE, 12.5, 7, None])
def test_esc_writes_the_bytes_the_template_wrote(value: object) -> None:
    assert html_rows.esc(value) == str(markupsafe.escape(_inert(value)))
    env = jinja2.Environment(autoescape=True, finalize=_inert)
    assert html_rows.esc(value) == env.from_string("{{ v }}").render(v=value)


def test_every_field_of_every_long_table_is_escaped() -> None:
    bad = '<b x="1">&\x1b'
    shown = "&lt;b x=&#34;1&#34;&gt;&amp;\\x1b"
    tables = {
        html_rows.results_rows: {"cls": bad, "title": bad, "label": bad, "backend": bad, "system": bad,
                                 "texts": [bad, bad], "ratio": bad, "ref": bad},
        html_rows.titled_rows: {"label": bad, "system": bad, "texts": [bad, bad, bad], "title": bad, "ref": bad},
        html_rows.records_rows: {"ref": bad, "system": bad, "id": bad, "source": bad},
    }
    for write, row in tables.items():
        out = str(write([row]))
        assert "<b" not in out and "\x1b" not in out, write.__name__
        values = sum(len(v) if isinstance(v, list) else 1 for v in row.values())
        extra_titles = len(row["texts"]) if write is html_rows.titled_rows else 0  # each cell titled
        assert out.count(shown) == values + extra_titles + (1 if write is html_rows.records_rows else 0), write.__name__
        assert isinstance(write([row]), markupsafe.Markup)


def test_charts_drawn_in_a_forked_process_are_the_charts_drawn_here(monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile
    from pathlib import Path

    from bundle_helpers import manifest, record, run_files, write_run_dir

    from aibench.bundle.load import load_run
    from aibench.report import build_report
    from aibench.report import chart_worker as cw
    from aibench.report.html import render_html

    with tempfile.TemporaryDirectory() as tmp:
        runs = [load_run(write_run_dir(Path(tmp) / f"r{i}", run_files(man=manifest(run_id=f"run-{i}"),
                                                                      records=[record()])))
                for i in range(2)]
        report = build_report(runs)
        here = render_html(report)
        monkeypatch.setattr(cw, "PARALLEL_MIN_CELLS", 0)
        assert render_html(report) == here  # forked (Linux), the same page

        def broken(report: object, send: object) -> None:  # a child that dies without a word
            import os
            os._exit(3)

        monkeypatch.setattr(cw, "_draw", broken)
        assert render_html(report) == here  # drawn here instead
