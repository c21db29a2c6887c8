"""Loading a Python file that is not an importable module: the GPU scripts under scripts/ and
the stand-in pynvml under tests/fixtures/telemetry. Each test file loads its own copy under its
own name, so that one file's stand-in state never leaks into another's."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).parents[1] / "scripts"
FAKE_PYNVML = Path(__file__).parent / "fixtures" / "telemetry" / "fake_pynvml.py"


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
