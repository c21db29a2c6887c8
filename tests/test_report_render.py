"""Markdown, HTML and CSV renderings: hostile text stays inert, numbers stay traceable, charts draw."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from test_report_build import H100, H200, PRICES, h100_records, make_run, rec, telemetry, two_systems

from aibench.bundle.load import load_run
from aibench.report import build_report, render
from aibench.report.csvout import COLUMNS, guard
from aibench.report.markdown import md

EVIL = '<script>alert(1)</script> | =cmd\n"quoted" $\\frac{a$'


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    records = [
        rec("gemm", {"m": 64, "note": EVIL}, H200, entry="=HYPERLINK(\"http://x\")",
            metrics={"tflops": 5.0, "pct_peak_tflops": 1.0}),
        rec("memory.copy", {"mib": 1}, H200, entry="copy", status="failed", reason=EVIL),
    ]
    return make_run(tmp_path / "evil", H200, records, system={"system_name": EVIL, "submitter": "@evil"})


def test_markdown_cell_escaping() -> None:
    assert md("a|b\nc\r\nd") == "a\\|b c d"
    assert md("<script>x</script>") == "&lt;script&gt;x&lt;/script&gt;"
    assert md("[link](javascript:x) `code` back\\") == "\\[link\\](javascript:x) \\`code\\` back\\\\"
    assert md("$x$") == "\\$x\\$"


def test_markdown_report_is_inert_and_tables_stay_whole(tmp_path: Path, hostile: Path) -> None:
    a = make_run(tmp_path / "a", H100, h100_records())
    text = render(build_report([load_run(a), load_run(hostile)]), "md")
    assert "<script>" not in text and "&lt;script&gt;" in text
    # Every row of a table has exactly the header's columns: no unescaped pipe or newline got in.
    tables = [block for block in text.split("\n\n") if block.startswith("|")]
    for table in tables:
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in table.splitlines()}
        assert len(widths) == 1, table
    assert "failed: &lt;script&gt;" in text  # status and reason, never a number
    assert "unavailable: no datasheet peak known for this GPU" in text


def test_markdown_sections(tmp_path: Path) -> None:
    text = render(build_report(two_systems(tmp_path), PRICES, prices_source="prices.toml"), "md")
    for heading in ("## Systems", "## Results", "### Compute", "### LLM decode", "## Energy",
                    "## Total cost of ownership", "## Records"):
        assert heading in text
    assert "1.10x" in text  # 770 / 700 TFLOP/s
    assert "700.0 TFLOP/s ±0.4%" in text
    assert "EUR / 1M tokens" in text and "unavailable: no measured power" in text
    assert "| not measured |" in text  # the prefill ran on the H100 only
    assert "SwPowerCap" in text


def test_cost_table_lists_measured_records_of_priced_systems_only(tmp_path: Path) -> None:
    skipped = rec("llm.decode", {"model": "llama-70b"}, H100, entry="decode-70b", status="skipped",
                  reason="model needs 140 GiB, device has 80")
    a = make_run(tmp_path / "a", H100, [*h100_records(), skipped])
    b = make_run(tmp_path / "b", H200, h100_records()[:1])
    text = render(build_report([load_run(a), load_run(b)], {H100: PRICES[H100]}, prices_source="p.toml"), "md")
    tco = text.split("## Total cost of ownership")[1].split("## Records")[0]
    assert f"| {H200} | TCO unavailable: no prices for '{H200}'" in tco  # said in the prices table,
    assert tco.count(f"no prices for '{H200}'") == 1  # not again on each of its rows
    cost_rows = [line for line in tco.splitlines() if line.startswith("| ") and "EUR/h" in line]
    assert cost_rows and all(f"| {H100} |" in line for line in cost_rows)
    assert "decode-70b" not in tco  # skipped: nothing to cost
    energy = text.split("## Energy")[1].split("## Total cost of ownership")[0]
    assert "decode-70b" not in energy and "| decode |" in energy  # no energy window, no energy row


def test_html_escapes_everything_hostile(tmp_path: Path, hostile: Path) -> None:
    a = make_run(tmp_path / "a", H100, h100_records())
    page = render(build_report([load_run(a), load_run(hostile)], PRICES), "html")
    assert "<script>" not in page and "alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '"quoted"' not in page and "&#34;quoted&#34;" in page  # attribute values cannot be closed
    assert page.count("data:image/png;base64,") >= 3  # one chart per headline metric group
    assert re.search(r'title="r\d+: record gemm\[m=8192', page)  # every number names its record
    records = page[page.index("<h2>Records</h2>"):]
    assert "&lt;script&gt;" in records and "<script" not in records and "\x1b" not in page


def test_html_without_charts_and_single_system(tmp_path: Path) -> None:
    from aibench.report.html import render_html

    a = make_run(tmp_path / "a", H100, h100_records())
    page = render_html(build_report([load_run(a)]), charts=False)
    assert "data:image/png" not in page and "<h2>Records</h2>" in page
    records = page[page.index("<h2>Records</h2>"):]
    # The records table is escaped in Python, not by the template: real markup, once.
    assert '<tr><td class="ref" id="r1">r1</td>' in records and "&lt;tr&gt;" not in records


def test_csv_rows_guard_and_unavailable(tmp_path: Path, hostile: Path) -> None:
    a = make_run(tmp_path / "a", H100, h100_records())
    report = build_report([load_run(a), load_run(hostile)], PRICES)
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert list(rows[0]) == list(COLUMNS)
    assert len(rows) == len(report.cells())  # one row per system x record
    evil = [r for r in rows if r["device"] == H200]
    assert all(r["system"].startswith("<script>") for r in evil)
    assert evil[0]["entry"].startswith("'=HYPERLINK")
    failed = next(r for r in evil if r["status"] == "failed")
    assert failed["value"] == "" and failed["reason"].startswith("<script>")
    copy = next(r for r in rows if r["device"] == H100 and r["workload"] == "memory.copy")
    assert copy["metric"] == "gbps" and float(copy["value"]) == 3000.0 and copy["record_id"].startswith("memory.copy")
    assert copy["avg_power_w"] == "" and copy["energy_unavailable"].startswith("not measured")
    decode = next(r for r in rows if r["device"] == H100 and r["workload"] == "llm.decode")
    assert float(decode["cost_per_million_tokens_eur"]) > 0 and float(decode["avg_power_w"]) == 500.0


@pytest.mark.parametrize(("value", "expected"), [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
    ("ok", "ok"), (3.5, 3.5), ("", ""),
])
def test_csv_formula_guard(value: object, expected: object) -> None:
    assert guard(value) == expected


def test_power_chart_from_run_directory_and_note_for_bundles(tmp_path: Path) -> None:
    from aibench.report.charts import power_charts

    work = {"flops": 1e12}
    r = rec("gemm", {"m": 1}, H100, metrics={"tflops": 1.0}, work=work, tel=telemetry(300.0, work))
    rows = [{"device": 0, "t_rel_s": i * 0.1, "t": 100 + i * 0.1, "power_instant_w": 300.0 + i} for i in range(20)]
    rows.append({"device": 0, "t_rel_s": 2.0, "t": 102.0, "power_instant_w": None})  # a missed sample: skipped
    run = make_run(tmp_path / "a", H100, [r], samples={r.id: rows})
    report = build_report([load_run(run)])
    charts, notes = power_charts(report)
    assert len(charts) == 1 and not notes and charts[0].png_base64
    from dataclasses import replace

    as_bundle = replace(report, systems=(replace(report.systems[0], is_dir=False),))
    charts, notes = power_charts(as_bundle)
    assert not charts and "never extracted" in notes[0]


def test_power_chart_refuses_paths_outside_the_run(tmp_path: Path) -> None:
    from aibench.report.charts import power_charts

    work = {"flops": 1e12}
    r = rec("gemm", {"m": 1}, H100, metrics={"tflops": 1.0}, work=work,
            tel={**telemetry(300.0, work), "samples_file": "../../etc/passwd"})
    report = build_report([load_run(make_run(tmp_path / "a", H100, [r]))])
    assert report.rows[0].cells[0] is not None
    charts, notes = power_charts(report)
    assert not charts and "not read" in notes[0]


def test_charts_hold_at_most_ten_systems_each_in_its_own_colour(tmp_path: Path) -> None:
    from aibench.report.charts import MAX_SYSTEMS, headline_charts

    runs = [load_run(make_run(tmp_path / f"s{i}", H100, h100_records(), system={"system_name": f"sys-{i}"}))
            for i in range(MAX_SYSTEMS + 2)]
    charts, notes = headline_charts(build_report(runs))
    assert charts and f"the charts show the first {MAX_SYSTEMS} of {MAX_SYSTEMS + 2} systems" in notes[0]
    few, few_notes = headline_charts(build_report(runs[:MAX_SYSTEMS]))
    assert not any("systems" in note for note in few_notes)
    assert len(few) == len(charts)


def test_with_more_systems_a_chart_shows_fewer_measurements_and_says_so(tmp_path: Path) -> None:
    from aibench.report.charts import MAX_BARS, MAX_BARS_TOTAL, charted_measurements, headline_charts

    assert [charted_measurements(n) for n in (1, 2, 4, 5, 10, 50)] == [30, 30, 30, 24, 12, 12]
    assert all(charted_measurements(n) * min(n, 10) <= max(MAX_BARS_TOTAL, MAX_BARS) for n in range(1, 60))
    runs = [load_run(make_run(tmp_path / f"s{i}", H100,
                              [rec("gemm", {"m": m}, H100, metrics={"tflops": 1.0 + m}) for m in range(1, 15)],
                              system={"system_name": f"sys-{i}"})) for i in range(10)]
    charts, notes = headline_charts(build_report(runs))
    assert charts and any("the chart shows the first 12 of 14 measurements" in n for n in notes)
    _, few_notes = headline_charts(build_report(runs[:2]))  # 2 systems: all 14 charted
    assert not any("measurements" in n for n in few_notes)
