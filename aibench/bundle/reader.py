"""Read an untrusted bundle in one streaming pass, entirely in memory: nothing is extracted.

Layers, outermost first: the file (compressed bytes counted) -> gzip -> a gate that counts the
inflated bytes and stops at the total and ratio limits -> tarfile in stream mode ("r|") -> each
member hashed in 1 MiB chunks. The gate is below tarfile, so header bytes, padding and members
skipped by tarfile are all counted: the tar header's size field is never trusted alone.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from aibench.bundle.findings import Finding, error, shown, warning
from aibench.bundle.layout import CHUNK, RECORDS, Limits, path_problem

_GZIP_MAGIC = b"\x1f\x8b"
# Tar headers and the zero padding of small files compress far better than 200:1, so the ratio
# limit only applies once this much has been inflated; the total limit covers what comes before.
_RATIO_FLOOR = 1 << 20


class _Stop(Exception):
    """A fatal finding: reading cannot go on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class MemberDigest:
    sha256: str
    size: int


@dataclass
class Contents:
    """What one pass over a bundle saw. `complete` is False when a fatal finding stopped the pass."""

    digests: dict[str, MemberDigest] = field(default_factory=dict)
    blobs: dict[str, bytes | bytearray] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    complete: bool = False
    compressed_bytes: int = 0
    inflated_bytes: int = 0


class _CountingFile:
    def __init__(self, f: BinaryIO) -> None:
        self._f, self.count = f, 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.count += len(data)
        return data


class _Gate:
    """Counts inflated bytes between gzip and tarfile and stops a decompression bomb mid-stream."""

    def __init__(self, gz: gzip.GzipFile, raw: _CountingFile, limits: Limits) -> None:
        self._gz, self._raw, self._limits, self.count = gz, raw, limits, 0

    def read(self, n: int = -1) -> bytes:
        data = self._gz.read(CHUNK if n is None or n < 0 else min(n, CHUNK))
        self.count += len(data)
        if self.count > self._limits.max_total_bytes:
            raise _Stop("too_large", f"more than {self._limits.max_total_bytes} bytes once decompressed "
                                     "(Limits.max_total_bytes)")
        if self.count > _RATIO_FLOOR and self.count > self._limits.max_ratio * max(self._raw.count, 1):
            raise _Stop("compression_ratio", f"compression ratio above {self._limits.max_ratio:g}:1 "
                                             "(a decompression bomb?)")
        return data


def _guarded_tarinfo(max_header_bytes: int) -> type[tarfile.TarInfo]:
    class GuardedTarInfo(tarfile.TarInfo):
        # tarfile reads a whole pax / GNU long-name header into memory from its size field:
        # bound it before tarfile does (these are the private hooks every Python 3 tarfile has).
        def _proc_member(self, tf: tarfile.TarFile) -> Any:
            if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                             tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK) \
                    and self.size > max_header_bytes:
                raise _Stop("header_too_large", f"an extended tar header of {self.size} bytes "
                                                f"(limit {max_header_bytes})")
            return super()._proc_member(tf)  # type: ignore[misc]

    return GuardedTarInfo


def _type_problem(m: tarfile.TarInfo) -> Finding | None:
    name = m.name
    if m.issym():
        return error("symlink", f"symbolic link {shown(name)!r} -> {shown(m.linkname)!r}", member=name)
    if m.islnk():
        return error("hardlink", f"hard link {shown(name)!r} -> {shown(m.linkname)!r}", member=name)
    if m.ischr() or m.isblk():
        return error("device", f"device file {shown(name)!r}", member=name)
    if m.isfifo():
        return error("fifo", f"named pipe {shown(name)!r}", member=name)
    if m.isdir():
        return warning("directory_member", f"directory entry {shown(name)!r} (ignored)", member=name)
    if m.sparse is not None:  # holes expand to zeros above the gate: unbounded work for a few bytes
        return error("special_member", f"sparse file {shown(name)!r}", member=name)
    if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        return error("special_member", f"member {shown(name)!r} of tar type {m.type!r}", member=name)
    return None


def _hash_member(tf: tarfile.TarFile, m: tarfile.TarInfo, keep: bool,
                 limits: Limits) -> tuple[MemberDigest, bytes | bytearray | None]:
    f = tf.extractfile(m)
    assert f is not None  # regular files always have a file object
    h, size = hashlib.sha256(), 0
    keep = keep and m.size <= _json_limit(m.name, limits)
    # one growing buffer, not a list of chunks joined at the end: joining holds the member twice
    held = bytearray() if keep else None
    while chunk := f.read(CHUNK):
        size += len(chunk)
        h.update(chunk)
        if held is not None:
            held += chunk
    # records.jsonl stays a bytearray (parsed a line at a time); the small documents become bytes
    return MemberDigest(h.hexdigest(), size), (bytes(held) if held is not None and m.name != RECORDS else held)


