"""The quiet output of `aibench bundle verify` and `aibench report` as a person sees it: real
processes (`python -m aibench`, no CliRunner), so the console, its width and stdout/stderr are
the real ones. One line per finding code (its count and first example), the verdict last;
`--verbose` shows every finding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_helpers import manifest, record, run_files, signed_bundle, write_run_dir
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aibench.bundle import keys

ROOT = Path(__file__).resolve().parent.parent
# Three interpreted preview records: three findings of one code in verify, and per system one
# interpreted and one preview warning in a report.
IDS = ("gemm[m=64]/torch", "memory.copy[]/torch", "gemm[m=64]/triton")


def _records() -> list[dict[str, object]]:
    return [record(preview=True, interpreted=True),
            record(entry="copy", workload="memory.copy", id=IDS[1], preview=True, interpreted=True),
            record(id=IDS[2], backend="triton", preview=True, interpreted=True)]


def _files(run_id: str) -> dict[str, bytes]:
    return run_files(manifest(preview=True, comparable=False, run_id=run_id), _records())


def aibench(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    # The worktree's package, whatever is installed; a fixed width so that --verbose's table
    # folds no record id across lines (a terminal's width is the user's, not the test's).
    env.update(PYTHONPATH=str(ROOT), COLUMNS="200", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "aibench", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path]:
    """A bundle signed by a test key, and the key's public half."""
    key = Ed25519PrivateKey.generate()
    pub = tmp_path / "vendor.pub"
    pub.write_bytes(keys.public_pem(key.public_key()))
    return signed_bundle(tmp_path / "vendor.tar.gz", _files("20250101-000000-test-aaaaaa"), key), pub


def test_verify_prints_one_line_per_code_and_the_verdict_last(signed: tuple[Path, Path]) -> None:
    bundle, pub = signed
    quiet = aibench("bundle", "verify", bundle, "--pubkey", pub)
    assert quiet.returncode == 0, quiet.stderr
    lines = quiet.stdout.strip().splitlines()
    interpreted = [line for line in lines if "interpreted" in line]
    assert interpreted == [f"warning interpreted: 3 x, e.g. run/records.jsonl [{IDS[0]}]: "
                           "Triton ran in its CPU interpreter: timing is meaningless"]
    assert not any(i in quiet.stdout for i in IDS[1:])  # counted, not shown
    assert lines[-1].startswith(f"VALID {bundle}: 0 error(s), 5 warning(s)")
    codes = [line.split(":")[0] for line in lines[:-1]]
    assert len(codes) == len(set(codes)) == 3  # preview, not_comparable, interpreted: once each

    verbose = aibench("bundle", "verify", bundle, "--pubkey", pub, "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert all(f"[{i}]" in verbose.stdout for i in IDS)
    assert sum("Triton ran in its CPU interpreter" in line for line in verbose.stdout.splitlines()) == 3
    assert verbose.stdout.strip().splitlines()[-1] == lines[-1]


def test_report_prints_one_line_per_warning_kind_and_the_verdict_last(tmp_path: Path,
                                                                       signed: tuple[Path, Path]) -> None:
    bundle, pub = signed
    dirs = [write_run_dir(tmp_path / name, _files(f"20250101-000000-test-{name * 6}")) for name in ("b", "c")]
    quiet = aibench("report", bundle, *dirs, "--pubkey", pub)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith("# aibench report: ")  # the report itself on stdout, the summary on stderr
    lines = quiet.stderr.strip().splitlines()
    assert [line for line in lines if "PREVIEW run" in line] == [
        "warning PREVIEW run (CPU or shrunk sizes): 3 x, e.g. test box: PREVIEW run (CPU or shrunk sizes): "
        "its numbers are not comparable and say nothing about the hardware"]
    assert [line for line in lines if "interpreter" in line] == [
        "warning N measurement(s) ran in Triton's CPU interpreter: 3 x, e.g. test box: 2 measurement(s) ran in "
        "Triton's CPU interpreter: their timings are meaningless"]
    # Two run directories given with --pubkey: one line, counted.
    assert [line for line in lines if "not signed" in line] == [
        "warning a run directory is not signed: 2 x, e.g. test box #2: a run directory is not signed: "
        "the public key given checks nothing in it"]
    assert lines[-1].startswith("verdict: PREVIEW (not comparable): ") and len(lines) == 4

    verbose = aibench("report", bundle, *dirs, "--pubkey", pub, "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    every = verbose.stderr.strip().splitlines()
    for label in ("test box", "test box #2", "test box #3"):
        assert f"warning: {label}: PREVIEW run (CPU or shrunk sizes): its numbers are not comparable and say " \
               "nothing about the hardware" in every
        assert f"warning: {label}: 2 measurement(s) ran in Triton's CPU interpreter: their timings are meaningless" \
            in every
    assert len(every) == 3 + 3 + 2 + 1 and every[-1] == lines[-1]
