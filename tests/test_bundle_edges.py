"""Edges a fresh-eyes pass found: keys of an unknown algorithm, what the summary names as signer,
and a `--json` summary that has the same keys whatever the bundle holds."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from bundle_helpers import (
    bundle_json,
    craft,
    default_records,
    record,
    regular,
    run_files,
    signed_bundle,
    timing_for,
)
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aibench.bundle import keys, load_private_key, load_public_key, verify
from aibench.cli.bundle import bundle_group
from aibench.core.errors import BundleError

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
_ED25519_OID = b"\x06\x03\x2b\x65\x70"  # DER of 1.3.101.112
_UNKNOWN_OID = b"\x06\x03\x2b\x65\x63"  # 1.3.101.99: no algorithm cryptography knows


def _pem(label: str, der: bytes) -> bytes:
    return f"-----BEGIN {label}-----\n".encode() + base64.encodebytes(der) + f"-----END {label}-----\n".encode()


def unknown_algorithm_public_pem() -> bytes:
    """A well-formed SubjectPublicKeyInfo whose algorithm OID nobody implements."""
    der = KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert _ED25519_OID in der
    return _pem("PUBLIC KEY", der.replace(_ED25519_OID, _UNKNOWN_OID))


def unknown_algorithm_private_pem() -> bytes:
    der = KEY.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    assert _ED25519_OID in der
    return _pem("PRIVATE KEY", der.replace(_ED25519_OID, _UNKNOWN_OID))


def _invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(bundle_group, [str(a) for a in args])
    return result.exit_code, result.output


def test_key_files_of_an_unknown_algorithm_are_refused_not_crashed_on(tmp_path: Path) -> None:
    pub, priv = tmp_path / "odd.pub", tmp_path / "odd.key"
    pub.write_bytes(unknown_algorithm_public_pem())
    priv.write_bytes(unknown_algorithm_private_pem())
    with pytest.raises(BundleError, match="not an Ed25519 public key"):
        load_public_key(pub)
    with pytest.raises(BundleError, match="not an Ed25519 key"):
        load_private_key(priv)
    bundle = signed_bundle(tmp_path / "b.tar.gz", key=KEY)
    code, out = _invoke("verify", bundle, "--pubkey", pub)
    assert code == 2 and "--pubkey" in out and "Traceback" not in out
    code, out = _invoke("pack", tmp_path / "nowhere", "-o", tmp_path / "x.tar.gz", "--key", priv)
    assert code == 2


def test_embedded_key_of_an_unknown_algorithm_is_a_finding(tmp_path: Path) -> None:
    """bundle.pub comes from the bundle, so it is hostile input: a warning, never an exception."""
    files = run_files()
    doc = bundle_json(files)
    members = [regular("bundle.json", doc), regular("bundle.sig", base64.b64encode(KEY.sign(doc)) + b"\n"),
               regular("bundle.pub", unknown_algorithm_public_pem())]
    members += [regular(f"run/{rel}", data) for rel, data in sorted(files.items())]
    bundle = craft(tmp_path / "b.tar.gz", members)

    report = verify(bundle, KEY.public_key())
    assert report.valid and "bad_embedded_key" in {f.code for f in report.warnings}
    report = verify(bundle)  # no key of the buyer's: nothing can check the signature
    assert "bad_embedded_key" in report.codes and "signature_unchecked" in report.codes
    code, out = _invoke("verify", bundle, "--json")
    assert code == 0 and "bad_embedded_key" in {w["code"] for w in json.loads(out)["warnings"]}


def test_summary_names_no_signer_when_the_signature_does_not_match(tmp_path: Path) -> None:
    """The buyer's key did not sign this bundle: the summary must not name it as the signer."""
    bundle = signed_bundle(tmp_path / "b.tar.gz", key=KEY)
    report = verify(bundle, OTHER.public_key())
    assert "signature_invalid" in {f.code for f in report.errors}
    assert report.summary["signer"] is None
    wrong = keys.fingerprint(OTHER.public_key())
    pub = tmp_path / "other.pub"
    pub.write_bytes(keys.public_pem(OTHER.public_key()))
    code, out = _invoke("verify", bundle, "--pubkey", pub)
    assert code == 1 and f"signer={wrong}" not in out.replace("\n", "")
    # the message may name both keys; the one-line verdict must not
    verdict = next(line for line in out.splitlines() if line.startswith("INVALID"))
    assert wrong[:24] not in verdict

    good = verify(bundle, KEY.public_key())
    assert good.valid and good.summary["signer"] == keys.fingerprint(KEY.public_key())