def _json_limit(name: str, limits: Limits) -> int:
    return limits.max_records_bytes if name == RECORDS else limits.max_json_bytes


def _scan(tf: tarfile.TarFile, out: Contents, keep: frozenset[str], limits: Limits) -> None:
    seen: set[str] = set()
    count = 0
    while (m := tf.next()) is not None:
        tf.members.clear()  # stream mode keeps every TarInfo otherwise: 100k members add up
        count += 1
        if count > limits.max_members:
            raise _Stop("too_many_members", f"more than {limits.max_members} members (Limits.max_members)")
        name = m.name
        problem = path_problem(name)
        if problem is not None:
            out.findings.append(error(problem[0], f"{problem[1]}: {shown(name)!r}", member=name))
            continue
        if name in seen:
            out.findings.append(error("duplicate_member", f"{shown(name)!r} appears more than once", member=name))
            continue
        seen.add(name)
        bad_type = _type_problem(m)
        if bad_type is not None:
            out.findings.append(bad_type)
            continue
        if m.size > limits.max_member_bytes:
            out.findings.append(error("member_too_large", f"{shown(name)!r} is {m.size} bytes "
                                      f"(Limits.max_member_bytes = {limits.max_member_bytes})", member=name))
            continue  # tarfile skips its data (still counted by the gate)
        digest, blob = _hash_member(tf, m, name in keep, limits)
        out.digests[name] = digest
        if blob is not None:
            out.blobs[name] = blob
        elif name in keep:
            limit_name = "max_records_bytes" if name == RECORDS else "max_json_bytes"
            out.findings.append(error("json_too_large", f"{shown(name)!r} is {m.size} bytes "
                                      f"(Limits.{limit_name} = {_json_limit(name, limits)})", member=name))


def _drain(tf: tarfile.TarFile) -> bool:
    """Read past the end-of-archive marker; True when only zero padding follows.

    Reading to the end also makes gzip check its CRC and length trailer, and catches data
    hidden after the archive or members cut off by a corrupt header (tarfile stops quietly there).
    """
    clean = True
    while chunk := tf.fileobj.read(CHUNK):  # type: ignore[union-attr]
        clean = clean and not chunk.strip(b"\x00")
    return clean


def _open_tar(gate: _Gate, limits: Limits) -> tarfile.TarFile:
    return tarfile.open(fileobj=gate, mode="r|", bufsize=CHUNK,  # type: ignore[call-overload]
                        tarinfo=_guarded_tarinfo(limits.max_header_bytes), encoding="utf-8",
                        errors="surrogateescape")


def _read_stream(raw: _CountingFile, out: Contents, keep: frozenset[str], limits: Limits) -> None:
    with gzip.GzipFile(fileobj=raw, mode="rb") as gz:  # type: ignore[arg-type]
        gate = _Gate(gz, raw, limits)
        try:
            try:
                tf = _open_tar(gate, limits)
            except tarfile.ReadError as e:
                out.findings.append(error("not_tar", f"not a tar archive inside the gzip ({e})"))
                return
            with tf:
                _scan(tf, out, keep, limits)
                if not _drain(tf):
                    out.findings.append(error("trailing_data", "non-zero data after the end of the tar archive "
                                              "(hidden data or a corrupt header)"))
            out.complete = True
        finally:
            out.compressed_bytes, out.inflated_bytes = raw.count, gate.count


def read_bundle(path: str | os.PathLike[str], keep: frozenset[str], limits: Limits | None = None) -> Contents:
    """Hash every member of the bundle at `path`; hold the members named in `keep` in memory.

    Everything wrong with the archive becomes a finding; `complete` says whether the pass reached
    the end of the gzip stream.
    """
    limits = limits or Limits()
    out = Contents()
    try:
        with open(path, "rb") as f:
            if f.read(2) != _GZIP_MAGIC:
                out.findings.append(error("not_gzip", "not a gzip file (a bundle is a .tar.gz)"))
                return out
            f.seek(0)
            _read_stream(_CountingFile(f), out, keep, limits)
    except _Stop as e:
        out.findings.append(error(e.code, e.message))
    except EOFError:
        out.findings.append(error("truncated", "the gzip stream ends early (truncated file)"))
    except (gzip.BadGzipFile, zlib.error) as e:
        out.findings.append(error("corrupt_gzip", f"corrupt gzip data ({e})"))
    except tarfile.ReadError as e:
        code = "truncated" if "unexpected end" in str(e) else "corrupt_tar"
        out.findings.append(error(code, f"corrupt tar data ({e})"))
    except tarfile.TarError as e:
        out.findings.append(error("corrupt_tar", f"corrupt tar data ({e})"))
    except OSError as e:
        out.findings.append(error("unreadable", f"cannot read the bundle: {e.strerror or e}"))
    return out
