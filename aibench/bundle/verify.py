"""Verify a bundle offline: integrity, signature, schemas, run rules -> a VerifyReport.

Order: one streaming pass over the archive (reader.py) collects a sha256 and size for every member
and the few small documents; nothing touches the disk. A fatal finding in that pass (not a gzip,
truncated, a bomb) ends verification: the rest would only add noise about missing members.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from aibench.bundle import keys, safejson
from aibench.bundle.documents import RunDocuments, parse_run
from aibench.bundle.findings import Finding, VerifyReport, capped, error, shown, warning
from aibench.bundle.layout import (
    BUNDLE_JSON,
    MANIFEST,
    PUBLIC_KEY,
    RECORDS,
    SIGNATURE,
    TOP_LEVEL,
    Limits,
    bundle_document_problems,
)
from aibench.bundle.reader import Contents, MemberDigest, read_bundle
from aibench.bundle.rules import run_findings
from aibench.bundle.suite_check import division
from aibench.core.errors import BundleError

_KEEP = frozenset({BUNDLE_JSON, SIGNATURE, PUBLIC_KEY, MANIFEST, RECORDS})
_SIGNATURE_BYTES = 64  # Ed25519

KeyLike = Ed25519PublicKey | str | os.PathLike
# The keys a buyer trusts: one key, or several (a report over bundles of several vendors, each
# signing with its own key); a bundle verifies when one of them made its signature.
Keys = KeyLike | Sequence[KeyLike] | None


def keyring(pubkeys: Keys) -> tuple[Ed25519PublicKey, ...]:
    """The trusted keys as loaded keys. Raises BundleError when a path is not an Ed25519 public key."""
    if pubkeys is None:
        return ()
    if isinstance(pubkeys, (Ed25519PublicKey, str, os.PathLike)):
        pubkeys = [pubkeys]
    return tuple(k if isinstance(k, Ed25519PublicKey) else keys.load_public_key(k) for k in pubkeys)


def integrity_findings(files: dict[str, dict[str, Any]], digests: dict[str, MemberDigest]) -> list[Finding]:
    out: list[Finding] = []
    for name, info in files.items():
        got = digests.get(name)
        if got is None:
            out.append(error("missing_member", f"{shown(name)!r} is listed in bundle.json but not in the archive",
                             member=name))
        elif got.size != info["size"]:
            out.append(error("size_mismatch", f"{shown(name)!r} is {got.size} bytes, bundle.json says {info['size']}",
                             member=name))
        elif got.sha256 != info["sha256"]:
            out.append(error("hash_mismatch", f"{shown(name)!r} changed: its sha256 differs from bundle.json", member=name))
    for name in digests:
        if name not in files and name not in TOP_LEVEL:
            out.append(error("unlisted_member", f"{shown(name)!r} is in the archive but not listed in bundle.json",
                             member=name))
    for name in (MANIFEST, RECORDS):
        if name not in files:
            out.append(error("run_file_missing", f"bundle.json does not list {name}", member=name))
    return out


def _embedded_key(blob: bytes | None) -> tuple[Ed25519PublicKey | None, list[Finding]]:
    if blob is None:
        return None, []
    try:
        return keys.parse_public_key(blob, PUBLIC_KEY), []
    except BundleError as e:
        return None, [warning("bad_embedded_key", str(e), member=PUBLIC_KEY)]


def signature_findings(blobs: dict[str, bytes], trusted: tuple[Ed25519PublicKey, ...],
                       summary: dict[str, Any]) -> list[Finding]:
    """`trusted`: the keys the reader gave (empty: none); one of them must have signed."""
    message, sig_blob = blobs[BUNDLE_JSON], blobs.get(SIGNATURE)
    summary["signed"] = sig_blob is not None
    if sig_blob is None:
        if trusted:
            return [error("signature_missing", "the bundle is not signed, but a public key was given")]
        return [warning("unsigned", "the bundle is not signed: anyone could have made or changed it")]
    try:
        signature = base64.b64decode(sig_blob.strip(), validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if len(signature) != _SIGNATURE_BYTES:
        return [error("signature_malformed", "bundle.sig is not a base64 Ed25519 signature", member=SIGNATURE)]
    embedded, out = _embedded_key(blobs.get(PUBLIC_KEY))
    if trusted:
        for pubkey in trusted:
            if keys.signature_ok(pubkey, signature, message):
                summary["signer"] = keys.fingerprint(pubkey)  # only a key the signature matched is a signer
                return out
        given = ", ".join(keys.fingerprint(k) for k in trusted)
        hint = ""
        if embedded is not None and all(keys.fingerprint(embedded) != keys.fingerprint(k) for k in trusted):
            hint = f" (the bundle names signer {keys.fingerprint(embedded)}, you gave {given})"
        which = "the given public key" if len(trusted) == 1 else f"any of the {len(trusted)} given public keys"
        return [*out, error("signature_invalid", f"the signature does not match {which}" + hint, member=SIGNATURE)]
    if embedded is None:
        return [*out, warning("signature_unchecked", "signed, but not checked: pass the signer's public key "
                              "(--pubkey) to know who signed it", member=SIGNATURE)]
    if not keys.signature_ok(embedded, signature, message):
        return [*out, error("signature_invalid", "the signature does not match the bundle's own public key",
                            member=SIGNATURE)]
    summary["signer"] = keys.fingerprint(embedded)
    return [*out, warning("signature_unchecked", f"signed by {keys.fingerprint(embedded)} (key carried in the "
                          "bundle, which proves nothing by itself): pass --pubkey to check the signer",
                          member=SIGNATURE)]


# Every key of `summary` is always there (null when the bundle did not let verify learn it):
# scripts read it by key, and a broken bundle must not turn that into a KeyError.
_SUMMARY_FACTS = ("aibench_version", "signed", "signer", "records", "statuses", "run_id", "suite", "complete",
                  "preview", "comparable", "division")


def _summary_of_run(docs: RunDocuments, has_records: bool, summary: dict[str, Any]) -> None:
    if has_records:  # no records.jsonl is not "0 records": the count stays null
        summary["records"] = docs.record_lines
        statuses: dict[str, int] = {}
        for rec in docs.records:
            statuses[rec["status"]] = statuses.get(rec["status"], 0) + 1
        summary["statuses"] = statuses
    if docs.manifest is not None:
        m = docs.manifest
        summary.update(run_id=shown(m["run_id"]), suite=None if m["suite"] is None else shown(m["suite"]["name"]),
                       complete=m["complete"], preview=m["preview"], comparable=m["comparable"],
                       division=division(m))


def _check(contents: Contents, trusted: tuple[Ed25519PublicKey, ...], limits: Limits,
           findings: list[Finding], summary: dict[str, Any]) -> RunDocuments | None:
    blob = contents.blobs.get(BUNDLE_JSON)
    if blob is None:
        if BUNDLE_JSON not in contents.digests:
            findings.append(error("bundle_json_missing", "no bundle.json: not an aibench bundle"))
        return None
    try:
        doc = safejson.loads(blob, limits.max_json_depth)
    except safejson.JsonRejected as e:
        findings.append(error(e.code, f"bundle.json: {e}", member=BUNDLE_JSON))
        return None
    problems = bundle_document_problems(doc)
    findings.extend(error(code, message, member=BUNDLE_JSON) for code, message in problems)
    if problems:
        return None
    summary["aibench_version"] = shown(doc["aibench_version"])
    findings.extend(integrity_findings(doc["files"], contents.digests))
    findings.extend(signature_findings(contents.blobs, trusted, summary))
    docs = parse_run(contents.blobs, limits.max_json_depth)
    findings.extend(docs.findings)
    _summary_of_run(docs, RECORDS in contents.blobs, summary)
    if docs.manifest is not None and RECORDS in contents.blobs:  # no records: rules would only say "missing"
        findings.extend(run_findings(docs.manifest, docs.records, contents.digests))
    return docs


def verify(path: str | os.PathLike[str], pubkey: Keys = None, limits: Limits | None = None) -> VerifyReport:
    """Check the bundle at `path`; never raises for anything inside the bundle (that is a finding).
    `pubkey`: the trusted key, or several (the signature must match one of them).

    Raises BundleError only when a key path cannot be read as an Ed25519 public key.
    """
    return verify_and_read(path, pubkey, limits)[0]


def verify_and_read(path: str | os.PathLike[str], pubkey: Keys = None,
                    limits: Limits | None = None) -> tuple[VerifyReport, RunDocuments | None]:
    """`verify`, also handing back the run's manifest and schema-valid records (read in memory,
    in the same single pass) for readers such as `compare` and `report`."""
    limits = limits or Limits()
    trusted = keyring(pubkey)
    contents = read_bundle(path, _KEEP, limits)
    findings = list(contents.findings)
    summary: dict[str, Any] = {"members": len(contents.digests), "compressed_bytes": contents.compressed_bytes,
                               "uncompressed_bytes": contents.inflated_bytes, **dict.fromkeys(_SUMMARY_FACTS)}
    docs = None
    if contents.complete:  # after a fatal finding the rest would only be noise about missing members
        docs = _check(contents, trusted, limits, findings, summary)
    return VerifyReport(str(path), capped(findings), summary), docs
