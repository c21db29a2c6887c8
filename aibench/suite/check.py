"""Validation of a suite file, with the file, line and key of every problem.

tomllib keeps no positions, so `Lines` finds a key's line by scanning the text: the N-th
`[[entry]]` header bounds an entry, and within it a key is a `[entry.a.b]` header, a `key =`
line, a dotted `a.b =` line or a key inside an inline table. The workload registry type-checks
parameters (`Workload.resolve_params`) and names the shape sets; every problem is collected and
reported at once (SuiteFileError).
"""

from __future__ import annotations

import difflib
import re
import sys
from typing import Any

from aibench.core.errors import SuiteError, UsageError
from aibench.suite import model as suite_mod
from aibench.suite.model import Entry, ModeOverride, Requires, Suite
from aibench.suite.rules import RULE_TYPES, RunRules, overlaid
from aibench.workloads import registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

class SuiteFileError(SuiteError):
    """Every problem found in one suite file, each as (line, key, message)."""

    def __init__(self, source: str, problems: list[tuple[int, str, str]]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: p[0])
        lines = [f"{source}:{line}: {key}: {message}" for line, key, message in self.problems]
        head = f"{source}: {len(lines)} problem(s) in the suite file" if len(lines) > 1 else None
        super().__init__("\n".join([head, *lines] if head else lines))


KeyPath = tuple[Any, ...]  # ("rules", "min_samples") or ("entry", 2, "params", "m"); 2 is 0-based

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_TOP_KEYS = {"suite", "rules", "quick", "preview", "entry"}
_SUITE_KEYS = {"name", "version", "description"}
_ENTRY_KEYS = {"id", "workload", "description", "backends", "params", "shape_set", "sweep",
               "quick", "preview", "requires", "timer"}
_MODE_KEYS = {"shape_set", "sweep", "params", "skip", "backends"}
_REQUIRES_KEYS = {"gpus": int, "gpu": bool, "fp8": bool}
_TIMER_KEYS = {"cuda_graph": bool, "flush_l2": bool}  # an entry's timing mode (TimerConfig fields)
_SCALARS = (str, int, float, bool)


