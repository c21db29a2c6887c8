"""The facts of a shipped suite that `bundle verify` checks, read without torch.

A buyer's machine verifying a vendor's bundle may have no GPU stack, and loading a suite
(aibench.suite.load) validates every entry against the workload registry, which imports torch
and triton: seconds on a small machine. The closed-division check needs only the suite's name,
version, file hash, run rules per mode and entry ids, and the shipped file is ours and already
validated (tests hold these facts equal to load_suite's for every shipped suite).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import sys
from dataclasses import dataclass
from typing import Any

from aibench.core.errors import SuiteError
from aibench.suite.rules import RunRules, overlaid

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class ShippedSuite:
    name: str
    version: str
    sha256: str  # of the file's bytes, as load_suite hashes them
    rules: dict[str, RunRules]  # mode ("full", "quick", "preview") -> its rules
    entry_ids: tuple[str, ...]

    def rules_for(self, mode: str) -> RunRules | None:
        return self.rules.get(mode)


def shipped_names() -> set[str]:
    """The shipped suites' names, from the package data's file names."""
    files = importlib.resources.files("aibench.suites").iterdir()
    return {f.name[:-5] for f in files if f.name.endswith(".toml")}


def shipped_suite(name: str) -> ShippedSuite:
    """The facts of the shipped suite `name` (SuiteError if it is not one, or cannot be read)."""
    if name not in shipped_names():
        raise SuiteError(f"{name!r} is not a shipped suite")
    data = importlib.resources.files("aibench.suites").joinpath(f"{name}.toml").read_bytes()
    try:
        doc: dict[str, Any] = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:  # pragma: no cover - the package data is ours
        raise SuiteError(f"the shipped suite {name!r} cannot be read: {exc}") from None
    full = overlaid(RunRules(), doc.get("rules") or {})
    # The same inheritance as aibench.suite.check: quick over full, preview over quick.
    quick = overlaid(full, (doc.get("quick") or {}).get("rules") or {})
    preview = overlaid(quick, (doc.get("preview") or {}).get("rules") or {})
    return ShippedSuite(name=str(doc["suite"]["name"]), version=str(doc["suite"]["version"]),
                        sha256=hashlib.sha256(data).hexdigest(),
                        rules={"full": full, "quick": quick, "preview": preview},
                        entry_ids=tuple(str(e["id"]) for e in doc.get("entry") or []))
