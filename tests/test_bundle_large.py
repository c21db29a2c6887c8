"""A ~100 MB bundle verifies in one streaming pass (timing lives in benchmarks/bench_verify.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bundle_helpers import default_records, record, run_files, timing_for, write_run_dir
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aibench.bundle import Limits, pack, verify


@pytest.mark.slow
def test_100mb_bundle_verifies(tmp_path: Path) -> None:
    files = run_files()
    for i in range(25):  # 25 x 4 MiB of incompressible "telemetry"
        files[f"telemetry/{i:04d}.csv"] = os.urandom(4 << 20)
    run = write_run_dir(tmp_path, files)
    key = Ed25519PrivateKey.generate()
    bundle = pack(run, tmp_path / "big.tar.gz", key=key, compresslevel=1)
    assert bundle.stat().st_size > 100 << 20
    report = verify(bundle, key.public_key())
    assert report.valid and report.findings == ()
    assert report.summary["members"] == len(files) + 3  # + bundle.json, .sig, .pub
    # the same bundle under a tighter total limit is refused partway, not after reading it all
    small = verify(bundle, key.public_key(), Limits(max_total_bytes=50 << 20))
    assert "too_large" in small.codes and small.summary["uncompressed_bytes"] <= (50 << 20) + (1 << 20)


def _records_bundle(tmp_path: Path, n_extra: int) -> tuple[Path, Ed25519PrivateKey, int]:
    """A signed bundle whose records.jsonl holds `n_extra` more records of 2,000 raw samples each."""
    samples = [1e-3 + i * 1e-7 for i in range(2000)]
    timing = timing_for(samples)
    # 2.2 s of samples: the case lasted longer than that (verify holds samples to duration_s)
    extra = [record(entry="copy", id=f"copy-{i}", timing=timing, duration_s=3.0) for i in range(n_extra)]
    files = run_files(records=default_records() + extra)
    key = Ed25519PrivateKey.generate()
    bundle = pack(write_run_dir(tmp_path, files), tmp_path / "r.tar.gz", key=key)
    return bundle, key, len(files["records.jsonl"])


def test_records_have_their_own_limit_above_the_documents(tmp_path: Path) -> None:
    bundle, key, size = _records_bundle(tmp_path, 20)
    # records.jsonl is far above max_json_bytes (which bounds manifest.json and bundle.json) and
    # within max_records_bytes: it is read, every line parsed, and every record kept
    report = verify(bundle, key.public_key(), Limits(max_json_bytes=size // 4, max_records_bytes=size + 1))
    assert report.valid, report.findings
    assert report.summary["records"] == len(default_records()) + 20
    # one byte below its size: refused, naming the limit that refused it, the rest still checked
    refused = verify(bundle, key.public_key(), Limits(max_records_bytes=size - 1))
    assert not refused.valid and "json_too_large" in refused.codes
    assert any("max_records_bytes" in f.message for f in refused.findings if f.code == "json_too_large")
