"""The bundle format: member names, the bundle.json document, reader limits, safe member paths.

A bundle is one gzip-compressed tar:
    bundle.json   {"kind": "aibench.bundle", "schema_version": 1, "created_at", "aibench_version",
                   "files": {"run/<path>": {"sha256", "size"}, ...}}
    bundle.sig    base64 Ed25519 signature over the exact bytes of bundle.json (signed bundles only)
    bundle.pub    the signer's public key, PEM (informational: trust comes from the buyer's copy)
    run/...       the run directory, regular files only, in sorted order

Format changelog:
  1 (aibench 0.1.0): first version.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

BUNDLE_KIND = "aibench.bundle"
SCHEMA_VERSION = 1
BUNDLE_JSON = "bundle.json"
SIGNATURE = "bundle.sig"
PUBLIC_KEY = "bundle.pub"
RUN_PREFIX = "run/"
MANIFEST = "run/manifest.json"
RECORDS = "run/records.jsonl"
TOP_LEVEL = (BUNDLE_JSON, SIGNATURE, PUBLIC_KEY)
CHUNK = 1 << 20  # 1 MiB: large enough that per-chunk Python overhead vanishes next to sha256/zlib

_MiB = 1 << 20
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Limits:
    """Bounds on what a reader accepts from an untrusted bundle (all checked while streaming)."""

    max_member_bytes: int = 256 * _MiB
    max_total_bytes: int = 2048 * _MiB  # uncompressed tar stream, headers included
    max_members: int = 100_000
    max_json_bytes: int = 64 * _MiB  # bundle.json and manifest.json are held in memory
    # records.jsonl is held in memory too, and parsed a line at a time: 10k raw samples (the
    # timer's cap) take ~200 kB a record, so 256 MiB holds ~1,300 records at the cap, several times
    # a gigafactory run on an 8-GPU node (~50 entries x backends, most far below the cap; its CPU
    # preview wrote 52 records, 151 kB, on 2026-12-07).
    # benchmarks/bench_verify.py verifies 114 MB of them: 2.8 s, 353 MiB peak (2 cores, 2026-12-07).
    max_records_bytes: int = 256 * _MiB
    max_ratio: float = 200.0  # uncompressed / compressed; deflate tops out near 1032 on zeros
    max_header_bytes: int = 1 * _MiB  # pax / GNU long-name headers: a few hundred bytes in practice
    max_json_depth: int = 64


def path_problem(name: str) -> tuple[str, str] | None:
    """Why a member name is unsafe or non-canonical, as (finding code, reason); None when fine.

    Names are compared byte-for-byte against bundle.json, so only the canonical spelling is
    accepted: no `./`, no `//`, no trailing `/`, no backslashes that Windows would split on.
    """
    if not name:
        return "bad_path", "empty member name"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name) or name.startswith("\\"):
        return "absolute_path", "absolute member path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "path_traversal", "member path climbs out with '..'"
    if "\\" in name or "\x00" in name or any(ord(c) < 32 for c in name):
        return "bad_path", "member path holds a backslash or control character"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "bad_path", "member path is not valid UTF-8"
    if posixpath.normpath(name) != name or "." in parts:
        return "bad_path", "member path is not in canonical form"
    return None


def bundle_document(files: dict[str, dict[str, Any]], created_at: str, version: str) -> dict[str, Any]:
    return {"kind": BUNDLE_KIND, "schema_version": SCHEMA_VERSION, "created_at": created_at,
            "aibench_version": version, "files": files}


def bundle_document_problems(doc: Any) -> list[tuple[str, str]]:
    """(code, message) for each way `doc` is not a version-1 bundle.json; [] when it is one."""
    if not isinstance(doc, dict):
        return [("bundle_json_invalid", "bundle.json is not a JSON object")]
    if doc.get("kind") != BUNDLE_KIND:
        return [("bundle_json_invalid", f"bundle.json kind is {doc.get('kind')!r}, not {BUNDLE_KIND!r}")]
    if doc.get("schema_version") != SCHEMA_VERSION:
        return [("unknown_schema_version",
                 f"bundle.json schema_version {doc.get('schema_version')!r}: this aibench reads {SCHEMA_VERSION}")]
    problems: list[tuple[str, str]] = []
    for key in ("created_at", "aibench_version"):
        if not isinstance(doc.get(key), str):
            problems.append(("bundle_json_invalid", f"bundle.json {key} is missing or not a string"))
    files = doc.get("files")
    if not isinstance(files, dict):
        return [*problems, ("bundle_json_invalid", "bundle.json files is missing or not an object")]
    for name, info in files.items():
        bad = path_problem(name)
        if bad is not None or not name.startswith(RUN_PREFIX):
            problems.append(("bundle_json_invalid", f"bundle.json lists a bad path {name[:200]!r}"))
        elif not (isinstance(info, dict) and isinstance(info.get("sha256"), str)
                  and _SHA256_HEX.fullmatch(info["sha256"])
                  and type(info.get("size")) is int and info["size"] >= 0):
            problems.append(("bundle_json_invalid", f"bundle.json entry for {name[:200]!r} needs sha256 and size"))
    return problems
