"""Builders for bundle tests: a small valid run directory, and bundles crafted member by member.

`craft` writes a .tar.gz by hand (tarfile + gzip), so hostile archives (links, traversal, bombs)
can be made exactly; `signed_bundle` recomputes bundle.json (and the signature) over chosen run
files, so a test can change one document and see only the finding it is about.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aibench import __version__
from aibench.bundle import keys
from aibench.core import stats
from aibench.device.env import environment_sha256 as env_sha
from aibench.results.recompute import expected_metrics

_ENV = {"software": {"torch": "2.11.0", "python": "3.11.7"}, "host": {"cpu": "x"}}
ENV_SHA = env_sha(_ENV)

_MANIFEST: dict[str, Any] = {
    "kind": "aibench.run",
    "schema_version": 1,
    "run_id": "20250101-000000-test-abc123",
    "created_at": "2025-01-01T00:00:00.000+00:00",
    "finished_at": "2025-01-01T00:10:00.000+00:00",
    "complete": True,
    "comparable": True,
    "preview": False,
    "aibench_version": __version__,
    "suite": {
        "name": "tiny", "version": "1", "sha256": "cd" * 32, "source": "builtin:tiny",
        "entries": [
            {"id": "gemm-small", "workload": "gemm", "params": {"m": 64}, "backends": ["torch"]},
            {"id": "copy", "workload": "memory.copy", "params": {}, "backends": None},
        ],
    },
    "run_rules": {"min_time_s": 0.5, "min_samples": 10, "target_rel_se": 0.01, "warmup_s": 0.1,
                  "max_time_s": 10.0, "seed": 0, "energy_min_s": 2.0},
    "environment": _ENV,
    "environment_sha256": ENV_SHA,
    "system": {"system_name": "test box", "accelerator_model_name": "none"},
    "telemetry": {"idle_baseline": None, "overhead": None},
}


def manifest(**changes: Any) -> dict[str, Any]:
    """The test manifest; a changed environment gets its matching environment_sha256 unless given."""
    m = copy.deepcopy(_MANIFEST)
    m.update(changes)
    if "environment" in changes and "environment_sha256" not in changes:
        m["environment_sha256"] = env_sha(m["environment"])
    return m


def record(entry: str = "gemm-small", workload: str = "gemm", backend: str = "torch", **changes: Any) -> dict[str, Any]:
    """A schema-valid ok record that meets the rules of `manifest()`; `changes` replace top-level keys."""
    samples = [1e-3 * (1 + 0.001 * i) for i in range(20)]
    rec: dict[str, Any] = {
        "kind": "aibench.record", "schema_version": 1,
        "id": f"{workload}[m=64]/{backend}", "entry": entry, "workload": workload, "backend": backend,
        "baseline": "torch", "params": {"m": 64},
        "device": {"spec": "cuda:0", "kind": "cuda", "name": "NVIDIA H100", "index": 0},
        "preview": False, "interpreted": False, "status": "ok", "reason": None,
        "correctness": {"checked": True, "passed": True, "rel_error": 1e-4, "tolerance": 1e-2},
        # n, median and total_s derived from the samples, as the timer does (verify checks n and total_s)
        "timing": {"method": "cuda_event", "samples_s": samples, "n": len(samples), "median": stats.median(samples),
                   "converged": True, "stop_reason": "converged", "total_s": sum(samples), "rel_stderr_median": stats.rel_stderr_median(samples)},
        # consistent with work and samples: verify recomputes derived numbers (results/recompute.py)
        "metrics": {"tflops": 12.5, "latency_ms": 1.01},
        "unavailable": {}, "work": {"flops": 12.5e12 * stats.median(samples)}, "details": {},
        "telemetry": {"available": False, "reason": "no NVML"},
        "environment": ENV_SHA,
        "started_at": "2025-01-01T00:00:01.000+00:00", "finished_at": "2025-01-01T00:00:02.000+00:00",
        "duration_s": 1.0, "aibench_version": __version__,
    }
    rec.update(changes)
    if "metrics" not in changes:  # the rates the samples and work give: verify recomputes them
        timing = rec.get("timing")
        if isinstance(timing, dict) and _positive_numbers(timing.get("samples_s")):
            rec["metrics"] = {**rec["metrics"], **expected_metrics(rec)}
    return rec


def _positive_numbers(samples: Any) -> bool:
    return isinstance(samples, list) and bool(samples) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in samples)


def timing_for(samples: list[Any], **changes: Any) -> dict[str, Any]:
    """The helper record's timing over other samples: n, total_s, median and rel_stderr_median
    derived from them as the timer does (verify recomputes each), then `changes` (a claim a test
    wants to be a lie) on top."""
    timing = copy.deepcopy(record()["timing"])
    timing["samples_s"] = samples
    if _positive_numbers(samples):
        timing.update(n=len(samples), total_s=sum(samples), median=stats.median(samples),
                      rel_stderr_median=stats.rel_stderr_median(samples))
    timing.update(changes)
    return timing


def default_records() -> list[dict[str, Any]]:
    return [record(), record(entry="copy", workload="memory.copy", id="memory.copy[]/torch")]


def shipped_run(name: str = "gigafactory", **rule_changes: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(manifest, records) of a full run of the shipped suite `name` as shipped (its version, hash
    and run rules, `rule_changes` over them), one ok record per suite entry: a closed-division run."""
    from aibench.suite.shipped import shipped_suite

    facts = shipped_suite(name)
    entries = [{"id": e, "entry": e, "workload": "gemm", "params": {"m": 64}, "backends": ["torch"]}
               for e in facts.entry_ids]
    suite = {"name": facts.name, "version": facts.version, "sha256": facts.sha256,
             "source": f"builtin:{name}", "mode": "full", "entries": entries}
    rules = {**facts.rules["full"].as_dict(), **rule_changes}
    return manifest(suite=suite, run_rules=rules), [record(entry=e, id=f"{e}/torch") for e in facts.entry_ids]


