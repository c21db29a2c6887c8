"""Pairing measurements across systems, ratios, unavailable figures, warnings and per-record TCO.

The builders here (two fake systems written with RunDir + Record) are shared by the other
test_report_* files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aibench.bundle.load import load_run
from aibench.core import stats
from aibench.core.errors import UsageError
from aibench.device.specs import match_spec
from aibench.measure.records import Outcome, Record
from aibench.report import build_report
from aibench.report.model import Report, Row, Value
from aibench.report.tco import Prices, cost_per_million, cost_per_pflop, hourly_eur, units_per_provisioned_mw
from aibench.results.rundir import RunDir
from aibench.results.runs import LoadedRun
from aibench.results.work import expected_work
from aibench.telemetry import calc

H100, H200 = "NVIDIA H100 80GB HBM3", "NVIDIA H200"


def pct_of_peak(tflops: float, device: str) -> float:
    """The % of the bf16 datasheet peak a rate is (readers check it against device/specs.py)."""
    spec = match_spec(device)
    assert spec is not None
    return 100.0 * tflops / spec.peak_tflops["bfloat16"]


GEMM_PARAMS = {"m": 8192, "n": 8192, "k": 8192, "dtype": "bfloat16"}
DECODE_PARAMS = {"model": "llama-8b", "batch": 8}
PRICES = {H100: Prices(capex_eur=25000, lifetime_years=4, power_eur_per_kwh=0.12, pue=1.3, opex_eur_per_year=2000),
          H200: Prices(capex_eur=35000, lifetime_years=4, power_eur_per_kwh=0.12, pue=1.3)}


def telemetry(power_w: float, work: dict[str, float], median_s: float = 1e-3,
              throttled: list[str] | None = None) -> dict[str, Any]:
    per_call = power_w * median_s
    return {"available": True, "reason": None, "method": "counter", "energy_j": per_call * 1000,
            "energy_per_call_j": per_call, "avg_power_w": power_w, "peak_power_w": power_w * 1.1,
            "per_unit": calc.per_unit(per_call, work),
            "throttle": {"reasons_seen": [*(throttled or []), "GpuIdle"], "throttled": bool(throttled)}}


NO_TELEMETRY = {"available": False, "reason": "NVML unavailable: driver not loaded"}


def _fixture_samples(median: float) -> list[float]:
    # Symmetric about `median`, so that the samples give it (readers recompute every summary).
    return [median * (1 + 0.001 * (i - 4.5)) for i in range(10)]


FIXTURE_NOISE = stats.rel_noise(_fixture_samples(1e-3))  # every fixture record's relative noise (to rounding: their medians differ)


def rec(workload: str, params: dict[str, Any], device: str, *, backend: str = "torch", entry: str | None = None,
        metrics: dict[str, float] | None = None, unavailable: dict[str, str] | None = None, status: str = "ok",
        reason: str | None = None, work: dict[str, float] | None = None, tel: dict[str, Any] | None = None,
        median: float = 1e-3, interpreted: bool = False) -> Record:
    formula = expected_work({"workload": workload, "params": params})
    if formula is not None:  # the work its parameters give (readers recompute it from them) ...
        work = {**(work or {}), **formula}
        for unit, amount in formula.items():  # ... and the median that gives the rate the test states
            rate = {"flops": "tflops", "bytes": "gbps"}.get(unit, f"{unit}_per_s")
            if metrics and rate in metrics:
                median = amount / {"flops": 1e12, "bytes": 1e9}.get(unit, 1.0) / metrics[rate]
                break
    samples = _fixture_samples(median)
    timing = None if status != "ok" else {
        "method": "cuda_event", "samples_s": samples, "n": len(samples), "median": stats.median(samples),
        "converged": True, "stop_reason": "test", "total_s": sum(samples), "rel_noise": stats.rel_noise(samples)}
    if timing is not None and work and metrics and formula is None:
        # A rate the test states is what the samples and work give: the work is scaled to it
        # (readers recompute tflops, gbps and <unit>_per_s and refuse a record that disagrees).
        work = dict(work)
        for unit in work:
            rate = {"flops": "tflops", "bytes": "gbps"}.get(unit, f"{unit}_per_s")
            scale = {"flops": 1e12, "bytes": 1e9}.get(unit, 1.0)
            if rate in metrics:
                work[unit] = metrics[rate] * scale * stats.median(samples)
    name = ",".join(f"{k}={v}" for k, v in params.items())
    return Record(id=f"{workload}[{name}]/{backend}", workload=workload, backend=backend, baseline="torch",
                  params=params, entry=entry, device={"spec": "cuda:0", "kind": "cuda", "name": device},
                  status=status, reason=reason, timing=timing, metrics=metrics or {}, unavailable=unavailable or {},
                  work=work or {}, telemetry=tel or NO_TELEMETRY, interpreted=interpreted)


def make_run(root: Path, device: str, records: list[Record], *, system: dict[str, Any] | None = None,
             preview: bool = False, complete: bool = True, suite_version: str = "1.0.0",
             samples: dict[str, list[dict[str, Any]]] | None = None) -> Path:
    run = RunDir.create(root, "t", {
        "comparable": not preview, "preview": preview, "device": {"spec": "cuda:0", "kind": "cuda", "name": device},
        "environment": {"software": {"torch": "2.11.0", "triton": "3.6.0", "driver_version": "570.86"}},
        "environment_sha256": "x", "system": system,
        "suite": {"name": "gigafactory", "version": suite_version, "sha256": "ab" * 32, "mode": "full"}})
    for r in records:
        run.append(Outcome(r, (samples or {}).get(r.id, [])))
    run.finish(complete=complete)
    return run.path


def h100_records() -> list[Record]:
    gemm_work = {"flops": 2 * 8192**3, "bytes": 3 * 2 * 8192**2}
    decode_work = {"tokens": 8.0}
    return [
        rec("gemm", GEMM_PARAMS, H100, entry="gemm-square", metrics={"tflops": 700.0, "pct_peak_tflops": pct_of_peak(700.0, H100)},
            work=gemm_work, tel=telemetry(650.0, gemm_work, throttled=["SwPowerCap"])),
        rec("gemm", GEMM_PARAMS, H100, entry="gemm-square", backend="triton", metrics={"tflops": 600.0}),
        rec("llm.decode", DECODE_PARAMS, H100, entry="decode", work=decode_work,
            metrics={"tokens_per_s": 1000.0, "mbu_pct": 60.0, "tpot_s": 0.008}, tel=telemetry(500.0, decode_work)),
        rec("memory.copy", {"mib": 1024}, H100, entry="copy", metrics={"gbps": 3000.0},
            unavailable={"pct_peak_bandwidth": "no datasheet peak known for this GPU"}),
        rec("llm.prefill", {"model": "llama-8b"}, H100, entry="prefill", metrics={"tokens_per_s": 50000.0},
            unavailable={"mfu_pct": "no datasheet peak known"}),
    ]


def h200_records() -> list[Record]:
    gemm_work = {"flops": 2 * 8192**3, "bytes": 3 * 2 * 8192**2}
    return [
        rec("gemm", GEMM_PARAMS, H200, entry="gemm-square", metrics={"tflops": 770.0, "pct_peak_tflops": pct_of_peak(770.0, H200)},
            work=gemm_work, tel=telemetry(700.0, gemm_work)),
        rec("gemm", GEMM_PARAMS, H200, entry="gemm-square", backend="triton", metrics={"tflops": 690.0}),
        rec("llm.decode", DECODE_PARAMS, H200, entry="decode", work={"tokens": 8.0},
            metrics={"tokens_per_s": 1500.0, "mbu_pct": 62.0, "tpot_s": 0.0053}),  # no telemetry: no power
        rec("memory.copy", {"mib": 1024}, H200, entry="copy", status="failed", reason="CUDA error: out of memory"),
    ]


def two_systems(tmp_path: Path, **h200_kwargs: Any) -> tuple[LoadedRun, LoadedRun]:
    a = make_run(tmp_path / "a", H100, h100_records())
    b = make_run(tmp_path / "b", H200, h200_records(), **h200_kwargs)
    return load_run(a), load_run(b)


def row_of(report: Report, workload: str, backend: str = "torch") -> Row:
    return next(r for r in report.rows if r.workload == workload and r.backend == backend)


def test_pairs_records_and_ratios_against_the_first_system(tmp_path: Path) -> None:
    report = build_report(two_systems(tmp_path))
    assert [s.label for s in report.systems] == [H100, H200]
    assert {(r.workload, r.backend) for r in report.rows} == {
        ("gemm", "torch"), ("llm.decode", "torch"), ("memory.copy", "torch"), ("llm.prefill", "torch")}
    gemm = row_of(report, "gemm")
    a, b = gemm.cells
    assert a is not None and b is not None
    assert [v.value for v in a.values] == [700.0, pct_of_peak(700.0, H100)] and a.ratio.value == 1.0
    assert b.ratio.value == pytest.approx(770.0 / 700.0)
    assert a.rel_noise == pytest.approx(FIXTURE_NOISE, rel=1e-9) and a.record_id.startswith("gemm[") and a.ref and b.ref != a.ref
    decode = row_of(report, "llm.decode").cells[1]
    assert decode is not None and decode.ratio.value == pytest.approx(1.5)
    prefill = row_of(report, "llm.prefill")
    assert prefill.cells[1] is None  # not measured on the H200: no cell, no number


def test_unavailable_metrics_and_failures_carry_reasons_never_zero(tmp_path: Path) -> None:
    report = build_report(two_systems(tmp_path))
    copy_a, copy_b = row_of(report, "memory.copy").cells
    assert copy_a is not None and copy_b is not None
    assert copy_a.values[1].value is None and copy_a.values[1].reason == "no datasheet peak known for this GPU"
    assert copy_b.status == "failed" and copy_b.values == () and copy_b.ratio.value is None
    assert "CUDA error" in (copy_b.reason or "")
    prefill = row_of(report, "llm.prefill").cells[0]
    assert prefill is not None and prefill.values[1] == Value(None, "no datasheet peak known")
    decode_b = row_of(report, "llm.decode").cells[1]
    assert decode_b is not None and not decode_b.energy.measured
    assert decode_b.energy.j_per_unit.reason == "not measured: NVML unavailable: driver not loaded"


def test_energy_figures_from_telemetry(tmp_path: Path) -> None:
    report = build_report(two_systems(tmp_path))
    gemm_a = row_of(report, "gemm").cells[0]
    assert gemm_a is not None
    e = gemm_a.energy
    assert e.avg_power_w.value == 650.0 and e.unit == "tflop" and e.method == "counter"
    assert e.j_per_unit.value == pytest.approx(650.0 * 1e-3 / (2 * 8192**3 / 1e12))
    assert e.throttle == ("SwPowerCap",)  # GpuIdle is not a throttle
    decode_a = row_of(report, "llm.decode").cells[0]
    assert decode_a is not None and decode_a.energy.unit == "token"
    assert decode_a.energy.units_per_j.value == pytest.approx(8.0 / 0.5)


def test_backend_selection(tmp_path: Path) -> None:
    runs = two_systems(tmp_path)
    assert {r.backend for r in build_report(runs, backend="all").rows} == {"torch", "triton"}
    triton = build_report(runs, backend="triton")
    assert [(r.workload, r.backend) for r in triton.rows] == [("gemm", "triton")]
    with pytest.raises(UsageError, match=r"no record has backend 'cutlass'.*torch, triton"):
        build_report(runs, backend="cutlass")


def test_tco_per_record(tmp_path: Path) -> None:
    report = build_report(two_systems(tmp_path), PRICES)
    gemm_a, gemm_b = row_of(report, "gemm").cells
    assert gemm_a is not None and gemm_a.cost is not None and gemm_b is not None and gemm_b.cost is not None
    hourly = hourly_eur(650.0, PRICES[H100])
    assert gemm_a.cost.hourly_eur.value == pytest.approx(hourly, rel=1e-15)
    assert gemm_a.cost.per_work_eur.value == pytest.approx(cost_per_pflop(hourly, 700.0), rel=1e-15)
    assert gemm_a.cost.per_work_label == "EUR / PFLOP" and gemm_a.cost.per_mw.value is None
    decode_a, decode_b = row_of(report, "llm.decode").cells
    assert decode_a is not None and decode_a.cost is not None
    hourly = hourly_eur(500.0, PRICES[H100])
    assert decode_a.cost.per_work_eur.value == pytest.approx(cost_per_million(hourly, 1000.0), rel=1e-15)
    assert decode_a.cost.per_mw.value == pytest.approx(units_per_provisioned_mw(1000.0, 500.0, 1.3), rel=1e-15)
    # No measured power on the H200 decode: the energy part and everything built on it is unavailable.
    assert decode_b is not None and decode_b.cost is not None
    for v in (decode_b.cost.hourly_eur, decode_b.cost.per_work_eur, decode_b.cost.per_mw):
        assert v.value is None and v.reason == "no measured power"
    assert report.systems[1].cost is not None and report.systems[1].cost.fixed_hourly_eur.value == pytest.approx(
        35000 / (4 * 8760))


def test_system_without_prices_entry(tmp_path: Path) -> None:
    report = build_report(two_systems(tmp_path), {H100: PRICES[H100]})
    cost = report.systems[1].cost
    assert cost is not None and cost.prices is None and "no prices for 'NVIDIA H200'" in cost.note
    gemm_b = row_of(report, "gemm").cells[1]
    assert gemm_b is not None and gemm_b.cost is not None and gemm_b.cost.per_work_eur.value is None
    assert "no prices" in (gemm_b.cost.per_work_eur.reason or "")


def test_prices_keyed_by_system_name(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", H100, h100_records(), system={"system_name": "Acme 8xH100", "submitter": "Acme"})
    report = build_report([load_run(a)], {"Acme 8xH100": PRICES[H100]})
    assert report.systems[0].label == "Acme 8xH100" and report.systems[0].submitter == "Acme"
    assert report.systems[0].cost is not None and report.systems[0].cost.note == "Acme 8xH100"


def test_warnings_preview_incomplete_suite_throttle(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", H100, h100_records())
    b = make_run(tmp_path / "b", H200, [*h200_records(), rec("gemm", {"m": 1}, H200, backend="torch",
                                                                 metrics={"tflops": 1.0}, interpreted=True)],
                 preview=True, complete=False, suite_version="2.0.0")
    report = build_report([load_run(a), load_run(b)])
    text = "\n".join(report.warnings)
    assert f"{H200}: PREVIEW run" in text
    assert "incomplete" in text.lower()
    assert "different suites or suite versions" in text and "2.0.0" in text
    assert f"{H100}: THROTTLED during 1 measurement(s) (SwPowerCap)" in text
    assert "CPU interpreter" in text
    assert not any(w.startswith(f"{H100}: PREVIEW") for w in report.warnings)


def test_same_label_twice_is_told_apart(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", H100, h100_records())
    report = build_report([load_run(a), load_run(a)])
    assert [s.label for s in report.systems] == [H100, f"{H100} #2"]
    with pytest.raises(UsageError):
        build_report([])


def test_serving_and_vision_families_and_their_cost_basis(tmp_path: Path) -> None:
    serve_work, vision_work = {"tokens": 64.0}, {"images": 256.0}
    records = [
        rec("llm.serve", {"model": "llama-8b", "rate": "inf"}, H200, work=serve_work, tel=telemetry(600.0, serve_work),
            metrics={"output_tokens_per_s": 4000.0, "tokens_per_s": 4000.0, "ttft_p99_s": 0.25,
                     "tpot_p99_s": 0.02, "goodput_rps": 12.5}),
        rec("vision.resnet50", {"batch": 256}, H200, work=vision_work, tel=telemetry(400.0, vision_work),
            metrics={"images_per_s": 20000.0}),
        rec("custom.thing", {}, H200, metrics={"tokens_per_s": 5.0}),
    ]
    report = build_report([load_run(make_run(tmp_path, H200, records))], PRICES)
    serve = row_of(report, "llm.serve")
    cell = serve.cells[0]
    assert cell is not None and cell.cost is not None
    assert [m.key for m in serve.family.metrics] == ["output_tokens_per_s", "ttft_p99_s", "tpot_p99_s", "goodput_rps"]
    assert [v.value for v in cell.values] == [4000.0, 0.25, 0.02, 12.5]
    # Its samples are request latencies: their spread is not the throughput's, and is not shown.
    assert cell.rel_noise is None and row_of(report, "vision.resnet50").cells[0].rel_noise == pytest.approx(FIXTURE_NOISE, rel=1e-9)
    hourly = hourly_eur(600.0, PRICES[H200])
    assert cell.cost.per_work_eur.value == pytest.approx(cost_per_million(hourly, 4000.0), rel=1e-15)
    vision = row_of(report, "vision.resnet50").cells[0]
    assert vision is not None and vision.cost is not None and vision.energy.unit == "image"
    assert vision.cost.per_work_label == "EUR / 1M images"
    assert vision.cost.per_mw.value == pytest.approx(units_per_provisioned_mw(20000.0, 400.0, 1.3), rel=1e-15)
    other = row_of(report, "custom.thing")
    assert other.family.metrics[0].key == "tokens_per_s" and other.family.name == "Other: custom.thing"


def test_a_prices_entry_no_system_takes_is_a_warning(tmp_path: Path) -> None:
    typo = "NVIDIA H100 80GB"  # the device is "NVIDIA H100 80GB HBM3": a near miss, costed nowhere
    report = build_report(two_systems(tmp_path), {H200: PRICES[H200], typo: PRICES[H100]}, prices_source="p.toml")
    assert [w for w in report.warnings if "prices entry" in w] == [
        f"prices entry '{typo}' in p.toml matches no system of this report"]
    assert not any("prices entry" in w for w in build_report(two_systems(tmp_path / "b"), PRICES).warnings)


def test_unreadable_throttle_reasons_read_unknown_not_no(tmp_path: Path) -> None:
    from aibench.report.model import energy_texts

    work = {"flops": 2 * 8192**3}
    known = telemetry(600.0, work)
    unknown = {**known, "throttle": None}  # AMD, RAPL, or NVML answering NotSupported
    report = build_report([load_run(make_run(tmp_path, H200, [
        rec("gemm", {"m": 1}, H200, entry="a", metrics={"tflops": 1.0}, work=work, tel=known),
        rec("gemm", {"m": 2}, H200, entry="b", metrics={"tflops": 1.0}, work=work, tel=unknown)]))])
    cells = [row.cells[0] for row in report.rows]
    assert [energy_texts(c.energy)[-1] for c in cells if c is not None] == ["no", "unknown"]


def test_the_same_run_given_twice_is_said(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path, H100, h100_records()))
    report = build_report([run, run])
    assert any("are the same run" in w for w in report.warnings)
    assert not any("are the same run" in w for w in build_report(two_systems(tmp_path / "b")).warnings)


def test_division_per_system(tmp_path: Path) -> None:
    # make_run names the shipped gigafactory suite: closed, but a directory was never verified.
    a, _ = two_systems(tmp_path)
    (system,) = build_report([a]).systems
    assert system.division.startswith("closed (unverified")
    custom = make_run(tmp_path / "c", H100, h100_records())
    manifest_path = custom / "manifest.json"
    text = manifest_path.read_text().replace('"name": "gigafactory"', '"name": "my-own"')
    manifest_path.write_text(text)
    (system,) = build_report([load_run(custom)]).systems
    assert system.division == "open"


def test_a_node_under_load_is_said_with_its_widest_spread(tmp_path: Path) -> None:
    import dataclasses

    records = h100_records()
    load = {"world_size": 8, "slowest_rank": 5, "slowest_host": "node-a", "spread": 0.125}
    records[0] = dataclasses.replace(records[0], details={"node_load": load})
    records[2] = dataclasses.replace(records[2], details={"node_load": {**load, "spread": 0.02, "slowest_rank": 1}})
    report = build_report([load_run(make_run(tmp_path / "a", H100, records))])
    (note,) = [w for w in report.warnings if "every GPU" in w]
    assert "2 measurement(s)" in note and "12.5%" in note and "rank 5 on node-a" in note
    plain = build_report([load_run(make_run(tmp_path / "b", H100, h100_records()))])
    assert not [w for w in plain.warnings if "every GPU" in w]
