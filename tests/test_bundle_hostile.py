"""Hostile bundles, each crafted by hand: verify rejects it with its own finding code, writes
nothing, and `aibench bundle verify` exits 1."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bundle_helpers import (
    bundle_json,
    craft,
    default_records,
    jsonl,
    manifest,
    record,
    regular,
    run_files,
    signed_bundle,
    special,
)
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aibench.bundle import Limits, keys, verify
from aibench.cli.bundle import bundle_group

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()

# A case: tmp_path -> (bundle, limits to pass, whether to pass the signer's public key)
Case = Callable[[Path], tuple[Path, dict[str, Any], bool]]
CASES: dict[str, tuple[str, Case]] = {}


def case(name: str, code: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[name] = (code, fn)
        return fn
    return register


def _good_with(tmp: Path, *extra: tuple[tarfile.TarInfo, bytes]) -> Path:
    return signed_bundle(tmp / "b.tar.gz", key=KEY, extra=extra)


def _with_files(tmp: Path, **changes: bytes) -> Path:
    return signed_bundle(tmp / "b.tar.gz", run_files(extra=changes), key=KEY)


@case("dotdot", "path_traversal")
def _dotdot(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _good_with(tmp, regular("run/../../evil.sh", b"rm -rf ~\n")), {}, True


@case("absolute", "absolute_path")
def _absolute(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _good_with(tmp, regular("/tmp/evil.sh", b"x")), {}, True


@case("not-canonical", "bad_path")
def _dot_slash(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _good_with(tmp, regular("./run/manifest.json", b"{}")), {}, True


@case("symlink", "symlink")
def _symlink(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _good_with(tmp, special("run/link", tarfile.SYMTYPE, "/etc/passwd")), {}, True


@case("hardlink", "hardlink")
def _hardlink(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _good_with(tmp, special("run/hard", tarfile.LNKTYPE, "/etc/shadow")), {}, True


@case("device", "device")
def _device(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _good_with(tmp, special("run/dev", tarfile.CHRTYPE)), {}, True


@case("fifo", "fifo")
def _fifo(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _good_with(tmp, special("run/pipe", tarfile.FIFOTYPE)), {}, True


@case("sparse", "special_member")
def _sparse(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    # PAX 1.0 sparse file: 522 stored bytes that a reader expands to 1 MB of mostly holes
    sparse_map = b"1\n999000\n10\n"
    data = sparse_map + bytes(512 - len(sparse_map)) + b"0123456789"
    info, _ = regular("run/GNUSparseFile.0/x", data)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "run/sparse.csv",
                        "GNU.sparse.realsize": "1000000"}
    return _good_with(tmp, (info, data)), {}, True


@case("duplicate", "duplicate_member")
def _duplicate(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _good_with(tmp, regular("run/manifest.json", b'{"kind": "evil"}')), {}, True


@case("ratio-bomb", "compression_ratio")
def _ratio_bomb(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    # 64 MiB of zeros deflate to ~64 KiB: ~1000:1, stopped at default limits long before the end
    return _good_with(tmp, regular("run/telemetry/zeros.csv", bytes(64 << 20))), {}, True


@case("total-bomb", "too_large")
def _total_bomb(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _good_with(tmp, regular("run/telemetry/big.csv", os.urandom(3 << 20))), {"max_total_bytes": 2 << 20}, True


@case("oversized-member", "member_too_large")
def _oversized(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _with_files(tmp, **{"telemetry/big.csv": os.urandom(8192)}), {"max_member_bytes": 4096}, True


@case("too-many-members", "too_many_members")
def _many(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _good_with(tmp), {"max_members": 4}, True


@case("huge-pax-header", "header_too_large")
def _pax(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _good_with(tmp, regular("run/" + "a/" * 2000 + "x", b"x")), {"max_header_bytes": 1024}, True


@case("json-too-large", "json_too_large")
def _json_large(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _good_with(tmp), {"max_json_bytes": 512}, True


@case("malformed-json", "json_malformed")
def _malformed(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _with_files(tmp, **{"manifest.json": b'{"kind": "aibench.run",'}), {}, True


@case("duplicate-json-key", "json_malformed")
def _dup_key(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    text = json.dumps(manifest())[:-1] + ', "complete": false}'
    return _with_files(tmp, **{"manifest.json": text.encode()}), {}, True


@case("duplicate-key-in-record", "json_malformed")
def _dup_key_in_record(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    # deep inside a record: the fast parser (orjson) keeps the last, verify must still refuse
    line = json.dumps(record(entry="copy", id="x")).replace('"rel_error": 0.0001', '"rel_error": 0.0001, "rel_error": 0.5')
    assert line.count('"rel_error"') == 2
    return _with_files(tmp, **{"records.jsonl": jsonl(default_records()) + line.encode() + b"\n"}), {}, True


@case("deep-json", "json_too_deep")
def _deep(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    line = b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"\n"
    return _with_files(tmp, **{"records.jsonl": jsonl(default_records()) + line}), {}, True


@case("nan-literal", "json_nonfinite")
def _nan(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    line = json.dumps(record(entry="copy", id="x")).replace('"tflops": 12.5', '"tflops": NaN')
    return _with_files(tmp, **{"records.jsonl": jsonl(default_records()) + line.encode() + b"\n"}), {}, True


@case("overflow-number", "json_nonfinite")
def _overflow(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    line = json.dumps(record(entry="copy", id="x")).replace('"tflops": 12.5', '"tflops": 1e999')
    return _with_files(tmp, **{"records.jsonl": jsonl(default_records()) + line.encode() + b"\n"}), {}, True


@case("negative-metric", "bad_metric")
def _negative(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    recs = [record(metrics={"tflops": -3.0}), *default_records()[1:]]
    return _with_files(tmp, **{"records.jsonl": jsonl(recs)}), {}, True


@case("manifest-version", "unknown_schema_version")
def _manifest_version(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _with_files(tmp, **{"manifest.json": json.dumps(manifest(schema_version=2)).encode()}), {}, True


@case("record-version", "unknown_schema_version")
def _record_version(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    recs = [record(schema_version=99), *default_records()[1:]]
    return _with_files(tmp, **{"records.jsonl": jsonl(recs)}), {}, True


@case("bundle-version", "unknown_schema_version")
def _bundle_version(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    doc = bundle_json(run_files(), schema_version=3)
    return signed_bundle(tmp / "b.tar.gz", key=KEY, doc=doc), {}, True


@case("unlisted-file", "unlisted_member")
def _unlisted(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return _good_with(tmp, regular("run/telemetry/extra.csv", b"1,2\n")), {}, True


@case("changed-bytes", "hash_mismatch")
def _changed(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    files = run_files()
    doc = bundle_json(files)
    files["records.jsonl"] = files["records.jsonl"].replace(b'"tflops": 12.5', b'"tflops": 99.5')
    return signed_bundle(tmp / "b.tar.gz", files, key=KEY, doc=doc), {}, True


@case("changed-size", "size_mismatch")
def _resized(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    files = run_files()
    doc = bundle_json(files)
    files["logs/run.log"] += b"one more line\n"
    return signed_bundle(tmp / "b.tar.gz", files, key=KEY, doc=doc), {}, True


@case("missing-file", "missing_member")
def _missing(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    files = run_files()
    doc = bundle_json(files)
    del files["telemetry/0000-gemm.csv"]
    return signed_bundle(tmp / "b.tar.gz", files, key=KEY, doc=doc), {}, True


@case("no-bundle-json", "bundle_json_missing")
def _no_doc(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return craft(tmp / "b.tar.gz", [regular(f"run/{k}", v) for k, v in run_files().items()]), {}, True


@case("wrong-key", "signature_invalid")
def _wrong_key(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return signed_bundle(tmp / "b.tar.gz", key=OTHER), {}, True


@case("unsigned-with-pubkey", "signature_missing")
def _unsigned(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return signed_bundle(tmp / "b.tar.gz"), {}, True


@case("garbage-signature", "signature_malformed")
def _garbage_sig(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    return signed_bundle(tmp / "b.tar.gz", extra=[regular("bundle.sig", b"not base64!\n")]), {}, True


@case("self-inconsistent-signature", "signature_invalid")
def _swapped_pub(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    # signed by KEY, but carrying OTHER's public key: fails even without --pubkey
    doc = bundle_json(run_files())
    import base64
    extra = [regular("bundle.sig", base64.b64encode(KEY.sign(doc))), regular("bundle.pub", keys.public_pem(OTHER.public_key()))]
    return signed_bundle(tmp / "b.tar.gz", doc=doc, extra=extra), {}, False


@case("not-gzip", "not_gzip")
def _not_gzip(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    (tmp / "b.tar.gz").write_bytes(b"PK\x03\x04 this is a zip, not a bundle")
    return tmp / "b.tar.gz", {}, True


@case("empty-file", "not_gzip")
def _empty(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    (tmp / "b.tar.gz").write_bytes(b"")
    return tmp / "b.tar.gz", {}, True


@case("gzip-not-tar", "not_tar")
def _not_tar(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    (tmp / "b.tar.gz").write_bytes(gzip.compress(b"just some text, no tar header here\n" * 40))
    return tmp / "b.tar.gz", {}, True


@case("truncated-gzip", "truncated")
def _truncated(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    path = _with_files(tmp, **{"telemetry/big.csv": os.urandom(64 << 10)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, {}, True


@case("truncated-trailer", "truncated")
def _truncated_end(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    path = _good_with(tmp)
    path.write_bytes(path.read_bytes()[:-4])  # the gzip length trailer: only a full drain notices
    return path, {}, True


@case("corrupt-crc", "corrupt_gzip")
def _crc(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    path = _good_with(tmp)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 of the gzip trailer
    path.write_bytes(bytes(data))
    return path, {}, True


@case("data-after-archive", "trailing_data")
def _trailing(tmp: Path) -> tuple[Path, dict[str, Any], bool]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in [regular("bundle.json", bundle_json(run_files()))] + \
                [regular(f"run/{k}", v) for k, v in sorted(run_files().items())]:
            tf.addfile(info, io.BytesIO(data))
    (tmp / "b.tar.gz").write_bytes(gzip.compress(buf.getvalue() + b"hidden payload" * 100))
    return tmp / "b.tar.gz", {}, False


def _run(name: str, tmp_path: Path) -> tuple[str, Path, dict[str, Any], bool]:
    code, build = CASES[name]
    return (code, *build(tmp_path))


def _tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_verify_rejects_with_specific_code(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, path, limits, with_key = _run(name, tmp_path)
    before = _tree(tmp_path)
    monkeypatch.chdir(tmp_path)  # a relative `../x` or `x` written by mistake would land here
    report = verify(path, KEY.public_key() if with_key else None, Limits(**limits))
    assert not report.valid
    assert code in {f.code for f in report.errors}, report.findings
    assert _tree(tmp_path) == before  # verify extracts nothing
    assert not Path("/tmp/evil.sh").exists()


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_exits_1(name: str, tmp_path: Path) -> None:
    code, path, limits, with_key = _run(name, tmp_path)
    pub = tmp_path / "signer.pub"
    pub.write_bytes(keys.public_pem(KEY.public_key()))
    args = ["verify", str(path), "--json", *[f"--limit={k}={v}" for k, v in limits.items()]]
    result = CliRunner().invoke(bundle_group, args + (["--pubkey", str(pub)] if with_key else []))
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert out["valid"] is False
    assert code in {e["code"] for e in out["errors"]}


def test_ratio_bomb_stops_early(tmp_path: Path) -> None:
    _, path, _, _ = _run("ratio-bomb", tmp_path)
    report = verify(path)
    assert report.summary["uncompressed_bytes"] < 32 << 20  # stopped well before the 64 MiB member ended


def test_control_characters_in_names_are_escaped(tmp_path: Path) -> None:
    path = _good_with(tmp_path, regular("run/\x1b[2Jevil", b"x"))
    report = verify(path, KEY.public_key())
    assert "unlisted_member" in report.codes or "bad_path" in report.codes
    for f in report.findings:
        assert "\x1b" not in f.message and "\x1b" not in (f.member or "")
