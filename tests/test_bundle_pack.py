"""keygen and pack: keys on disk, a bundle's layout, determinism, refusals."""

from __future__ import annotations

import gzip
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest
from bundle_helpers import members_of, run_files, write_run_dir
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aibench.bundle import fingerprint, keygen, load_private_key, load_public_key, pack, verify
from aibench.core.errors import BundleError


def test_keygen_writes_private_0600_and_public(tmp_path: Path) -> None:
    priv, pub = keygen(tmp_path / "vendor.key")
    assert pub == tmp_path / "vendor.key.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in priv.read_bytes()
    assert b"BEGIN PUBLIC KEY" in pub.read_bytes()
    key = load_private_key(priv)
    assert fingerprint(key.public_key()) == fingerprint(load_public_key(pub))


def test_keygen_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    priv, pub = keygen(tmp_path / "k")
    old = priv.read_bytes()
    with pytest.raises(BundleError, match="exists"):
        keygen(tmp_path / "k")
    pub.unlink()  # the private key alone still blocks
    with pytest.raises(BundleError, match="exists"):
        keygen(tmp_path / "k")
    os.chmod(priv, 0o644)
    keygen(tmp_path / "k", force=True)
    assert priv.read_bytes() != old
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600


def test_load_key_errors(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"not a key")
    with pytest.raises(BundleError, match="not a PEM"):
        load_private_key(tmp_path / "junk")
    with pytest.raises(BundleError, match="not a PEM"):
        load_public_key(tmp_path / "junk")
    with pytest.raises(BundleError, match="cannot read"):
        load_public_key(tmp_path / "missing.pub")


def test_pack_layout_and_roundtrip(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path)
    key = Ed25519PrivateKey.generate()
    out = pack(run, tmp_path / "b.tar.gz", key=key)
    members = members_of(out)
    names = [m.name for m, _ in members]
    assert names[:3] == ["bundle.json", "bundle.sig", "bundle.pub"]
    assert names[3:] == sorted(f"run/{rel}" for rel in run_files())
    for info, _ in members:
        assert info.isreg() and info.uid == 0 and info.gid == 0 and info.mtime == 0 and info.uname == ""
    doc = json.loads(members[0][1])
    assert doc["kind"] == "aibench.bundle" and doc["schema_version"] == 1
    assert doc["files"]["run/records.jsonl"]["size"] == len(run_files()["records.jsonl"])
    report = verify(out, key.public_key())
    assert report.valid and not report.findings, report.findings
    assert report.summary["signer"] == fingerprint(key.public_key())
    assert not (tmp_path / "b.tar.gz.partial").exists()


def test_pack_is_deterministic_given_created_at(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path)
    a = pack(run, tmp_path / "a.tar.gz", created_at="2025-01-01T00:00:00+00:00")
    b = pack(run, tmp_path / "b.tar.gz", created_at="2025-01-01T00:00:00+00:00")
    assert a.read_bytes() == b.read_bytes()
    assert gzip.decompress(a.read_bytes())[257:262] == b"ustar"  # an ordinary gzip of a tar


def test_unsigned_pack_verifies_with_warning(tmp_path: Path) -> None:
    out = pack(write_run_dir(tmp_path), tmp_path / "b.tar.gz")
    report = verify(out)
    assert report.valid
    assert report.codes == {"unsigned"}


def test_pack_refuses_symlinks(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path)
    (tmp_path / "secret").write_text("x")
    (run / "telemetry" / "link.csv").symlink_to(tmp_path / "secret")
    with pytest.raises(BundleError, match="symbolic link"):
        pack(run, tmp_path / "b.tar.gz")
    assert not (tmp_path / "b.tar.gz").exists()


def test_pack_refuses_symlinked_directory(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (run / "more").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(BundleError, match="symbolic link"):
        pack(run, tmp_path / "b.tar.gz")


def test_pack_refuses_fifo_and_non_run_dirs(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path)
    os.mkfifo(run / "logs" / "pipe")
    with pytest.raises(BundleError, match="not a regular file"):
        pack(run, tmp_path / "b.tar.gz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleError, match="not a run directory"):
        pack(empty, tmp_path / "c.tar.gz")
    with pytest.raises(BundleError, match="not a directory"):
        pack(tmp_path / "nope", tmp_path / "c.tar.gz")


def test_pack_refuses_output_inside_the_run(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path)
    with pytest.raises(BundleError, match="outside the run directory"):
        pack(run, run / "b.tar.gz")


def test_pack_key_from_path(tmp_path: Path) -> None:
    priv, pub = keygen(tmp_path / "k")
    out = pack(write_run_dir(tmp_path), tmp_path / "b.tar.gz", key=priv)
    assert verify(out, pub).valid
    with tarfile.open(out) as tf:
        assert tf.extractfile("bundle.pub").read() == pub.read_bytes()  # type: ignore[union-attr]
