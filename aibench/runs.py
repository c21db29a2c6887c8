"""Reading finished runs back: a run directory, or a bundle (verified first, read in memory).

`compare` and `report` read runs through here, never by hand: a bundle comes from outside, so it
is only read after `verify` found no error in it, and nothing of it is ever extracted to disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from aibench.errors import AibenchError, UsageError
from aibench.records import read_jsonl, validate
from aibench.rundir import MANIFEST, RECORDS, RUN_KIND, RUN_SCHEMA_VERSION


@dataclass(frozen=True)
class LoadedRun:
    source: str
    manifest: dict[str, Any]
    records: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)  # what verification or loading noticed

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


def load_run(path: str | Path, pubkey: str | Path | None = None) -> LoadedRun:
    """A run directory or a `.tar.gz` bundle. Raises AibenchError naming what is wrong."""
    p = Path(path)
    if p.is_dir():
        return _load_dir(p)
    if p.is_file():
        return _load_bundle(p, pubkey)
    raise UsageError(f"{path}: no such run directory or bundle")


def _load_dir(path: Path) -> LoadedRun:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise AibenchError(f"{path} is not a run directory (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        records = read_jsonl(path / RECORDS)
    except (json.JSONDecodeError, ValueError, UnicodeDecodeError) as exc:
        raise AibenchError(f"{path}: unreadable run ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != RUN_KIND \
            or manifest.get("schema_version") != RUN_SCHEMA_VERSION:
        raise AibenchError(f"{manifest_path}: not an aibench run manifest of schema version {RUN_SCHEMA_VERSION}")
    for i, rec in enumerate(records):
        try:
            validate(rec)
        except jsonschema.ValidationError as exc:
            raise AibenchError(f"{path / RECORDS}: record {i + 1} is invalid: {exc.message}") from None
    warnings = [] if manifest.get("complete") else ["the run is incomplete (interrupted; resume it to finish)"]
    return LoadedRun(str(path), manifest, records, warnings)


def _load_bundle(path: Path, pubkey: str | Path | None) -> LoadedRun:
    from aibench.bundle.verify import verify_and_read

    report, docs = verify_and_read(path, pubkey)
    if not report.valid or docs is None or docs.manifest is None:
        first = "; ".join(f"{f.code}: {f.message}" for f in report.errors[:3]) or "no run inside"
        raise AibenchError(f"{path}: bundle does not verify ({first}); `aibench bundle verify` lists every finding")
    warnings = [f"{f.code}: {f.message}" for f in report.warnings]
    return LoadedRun(str(path), docs.manifest, docs.records, warnings)
