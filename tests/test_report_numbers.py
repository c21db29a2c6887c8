"""Numbers a record cannot vouch for (a 0 W energy window, NaN/inf in a hand-edited run) are shown as
unavailable with a reason in every format: never "0.00 W", "nan", "inf", and never a traceback."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_report_build import H100, PRICES, make_run, rec, row_of, telemetry

from aibench.bundle.load import load_run
from aibench.report import build_report, render

DECODE_WORK = {"tokens": 8.0}


def _decode(tel: dict[str, Any]) -> Any:
    return rec("llm.decode", {"model": "llama-8b", "batch": 8}, H100, entry="decode", work=DECODE_WORK,
               metrics={"tokens_per_s": 1000.0, "mbu_pct": 60.0, "tpot_s": 0.008}, tel=tel)


def _zero_power() -> dict[str, Any]:
    """What the telemetry core writes when the energy counter did not advance over the window."""
    tel = telemetry(0.0, DECODE_WORK)
    tel.update(energy_j=0.0, energy_per_call_j=0.0)
    tel["per_unit"] = {"j_per_token": None, "tokens_per_j": None}
    return tel


def test_zero_watt_window_is_no_power_reading_not_a_crash(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path, H100, [_decode(_zero_power())]))
    report = build_report([run], PRICES)  # raised ZeroDivisionError in the per-MW figure
    cell = row_of(report, "llm.decode").cells[0]
    assert cell is not None and cell.cost is not None
    assert not cell.energy.measured and "0 W" in (cell.energy.avg_power_w.reason or "")
    for v in (cell.cost.hourly_eur, cell.cost.per_work_eur, cell.cost.per_mw):
        assert v.value is None and v.reason
    for fmt in ("md", "html"):
        text = render(report, fmt)
        assert "0.00 W" not in text and "0.000 W" not in text
    row = next(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert row["avg_power_w"] == "" and row["hourly_cost_eur"] == "" and row["energy_unavailable"]


def _rewrite(run: Path, change: Any) -> None:
    """Edit records.jsonl by hand, as someone with a text editor could (NaN/Infinity literals allowed)."""
    path = run / "records.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for r in records:
        change(r)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_numbers_of_a_run_directory_are_unavailable(tmp_path: Path, bad: float) -> None:
    first = make_run(tmp_path / "a", H100, [_decode(telemetry(500.0, DECODE_WORK))])
    second = make_run(tmp_path / "b", H100, [_decode(telemetry(500.0, DECODE_WORK))])

    def poison(r: dict[str, Any]) -> None:
        r["metrics"]["tokens_per_s"] = bad
        r["timing"]["rel_noise"] = bad
        r["telemetry"]["avg_power_w"] = bad
        r["telemetry"]["per_unit"]["j_per_token"] = bad

    _rewrite(second, poison)
    report = build_report([load_run(first), load_run(second)], PRICES)
    cell = row_of(report, "llm.decode").cells[1]
    assert cell is not None and cell.cost is not None
    # A rate its samples and work do not give (NaN, inf) refuses the record (results/recompute.py):
    # no number of it is shown, and the energy it carries is unavailable, never nan.
    assert cell.status == "invalid" and not cell.values and cell.ratio.value is None and cell.rel_noise is None
    assert cell.energy.avg_power_w.value is None and cell.energy.j_per_unit.value is None
    assert cell.cost.hourly_eur.value is None and cell.cost.per_work_eur.value is None
    for fmt in ("md", "html", "csv"):
        assert not re.search(r"\b(nan|inf)\b", render(report, fmt), re.IGNORECASE), fmt


def test_collectives_show_bus_bandwidth_and_compare(tmp_path: Path) -> None:
    """The gigafactory suite's interconnect rows: nccl-tests' busbw is the headline, algbw beside it."""
    params = {"size_mib": 1024, "dtype": "bfloat16", "ranks": 8}
    work = {"collectives": 11.0}

    def all_reduce(device: str, busbw: float) -> Any:
        return rec("collective.all_reduce", params, device, entry="allreduce", work=work,
                   metrics={"algbw_gbps": busbw / 1.75, "busbw_gbps": busbw}, tel=telemetry(5200.0, work))

    a = make_run(tmp_path / "a", H100, [all_reduce(H100, 360.0)])
    b = make_run(tmp_path / "b", "NVIDIA H200", [all_reduce("NVIDIA H200", 450.0)])
    report = build_report([load_run(a), load_run(b)], PRICES)
    row = row_of(report, "collective.all_reduce")
    assert [m.key for m in row.family.metrics] == ["busbw_gbps", "algbw_gbps"]
    first, second = row.cells
    assert first is not None and second is not None
    assert [v.value for v in second.values] == [450.0, 450.0 / 1.75]
    assert second.ratio.value == pytest.approx(450.0 / 360.0)
    assert second.energy.j_per_unit.value == pytest.approx(5200.0 * 1e-3 / 11.0)
    text = render(report, "md")
    assert "450.0 GB/s" in text and "1.25x" in text and "collectives/J" in text
    csv_row = next(r for r in csv.DictReader(io.StringIO(render(report, "csv"))) if r["device"] == H100)
    assert csv_row["metric"] == "busbw_gbps" and float(csv_row["value"]) == 360.0 and not csv_row["value_unavailable"]


def test_csv_reason_of_a_workload_without_a_headline_metric(tmp_path: Path) -> None:
    odd = rec("custom.thing", {}, H100, metrics={"latency_ms": 3.0})
    row = next(csv.DictReader(io.StringIO(render(build_report([load_run(make_run(tmp_path, H100, [odd]))]), "csv"))))
    assert row["status"] == "ok" and row["value"] == ""
    assert row["value_unavailable"] == "no headline metric"  # was "status ok", as if that were a reason


def test_a_whole_entry_skip_stands_in_the_rows_another_system_measured(tmp_path: Path) -> None:
    """An A100 skips the fp8 entry as a whole (one record, backend "*", the entry's id without the
    shape); the H100 measured its shapes. The A100's cells there say why, and no extra row claims
    the H100 did not measure the entry."""
    from dataclasses import replace

    a100 = "NVIDIA A100-SXM4-80GB"
    shape = {"m": 8192, "n": 8192, "k": 8192, "dtype": "float8_e4m3"}
    measured = [rec("gemm", {**shape, "m": m}, H100, entry=f"gemm-fp8-square/m={m},n=8192,k=8192",
                    metrics={"tflops": 1300.0 + m / 1024}) for m in (4096, 8192)]
    skip = replace(rec("gemm", {"dtype": "float8_e4m3"}, a100, entry="gemm-fp8-square", backend="*",
                       status="skipped", reason="needs fp8 support, which this device lacks"), baseline=None)
    only_a100 = replace(rec("gemm", {}, a100, entry="gemm-int4", backend="*", status="skipped",
                            reason="int4 is not in this build"), baseline=None)
    runs = [load_run(make_run(tmp_path / "a", H100, measured)),
            load_run(make_run(tmp_path / "b", a100, [skip, only_a100]))]
    for backend in ("baseline", "torch", "all"):
        report = build_report(runs, backend=backend)
        fp8 = [r for r in report.rows if (r.entry or "").startswith("gemm-fp8-square")]
        assert [r.backend for r in fp8] == ["torch", "torch"], backend  # no row of its own for the skip
        for row in fp8:
            cell = row.cells[1]
            assert cell is not None and cell.status == "skipped" and "needs fp8" in (cell.reason or "")
            assert cell.record_id == skip.id and cell.ratio.value is None
    # Skipped by the only system that has the entry: its own row, as before.
    int4 = next(r for r in build_report(runs).rows if r.entry == "gemm-int4")
    assert int4.cells[0] is None and int4.cells[1] is not None and int4.cells[1].status == "skipped"
    text = render(build_report(runs), "md")
    assert "| gemm-fp8-square | \\* |" not in text and text.count("skipped: needs fp8 support") == 2
