"""Run rules and schemas: what a buyer learns about a well-formed bundle's contents."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from bundle_helpers import (
    bundle_json,
    default_records,
    manifest,
    record,
    run_files,
    signed_bundle,
    timing_for,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aibench.bundle import VerifyReport, documents, verify
from aibench.bundle.findings import shown
from aibench.measure.records import record_schema

KEY = Ed25519PrivateKey.generate()


def _verify(tmp_path: Path, man: dict[str, Any] | None = None, records: list[dict[str, Any]] | None = None,
            extra: dict[str, bytes] | None = None) -> VerifyReport:
    path = signed_bundle(tmp_path / "b.tar.gz", run_files(man, records, extra), key=KEY)
    return verify(path, KEY.public_key())


def _codes(report: VerifyReport, severity: str) -> set[str]:
    return {f.code for f in report.findings if f.severity == severity}


def _timing(**changes: Any) -> dict[str, Any]:
    """The helper record's timing with `changes`; new samples bring their own summary (verify
    recomputes it from the samples) unless a change sets it."""
    samples = changes.pop("samples_s", record()["timing"]["samples_s"])
    return timing_for(samples, **changes)


def test_clean_bundle_has_no_findings(tmp_path: Path) -> None:
    report = _verify(tmp_path)
    assert report.valid and report.findings == ()
    assert report.summary["statuses"] == {"ok": 2} and report.summary["suite"] == "tiny"


def test_incomplete_run_is_an_error(tmp_path: Path) -> None:
    report = _verify(tmp_path, manifest(complete=False, finished_at=None))
    assert not report.valid and _codes(report, "error") == {"run_incomplete"}


def test_preview_and_not_comparable_are_warnings(tmp_path: Path) -> None:
    report = _verify(tmp_path, manifest(preview=True, comparable=False))
    assert report.valid and _codes(report, "warning") == {"preview", "not_comparable"}


def test_edited_environment_is_an_error(tmp_path: Path) -> None:
    man = manifest()
    man["environment"]["software"]["torch"] = "2.99.0"  # edited after the run; hash left as it was
    report = _verify(tmp_path, man)
    assert _codes(report, "error") == {"environment_hash_mismatch"}


def test_missing_torch_version_is_a_warning(tmp_path: Path) -> None:
    man = manifest(environment={"host": {"cpu": "x"}})
    recs = [dict(r, environment=man["environment_sha256"]) for r in default_records()]
    report = _verify(tmp_path, man, recs)
    assert report.valid and _codes(report, "warning") == {"versions_missing"}


@pytest.mark.parametrize("env", [{"software": {"torch": "2.11"}}, {"torch": "2.11"},
                                 {"versions": {"torch_version": "2.11"}},
                                 {"packages": {"torch": {"version": "2.11"}}}])
def test_torch_version_layouts_accepted(tmp_path: Path, env: dict[str, Any]) -> None:
    assert "versions_missing" not in _verify(tmp_path, manifest(environment=env)).codes


def test_entry_without_any_record_is_an_error(tmp_path: Path) -> None:
    report = _verify(tmp_path, records=default_records()[:1])
    assert not report.valid and _codes(report, "error") == {"entry_missing"}
    assert "'copy'" in report.errors[0].message


def test_listed_backend_without_record_is_an_error(tmp_path: Path) -> None:
    man = manifest()
    man["suite"]["entries"][0]["backends"] = ["torch", "triton"]
    report = _verify(tmp_path, man)
    assert _codes(report, "error") == {"entry_missing"} and "triton" in report.errors[0].message


def test_whole_entry_skip_covers_the_backends_it_lists(tmp_path: Path) -> None:
    # `preview = { skip = true }` on an entry that lists its backends: the suite writes one skipped
    # record with backend "*" for the whole entry (a preview `ci` bundle failed verify on this).
    man = manifest()
    man["suite"]["entries"][0]["backends"] = ["torch", "triton"]
    skipped = record(backend="*", id="gemm[]/*", status="skipped", timing=None, metrics={}, baseline=None,
                     reason="not part of the preview run (the entry sets preview.skip = true)")
    report = _verify(tmp_path, man, [skipped, *default_records()[1:]])
    assert report.valid and _codes(report, "warning") == {"record_skipped"}
    # A "*" record that claims to be measured covers nothing: the listed backends are still missing.
    not_skipped = dict(skipped, status="failed", reason="crashed")
    assert _codes(_verify(tmp_path, man, [not_skipped, *default_records()[1:]]), "error") == {"entry_missing"}


@pytest.mark.parametrize("status", ["skipped", "failed", "invalid"])
def test_non_ok_with_reason_is_a_warning(tmp_path: Path, status: str) -> None:
    recs = [record(status=status, reason="no fp8 on this GPU", timing=None, metrics={}), *default_records()[1:]]
    report = _verify(tmp_path, records=recs)
    assert report.valid and _codes(report, "warning") == {f"record_{status}"}
    assert "no fp8" in report.warnings[0].message


def test_skip_without_reason_is_an_error(tmp_path: Path) -> None:
    recs = [record(status="skipped", reason=None, timing=None), *default_records()[1:]]
    assert _codes(_verify(tmp_path, records=recs), "error") == {"unexplained_status"}


def test_too_few_samples_is_an_error(tmp_path: Path) -> None:
    recs = [record(timing=_timing(n=5, samples_s=[1e-3] * 5)), *default_records()[1:]]
    report = _verify(tmp_path, records=recs)
    assert _codes(report, "error") == {"min_duration"}
    assert report.errors[0].record == "gemm[m=64]/torch"


def test_short_but_converged_is_fine_short_unconverged_is_not(tmp_path: Path) -> None:
    short = [1e-3] * 100  # 0.1 s of samples, under the manifest's min_time_s = 0.5
    ok = _verify(tmp_path, records=[record(timing=_timing(samples_s=short)), *default_records()[1:]])
    assert ok.valid and not ok.findings
    bad = _verify(tmp_path, records=[record(timing=_timing(samples_s=short, converged=False, stop_reason="timeout")),
                                     *default_records()[1:]])
    assert _codes(bad, "error") == {"min_duration"} and _codes(bad, "warning") == {"not_converged"}
    # A CUDA-graph sample is a replay of 20 calls divided by 20: those 0.1 s of samples are 2 s measured.
    graphed = _timing(samples_s=short, converged=False, stop_reason="timeout", calls_per_sample=20)
    assert "min_duration" not in _verify(tmp_path, records=[record(timing=graphed), *default_records()[1:]]).codes


def test_noisy_measurement_is_a_warning(tmp_path: Path) -> None:
    # Samples that are really noisy (a claimed rel_stderr_median the samples do not give is a lie).
    rng = random.Random(3)
    noisy = [1e-3 * (1 + 0.4 * rng.random()) for _ in range(20)]
    report = _verify(tmp_path, records=[record(timing=_timing(samples_s=noisy)), *default_records()[1:]])
    assert report.valid and _codes(report, "warning") == {"noisy"}
    lying = _verify(tmp_path, records=[record(timing=_timing(rel_stderr_median=0.05)), *default_records()[1:]])
    assert "summary_mismatch" in _codes(lying, "error")


def test_ok_without_timing_is_an_error(tmp_path: Path) -> None:
    report = _verify(tmp_path, records=[record(timing=None), *default_records()[1:]])
    assert _codes(report, "error") == {"timing_missing"}


def test_correctness(tmp_path: Path) -> None:
    unchecked = {"checked": False, "passed": None, "detail": "no reference"}
    report = _verify(tmp_path, records=[record(correctness=unchecked), *default_records()[1:]])
    assert report.valid and _codes(report, "warning") == {"correctness_unchecked"}
    failed = {"checked": True, "passed": False, "rel_error": 0.5}
    report = _verify(tmp_path, records=[record(correctness=failed), *default_records()[1:]])
    assert _codes(report, "error") == {"correctness_failed"}


def test_throttling_is_a_warning_naming_reasons(tmp_path: Path) -> None:
    flags = {"reasons_seen": ["GpuIdle", "SwPowerCap", "HwThermalSlowdown"], "throttled": True,
             "power_capped": True, "thermal": True, "throttled_share_max": 0.4}
    tel = {"available": True, "reason": None, "throttle": flags}
    report = _verify(tmp_path, records=[record(telemetry=tel), *default_records()[1:]])
    assert report.valid and _codes(report, "warning") == {"throttled"}
    assert "SwPowerCap" in report.warnings[0].message and "GpuIdle" not in report.warnings[0].message


def test_idle_only_is_not_throttling(tmp_path: Path) -> None:
    flags = {"reasons_seen": ["GpuIdle"], "throttled": False, "power_capped": False, "thermal": False,
             "throttled_share_max": 0.0}
    tel = {"available": True, "reason": None, "throttle": flags}
    report = _verify(tmp_path, records=[record(telemetry=tel), *default_records()[1:]])
    assert report.valid and not report.warnings


def test_telemetry_file_must_be_in_bundle(tmp_path: Path) -> None:
    tel = {"available": True, "reason": None, "samples_file": "telemetry/0000-gemm.csv"}
    assert _verify(tmp_path, records=[record(telemetry=tel), *default_records()[1:]]).findings == ()
    tel["samples_file"] = "telemetry/missing.csv"
    report = _verify(tmp_path, records=[record(telemetry=tel), *default_records()[1:]])
    assert _codes(report, "warning") == {"telemetry_missing"}


def test_record_consistency_warnings(tmp_path: Path) -> None:
    recs = [record(environment="ff" * 32, aibench_version="0.0.1", interpreted=True),
            *default_records()[1:], record(entry="nowhere")]
    report = _verify(tmp_path, records=recs)
    assert report.valid
    assert _codes(report, "warning") == {"environment_mismatch", "version_mismatch", "interpreted",
                                         "unknown_entry"}


def test_duplicate_record_is_a_warning(tmp_path: Path) -> None:
    report = _verify(tmp_path, records=[*default_records(), record()])
    assert report.valid and _codes(report, "warning") == {"duplicate_record"}


def test_schema_violation_names_the_field(tmp_path: Path) -> None:
    bad = record()
    del bad["device"]
    bad["status"] = "great"
    report = _verify(tmp_path, records=[bad, *default_records()[1:]])
    messages = [f.message for f in report.errors if f.code == "schema_invalid"]
    assert len(messages) == 2 and any("device" in m for m in messages) and any("great" in m for m in messages)


@pytest.mark.parametrize("sample", [-1e-3, 0, True, "1"])
def test_bad_raw_sample_is_a_schema_error(tmp_path: Path, sample: Any) -> None:
    samples = [1e-3] * 20
    samples[7] = sample
    report = _verify(tmp_path, records=[record(timing=_timing(samples_s=samples)), *default_records()[1:]])
    assert _codes(report, "error") >= {"schema_invalid"}
    assert any("samples_s[7]" in f.message for f in report.errors)


@pytest.mark.parametrize("change", [
    {}, {"timing": None}, {"timing": "fast"}, {"timing": {"n": 3}},
    {"timing": _timing(samples_s=[1e-3, -1.0])}, {"timing": _timing(samples_s=[])},
    {"timing": _timing(samples_s=[1e-3, None])}, {"timing": _timing(method="stopwatch")},
])
def test_fast_record_validation_agrees_with_the_schema(change: dict[str, Any]) -> None:
    rec = record(**change)
    full = list(jsonschema.Draft202012Validator(record_schema()).iter_errors(rec))
    fast = list(documents.record_validator().iter_errors(rec))
    assert bool(full) == bool(fast or documents._bad_sample(rec) is not None)


def test_manifest_schema_violation(tmp_path: Path) -> None:
    man = manifest()
    del man["run_rules"]["min_samples"]
    man["complete"] = "yes"
    report = _verify(tmp_path, man)
    assert _codes(report, "error") == {"schema_invalid"} and len(report.errors) == 2


def test_manifest_extra_keys_allowed_under_environment_and_system(tmp_path: Path) -> None:
    env = {**manifest()["environment"], "gpus": [{"name": "NVIDIA H100", "uuid": "GPU-1"}]}
    man = manifest(system={"anything": [1, 2], "cooling": "liquid"}, environment=env)
    recs = [dict(r, environment=man["environment_sha256"]) for r in default_records()]
    assert _verify(tmp_path, man, recs).findings == ()


def test_no_suite_skips_coverage(tmp_path: Path) -> None:
    report = _verify(tmp_path, manifest(suite=None), records=[record(entry=None)])
    assert report.valid and report.findings == ()


def test_blank_lines_ignored_but_bad_line_reported_with_line_number(tmp_path: Path) -> None:
    text = b"\n".join(json.dumps(r).encode() for r in default_records()) + b"\n\n{oops\n"
    report = _verify(tmp_path, extra={"records.jsonl": text})
    assert _codes(report, "error") == {"json_malformed"} and report.errors[0].record == "line 4"


def test_findings_are_capped_per_code(tmp_path: Path) -> None:
    doc = json.loads(bundle_json(run_files()))
    for i in range(250):
        doc["files"][f"run/ghost/{i}.csv"] = {"sha256": "0" * 64, "size": 1}
    path = signed_bundle(tmp_path / "b.tar.gz", key=KEY, doc=json.dumps(doc).encode())
    report = verify(path, KEY.public_key())
    missing = [f for f in report.errors if f.code == "missing_member"]
    assert len(missing) == 101 and missing[-1].message == "... and 150 more missing_member findings"


def test_shown_escapes_and_truncates() -> None:
    assert shown("a\x1b[31mb") == "a\\x1b[31mb"
    assert len(shown("x" * 1000)) == 200