def _summary_keys(tmp_path: Path, name: str, data: bytes | None = None) -> set[str]:
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    code, out = _invoke("verify", path, "--json")
    assert code in (0, 1), out
    return set(json.loads(out)["summary"])


def test_json_summary_has_the_same_keys_for_every_bundle(tmp_path: Path) -> None:
    """Scripts read `summary` by key: a hostile or broken bundle must not make keys disappear."""
    full = _summary_keys(tmp_path, signed_bundle(tmp_path / "good.tar.gz", key=KEY).name)
    assert {"run_id", "suite", "signed", "signer", "records", "complete", "preview", "comparable"} <= full
    assert _summary_keys(tmp_path, "plain.txt", b"not a bundle") == full
    craft(tmp_path / "bad-doc.tar.gz", [regular("bundle.json", b"[]")])
    assert _summary_keys(tmp_path, "bad-doc.tar.gz") == full
    bad_manifest = run_files(extra={"manifest.json": b"{}"})
    signed_bundle(tmp_path / "bad-manifest.tar.gz", bad_manifest, key=KEY)
    assert _summary_keys(tmp_path, "bad-manifest.tar.gz") == full


def test_unknown_facts_are_null_not_zero(tmp_path: Path) -> None:
    """A bundle without records.jsonl did not record 0 measurements: it says nothing about them."""
    files = run_files()
    del files["records.jsonl"]
    report = verify(signed_bundle(tmp_path / "b.tar.gz", files, key=KEY), KEY.public_key())
    assert not report.valid
    assert report.summary["records"] is None and report.summary["statuses"] is None
    report = verify(tmp_path / "b.tar.gz.missing")
    assert report.summary["records"] is None and report.summary["signed"] is None


def _records_with_timing(samples_s: list[float], **timing: Any) -> list[dict[str, Any]]:
    return [record(timing=timing_for(samples_s, **timing)), *default_records()[1:]]


def test_rules_count_the_raw_samples_not_the_stated_n(tmp_path: Path) -> None:
    """n and total_s are claims next to the samples they summarise: the minimum-samples and
    minimum-time rules must judge the samples themselves, and a claim that disagrees is an error."""
    few = [1e-3, 1.001e-3, 1.002e-3]  # 3 samples, below the manifest's min_samples = 10
    recs = _records_with_timing(samples_s=few, n=500, total_s=60.0, median=1.001e-3)
    report = verify(signed_bundle(tmp_path / "b.tar.gz", run_files(records=recs), key=KEY), KEY.public_key())
    errors = {f.code for f in report.errors}
    assert {"timing_inconsistent", "min_duration"} <= errors
    assert all(f.record == "gemm[m=64]/torch" for f in report.errors)

    honest = _records_with_timing(samples_s=few, n=len(few), total_s=sum(few), median=1.001e-3)
    report = verify(signed_bundle(tmp_path / "c.tar.gz", run_files(records=honest), key=KEY), KEY.public_key())
    assert {f.code for f in report.errors} == {"min_duration"}


def test_helper_records_are_consistent_with_their_samples(tmp_path: Path) -> None:
    report = verify(signed_bundle(tmp_path / "b.tar.gz", key=KEY), KEY.public_key())
    assert report.valid and report.findings == ()


def test_a_nan_limit_is_refused_not_a_disabled_check(tmp_path: Path) -> None:
    """NaN compares false with everything: accepted, it would silently switch the bomb check off."""
    bundle = signed_bundle(tmp_path / "b.tar.gz", key=KEY)
    code, out = _invoke("verify", bundle, "--limit", "max_ratio=nan")
    assert code == 2 and "positive" in out