def jsonl(records: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def run_files(man: dict[str, Any] | None = None, records: list[dict[str, Any]] | None = None,
              extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """Run-relative path -> bytes of a small valid run directory."""
    files = {
        "manifest.json": json.dumps(manifest() if man is None else man, indent=2).encode(),
        "records.jsonl": jsonl(default_records() if records is None else records),
        "telemetry/0000-gemm.csv": b"t_s,power_w\n0.0,300.5\n0.1,301.0\n",
        "logs/run.log": b"2025-01-01T00:00:00 run created\n",
    }
    files.update(extra or {})
    return files


def write_run_dir(root: Path, files: dict[str, bytes] | None = None) -> Path:
    run = root / "run-1"
    for rel, data in (run_files() if files is None else files).items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(data)
    return run


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, b""


def craft(path: Path, members: Iterable[tuple[tarfile.TarInfo, bytes]], level: int = 6) -> Path:
    """Write members exactly as given (any type, any name) into a .tar.gz."""
    with gzip.open(path, "wb", compresslevel=level) as gz, \
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def bundle_json(files: dict[str, bytes], **changes: Any) -> bytes:
    listing = {f"run/{rel}": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
               for rel, data in sorted(files.items())}
    doc = {"kind": "aibench.bundle", "schema_version": 1, "created_at": "2025-01-01T00:11:00+00:00",
           "aibench_version": __version__, "files": listing, **changes}
    return json.dumps(doc, indent=2, sort_keys=True).encode()


def signed_bundle(path: Path, files: dict[str, bytes] | None = None, key: Ed25519PrivateKey | None = None,
                  extra: Iterable[tuple[tarfile.TarInfo, bytes]] = (), doc: bytes | None = None) -> Path:
    """A bundle whose bundle.json matches `files` (run-relative), signed with `key` when given."""
    files = run_files() if files is None else files
    doc = bundle_json(files) if doc is None else doc
    members = [regular("bundle.json", doc)]
    if key is not None:
        members.append(regular("bundle.sig", base64.b64encode(key.sign(doc)) + b"\n"))
        members.append(regular("bundle.pub", keys.public_pem(key.public_key())))
    members += [regular(f"run/{rel}", data) for rel, data in sorted(files.items())]
    return craft(path, [*members, *extra])


def members_of(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Every member with its bytes (a trusted, test-made bundle only)."""
    out = []
    with tarfile.open(path, "r:gz") as tf:
        for info in tf.getmembers():
            f = tf.extractfile(info)
            out.append((info, f.read() if f else b""))
    return out
