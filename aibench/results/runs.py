"""Reading a finished run directory back as a LoadedRun, the one shape `compare` and `report` read.

A bundle loads into the same LoadedRun through aibench.bundle.load (verified first, read in
memory): a bundle comes from outside, so it is only read after `verify` found no error in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from aibench.core.errors import AibenchError
from aibench.core.jsonutil import float_range_int
from aibench.measure.records import read_jsonl, validate
from aibench.results.node_spread import is_rank_record
from aibench.results.recompute import manifest_problems, refused
from aibench.results.rundir import MANIFEST, RECORDS, RUN_KIND, RUN_SCHEMA_VERSION


@dataclass(frozen=True)
class LoadedRun:
    source: str
    manifest: dict[str, Any]
    records: list[dict[str, Any]]  # what report and compare read: never a per-rank record (see split_ranks)
    warnings: list[str] = field(default_factory=list)  # what verification or loading noticed
    signature: str = "none: a run directory is not signed"  # who signed it, as far as verify knows
    rank_records: list[dict[str, Any]] = field(default_factory=list)  # a launched job's per-GPU records

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


def split_ranks(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the records readers use, the per-rank records behind an aggregate). A per-GPU case that
    every rank of a launched job ran has one record per rank and one aggregate (its slowest
    rank's numbers, results/node_spread.py): a report or a compare counts the case once."""
    return [r for r in records if not is_rank_record(r)], [r for r in records if is_rank_record(r)]


def refuse_untrustworthy(records: list[dict[str, Any]], manifest: dict[str, Any] | None
                         ) -> tuple[list[dict[str, Any]], list[str]]:
    """The records with each one whose numbers its own samples, work or device refute turned
    into status "invalid" (results/recompute.py), and one warning per refused record."""
    checked = refused(records, manifest)
    notes = [f"record {rec['id']} refused ({str(rec['reason']).removeprefix('refused: ')})"
             for before, rec in zip(records, checked) if rec is not before]
    return checked, notes


def load_dir(path: Path, key_given: bool = False) -> LoadedRun:
    """A run directory, its manifest and records checked. `key_given`: the user passed a public key
    (a directory has no signature to check it against: a warning says so)."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise AibenchError(f"{path} is not a run directory (no {MANIFEST})")
    try:
        # A run directory is as hostile as a bundle: an integer past the float range is refused
        # (ValueError) before a reader converts it (float_range_int).
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"), parse_int=float_range_int)
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
    lies = [f"{code}: {why}" for code, why in manifest_problems(manifest)]
    if lies:  # read as what the environment shows: a preview, not comparable
        manifest = {**manifest, "comparable": False, "preview": True}
        warnings += [f"{lie} (read as a preview, not comparable)" for lie in lies]
    records, refusals = refuse_untrustworthy(records, manifest)
    warnings += refusals
    if key_given:  # the user asked for a signature check: say that there was nothing to check
        warnings.append("a run directory is not signed: the public key given checks nothing in it")
    records, per_rank = split_ranks(records)
    return LoadedRun(str(path), manifest, records, warnings, rank_records=per_rank)
