"""The package's layers read as the data flow, and no module imports one of a later layer.

suite -> workloads -> measurement (timer + telemetry) -> records -> run directory -> bundle ->
verify -> report / compare, built bottom-up: each layer below may be used by every layer above,
never the other way round. An import inside a function counts the same as one at the top (hiding
a cycle in a function is still a cycle), and so does one under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "aibench"

# Lowest first. A module's layer is its first subpackage ("aibench.core.errors" -> "core");
# "aibench" itself (__version__) is the floor, then the JSON schemas (package data, no code);
# "__main__" sits with the CLI.
LAYERS: tuple[str, ...] = (
    "aibench", "schemas", "core", "device", "kernels", "models", "collectives", "telemetry", "serving", "measure",
    "workloads", "results", "history", "suite", "bundle", "report", "cli",
)
RANK = {name: i for i, name in enumerate(LAYERS)}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "aibench"
    if parts[1] == "__main__":
        return "cli"
    return parts[1]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported aibench module) for every import in the file, nested ones too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "aibench"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                name = _module_name(path)
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "aibench":
                continue
            if module == "aibench":  # `from aibench import core` names a subpackage
                out += [(node.lineno, f"aibench.{a.name}") if a.name in RANK else (node.lineno, "aibench")
                        for a in node.names]
            else:
                out.append((node.lineno, module))
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_subpackage_has_a_layer() -> None:
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert not (subpackages - set(RANK)), f"subpackages with no layer in LAYERS: {subpackages - set(RANK)}"
    assert loose == [], f"modules loose at the top of aibench/ (put each in its layer): {loose}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_module_imports_a_later_layer(path: Path) -> None:
    own = _layer(_module_name(path))
    later = [f"line {line}: {module} ({_layer(module)})" for line, module in _imports(path)
             if RANK[_layer(module)] > RANK[own]]
    assert later == [], f"{path.name} is in layer {own!r} but imports a later layer: {later}"


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    # The rule itself: a core module that imports the CLI is refused (the test above can fail).
    fake = PACKAGE / "core" / "errors.py"
    tree_imports = _imports(fake)
    assert all(RANK[_layer(m)] <= RANK["core"] for _, m in tree_imports)
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from aibench.cli import main\n")
    (line, module), = _imports(bad)
    assert (line, module) == (2, "aibench.cli") and RANK[_layer(module)] > RANK["core"]


def test_no_import_cycles_between_modules() -> None:
    # Within a layer modules may import each other, but never in a circle.
    graph = {_module_name(p): {m for _, m in _imports(p)} for p in MODULES}
    known = set(graph)

    def resolve(m: str) -> str | None:
        while m and m not in known:
            m = m.rpartition(".")[0]
        return m or None

    edges = {a: {r for m in bs if (r := resolve(m)) and r != a} for a, bs in graph.items()}
    # A package's __init__ importing its own submodules is the normal re-export direction.
    edges = {a: {b for b in bs if not a.startswith(b + ".")} for a, bs in edges.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")


# What a buyer's machine runs to read a vendor's bundle has no GPU stack: `--help`, `bundle verify`,
# `report`, `compare` and `accept` must start without torch (seconds on 2 cores; benchmarks/bench_startup.py).
LIGHT = ("aibench.cli", "aibench.bundle.verify", "aibench.bundle.load", "aibench.report", "aibench.report.html",
         "aibench.results.compare", "aibench.results.accept", "aibench.results.commitments", "aibench.cli.accept",
         "aibench.bundle.suite_check", "aibench.suite.shipped", "aibench.suite.rules")


def test_help_and_the_buyer_side_modules_import_no_torch() -> None:
    code = ("import sys\nsys.argv = ['aibench', '--help']\n"
            + "".join(f"import {m}\n" for m in LIGHT)
            + "from aibench.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            + "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "Usage:" in out.stdout
    assert out.stdout.strip().endswith("NO-TORCH"), "a module on the buyer's side imports torch"


def test_pyproject_lists_every_subpackage() -> None:
    # setuptools installs only the packages pyproject.toml names: a folder missing there would
    # import from a checkout and be absent from a wheel.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {"aibench"} | {f"aibench.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    assert folders - listed == set(), f"subpackages missing from pyproject.toml: {folders - listed}"
