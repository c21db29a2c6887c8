"""`aibench report` end to end through click: formats, a real bundle, exit codes of bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from bundle_helpers import manifest, record, run_files, write_run_dir
from click.testing import CliRunner
from test_report_build import H100, H200, two_systems

from aibench.bundle import pack
from aibench.cli.common import AibenchGroup
from aibench.cli.report import output_format, report_command, warning_code
from aibench.core.errors import UsageError

EXAMPLE_PRICES = Path(__file__).resolve().parent.parent / "examples" / "prices.toml"
# The lead registers the command on the root group; the test uses the same error translation.
CLI = AibenchGroup(name="aibench", commands={"report": report_command})


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(CLI, ["report", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def runs(tmp_path: Path) -> list[str]:
    a, b = two_systems(tmp_path)
    return [a.source, b.source]


def test_markdown_on_stdout_with_tco(runs: list[str]) -> None:
    code, out, err = invoke(*runs, "--tco", str(EXAMPLE_PRICES))
    assert code == 0, err
    assert out.startswith(f"# aibench report: {H100}, {H200}")
    assert "## Total cost of ownership" in out and "EUR / PFLOP" in out
    assert "THROTTLED" in err  # warnings also go to stderr


def test_html_and_csv_files(tmp_path: Path, runs: list[str]) -> None:
    html_path, csv_path = tmp_path / "r.html", tmp_path / "r.csv"
    code, out, err = invoke(*runs, "-o", str(html_path))
    assert code == 0, err
    assert out == "" and html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    code, _, err = invoke(*runs, "-o", str(csv_path), "--backend", "all")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert {r["backend"] for r in rows} == {"torch", "triton"}
    code, out, _ = invoke(*runs, "--format", "csv")
    assert code == 0 and out.startswith("system,device,")


def test_real_bundle(tmp_path: Path) -> None:
    gemm = record(telemetry={"available": True, "reason": None, "method": "counter", "avg_power_w": 310.0,
                             "energy_per_call_j": 0.31, "per_unit": {"j_per_tflop": 0.5, "tflop_per_j": 2.0},
                             "samples_file": "telemetry/0000-gemm.csv"})
    files = run_files(records=[gemm, record(entry="copy", workload="memory.copy", id="memory.copy[]/torch")])
    bundle = pack(write_run_dir(tmp_path, files), tmp_path / "acme.tar.gz")
    code, out, err = invoke(str(bundle), "--format", "html")
    assert code == 0, err
    assert "test box" in out and "unsigned" in out  # the bundle's verification warning is loud
    assert "never extracted" in out  # no power chart from a bundle
    assert "310 W" in out or "310.0 W" in out


def test_preview_run_is_flagged(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path, run_files(manifest(preview=True, comparable=False)))
    code, out, _ = invoke(str(run))
    assert code == 0 and "PREVIEW run" in out
    # From a bundle, verification's own preview findings are not repeated under the loud line.
    code, out, _ = invoke(str(pack(run, tmp_path / "preview.tar.gz")))
    assert code == 0 and out.count("PREVIEW run") == 1
    assert "preview: a preview run" not in out and "marks itself not comparable" not in out


def test_bad_prices_file_exit_2_names_the_key(tmp_path: Path, runs: list[str]) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[systems."NVIDIA H200"]\ncapex_eur = 1\nlifetime_years = 4\npower_eur_per_kwh = 0.1\n'
                      "pue = 0.5\n", encoding="utf-8")
    code, _, err = invoke(*runs, "--tco", str(prices))
    assert code == 2 and 'systems."NVIDIA H200".pue' in err and str(prices) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unreadable_run_exit_1(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    code, _, err = invoke(str(tmp_path / "junk"))
    assert code == 1 and "not a run directory" in err
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"not a tarball")
    code, _, err = invoke(str(broken))
    assert code == 1 and "does not verify" in err


def test_usage_errors_exit_2(tmp_path: Path, runs: list[str]) -> None:
    code, _, err = invoke(*runs, "--backend", "nope")
    assert code == 2 and "no record has backend 'nope'" in err
    code, _, err = invoke(*runs, "-o", str(tmp_path / "r.pdf"))
    assert code == 2 and "r.pdf" in err
    code, _, _ = invoke()
    assert code == 2


def test_output_format_choice() -> None:
    assert output_format(None, None) == "md"
    assert output_format(None, Path("x.HTML")) == "html"
    assert output_format("csv", Path("x.html")) == "csv"
    with pytest.raises(UsageError):
        output_format(None, Path("x.txt"))


def test_records_are_not_mutated(tmp_path: Path, runs: list[str]) -> None:
    before = (Path(runs[0]) / "records.jsonl").read_text(encoding="utf-8")
    assert invoke(*runs)[0] == 0
    assert (Path(runs[0]) / "records.jsonl").read_text(encoding="utf-8") == before
    assert all(json.loads(line) for line in before.splitlines())


def test_warning_codes_drop_the_system_and_counts() -> None:
    labels = ["H100", "H100 #2"]
    assert warning_code("H100 #2: THROTTLED during 3 measurement(s) (SwPowerCap): clocks", labels) == \
        "THROTTLED during N measurement(s) (SwPowerCap)"
    assert warning_code("H100: PREVIEW run (CPU or shrunk sizes): its numbers", labels) == \
        "PREVIEW run (CPU or shrunk sizes)"


def test_quiet_warnings_one_line_per_kind_and_the_verdict_last(tmp_path: Path) -> None:
    a = write_run_dir(tmp_path / "a", run_files(manifest(preview=True)))
    b = write_run_dir(tmp_path / "b", run_files(manifest(preview=True)))
    code, _, err = invoke(str(a), str(b))
    assert code == 0, err
    lines = err.strip().splitlines()
    preview = [line for line in lines if line.startswith("warning PREVIEW")]
    assert len(preview) == 1 and preview[0].startswith("warning PREVIEW run (CPU or shrunk sizes): 2 x, e.g. ")
    assert lines[-1].startswith("verdict: PREVIEW (not comparable): ")
    code, _, err = invoke(str(a), str(b), "--verbose")
    lines = err.strip().splitlines()
    assert sum("PREVIEW run" in line for line in lines) == 2 and lines[-1].startswith("verdict: ")


def test_example_prices_show_the_tco_section_for_a_cpu_preview_run(tmp_path: Path) -> None:
    cpu = {"spec": "cpu", "kind": "cpu", "name": "Some CPU model 9000", "index": None}
    run = write_run_dir(tmp_path, run_files(manifest(preview=True, comparable=False, device=cpu),
                                            [record(preview=True, device=cpu)]))
    code, out, err = invoke(str(run), "--tco", str(EXAMPLE_PRICES))
    assert code == 0, err
    tco_section = out[out.index("## Total cost of ownership"):out.index("## Records")]
    assert "| test box | cpu | 3,000 EUR | 4 years |" in tco_section  # matched by kind, not CPU model
    # the gemm record has a row; with no power reading its cost is unavailable, never a guess
    assert "| gemm-small | test box | unavailable: not measured: no NVML | unavailable: no measured power |" \
        in tco_section
    code, page, err = invoke(str(run), "--tco", str(EXAMPLE_PRICES), "--format", "html")
    assert code == 0, err
    section = page[page.index("<h2>Total cost of ownership</h2>"):page.index("<h2>Records</h2>")]
    assert '<tr><td>test box</td><td>cpu</td><td class="num">3,000 EUR</td>' in section
