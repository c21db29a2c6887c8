"""Hostile numbers in a signed bundle or a run directory: no crash, no nan, nothing impossible shown.

Each case starts from an honest gemm record (every derived number consistent, as verify recomputes
it) and puts one hostile number in one place, re-signed with the vendor's own key: 1e308, the
largest float, 1e200, a subnormal, 1e-300, 0, -0.0, integers past 64 bits and past the float
range, long lists; a "consistent" case also re-derives what follows from it, as a careful liar
would (the summary from the samples, the work from the params, the rates from both, the energy
figures from the window). Every case then goes through `bundle verify --json`, `report` (md, html,
csv; the honest run beside it) and `compare honest hostile --json`, as a bundle and as a run
directory, and must:
- exit 0, 1 or 2 with no exception other than click's exit (no traceback);
- never show nan or inf as a number (a refusal's reason says "not a finite number" instead);
- refuse a number that cannot be true (verify names it, report says refused and shows none of
  its numbers, compare calls it broken), or reject the whole run where the number breaks its
  documents (schema, strict JSON); an `accepted` case is one whose hostile number is either true
  to life or shown nowhere.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bundle_helpers import default_records, manifest, record, run_files, signed_bundle, write_run_dir
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aibench.bundle import keys
from aibench.cli import cli
from aibench.core import stats
from aibench.core.formulas import per_unit
from aibench.device.specs import match_spec
from aibench.report.csvout import COLUMNS
from aibench.results.recompute import REFUSING_CODES, expected_metrics
from aibench.results.work import expected_work

H100 = "NVIDIA H100 80GB HBM3"
GEMM_ID = "gemm[m=64,n=48,k=40,dtype=bfloat16]/torch"
MAX_FLOAT = 1.7976931348623157e308
TELEMETRY_CSV = "telemetry/0000-gemm.csv"

Mutation = Callable[[dict[str, Any]], None]


# --- the honest record and its derivations ---------------------------------------------------


def _derive_timing(rec: dict[str, Any]) -> None:
    """Every summary statistic from the samples, as the timer writes them; where a statistic cannot
    be computed (samples whose squares overflow), the careful liar leaves the optional ones out."""
    timing = rec["timing"]
    samples = timing["samples_s"]
    for name in ("mean", "stdev", "min", "max", "p5", "p25", "p75", "p95", "mad", "ci95_median", "rel_noise",
                 "rel_stderr_median"):
        timing.pop(name, None)
    try:
        timing.update(stats.summarize(samples))
    except (ValueError, TypeError, OverflowError):
        timing.update(n=len(samples), median=stats.median(samples))
    timing["total_s"] = math.fsum(samples) if math.isfinite(sum(samples)) else MAX_FLOAT


def _derive_work(rec: dict[str, Any]) -> None:
    want = expected_work(rec)
    if want is not None:
        rec["work"] = {unit: min(float(amount), MAX_FLOAT) for unit, amount in want.items()}


def _derive_rates(rec: dict[str, Any]) -> None:
    metrics = {"latency_ms": rec["timing"]["median"] * 1e3, **expected_metrics(rec)}
    spec = match_spec(H100)
    assert spec is not None
    if "tflops" in metrics:
        metrics["pct_peak_tflops"] = 100.0 * metrics["tflops"] / spec.peak_tflops["bfloat16"]
    rec["metrics"] = {k: v for k, v in metrics.items() if math.isfinite(v)}


def _derive_energy(rec: dict[str, Any]) -> None:
    tel = rec["telemetry"]
    energy, calls, window = tel["energy_j"], tel["calls"], tel["duration_s"]
    per_call = energy / calls if calls else None
    tel.update(energy_per_call_j=per_call, avg_power_w=energy / window if window else None,
               devices=[{"index": 0, "energy_j": energy}], work_per_call=dict(rec["work"]),
               per_unit=per_unit(per_call, rec["work"]))


def _derive_all(rec: dict[str, Any]) -> None:
    _derive_timing(rec)
    _derive_work(rec)
    _derive_rates(rec)
    _derive_energy(rec)


def honest() -> dict[str, Any]:
    samples = [1e-3 * (1 + 0.001 * i) for i in range(20)]
    rec = record(id=GEMM_ID, params={"m": 64, "n": 48, "k": 40, "dtype": "bfloat16"},
                 device={"spec": "cuda:0", "kind": "cuda", "name": H100, "index": 0})
    rec["timing"] = {"method": "cuda_event", "samples_s": samples, "n": 20, "median": 0.0, "converged": True,
                     "stop_reason": "converged", "total_s": 0.0, "warmup_s": 0.1}
    rec["telemetry"] = {"available": True, "reason": None, "method": "counter", "energy_j": 1.4, "calls": 2000,
                        "duration_s": 2.0}
    _derive_all(rec)
    return rec


def _records(rec: dict[str, Any]) -> list[dict[str, Any]]:
    return [rec, *default_records()[1:]]


# --- the mutations ------------------------------------------------------------------------------


def _put(path: str, value: Any, then: Mutation | None = None) -> Mutation:
    """Set the field at a dotted path (list items by index), then re-derive with `then`."""
    def mutate(rec: dict[str, Any]) -> None:
        *outer, last = path.split(".")
        box: Any = rec
        for key in outer:
            box = box[int(key)] if isinstance(box, list) else box[key]
        box[int(last) if isinstance(box, list) else last] = value
        if then is not None:
            then(rec)
    return mutate


def _all_samples(value: float | int) -> Mutation:
    def mutate(rec: dict[str, Any]) -> None:
        # spread downwards: 1.001 x the largest float would be inf, which no JSON holds
        rec["timing"]["samples_s"] = [value * (1 - 0.001 * i) if isinstance(value, float) else value + i
                                      for i in range(20)]
        _derive_all(rec)
    return mutate


def _long_samples(rec: dict[str, Any]) -> None:
    rec["timing"]["samples_s"] = [1e-4 * (1 + 1e-5 * i) for i in range(10_000)]  # the timer's max_samples
    rec["duration_s"] = 1.5  # 1 s of samples and the warm-up: the case lasted longer
    _derive_all(rec)


def _many_devices(rec: dict[str, Any]) -> None:
    rec["telemetry"]["devices"] = [{"index": i, "energy_j": 1.4 / 10_000} for i in range(10_000)]


def _many_per_unit(rec: dict[str, Any]) -> None:
    rec["telemetry"]["per_unit"].update({f"j_per_x{i}": 1.0 for i in range(1000)})


def _power_csv(rec: dict[str, Any]) -> None:
    rec["telemetry"]["samples_file"] = TELEMETRY_CSV


@dataclass(frozen=True)
class Case:
    mutate: Mutation
    bundle: str  # "accepted", "refused" or "rejected" (the run as a whole does not verify)
    code: str  # the finding verify names ("" for accepted)
    directory: str = ""  # the same as a run directory, where it differs ("" = as the bundle)
    man: Callable[[dict[str, Any]], None] | None = None
    extra: dict[str, bytes] | None = None


def _sys(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["system"].update(fields)


HUGE_INTS = {"1e30": 10**30, "2^63": 2**63, "2^64+1": 2**64 + 1}
PAST_FLOAT = 10**400

CASES: dict[str, Case] = {
    # Raw samples: past a year, under a nanosecond, overflowing, or zero (schema: > 0).
    **{f"samples={name}": Case(_all_samples(v), "refused", "impossible_value")
       for name, v in {"1e200": 1e200, "subnormal": 5e-324, "1e-300": 1e-300, **HUGE_INTS}.items()},
    # Their sum overflows: no total_s can be consistent with them (a rule of verify; a directory's
    # loader has no rules, and refuses the record for what it holds).
    **{f"samples={name}": Case(_all_samples(v), "rejected", "timing_inconsistent", directory="refused")
       for name, v in {"1e308": 1e308, "max": MAX_FLOAT}.items()},
    "samples=0": Case(_put("timing.samples_s.3", 0), "rejected", "schema_invalid"),
    "samples=-0.0": Case(_put("timing.samples_s.3", -0.0), "rejected", "schema_invalid"),
    "samples=one subnormal": Case(_put("timing.samples_s.3", 5e-324, _derive_all), "refused", "impossible_value"),
    "samples=one 1e200": Case(_put("timing.samples_s.3", 1e200, _derive_all), "refused", "impossible_value"),
    "samples=one 1e200, summary kept": Case(_put("timing.samples_s.3", 1e200), "rejected", "timing_inconsistent",
                                            directory="refused"),
    "samples=one past float": Case(_put("timing.samples_s.3", PAST_FLOAT), "rejected", "json_nonfinite"),
    "samples=10k": Case(_long_samples, "accepted", ""),
    # Summary claims against honest samples.
    **{f"timing.{name}={label}": Case(_put(f"timing.{name}", v), "refused", "summary_mismatch")
       for name in ("median", "mean", "stdev", "ci95_median.0", "rel_noise", "rel_stderr_median")
       for label, v in {"1e308": 1e308, "subnormal": 5e-324, "-0.0": -0.0}.items()
       if (name, label) != ("median", "-0.0")},
    **{f"timing.median={label}": Case(_put("timing.median", v), "rejected", "schema_invalid")  # schema: > 0
       for label, v in {"0": 0, "-0.0": -0.0}.items()},
    "timing.total_s=1e308": Case(_put("timing.total_s", 1e308), "rejected", "timing_inconsistent",
                                 directory="accepted"),  # total_s is a rule's input; a directory has no rules
    "timing.n=2^64+1": Case(_put("timing.n", 2**64 + 1), "rejected", "timing_inconsistent", directory="refused"),
    "timing.ci95_median=long": Case(_put("timing.ci95_median", [1e-3] * 10_000), "rejected", "schema_invalid"),
    "timing.warmup_s=1e308": Case(_put("timing.warmup_s", 1e308), "refused", "impossible_value"),
    "timing.calls_per_sample=2^63": Case(_put("timing.calls_per_sample", 2**63), "refused", "impossible_value"),
    # Rates and shares the work and samples do not give, or that no chip reaches.
    **{f"metrics.tflops={label}": Case(_put("metrics.tflops", v), "refused", "metric_mismatch")
       for label, v in {"1e308": 1e308, "subnormal": 5e-324, "0": 0, "1e30": 10**30}.items()},
    **{f"metrics.pct_peak_tflops={label}": Case(_put("metrics.pct_peak_tflops", v), "refused", "metric_mismatch")
       for label, v in {"1e308": 1e308, "subnormal": 5e-324, "0": 0, "-0.0": -0.0}.items()},
    "metrics.tflops=past float": Case(_put("metrics.tflops", PAST_FLOAT), "rejected", "json_nonfinite"),
    # Work the params do not give; params no workload runs at, or whose work no device does.
    **{f"work.flops={label}": Case(_put("work.flops", v), "refused", "work_mismatch")
       for label, v in {"1e308": 1e308, "subnormal": 5e-324, "0": 0, "2^64+1": 2**64 + 1}.items()},
    **{f"params.m={label} (consistent)": Case(_put("params.m", v, _derive_all), "refused", "work_mismatch")
       for label, v in {"1e308": 1e308, "64.0": 64.0, "0": 0, "-0.0": -0.0, **HUGE_INTS}.items()},
    "params.k=2^40 (consistent)": Case(_put("params.k", 2**40, _derive_all), "refused", "metric_mismatch"),
    "params.m=past float": Case(_put("params.m", PAST_FLOAT), "rejected", "json_nonfinite"),
    # The energy window's figures, raw and re-derived from a hostile energy, count or window.
    **{f"telemetry.{name}={label}": Case(_put(f"telemetry.{name}", v), "refused", "energy_mismatch")
       for name in ("energy_j", "avg_power_w", "energy_per_call_j", "per_unit.j_per_tflop", "devices.0.energy_j")
       for label, v in {"1e308": 1e308, "subnormal": 5e-324}.items()},
    **{f"telemetry.energy_j={label} (consistent)": Case(_put("telemetry.energy_j", v, _derive_energy), "refused",
                                                        "impossible_value")
       for label, v in {"1e300": 1e300, "1e200": 1e200, "1e-300": 1e-300, **HUGE_INTS}.items()},
    "telemetry.energy_j=0 (consistent)": Case(_put("telemetry.energy_j", 0, _derive_energy), "accepted", ""),
    **{f"telemetry.calls={label} (consistent)": Case(_put("telemetry.calls", v, _derive_energy), "refused", code)
       for label, v, code in (("1e-300", 1e-300, "energy_mismatch"), ("0.5", 0.5, "energy_mismatch"),
                              ("1e200", 1e200, "impossible_value"), ("2^63", 2**63, "impossible_value"))},
    **{f"telemetry.duration_s={label} (consistent)": Case(_put("telemetry.duration_s", v, _derive_energy), "refused",
                                                          "impossible_value")
       for label, v in {"1e-300": 1e-300, "1e308": 1e308}.items()},
    "telemetry.duration_s=0": Case(_put("telemetry.duration_s", 0), "refused", "impossible_value"),
    "telemetry.devices=10k": Case(_many_devices, "accepted", ""),
    "telemetry.per_unit=1k names": Case(_many_per_unit, "refused", "energy_mismatch"),
    "telemetry.csv=hostile power": Case(_power_csv, "accepted", "", extra={TELEMETRY_CSV: (
        b"t_rel_s,device,power_instant_w\n0.0,0,nan\n0.1,0,inf\n0.2,0,1e308\n0.3,0,-5\n0.4,0,1e999\n0.5,0,300\n"
        b"nan,0,300\n0.6,0,301\n")}),
    # Correctness claims.
    "correctness.rel_error=1e308": Case(_put("correctness.rel_error", 1e308), "refused", "correctness_contradiction"),
    "correctness.rel_error=subnormal": Case(_put("correctness.rel_error", 5e-324), "accepted", ""),
    # The case's own duration against its samples and its timestamps.
    **{f"duration_s={label}": Case(_put("duration_s", v), "refused", "impossible_value")
       for label, v in {"1e308": 1e308, "1e-300": 1e-300, "subnormal": 5e-324, "2^64+1": 2**64 + 1}.items()},
    "duration_s=0": Case(_put("duration_s", 0), "accepted", ""),  # Record's default: "not stated"
    "duration_s=past float": Case(_put("duration_s", PAST_FLOAT), "rejected", "json_nonfinite"),
    # The manifest: a count no node has is no count (per-GPU scores), not a refusal of the numbers.
    **{f"manifest.accelerators_per_node={label}": Case(lambda rec: None, "accepted", "",
                                                       man=_sys(accelerator_model_name="H100", accelerators_per_node=v))
       for label, v in {"1e308": 1e308, "1e30": 10**30, "2^63": 2**63}.items()},
    "manifest.accelerators_per_node=past float": Case(
        lambda rec: None, "rejected", "json_nonfinite", man=_sys(accelerators_per_node=PAST_FLOAT)),
    "manifest.min_samples=2^64+1": Case(lambda rec: None, "rejected", "min_duration", directory="accepted",
                                        man=lambda m: m["run_rules"].update(min_samples=2**64 + 1)),
}

# Only a run directory can hold these (strict JSON has no NaN or Infinity: a bundle refuses them).
DIRECTORY_ONLY: dict[str, Case] = {
    "timing.median=nan": Case(_put("timing.median", math.nan), "", "", directory="refused"),
    "samples=one nan": Case(_put("timing.samples_s.3", math.nan), "", "", directory="refused"),
    "metrics.tflops=inf": Case(_put("metrics.tflops", math.inf), "", "", directory="refused"),
    "telemetry.avg_power_w=inf": Case(_put("telemetry.avg_power_w", math.inf), "", "", directory="refused"),
    "telemetry.energy_j=nan": Case(_put("telemetry.energy_j", math.nan), "", "", directory="refused"),
    "correctness.rel_error=nan": Case(_put("correctness.rel_error", math.nan), "", "", directory="refused"),
}


# --- running the commands -------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    honest_pub: Path
    vendor: Ed25519PrivateKey
    vendor_pub: Path
    honest_bundle: Path
    honest_dir: Path


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    root = tmp_path_factory.mktemp("keys")
    honest_key, vendor = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    (root / "honest.pub").write_bytes(keys.public_pem(honest_key.public_key()))
    (root / "vendor.pub").write_bytes(keys.public_pem(vendor.public_key()))
    files = run_files(None, _records(honest()))
    bundle = signed_bundle(root / "honest.tar.gz", files, honest_key)
    (root / "dir").mkdir()
    return Keys(root / "honest.pub", vendor, root / "vendor.pub", bundle, write_run_dir(root / "dir", files))


def _cli(*args: Any) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    # click's own exits only: a usage error (2), a ClickException or a failed gate (1), success (0)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    assert result.exit_code in (0, 1, 2), (args, result.output)
    assert "Traceback" not in result.output
    return result


# "nan", "inf", "infinity" as a word: how Python formats a non-finite float.
_NON_FINITE = re.compile(r"(?<![\w.-])-?(nan|inf|infinity)(?![\w])", re.IGNORECASE)


def _no_non_finite_shown(text: str) -> None:
    """No nan or inf shown as a number, not even in a refused record's reason: the findings it
    quotes say "not a finite number" instead (recompute._shown)."""
    for line in text.splitlines():
        # stats' own reason for unreadable samples names NaN in words: no number shown
        assert not _NON_FINITE.search(line.replace("samples contain NaN", "")), line


def _csv_numbers_finite(text: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and set(rows[0]) == set(COLUMNS)
    numeric = ("median_s", "rel_noise", "value", "ratio_to_first", "avg_power_w", "j_per_unit", "units_per_j",
               "hourly_cost_eur", "cost_per_work_eur", "units_per_s_per_mw")
    for row in rows:
        for name in numeric:
            assert row[name] == "" or math.isfinite(float(row[name])), (name, row)
    return rows


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in JSON output")
    return json.loads(text, parse_constant=refuse)


VENDOR = "vendor box"  # the hostile run's system name: the honest run is "test box"


def _gemm_lines(md: str, label: str = VENDOR) -> list[str]:
    """The results-table row of the gemm measurement on system `label` (changed params make a row
    of their own, where the other system has "not measured")."""
    return [line for line in md.splitlines()
            if line.startswith(f"| gemm-small | torch | {label} |") and "| not measured |" not in line]


def _check_run(source: Path, base: Path, key_args: list[Any], outcome: str, code: str, tmp: Path,
               label: str = VENDOR) -> None:
    """report (md, html, csv: the honest run first) and compare, judged against `outcome`."""
    runs = [base, source, *key_args]
    md = _cli("report", *runs, "--format", "md")
    html_path = tmp / f"{source.name}.html"
    html = _cli("report", *runs, "--format", "html", "-o", html_path)
    csv_out = _cli("report", *runs, "--format", "csv")
    compare = _cli("compare", base, source, *key_args, "--allow-different-devices", "--json")
    if outcome == "rejected":  # the run cannot be read: every reader exits 1 naming why, no table
        for result in (md, html, csv_out, compare):
            assert result.exit_code == 1 and "Error:" in result.output, result.output
        return
    assert md.exit_code == html.exit_code == csv_out.exit_code == 0, md.output
    _no_non_finite_shown(md.stdout)
    # (a chart's base64 PNG may hold "/inf/" by chance: it is no number shown)
    _no_non_finite_shown(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html_path.read_text(encoding="utf-8")))
    rows = [r for r in _csv_numbers_finite(csv_out.stdout) if r["record_id"] == GEMM_ID]
    verdicts = {c["key"]: c for c in _strict_json(compare.stdout)["comparisons"]}
    (gemm,) = [c for key, c in verdicts.items() if "gemm" in key]
    hostile_lines = _gemm_lines(md.stdout, label)
    assert len(hostile_lines) == 1, md.stdout
    if outcome == "refused":
        assert "refused" in hostile_lines[0] and (not code or code in hostile_lines[0]), hostile_lines
        assert "TFLOP/s" not in hostile_lines[0].split("refused")[0]  # no number before the refusal
        hostile_rows = [r for r in rows if r["source"] == str(source)]
        assert hostile_rows and all(r["value"] == "" and r["status"] == "invalid" for r in hostile_rows)
        assert gemm["verdict"] == "broken" and compare.exit_code == 1, gemm
    else:
        assert "refused" not in hostile_lines[0] and "TFLOP/s" in hostile_lines[0], hostile_lines
        assert gemm["verdict"] in ("same", "noise", "faster", "slower"), gemm


def _vendor_files(case: Case) -> dict[str, bytes]:
    rec = honest()
    case.mutate(rec)
    man = manifest(run_id="20250101-000000-vendor-def456")
    man["system"]["system_name"] = VENDOR
    if case.man is not None:
        case.man(man)
    return run_files(man, _records(rec), case.extra)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_hostile_number_crashes_nothing_and_is_never_shown_as_true(name: str, keyring: Keys,
                                                                      tmp_path: Path) -> None:
    case = CASES[name]
    files = _vendor_files(case)
    bundle = signed_bundle(tmp_path / "vendor.tar.gz", files, keyring.vendor)
    verify = _cli("bundle", "verify", bundle, "--pubkey", keyring.vendor_pub, "--json")
    report = _strict_json(verify.stdout)
    findings = [e for e in report["errors"] if e["code"] == case.code]
    if case.bundle == "accepted":
        assert verify.exit_code == 0 and report["errors"] == [], report["errors"]
    else:
        assert verify.exit_code == 1 and findings, report["errors"]
        if case.bundle == "refused":  # the record, not the bundle: every error refuses that record
            # (record None: "... and N more" past verify's cap of 100 findings a code)
            assert all(e["code"] in REFUSING_CODES and e["record"] in (GEMM_ID, None) for e in report["errors"])
    key_args = ["--pubkey", keyring.honest_pub, "--pubkey", keyring.vendor_pub]
    _check_run(bundle, keyring.honest_bundle, key_args, case.bundle, case.code, tmp_path)

    (tmp_path / "d").mkdir()
    directory = write_run_dir(tmp_path / "d", files)
    outcome = case.directory or case.bundle
    # A directory is read without verify's rules and strict JSON: its errors are the loader's.
    code = case.code if case.code in REFUSING_CODES else ""
    _check_run(directory, keyring.honest_dir, [], outcome, code, tmp_path)


@pytest.mark.parametrize("name", sorted(DIRECTORY_ONLY))
def test_nan_and_infinity_in_a_run_directory_are_refused_or_unavailable(name: str, keyring: Keys,
                                                                        tmp_path: Path) -> None:
    case = DIRECTORY_ONLY[name]
    files = _vendor_files(case)
    assert b"NaN" in files["records.jsonl"] or b"Infinity" in files["records.jsonl"]
    directory = write_run_dir(tmp_path, files)
    _check_run(directory, keyring.honest_dir, [], case.directory, "", tmp_path)


def test_the_honest_record_is_accepted_everywhere(keyring: Keys, tmp_path: Path) -> None:
    # The baseline every case mutates: if it were refused, "refused" would prove nothing.
    verify = _cli("bundle", "verify", keyring.honest_bundle, "--pubkey", keyring.honest_pub, "--json")
    assert verify.exit_code == 0 and _strict_json(verify.stdout)["errors"] == []
    _check_run(keyring.honest_bundle, keyring.honest_bundle, ["--pubkey", keyring.honest_pub], "accepted", "",
               tmp_path, label="test box")


def test_a_count_no_node_has_is_shown_as_a_claim_and_gives_no_per_gpu_score(keyring: Keys, tmp_path: Path) -> None:
    files = _vendor_files(CASES["manifest.accelerators_per_node=1e30"])
    run = write_run_dir(tmp_path, files)
    md = _cli("report", keyring.honest_dir, run, "--format", "md").stdout
    assert "H100 (accelerators_per_node 1000000000000000000000000000000: not a count)" in md
    assert "1000000000000000000000000000000 x" not in md


def test_a_tiny_share_of_peak_is_not_shown_as_zero(keyring: Keys) -> None:
    # The honest gemm (64 x 48 x 40) reaches 2.5e-05% of an H100's peak: "0.0%" would be a made-up 0.
    md = _cli("report", keyring.honest_bundle, "--pubkey", keyring.honest_pub, "--format", "md").stdout
    (line,) = _gemm_lines(md, "test box")
    pct = 100.0 * honest()["metrics"]["tflops"] / 989.4
    assert f"| {pct:.2g}% |" in line and "| 0.0% |" not in line


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # matplotlib's, on the way to the error
def test_a_chart_matplotlib_cannot_lay_out_is_left_out_with_a_note_not_a_crash() -> None:
    # 2.4e293 TFLOP/s beside 2.4e-4 put a log axis's ticks past the float range: OverflowError in
    # matplotlib took the whole HTML report down. Verify refuses such a record; the chart must not
    # rely on it (a report can be built from runs in memory).
    from aibench.report import build_report, render
    from aibench.results.runs import LoadedRun

    wild = honest()
    wild["metrics"]["tflops"] = 2.4e293
    runs = [LoadedRun("a", manifest(), _records(honest())),
            LoadedRun("b", manifest(run_id="20250101-000000-other-1"), _records(wild))]
    html = render(build_report(runs), "html")
    assert "no chart: its values cannot be drawn" in html
    assert "GB/s" in html  # the other family's chart and every table are still there
