"""Reading finished runs back: a run directory, or a bundle (verified first, read in memory).

`compare` and `report` read runs through here, never by hand: a bundle comes from outside, so it
is only read after `verify` found no error in it, and nothing of it is ever extracted to disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema

from aibench.errors import AibenchError, BundleError, UsageError
from aibench.records import read_jsonl, validate
from aibench.rundir import MANIFEST, RECORDS, RUN_KIND, RUN_SCHEMA_VERSION

if TYPE_CHECKING:  # the bundle code (cryptography) loads only when a bundle is read
    from aibench.bundle.verify import Keys


@dataclass(frozen=True)
class LoadedRun:
    source: str
    manifest: dict[str, Any]
    records: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)  # what verification or loading noticed
    signature: str = "none: a run directory is not signed"  # who signed it, as far as verify knows

    @property
    def label(self) -> str:
        """How tables name this run: the system name of its description, else its device."""
        system = self.manifest.get("system")
        device = self.manifest.get("device")
        system = system if isinstance(system, dict) else {}
        device = device if isinstance(device, dict) else {}
        return str(system.get("system_name") or device.get("name") or self.manifest.get("run_id") or self.source)

    @property
    def device_name(self) -> str | None:
        device = self.manifest.get("device")
        return device.get("name") if isinstance(device, dict) else None


# The types of the manifest fields that report and compare read. A bundle's manifest is checked
# against the whole schema by verify; a directory's may be old or hand-made and lack fields, so
# only the ones it has are checked, and only their type: enough that no reader crashes on them.
_STRING = ((str,), "a string")
_BOOL = ((bool,), "true or false")
_OBJECT = ((dict,), "an object")
_OBJECT_OR_NULL = ((dict, type(None)), "an object or null")
_MANIFEST_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "run_id": _STRING, "created_at": _STRING, "finished_at": ((str, type(None)), "a string or null"),
    "aibench_version": _STRING, "complete": _BOOL, "comparable": _BOOL, "preview": _BOOL,
    "suite": _OBJECT_OR_NULL, "device": _OBJECT_OR_NULL, "system": _OBJECT_OR_NULL, "environment": _OBJECT,
    "environment_sha256": _STRING, "run_rules": _OBJECT, "telemetry": _OBJECT,
}


def _manifest_type_problem(manifest: dict[str, Any]) -> str | None:
    for name, (types, expected) in _MANIFEST_TYPES.items():
        if name in manifest and not isinstance(manifest[name], types):
            return f"{name} must be {expected}, not {json.dumps(manifest[name])[:80]}"
    return None


def load_run(path: str | Path, pubkey: Keys = None) -> LoadedRun:
    """A run directory or a `.tar.gz` bundle. Raises AibenchError naming what is wrong.
    `pubkey`: the trusted key or keys (a bundle must be signed by one of them)."""
    p = Path(path)
    if p.is_dir():
        return _load_dir(p, bool(pubkey))
    if p.is_file():
        return _load_bundle(p, pubkey)
    raise UsageError(f"{path}: no such run directory or bundle")


def _load_dir(path: Path, key_given: bool = False) -> LoadedRun:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise AibenchError(f"{path} is not a run directory (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        records = read_jsonl(path / RECORDS)
    except (json.JSONDecodeError, ValueError, UnicodeDecodeError) as exc:
        raise AibenchError(f"{path}: unreadable run ({exc})") from None
    except RecursionError:  # json recurses per nesting level: a hostile file nests past the limit
        raise AibenchError(f"{path}: unreadable run (JSON nested too deeply)") from None
    except OSError as exc:  # e.g. records.jsonl is a directory or unreadable
        raise AibenchError(f"{path}: unreadable run ({exc.strerror or exc}: {exc.filename})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != RUN_KIND \
            or manifest.get("schema_version") != RUN_SCHEMA_VERSION:
        raise AibenchError(f"{manifest_path}: not an aibench run manifest of schema version {RUN_SCHEMA_VERSION}")
    problem = _manifest_type_problem(manifest)
    if problem is not None:
        raise AibenchError(f"{manifest_path}: {problem}")
    for i, rec in enumerate(records):
        try:
            validate(rec)
        except jsonschema.ValidationError as exc:
            raise AibenchError(f"{path / RECORDS}: record {i + 1} is invalid: {exc.message}") from None
    warnings = [] if manifest.get("complete") else ["the run is incomplete (interrupted; resume it to finish)"]
    if key_given:  # the user asked for a signature check: say that there was nothing to check
        warnings.append("a run directory is not signed: the public key given checks nothing in it")
    return LoadedRun(str(path), manifest, records, warnings)


def _load_bundle(path: Path, pubkey: Keys) -> LoadedRun:
    from aibench.bundle.verify import keyring, verify_and_read

    try:
        trusted = keyring(pubkey)
    except BundleError as exc:  # the user's own key file: a usage error (exit 2), not a bad bundle
        raise UsageError(str(exc)) from None
    report, docs = verify_and_read(path, trusted)
    if not report.valid or docs is None or docs.manifest is None:
        first = "; ".join(f"{f.code}: {f.message}" for f in report.errors[:3]) or "no run inside"
        raise AibenchError(f"{path}: bundle does not verify ({first}); `aibench bundle verify` lists every finding")
    warnings = [f"{f.code}: {f.message}" for f in report.warnings]
    return LoadedRun(str(path), docs.manifest, docs.records, warnings, _signature(report.summary, bool(trusted)))


def _signature(summary: dict[str, Any], checked: bool) -> str:
    """A reader's one-line answer to "who vouches for these numbers?"."""
    signer = summary.get("signer")
    if not summary.get("signed"):
        return "unsigned"
    if checked and signer:
        return f"verified: {signer}"
    if signer:
        return f"not checked: the key carried in the bundle, {signer} (pass --pubkey)"
    return "not checked (pass --pubkey)"
