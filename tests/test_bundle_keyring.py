"""Several trusted keys: a buyer reports on bundles of several vendors, each signed with its own
key, and every bundle must be signed by one of the keys the buyer gave."""

from __future__ import annotations

from pathlib import Path

from bundle_helpers import signed_bundle, write_run_dir
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aibench.bundle import fingerprint, keys, verify
from aibench.bundle.load import load_run
from aibench.cli import cli

ACME, BETA, OTHER = (Ed25519PrivateKey.generate() for _ in range(3))


def _pub(tmp_path: Path, name: str, key: Ed25519PrivateKey) -> Path:
    path = tmp_path / f"{name}.pub"
    path.write_bytes(keys.public_pem(key.public_key()))
    return path


def test_a_bundle_verifies_against_any_key_of_the_ring_and_names_the_one_that_signed(tmp_path: Path) -> None:
    bundle = signed_bundle(tmp_path / "beta.tar.gz", key=BETA)
    report = verify(bundle, [ACME.public_key(), BETA.public_key()])
    assert report.valid and report.summary["signer"] == fingerprint(BETA.public_key())
    wrong = verify(bundle, [ACME.public_key(), OTHER.public_key()])
    (finding,) = wrong.errors
    assert finding.code == "signature_invalid" and "any of the 2 given public keys" in finding.message
    assert fingerprint(BETA.public_key()) in finding.message and wrong.summary["signer"] is None
    assert verify(bundle, []).summary["signer"] == fingerprint(BETA.public_key())  # no key: the carried one, unchecked


def test_report_over_two_vendors_checks_each_bundle_against_the_keys_given(tmp_path: Path) -> None:
    a = signed_bundle(tmp_path / "acme.tar.gz", key=ACME)
    b = signed_bundle(tmp_path / "beta.tar.gz", key=BETA)
    acme_pub, beta_pub = _pub(tmp_path, "acme", ACME), _pub(tmp_path, "beta", BETA)
    both = CliRunner().invoke(cli, ["report", str(a), str(b), "--pubkey", str(acme_pub), "--pubkey", str(beta_pub)])
    assert both.exit_code == 0, both.output
    for key in (ACME, BETA):
        assert f"verified: {fingerprint(key.public_key())}" in both.stdout
    one = CliRunner().invoke(cli, ["report", str(a), str(b), "--pubkey", str(acme_pub)])
    assert one.exit_code == 1 and "beta.tar.gz: bundle does not verify" in one.output
    for args in (["bundle", "verify", str(b), "--pubkey", str(acme_pub), "--pubkey", str(beta_pub)],
                 ["compare", str(a), str(b), "--pubkey", str(acme_pub), "--pubkey", str(beta_pub)]):
        assert CliRunner().invoke(cli, args).exit_code == 0, args


def test_what_a_reader_is_told_about_the_signature(tmp_path: Path) -> None:
    bundle = signed_bundle(tmp_path / "b.tar.gz", key=ACME)
    carried = load_run(bundle).signature
    assert carried.startswith("not checked: the key carried in the bundle") and "--pubkey" in carried
    assert load_run(signed_bundle(tmp_path / "u.tar.gz")).signature == "unsigned"
    assert load_run(write_run_dir(tmp_path)).signature.startswith("none: a run directory")
