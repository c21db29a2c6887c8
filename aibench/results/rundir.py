"""The run directory: where records land, durable one by one, and where a resumed run continues.

    results/<run-id>/
      manifest.json     suite, versions, environment fingerprint, system description, run rules,
                        complete / comparable flags (rewritten atomically as the run progresses)
      records.jsonl     one record per line (schemas/record.schema.json), fsynced one by one
      telemetry/*.csv   raw telemetry samples of each record that has them
      logs/run.log      what happened, with timestamps

results/README.md documents the format for people reading the files.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema

from aibench import __version__
from aibench.core.errors import AibenchError
from aibench.core.jsonutil import write_json_atomic
from aibench.measure.records import Outcome, append_jsonl, now_iso, read_jsonl, validate
from aibench.results.samples_csv import write_samples_csv

RUN_KIND = "aibench.run"
RUN_SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
RECORDS = "records.jsonl"


def new_run_id(label: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40] or "run"
    return f"{stamp}-{slug}-{secrets.token_hex(3)}"


class RunDir:
    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    @property
    def records_path(self) -> Path:
        return self.path / RECORDS

    @classmethod
    def create(cls, root: Path, label: str, fields: dict[str, Any]) -> RunDir:
        run_id = new_run_id(label)
        path = Path(root) / run_id
        path.mkdir(parents=True, exist_ok=False)
        (path / "telemetry").mkdir()
        (path / "logs").mkdir()
        manifest = {
            "kind": RUN_KIND,
            "schema_version": RUN_SCHEMA_VERSION,
            "run_id": run_id,
            "created_at": now_iso(),
            "finished_at": None,
            "complete": False,
            "aibench_version": __version__,
            **fields,
        }
        run = cls(path, manifest)
        write_json_atomic(path / MANIFEST, manifest)
        run.records_path.touch()
        run.log(f"run {run_id} created")
        return run

    @classmethod
    def open_existing(cls, path: Path) -> RunDir:
        """Open a run to resume it; repairs a record line cut short by a kill."""
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise AibenchError(f"{path} is not a run directory (no {MANIFEST})")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise AibenchError(f"{manifest_path}: not valid JSON ({exc})") from None
        if manifest.get("kind") != RUN_KIND or manifest.get("schema_version") != RUN_SCHEMA_VERSION:
            raise AibenchError(f"{manifest_path}: not an aibench run manifest of schema version {RUN_SCHEMA_VERSION}")
        run = cls(path, manifest)
        run._repair_records()
        run._check_records()
        (path / "telemetry").mkdir(exist_ok=True)
        (path / "logs").mkdir(exist_ok=True)
        return run

    def _repair_records(self) -> None:
        data = self.records_path.read_bytes() if self.records_path.exists() else b""
        if data and not data.endswith(b"\n"):
            keep = data[: data.rfind(b"\n") + 1]
            with open(self.records_path, "wb") as f:
                f.write(keep)
                f.flush()
                os.fsync(f.fileno())
            self.log(f"dropped a truncated last record line ({len(data) - len(keep)} bytes)")

    def _check_records(self) -> None:
        """Every kept line must be a record: a resume counts them as done and builds on them (a
        baseline's timing). Only a cut-short last line is a kill's trace; any other is refused."""
        try:
            lines = self.records_path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise AibenchError(f"{self.records_path}: unreadable ({exc})") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AibenchError(f"{self.records_path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(data, dict):
                raise AibenchError(f"{self.records_path}:{number}: not a record (a JSON object)")
            try:
                validate(data)
            except jsonschema.ValidationError as exc:
                raise AibenchError(f"{self.records_path}:{number}: not a valid record ({exc.message})") from None

    def records(self) -> list[dict[str, Any]]:
        try:
            return read_jsonl(self.records_path)
        except (ValueError, UnicodeDecodeError) as exc:  # a line broken after the run was opened
            raise AibenchError(str(exc)) from None

    def append(self, outcome: Outcome) -> dict[str, Any]:
        """Write one record (and its raw telemetry) durably; returns the record as written."""
        data = outcome.record.to_dict()
        if outcome.telemetry_samples:
            index = sum(1 for _ in (self.path / "telemetry").glob("*.csv"))
            slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", data["id"])[:120]
            rel = f"telemetry/{index:04d}-{slug}.csv"
            write_samples_csv(self.path / rel, outcome.telemetry_samples)
            data["telemetry"] = {**data["telemetry"], "samples_file": rel}
        append_jsonl(self.records_path, data)
        self.log(f"{data['status']:8s} {data['id']}" + (f" ({data['reason']})" if data.get("reason") else ""))
        return data

    def update(self, **changes: Any) -> None:
        self.manifest.update(changes)
        write_json_atomic(self.path / MANIFEST, self.manifest)

    def finish(self, complete: bool) -> None:
        self.update(complete=complete, finished_at=now_iso() if complete else None)
        self.log("run complete" if complete else "run interrupted: incomplete (resume with --resume)")

    def log(self, message: str) -> None:
        with open(self.path / "logs" / "run.log", "a", encoding="utf-8") as f:
            f.write(f"{now_iso()} {message}\n")
