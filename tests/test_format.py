"""The results table a person reads: metrics, noise, power, energy and throttle flags."""

from __future__ import annotations

from rich.console import Console

from aibench.cli.format import records_table


def _render(records: list[dict]) -> str:
    console = Console(width=200, record=True)
    console.print(records_table(records))
    return console.export_text()


def test_table_shows_power_energy_and_throttling() -> None:
    rec = {
        "workload": "gemm", "entry": None, "params": {"m": 8192}, "backend": "triton", "status": "ok",
        "reason": None, "timing": {"median": 0.0015, "rel_noise": 0.004},
        "metrics": {"tflops": 712.3, "speedup": 0.93},
        "telemetry": {"available": True, "avg_power_w": 688.2, "energy_per_call_j": 1.04,
                      "throttle": {"throttled": True, "reasons_seen": ["GpuIdle", "SwPowerCap"]}},
    }
    text = _render([rec])
    assert "1.5 ms" in text and "±0.4%" in text and "712.3" in text and "0.93x" in text
    assert "688 W" in text and "1.04 J" in text and "throttled: SwPowerCap" in text and "GpuIdle" not in text


def test_failed_record_shows_reason_and_no_numbers() -> None:
    rec = {"workload": "gemm", "entry": "gemm-x", "params": {}, "backend": "torch", "status": "failed",
           "reason": "out of memory: tried to allocate 80 GiB", "timing": None, "metrics": {},
           "telemetry": {"available": False, "reason": "no NVML"}}
    text = _render([rec])
    assert "failed" in text and "out of memory" in text


def test_small_measured_values_keep_their_digits_and_none_renders() -> None:
    # A preview run on a CPU: the interpreter's kernel is thousands of times slower than torch.
    # Those ratios are measured; printed as "0.0" and "0.00x" they would read as zeros.
    rec = {"workload": "gemm", "entry": "gemm-small", "params": {}, "backend": "triton", "status": "ok",
           "reason": None, "timing": {"median": 0.0205, "rel_noise": 0.03},
           "metrics": {"tflops": 0.000381, "gbps": 0.0123, "speedup": 0.00062, "pct_peak_tflops": None},
           "telemetry": {"available": False}}
    text = _render([rec])
    assert "0.000381" in text and "0.0123" in text and "0.00062x" in text
    assert "0.0 " not in text and "0.00x" not in text


def test_brackets_in_labels_and_reasons_are_text_not_markup() -> None:
    rec = {"workload": "memory.copy", "entry": None, "params": {"mib": 8}, "backend": "torch", "status": "failed",
           "reason": "RuntimeError: in [/opt/x.py] at [bold]", "timing": None, "metrics": {},
           "telemetry": {"available": False}}
    text = _render([rec])  # an unescaped "[/opt/x.py]" is a closing tag rich cannot match: MarkupError
    assert "[/opt/x.py]" in text and "[bold]" in text


def test_plan_table_keeps_case_ids_with_brackets() -> None:
    from aibench.cli.format import plan_table

    console = Console(width=200, record=True)
    console.print(plan_table([{"case": "gemm[m=1]", "workload": "gemm", "backends": ["torch"], "timer": {},
                               "skip_reason": "needs [/dev/nvidia0]"}]))
    text = console.export_text()
    assert "gemm[m=1]" in text and "needs [/dev/nvidia0]" in text


def test_collectives_show_their_bus_and_algorithm_bandwidth() -> None:
    rec = {"workload": "collective.all_reduce", "entry": None, "params": {"size_mib": 64}, "backend": "torch",
           "status": "ok", "reason": None, "timing": {"median": 0.001, "rel_noise": 0.01},
           "metrics": {"busbw_gbps": 371.2, "algbw_gbps": 212.1}, "telemetry": {"available": False}}
    text = _render([rec])
    assert "busbw GB/s" in text and "371.2" in text and "algbw GB/s" in text and "212.1" in text