class Checker:
    """Collects (line, key, message) problems over one suite text; `suite()` raises them all."""

    def __init__(self, text: str, source: str) -> None:
        self.text, self.source = text, source
        self.lines = Lines(text)
        self.problems: list[tuple[int, str, str]] = []
        self.entry_ids: dict[int, str] = {}

    def error(self, path: KeyPath, message: str) -> None:
        self.problems.append((self.lines.find(path), self.key_text(path), message))

    def key_text(self, path: KeyPath) -> str:
        if len(path) >= 2 and path[0] == "entry" and isinstance(path[1], int):
            who = f"entry #{path[1] + 1}"
            if path[1] in self.entry_ids:
                who += f" (id {self.entry_ids[path[1]]!r})"
            rest = ".".join(str(k) for k in path[2:])
            return f"{who} key {rest!r}" if rest else who
        return f"key {'.'.join(str(k) for k in path)!r}"

    def check(self) -> None:
        if self.problems:
            raise SuiteFileError(self.source, self.problems)

    # ---- the document

    def suite(self, sha256: str) -> Suite:
        try:
            doc = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            line = _error_line(exc, len(self.lines.raw))
            raise SuiteFileError(self.source, [(line, self.lines.key_at(line), f"TOML syntax: {exc}")]) from None
        for key in doc:
            if key not in _TOP_KEYS:
                self.error((key,), f"unknown top-level key {key!r}{_hint(key, _TOP_KEYS)}")
        head = self.table(doc, ("suite",), required=True) or {}
        self.unknown(head, ("suite",), _SUITE_KEYS)
        name = self.get(head, ("suite", "name"), str, required=True)
        version = self.get(head, ("suite", "version"), str, required=True)
        description = self.get(head, ("suite", "description"), str) or ""
        rules = self.rules(doc.get("rules"), ("rules",), RunRules())
        quick_rules = self.rules(self.mode_rules(doc, "quick"), ("quick", "rules"), rules)
        preview_rules = self.rules(self.mode_rules(doc, "preview"), ("preview", "rules"), quick_rules)
        entries = self.entries(doc.get("entry"))
        for i, entry in entries:
            self.semantics(i, entry)  # also for a file with other problems: all are reported at once
        self.check()
        return Suite(str(name), str(version), description, rules, quick_rules, preview_rules,
                     tuple(entry for _, entry in entries), self.source, sha256)

    def mode_rules(self, doc: dict[str, Any], mode: str) -> Any:
        section = self.table(doc, (mode,)) or {}
        self.unknown(section, (mode,), {"rules"})
        return section.get("rules")

    def rules(self, raw: Any, path: KeyPath, base: RunRules) -> RunRules:
        if raw is None:
            return base
        if not isinstance(raw, dict):
            self.error(path, f"expected a table, got {_tname(raw)}")
            return base
        values: dict[str, Any] = {}
        for key, value in raw.items():
            kind = RULE_TYPES.get(key)
            if kind is None:
                self.error((*path, key), f"unknown run rule {key!r}{_hint(key, RULE_TYPES)}")
            elif not _is(value, kind):
                self.error((*path, key), f"expected {_TYPE_NAMES[kind]}, got {_tname(value)} {value!r}")
            else:
                values[key] = value
        rules = overlaid(base, values)
        for name, message in rules.problems():
            # A limit broken by an inherited value was reported where that value was set.
            culprit = name if name in values else ("min_time_s" if name == "max_time_s" else None)
            if culprit in values:
                self.error((*path, culprit), f"{name} {message}")
        return rules

    def entries(self, raw: Any) -> list[tuple[int, Entry]]:
        """(position, entry) of each entry that parsed."""
        if raw is None:
            self.error(("entry",), "a suite needs at least one [[entry]]")
            return []
        if not isinstance(raw, list):
            self.error(("entry",), "entries are an array of tables: write [[entry]], not [entry]")
            return []
        out: list[tuple[int, Entry]] = []
        first: dict[str, int] = {}
        for i, item in enumerate(raw):
            entry = self.entry(i, item)
            if entry is None:
                continue
            if entry.id in first:
                self.error(("entry", i, "id"), f"duplicate entry id {entry.id!r} (first used by entry "
                                               f"#{first[entry.id] + 1}, line {self.lines.find(('entry', first[entry.id], 'id'))})")
            first.setdefault(entry.id, i)
            out.append((i, entry))
        return out

    def entry(self, i: int, raw: Any) -> Entry | None:
        p: KeyPath = ("entry", i)
        if not isinstance(raw, dict):
            self.error(p, f"an entry is a table, got {_tname(raw)}")
            return None
        ident = self.get(raw, (*p, "id"), str, required=True)
        if ident is not None:
            self.entry_ids[i] = ident
            if not _ID_RE.match(ident):
                self.error((*p, "id"), f"bad id {ident!r}: use a-z, 0-9, '.', '_', '-' (at most 100 characters)")
        self.unknown(raw, p, _ENTRY_KEYS)
        workload = self.get(raw, (*p, "workload"), str, required=True)
        entry = Entry(
            id=ident or f"#{i + 1}",
            workload=workload or "",
            params=self.params(raw, (*p, "params")),
            backends=self.backends(raw, (*p, "backends")),
            shape_set=self.get(raw, (*p, "shape_set"), str),
            sweep=self.sweep(raw, (*p, "sweep")),
            quick=self.mode(raw, (*p, "quick")),
            preview=self.mode(raw, (*p, "preview")),
            requires=self.requires(raw, (*p, "requires")),
            description=self.get(raw, (*p, "description"), str) or "",
            timer=self.timer(raw, (*p, "timer")),
        )
        return entry if ident is not None and workload is not None else None

    def backends(self, parent: dict[str, Any], path: KeyPath) -> tuple[str, ...] | None:
        names = self.get(parent, path, list)
        if names is None:
            return None
        if not names or not all(isinstance(b, str) and b for b in names):
            self.error(path, "expected a non-empty array of backend names")
            return None
        if len(set(names)) != len(names):
            self.error(path, "a backend is listed twice")
        return tuple(dict.fromkeys(names))

    def params(self, parent: dict[str, Any], path: KeyPath) -> dict[str, Any]:
        raw = self.table(parent, path) or {}
        for key, value in raw.items():
            if not isinstance(value, _SCALARS):
                self.error((*path, key), f"a parameter is a string, number or boolean, got {_tname(value)}")
        return {k: v for k, v in raw.items() if isinstance(v, _SCALARS)}

    def sweep(self, parent: dict[str, Any], path: KeyPath) -> dict[str, tuple[Any, ...]]:
        raw = self.table(parent, path) or {}
        out: dict[str, tuple[Any, ...]] = {}
        for axis, values in raw.items():
            if not isinstance(values, list) or not values or not all(isinstance(v, _SCALARS) for v in values):
                self.error((*path, axis), f"a sweep axis is a non-empty array of values, got {values!r}")
            elif len({repr(v) for v in values}) != len(values):
                self.error((*path, axis), f"a value is listed twice in {values!r}")
            else:
                out[axis] = tuple(values)
        return out

    def mode(self, parent: dict[str, Any], path: KeyPath) -> ModeOverride:
        raw = self.table(parent, path)
        if raw is None:
            return ModeOverride()
        self.unknown(raw, path, _MODE_KEYS)
        return ModeOverride(self.get(raw, (*path, "shape_set"), str), self.sweep(raw, (*path, "sweep")),
                            self.params(raw, (*path, "params")), bool(self.get(raw, (*path, "skip"), bool)),
                            self.backends(raw, (*path, "backends")))

    def requires(self, parent: dict[str, Any], path: KeyPath) -> Requires:
        raw = self.table(parent, path) or {}
        self.unknown(raw, path, set(_REQUIRES_KEYS))
        values = {k: self.get(raw, (*path, k), kind) for k, kind in _REQUIRES_KEYS.items() if k in raw}
        if (values.get("gpus") or 0) < 0:
            self.error((*path, "gpus"), "must not be negative")
        return Requires(**{k: v for k, v in values.items() if v is not None})

    def timer(self, parent: dict[str, Any], path: KeyPath) -> dict[str, Any]:
        raw = self.table(parent, path) or {}
        self.unknown(raw, path, set(_TIMER_KEYS))
        values = {k: self.get(raw, (*path, k), kind) for k, kind in _TIMER_KEYS.items() if k in raw}
        return {k: v for k, v in values.items() if v is not None}

    # ---- against the workload registry

    def semantics(self, i: int, entry: Entry) -> None:
        p: KeyPath = ("entry", i)
        wl = registry.load_builtin().get(entry.workload)
        if wl is None:
            if entry.workload not in suite_mod.KNOWN_WORKLOADS:
                known = suite_mod.KNOWN_WORKLOADS | set(registry.REGISTRY)
                self.error((*p, "workload"), f"unknown workload {entry.workload!r}{_hint(entry.workload, known)}; "
                                             "`aibench list` shows them all")
            return  # named but not built here: its cases are skipped when planned
        before = len(self.problems)
        for sub, mode in (((), entry), (("quick",), entry.quick), (("preview",), entry.preview)):
            preview = sub == ("preview",)
            for backend in mode.backends or ():
                if backend not in wl.backends:
                    self.error((*p, *sub, "backends"), f"workload {wl.name!r} has no backend {backend!r} "
                                                       f"(has: {', '.join(wl.backends)})")
            for key, value in mode.params.items():
                self.param(wl, (*p, *sub, "params", key), {key: value}, preview)
            for axis, values in mode.sweep.items():
                for value in values:  # an unknown axis is said once, not once per value
                    if not self.param(wl, (*p, *sub, "sweep", axis), {axis: value}, preview) \
                            and axis not in {q.name for q in wl.params}:
                        break
            if mode.shape_set is not None:
                self.shape_set(wl, (*p, *sub, "shape_set"), mode.shape_set, preview)
        reported: set[KeyPath] = set()
        for run_mode in suite_mod.MODES:
            self.shadowed(entry, p, run_mode, reported)
        if len(self.problems) == before:  # the keys are sound: now the cases they make
            self.cases(wl, entry, p)

    def cases(self, wl: registry.Workload, entry: Entry, p: KeyPath) -> None:
        """Every case the entry plans, in every mode, passes the workload's own checks (heads a
        multiple of kv_heads): the first that does not is named, before anything runs."""
        everything = suite_mod.PlanContext(gpus=1 << 10, fp8=True, is_gpu=True)  # plan every entry
        for mode in suite_mod.MODES:
            try:
                planned = suite_mod._plan_entry(entry, mode, everything)
            except UsageError as exc:  # a sweep parameter the workload cannot expand (sizes = "8:1")
                self.error((*p, *(() if mode == "full" else (mode,)), "params"), str(exc))
                return
            for case in planned:
                if case.skip_reason is None and not self.param(
                        wl, (*p, *(() if mode == "full" else (mode,))), case.params, mode == "preview", check=True):
                    return

    def shadowed(self, entry: Entry, p: KeyPath, mode: str, reported: set[KeyPath]) -> None:
        """A parameter that every shape of the mode's shape set sets is never used: the shape
        overlays params. Only a sweep overrides a shape's value (the module docstring of suite)."""
        run = entry.expansion(mode)
        if run.skip or run.shape_set is None:
            return
        table, _ = suite_mod.shape_table(entry.workload)
        shapes = [dict(s.params()) for s in (table or {}).get(run.shape_set, [])]
        if not shapes:
            return  # unknown set or no shapes module: reported (or skipped) elsewhere
        always = set.intersection(*(set(shape) for shape in shapes))
        for key in sorted((set(run.params) & always) - set(run.sweep)):
            own = {"preview": entry.preview.params, "quick": entry.quick.params}.get(mode, {})
            path = (*p, mode, "params", key) if key in own else (*p, "params", key)
            if path in reported:
                continue  # one message per key, whichever modes share the set
            reported.add(path)
            self.error(path, f"never used: every shape of shape set {run.shape_set!r} sets {key!r}"
                             f"{'' if mode == 'full' else f' ({mode} mode)'}; to change a shape's value, "
                             f"sweep it: sweep = {{ {key} = [...] }}")

    def param(self, wl: registry.Workload, path: KeyPath, overrides: dict[str, Any], preview: bool,
              check: bool = False) -> bool:
        """One key (checked against defaults: cross-parameter rules wait for the cases), or a
        whole case's parameters with `check`."""
        try:
            wl.resolve_params(overrides, preview=preview, check=check)
            return True
        except UsageError as exc:
            self.error(path, str(exc))
            return False

    def shape_set(self, wl: registry.Workload, path: KeyPath, name: str, preview: bool) -> None:
        table, why = suite_mod.shape_table(wl.name)
        if table is None:
            if wl.name not in suite_mod.SHAPE_SET_TABLES:
                self.error(path, str(why))
            return  # the shapes module is missing from this build: planned cases are skipped
        if name not in table:
            self.error(path, f"unknown shape set {name!r}{_hint(name, table)} for {wl.name} "
                             f"(sets: {', '.join(sorted(table))})")
            return
        for shape in table[name]:
            if not self.param(wl, path, dict(shape.params()), preview):
                return  # one message per set is enough

    # ---- typed access

    def table(self, parent: dict[str, Any], path: KeyPath, required: bool = False) -> dict[str, Any] | None:
        value = self.get(parent, path, dict, required)
        return value if isinstance(value, dict) else None

    def get(self, parent: dict[str, Any], path: KeyPath, kind: type, required: bool = False) -> Any:
        key = path[-1]
        if key not in parent:
            if required:
                self.error(path[:-1] or path, f"missing required key {key!r}")
            return None
        value = parent[key]
        if not _is(value, kind):
            self.error(path, f"expected {_TYPE_NAMES[kind]}, got {_tname(value)} {value!r}")
            return None
        return value

    def unknown(self, raw: dict[str, Any], path: KeyPath, allowed: set[str]) -> None:
        for key in raw:
            if key not in allowed:
                self.error((*path, key), f"unknown key {key!r}{_hint(key, allowed)} "
                                         f"(allowed: {', '.join(sorted(allowed))})")


