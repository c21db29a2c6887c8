"""A bundle that verifies can still carry hostile text: it must not reach the buyer's terminal as
control sequences (stdout in every format, the warnings on stderr), and verification's record-level
findings that the report states itself are not said twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundle_helpers import default_records, manifest, record, run_files, write_run_dir
from click.testing import CliRunner

from aibench.bundle import pack
from aibench.cli.common import AibenchGroup
from aibench.cli.report import report_command
from aibench.report.markdown import md

CLI = AibenchGroup(name="aibench", commands={"report": report_command})
# Clear the screen, set the window title, paint red; a carriage return to overwrite the line.
ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x1b[31m"


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(CLI, ["report", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def evil_bundle(tmp_path: Path) -> Path:
    man = manifest(system={"system_name": f"evil{ESCAPES}box", "accelerator_model_name": "none"})
    failed = record(entry="copy", workload="memory.copy", id="memory.copy[]/torch", status="failed",
                    reason=f"boom{ESCAPES}\rall fine", timing=None, metrics={})
    throttle = {"reasons_seen": ["SwPowerCap"], "throttled": True}
    gemm = record(telemetry={"available": True, "reason": None, "method": "counter", "avg_power_w": 300.0,
                             "per_unit": {"j_per_tflop": 0.5, "tflop_per_j": 2.0}, "throttle": throttle},
                  interpreted=True)
    return pack(write_run_dir(tmp_path, run_files(man, [gemm, failed])), tmp_path / "evil.tar.gz")


@pytest.mark.parametrize("fmt", ["md", "csv", "html"])
def test_no_control_sequence_reaches_the_terminal(evil_bundle: Path, fmt: str) -> None:
    code, out, err = _invoke(str(evil_bundle), "--format", fmt)
    assert code == 0, err
    assert "evil" in out and "evil" in err  # the label is shown, made inert
    for text in (out, err):
        assert "\x1b" not in text and "\x07" not in text and "\r" not in text


def test_markdown_cell_escapes_control_characters() -> None:
    # The escape's backslash is itself escaped, so Markdown shows the text "\x1b" as it was sent.
    assert md("a\x1b[31mb\x07") == "a\\\\x1b\\[31mb\\\\x07"


def test_verification_findings_the_report_states_itself_are_said_once(evil_bundle: Path) -> None:
    code, out, err = _invoke(str(evil_bundle))
    assert code == 0, err
    warnings = out.split("## Warnings")[1].split("## Systems")[0]
    assert warnings.count("CPU interpreter") == 1 and warnings.count("SwPowerCap") == 1, warnings
    assert "THROTTLED during 1 measurement(s)" in warnings and "unsigned" in warnings


def test_chart_labels_are_drawn_inert(evil_bundle: Path) -> None:
    """matplotlib warns about each glyph it lacks, quoting it: ESC reached stderr that way."""
    import warnings

    from aibench.bundle.load import load_run
    from aibench.report import build_report
    from aibench.report.charts import HAS_MATPLOTLIB, headline_charts

    if not HAS_MATPLOTLIB:
        pytest.skip("matplotlib is not installed")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        charts, _ = headline_charts(build_report([load_run(evil_bundle)]))
    assert charts and not [w for w in seen if "Glyph" in str(w.message)]


def test_unknown_backend_error_lists_the_runs_backends_inert(tmp_path: Path) -> None:
    evil = record(backend=f"torch{ESCAPES}", id=f"gemm[m=64]/torch{ESCAPES}")
    files = run_files(records=[*default_records(), evil])
    bundle = pack(write_run_dir(tmp_path, files), tmp_path / "b.tar.gz")
    code, _, err = _invoke(str(bundle), "--backend", "nope")
    assert code == 2 and "no record has backend 'nope'" in err and "torch" in err
    assert "\x1b" not in err and "\x07" not in err
