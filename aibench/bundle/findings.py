"""What `verify` found: findings with a stable machine-readable code, errors and warnings apart.

MLPerf's submission checker mixes errors and warnings in hard-to-read logs (methods.md); here every
finding has a severity, a code a script can match on, and the member or record it is about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning"]

_MAX_SHOWN = 200  # characters of an untrusted name shown in a message


def shown(text: object) -> str:
    """An untrusted string made safe to print: control characters escaped, length capped.

    Member names and record fields come from the bundle: a name holding ANSI escape sequences
    must not be able to rewrite the buyer's terminal.
    """
    s = str(text)
    out = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in s)
    return out if len(out) <= _MAX_SHOWN else out[: _MAX_SHOWN - 3] + "..."


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    message: str
    member: str | None = None
    record: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "code": self.code, "message": self.message,
                "member": self.member, "record": self.record}


def error(code: str, message: str, member: str | None = None, record: str | None = None) -> Finding:
    return Finding("error", code, message, None if member is None else shown(member),
                   None if record is None else shown(record))


def warning(code: str, message: str, member: str | None = None, record: str | None = None) -> Finding:
    return Finding("warning", code, message, None if member is None else shown(member),
                   None if record is None else shown(record))


def capped(findings: list[Finding], per_code: int = 100) -> tuple[Finding, ...]:
    """At most `per_code` findings of each code, then one saying how many more there were.

    A hostile bundle.json may list a million bad paths; the report must stay readable and small.
    """
    counts: dict[str, int] = {}
    kept: list[Finding] = []
    for f in findings:
        counts[f.code] = counts.get(f.code, 0) + 1
        if counts[f.code] <= per_code:
            kept.append(f)
    for f in findings:
        extra = counts.get(f.code, 0) - per_code
        if extra > 0:
            # The member stays (a reader tells a capped record finding from a manifest one); no record.
            kept.append(Finding(f.severity, f.code, f"... and {extra} more {f.code} findings", f.member))
            counts[f.code] = 0  # one summary line per code
    return tuple(kept)


@dataclass(frozen=True)
class VerifyReport:
    path: str
    findings: tuple[Finding, ...]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "errors": [f.to_dict() for f in self.errors],
            "warnings": [f.to_dict() for f in self.warnings],
            "summary": {"path": self.path, "errors": len(self.errors), "warnings": len(self.warnings),
                        **self.summary},
        }
