"""Pack a run directory into one (optionally signed) .tar.gz bundle.

Deterministic layout: bundle.json, bundle.sig, bundle.pub, then run/ files in sorted order, with
uid/gid 0, empty owner names, mode 0644, mtime 0 and a gzip header without name or time, so that
the same run packed twice differs only in created_at (and the signature over it).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aibench import __version__
from aibench.bundle import keys
from aibench.bundle.layout import (
    BUNDLE_JSON,
    CHUNK,
    MANIFEST,
    PUBLIC_KEY,
    RECORDS,
    RUN_PREFIX,
    SIGNATURE,
    bundle_document,
    path_problem,
)
from aibench.core.errors import BundleError


def _run_files(run_dir: Path) -> list[tuple[str, Path]]:
    """(member name, path) of every file under run_dir, sorted; refuses links and special files."""
    found: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(run_dir):
        for name in [*dirs, *files]:
            path = Path(root) / name
            st = path.lstat()
            rel = path.relative_to(run_dir).as_posix()
            if stat.S_ISLNK(st.st_mode):
                raise BundleError(f"refusing to pack symbolic link {path}: a bundle holds regular files only")
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise BundleError(f"refusing to pack {path}: not a regular file")
            member = RUN_PREFIX + rel
            if path_problem(member) is not None:
                raise BundleError(f"refusing to pack {path}: its name cannot be stored safely")
            found.append((member, path))
    return sorted(found)


def _digest(path: Path) -> dict[str, str | int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return {"sha256": h.hexdigest(), "size": size}


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _HashingReader:
    """Hashes what tarfile copies, to catch a file that changed after bundle.json was written."""

    def __init__(self, f: BinaryIO) -> None:
        self._f, self.hash = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.hash.update(data)
        return data


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    tf.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


def _resolve_key(key: Ed25519PrivateKey | str | os.PathLike[str] | None) -> Ed25519PrivateKey | None:
    if key is None or isinstance(key, Ed25519PrivateKey):
        return key
    return keys.load_private_key(key)


def pack(run_dir: str | os.PathLike[str], out_path: str | os.PathLike[str],
         key: Ed25519PrivateKey | str | os.PathLike[str] | None = None, *,
         created_at: str | None = None, compresslevel: int = 6) -> Path:
    """Write the run at `run_dir` as a bundle at `out_path` (signed when `key` is given)."""
    run = Path(run_dir)
    out = Path(out_path)
    if not run.is_dir():
        raise BundleError(f"{run} is not a directory")
    for required in (MANIFEST, RECORDS):
        if not (run / required.removeprefix(RUN_PREFIX)).is_file():
            raise BundleError(f"{run} is not a run directory: no {required.removeprefix(RUN_PREFIX)}")
    if out.resolve().is_relative_to(run.resolve()):
        raise BundleError(f"write the bundle outside the run directory (not {out})")
    private = _resolve_key(key)
    files = _run_files(run)
    listing = {name: _digest(path) for name, path in files}
    doc = bundle_document(listing, created_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          __version__)
    doc_bytes = (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")

    partial = out.with_name(out.name + ".partial")
    try:
        with open(partial, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=compresslevel) as gz, \
                tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            _add_bytes(tf, BUNDLE_JSON, doc_bytes)
            if private is not None:
                _add_bytes(tf, SIGNATURE, base64.b64encode(private.sign(doc_bytes)) + b"\n")
                _add_bytes(tf, PUBLIC_KEY, keys.public_pem(private.public_key()))
            for name, path in files:
                with open(path, "rb") as f:
                    reader = _HashingReader(f)
                    tf.addfile(_tarinfo(name, int(listing[name]["size"])), reader)  # type: ignore[arg-type]
                if reader.hash.hexdigest() != listing[name]["sha256"]:
                    raise BundleError(f"{path} changed while it was being packed; pack again when the run is idle")
        os.replace(partial, out)  # a reader never sees half a bundle under the final name
    except OSError as e:
        raise BundleError(f"cannot write {out}: {e.strerror or e}") from e
    except tarfile.TarError as e:  # e.g. a file shrank while it was copied
        raise BundleError(f"cannot pack {run}: {e}") from e
    finally:
        partial.unlink(missing_ok=True)
    return out
