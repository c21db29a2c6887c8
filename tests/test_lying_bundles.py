"""A vendor signing its own bundle cannot make the buyer's report lie (issue 14), end to end.

Each lie below is written into an otherwise honest bundle and re-signed with the vendor's key, so
that integrity and signature hold. `bundle verify` exits 1 naming the finding; `report` lists the
record as refused and never prints its number; `compare` against an honest run calls it broken.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bundle_helpers import default_records, manifest, record, run_files, signed_bundle
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aibench.bundle import keys
from aibench.cli import cli
from aibench.core.formulas import per_unit
from aibench.device.specs import match_spec
from aibench.results.recompute import expected_metrics
from aibench.results.work import expected_work

H100 = "NVIDIA H100 80GB HBM3"
GEMM_ID = "gemm[m=64,n=48,k=40,dtype=bfloat16]/torch"
GEMM_MD = GEMM_ID.replace("[", "\\[").replace("]", "\\]")  # as Markdown escapes it


def _honest_gemm() -> dict[str, Any]:
    """A gemm record whose work its params give, rates its samples give, % of peak the datasheet
    gives and J per TFLOP its energy window gives."""
    rec = record(id=GEMM_ID, params={"m": 64, "n": 48, "k": 40, "dtype": "bfloat16"},
                 device={"spec": "cuda:0", "kind": "cuda", "name": H100, "index": 0})
    rec["work"] = {unit: float(amount) for unit, amount in (expected_work(rec) or {}).items()}
    rec["metrics"] = {"latency_ms": rec["metrics"]["latency_ms"], **expected_metrics(rec)}
    spec = match_spec(H100)
    assert spec is not None
    rec["metrics"]["pct_peak_tflops"] = 100.0 * rec["metrics"]["tflops"] / spec.peak_tflops["bfloat16"]
    energy, calls, duration = 1.4, 2000, 2.0
    rec["telemetry"] = {"available": True, "reason": None, "method": "counter", "energy_j": energy, "calls": calls,
                        "duration_s": duration, "energy_per_call_j": energy / calls, "avg_power_w": energy / duration,
                        "devices": [{"index": 0, "energy_j": energy}], "work_per_call": dict(rec["work"]),
                        "per_unit": per_unit(energy / calls, rec["work"])}
    return rec


def _records(lie: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    gemm = _honest_gemm()
    if lie is not None:
        lie(gemm)
    return [gemm, *default_records()[1:]]


def _scale(path: str, factor: float) -> Callable[[dict[str, Any]], None]:
    def lie(rec: dict[str, Any]) -> None:
        *outer, last = path.split(".")
        box = rec
        for key in outer:
            box = box[key]
        box[last] *= factor
    return lie


def _raise_work(rec: dict[str, Any]) -> None:
    rec["work"]["flops"] *= 3
    rec["metrics"].update(expected_metrics(rec))  # the rate raised with it: consistent with the work
    rec["telemetry"]["work_per_call"] = dict(rec["work"])
    rec["telemetry"]["per_unit"] = per_unit(rec["telemetry"]["energy_per_call_j"], rec["work"])


def _pass_above_tolerance(rec: dict[str, Any]) -> None:
    rec["correctness"] = {**rec["correctness"], "rel_error": 0.5, "tolerance": 1e-2}


def _cpu_device_comparable(rec: dict[str, Any]) -> None:
    rec["device"] = {"spec": "cpu", "kind": "cpu", "name": "AMD EPYC", "index": None}
    rec["metrics"].pop("pct_peak_tflops")


def _overflowing_samples(rec: dict[str, Any]) -> None:
    # Samples past 1e154 s: a squared deviation overflows a float, so no spread can be recomputed.
    rec["timing"]["samples_s"] = [x * 1e200 for x in rec["timing"]["samples_s"]]
    rec["timing"]["total_s"] = sum(rec["timing"]["samples_s"])  # consistent with them, as a careful liar makes it


LIES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "overflowing_samples": (_overflowing_samples, "summary_mismatch"),
    "median": (_scale("timing.median", 0.5), "summary_mismatch"),
    "tflops": (_scale("metrics.tflops", 2.0), "metric_mismatch"),
    "work": (_raise_work, "work_mismatch"),
    "pct_of_peak": (_scale("metrics.pct_peak_tflops", 1.25), "metric_mismatch"),
    "j_per_tflop": (_scale("telemetry.per_unit.j_per_tflop", 0.5), "energy_mismatch"),
    "passed": (_pass_above_tolerance, "correctness_contradiction"),
    "comparable_on_cpu": (_cpu_device_comparable, "fact_contradiction"),
}


def _bundle(tmp_path: Path, name: str, records: list[dict[str, Any]], man: dict[str, Any] | None = None) -> Path:
    key = Ed25519PrivateKey.generate()  # the vendor's own key: the signature holds
    (tmp_path / f"{name}.pub").write_bytes(keys.public_pem(key.public_key()))
    return signed_bundle(tmp_path / f"{name}.tar.gz", run_files(man, records), key)


def _cli(*args: Any) -> tuple[int, str]:
    """Exit code and stdout (warnings go to stderr)."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout


