"""A ~100 MB bundle verifies in one streaming pass (timing lives in scripts/bench_verify.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bundle_helpers import run_files, write_run_dir
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