_TYPE_NAMES: dict[type, str] = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
                                list: "an array", dict: "a table"}


def _is(value: Any, kind: type) -> bool:
    if kind is float:  # TOML writes 1 for 1.0: accept integers where a number is expected
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _tname(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)


def _hint(name: str, options: Any) -> str:
    close = difflib.get_close_matches(name, [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _error_line(exc: tomllib.TOMLDecodeError, n_lines: int) -> int:
    line = getattr(exc, "lineno", None)  # Python 3.14+
    if isinstance(line, int):
        return line
    match = re.search(r"at line (\d+)", str(exc))
    return int(match.group(1)) if match else max(n_lines, 1)  # "at end of document"


_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*$")
_KEY_AT_RE = re.compile(r"^\s*([A-Za-z0-9_.\"' -]+?)\s*=")


class Lines:
    """Finds the line of a key path: tomllib keeps no positions, so the text is scanned.

    The N-th `[[entry]]` header bounds an entry; within it a key is a `[entry.a.b]` header, a
    `key =` line, a dotted `key.sub =` line or a key inside an inline table. Heuristic, but
    always a line at or before the key: the nearest enclosing table when the key is not found.
    """

    def __init__(self, text: str) -> None:
        self.raw = text.splitlines()
        self.lines = [_strip_comment(line) for line in self.raw]
        self.headers: list[tuple[int, str, bool]] = []
        for i, line in enumerate(self.lines):
            m = _HEADER_RE.match(line)
            if m:
                self.headers.append((i, _norm_key(m.group(2)), m.group(1) == "[["))
        self.entries = [i for i, name, is_array in self.headers if is_array and name == "entry"]

    def find(self, path: KeyPath) -> int:
        start, end, scope = 0, len(self.lines), ""
        rest = list(path)
        if len(rest) >= 2 and rest[0] == "entry" and isinstance(rest[1], int):
            if rest[1] < len(self.entries):
                start = self.entries[rest[1]]
                end = self.region_end(start, "entry")
            scope, rest = "entry", rest[2:]
        for key in map(str, rest):
            name = f"{scope}.{key}" if scope else key
            header = self.header(start, end, name)
            if header is not None:
                start, end = header, self.region_end(header, name)
            else:
                pattern = re.compile(rf"(?:^|[\s{{,.])[\"']?{re.escape(key)}[\"']?\s*(?:=|\.\s*[\w\"'])")
                line = next((i for i in range(start, end) if pattern.search(self.lines[i])), None)
                if line is None:
                    break
                start = line
            scope = name
        return start + 1

    def header(self, start: int, end: int, name: str) -> int | None:
        within = [(i, n) for i, n, _ in self.headers if start <= i < end]
        exact = next((i for i, n in within if n == name), None)
        return exact if exact is not None else next((i for i, n in within if n.startswith(name + ".")), None)

    def region_end(self, header: int, name: str) -> int:
        """The first later header outside the table `name` (a sub-table stays inside)."""
        return next((i for i, n, arr in self.headers
                     if i > header and (not n.startswith(name + ".") or (arr and n == name))), len(self.lines))

    def key_at(self, line: int) -> str:
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        m = _HEADER_RE.match(text) or _KEY_AT_RE.match(text)
        if not m:
            return "key (none on this line)"
        return f"key {_norm_key(m.group(m.lastindex or 1))!r}"


def _norm_key(name: str) -> str:
    return re.sub(r"\s*\.\s*", ".", name).replace('"', "").replace("'", "").strip()


def _strip_comment(line: str) -> str:
    quote: str | None = None
    escaped = False
    for i, ch in enumerate(line):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line