def test_the_honest_bundle_verifies_with_no_error(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, "honest", _records())
    code, out = _cli("bundle", "verify", bundle, "--pubkey", tmp_path / "honest.pub", "--json")
    assert code == 0, out
    assert json.loads(out)["errors"] == []
    code, out = _cli("report", bundle, "--pubkey", tmp_path / "honest.pub")
    assert code == 0 and "refused" not in out and GEMM_MD in out and "TFLOP/s" in out
    assert "| division | open |" in out  # the helpers' suite "tiny" is none this aibench ships


@pytest.mark.parametrize("lie", sorted(LIES))
def test_verify_names_the_lie_report_refuses_it_compare_calls_it_broken(tmp_path: Path, lie: str) -> None:
    change, want = LIES[lie]
    honest = _bundle(tmp_path, "honest", _records())
    lying_records = _records(change)
    bundle = _bundle(tmp_path, "vendor", lying_records)
    pub = tmp_path / "vendor.pub"

    code, out = _cli("bundle", "verify", bundle, "--pubkey", pub, "--json")
    assert code == 1
    errors = json.loads(out)["errors"]
    assert any(e["code"] == want and e["record"] == GEMM_ID for e in errors), errors

    code, out = _cli("report", bundle, "--pubkey", pub, "--format", "md")
    assert code == 0, out
    assert "refused" in out and want in out
    lying = lying_records[0]["metrics"]
    for name in ("tflops", "pct_peak_tflops"):  # its numbers appear only as the claims a refusal quotes
        if name in lying:
            shown = [line for line in out.splitlines() if f"{lying[name]:.3g}" in line]
            assert all("refused" in line for line in shown), shown

    code, out = _cli("compare", honest, bundle, "--pubkey", tmp_path / "honest.pub", "--pubkey", pub,
                     "--allow-different-devices", "--json")
    assert code == 1
    assert json.loads(out)["counts"]["broken"] == 1


def test_a_run_claiming_comparable_on_cpu_only_torch_fails_verify_and_reads_as_a_preview(tmp_path: Path) -> None:
    man = manifest(environment={"software": {"torch": "2.13.0+cpu", "python": "3.11.7"}, "host": {"cpu": "x"}})
    bundle = _bundle(tmp_path, "vendor", _records(), man)
    code, out = _cli("bundle", "verify", bundle, "--pubkey", tmp_path / "vendor.pub", "--json")
    assert code == 1 and any(e["code"] == "fact_contradiction" for e in json.loads(out)["errors"])


def test_report_refuses_without_recomputing_what_verify_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The recompute runs once per record (inside verify), not a second time when the report loads it.
    from aibench.bundle.load import load_run
    from aibench.results import recompute

    bundle = _bundle(tmp_path, "vendor", _records(LIES["tflops"][0]))
    calls: list[str] = []
    real = recompute.record_problems

    def counted(rec: dict[str, Any], man: Any) -> Any:
        calls.append(rec["id"])
        return real(rec, man)

    monkeypatch.setattr("aibench.bundle.rules.record_problems", counted)
    monkeypatch.setattr(recompute, "record_problems", counted)
    run = load_run(bundle, keys.load_public_key(tmp_path / "vendor.pub"))
    assert sorted(calls) == sorted(r["id"] for r in _records())
    (gemm,) = [r for r in run.records if r["id"] == GEMM_ID]
    assert gemm["status"] == "invalid" and gemm["reason"].startswith("refused: metric_mismatch")
    assert gemm["metrics"] == {} and gemm["timing"] is None


def test_records_beyond_the_finding_cap_are_refused_all_the_same(tmp_path: Path) -> None:
    # verify names at most 100 findings of a code; the loader must not let record 101 through.
    from aibench.bundle.load import load_run

    lies = []
    for i in range(105):
        rec = copy.deepcopy(_records(LIES["tflops"][0])[0])
        rec["id"] = f"{GEMM_ID}#{i}"
        lies.append(rec)
    bundle = _bundle(tmp_path, "vendor", [*lies, *default_records()[1:]])
    run = load_run(bundle, keys.load_public_key(tmp_path / "vendor.pub"))
    assert sum(r["status"] == "invalid" for r in run.records) == 105
