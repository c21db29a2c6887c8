"""`aibench bundle keygen|pack|verify` through click: exit codes 0 / 1 / 2 and the JSON output."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from bundle_helpers import manifest, record, run_files, write_run_dir
from click.testing import CliRunner

from aibench.cli.bundle import bundle_group


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(bundle_group, [str(a) for a in args])
    return result.exit_code, result.output


def test_keygen_pack_verify_roundtrip(tmp_path: Path) -> None:
    key = tmp_path / "vendor.key"
    code, out = _invoke("keygen", key)
    assert code == 0 and "fingerprint: ed25519:sha256:" in out
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    code, out = _invoke("keygen", key)
    assert code == 1 and "--force" in out
    assert _invoke("keygen", key, "--force")[0] == 0

    bundle = tmp_path / "out.tar.gz"
    code, out = _invoke("pack", write_run_dir(tmp_path), "-o", bundle, "--key", key)
    assert code == 0 and "signed" in out and bundle.is_file()

    code, out = _invoke("verify", bundle, "--pubkey", f"{key}.pub")
    assert code == 0 and "VALID" in out
    code, out = _invoke("verify", bundle, "--pubkey", f"{key}.pub", "--json")
    data = json.loads(out)
    assert code == 0 and data["valid"] is True and data["errors"] == [] and data["warnings"] == []
    assert data["summary"]["records"] == 2 and data["summary"]["signed"] is True


def test_verify_without_pubkey_warns_but_passes(tmp_path: Path) -> None:
    bundle = tmp_path / "out.tar.gz"
    assert _invoke("pack", write_run_dir(tmp_path), "-o", bundle)[0] == 0
    code, out = _invoke("verify", bundle)
    assert code == 0 and "unsigned" in out and "warning" in out


def test_invalid_bundle_prints_errors_apart_and_exits_1(tmp_path: Path) -> None:
    files = run_files(manifest(complete=False, preview=True))
    bundle = tmp_path / "out.tar.gz"
    assert _invoke("pack", write_run_dir(tmp_path, files), "-o", bundle)[0] == 0
    code, out = _invoke("verify", bundle)
    assert code == 1 and "INVALID" in out and "error(s)" in out and "warning(s)" in out
    code, out = _invoke("verify", bundle, "--json")
    data = json.loads(out)
    assert code == 1 and [e["code"] for e in data["errors"]] == ["run_incomplete"]
    assert {"preview", "unsigned"} <= {w["code"] for w in data["warnings"]}
    assert data["summary"]["errors"] == 1


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    bundle = tmp_path / "out.tar.gz"
    run = write_run_dir(tmp_path)
    assert _invoke("pack", run, "-o", bundle)[0] == 0
    assert _invoke("verify", tmp_path / "missing.tar.gz")[0] == 2
    assert _invoke("verify", bundle, "--pubkey", tmp_path / "missing.pub")[0] == 2
    (tmp_path / "junk.pub").write_text("not a key")
    code, out = _invoke("verify", bundle, "--pubkey", tmp_path / "junk.pub")
    assert code == 2 and "not a PEM public key" in out
    assert _invoke("verify", bundle, "--limit", "max_fun=3")[0] == 2
    assert _invoke("verify", bundle, "--limit", "max_ratio=abc")[0] == 2
    assert _invoke("pack", tmp_path / "nope", "-o", bundle)[0] == 2
    assert _invoke("pack", run, "-o", tmp_path / "x.tar.gz", "--key", tmp_path / "junk.pub")[0] == 2
    assert _invoke("pack", run)[0] == 2  # -o is required


def test_pack_domain_error_exits_1(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path)
    (run / "link").symlink_to(run / "manifest.json")
    code, out = _invoke("pack", run, "-o", tmp_path / "b.tar.gz")
    assert code == 1 and "symbolic link" in out


def test_packing_an_interrupted_run_warns_that_the_bundle_will_not_verify(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path, run_files(manifest(complete=False, finished_at=None)))
    code, out = _invoke("pack", run, "-o", tmp_path / "b.tar.gz")
    assert code == 0 and "incomplete run" in out and f"--resume {run}" in out
    code, out = _invoke("pack", write_run_dir(tmp_path / "done"), "-o", tmp_path / "c.tar.gz")
    assert code == 0 and "incomplete" not in out
    one = write_run_dir(tmp_path / "one", run_files(manifest(complete=False, finished_at=None, suite=None)))
    code, out = _invoke("pack", one, "-o", tmp_path / "d.tar.gz")  # `aibench run`: no suite to resume
    assert code == 0 and "run it again" in out and "--resume" not in out


def _interpreted_preview_bundle(tmp_path: Path) -> Path:
    records = [record(preview=True, interpreted=True),
               record(entry="copy", workload="memory.copy", id="memory.copy[]/torch", preview=True, interpreted=True)]
    bundle = tmp_path / "out.tar.gz"
    assert _invoke("pack", write_run_dir(tmp_path, run_files(manifest(preview=True), records)), "-o", bundle)[0] == 0
    return bundle


def test_verify_is_quiet_one_line_per_code_and_the_verdict_last(tmp_path: Path) -> None:
    bundle = _interpreted_preview_bundle(tmp_path)
    code, out = _invoke("verify", bundle)
    lines = out.strip().splitlines()
    interpreted = [line for line in lines if "interpreted" in line]
    assert interpreted == ["warning interpreted: 2 x, e.g. run/records.jsonl [gemm[m=64]/torch]: "
                           "Triton ran in its CPU interpreter: timing is meaningless"]
    assert lines[-1].startswith("VALID ") and "warning(s)" in lines[-1] and code == 0
    assert "memory.copy[]/torch" not in out  # the second example is counted, not shown


def test_verify_verbose_shows_every_finding(tmp_path: Path) -> None:
    bundle = _interpreted_preview_bundle(tmp_path)
    code, out = _invoke("verify", bundle, "--verbose")
    assert code == 0 and "memory.copy[]/torch" in out and "gemm[m=64]/torch" in out
    assert out.strip().splitlines()[-1].startswith("VALID ")
