"""Loading a suite: a shipped one by name (package data aibench.suites) or a TOML file by path,
parsed and validated (aibench.suite.check) into an aibench.suite.model.Suite."""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import sys
from pathlib import Path

from aibench.core.errors import SuiteError
from aibench.suite.check import Checker
from aibench.suite.model import Suite

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def list_suites() -> list[tuple[str, str, str]]:
    """(name, version, description) of every shipped suite, by name; unreadable ones say so."""
    out = []
    for res in sorted(importlib.resources.files("aibench.suites").iterdir(), key=lambda r: r.name):
        if not res.name.endswith(".toml"):
            continue
        try:
            head = tomllib.loads(res.read_text(encoding="utf-8")).get("suite", {})
            out.append((res.name[:-5], str(head.get("version", "?")), str(head.get("description", ""))))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            out.append((res.name[:-5], "?", f"unreadable: {exc}"))
    return out


def load_suite(name_or_path: str | os.PathLike[str]) -> Suite:
    """A shipped suite by name (`gigafactory`), or a TOML file by path."""
    text = os.fspath(name_or_path)
    looks_like_path = text.endswith(".toml") or os.sep in text or "/" in text or Path(text).is_file()
    if looks_like_path:
        path = Path(text)
        if not path.is_file():
            raise SuiteError(f"suite file not found: {text}")
        source = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SuiteError(f"{source}: cannot read the suite file: {exc}") from None
    else:
        res = importlib.resources.files("aibench.suites").joinpath(f"{text}.toml")
        if not res.is_file():
            names = ", ".join(n for n, _, _ in list_suites())
            raise SuiteError(f"unknown suite {text!r} (shipped suites: {names}); or give the path to a .toml file")
        source, data = str(res), res.read_bytes()
    return parse_suite(data, source)


def parse_suite(data: bytes, source: str) -> Suite:
    """Parse and validate suite bytes; `source` names the file in error messages."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{source}: not UTF-8 text ({exc})") from None
    return Checker(text, source).suite(hashlib.sha256(data).hexdigest())
