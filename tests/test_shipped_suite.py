"""suite.shipped: the facts `bundle verify` checks a closed-division bundle against, read without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bundle_helpers import run_files, shipped_run, signed_bundle
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aibench.bundle import keys
from aibench.core.errors import SuiteError
from aibench.suite.load import list_suites, load_suite
from aibench.suite.model import MODES
from aibench.suite.shipped import shipped_names, shipped_suite

SHIPPED = sorted(n for n, _, _ in list_suites())


def test_every_shipped_suite_is_named() -> None:
    assert set(SHIPPED) == shipped_names() and {"gigafactory", "ci", "smoke"} <= shipped_names()


@pytest.mark.parametrize("name", SHIPPED)
def test_the_facts_are_load_suites(name: str) -> None:
    # The facts skip the checker and the registry: they must still be exactly what loading gives.
    facts, loaded = shipped_suite(name), load_suite(name)
    assert (facts.name, facts.version, facts.sha256) == (loaded.name, loaded.version, loaded.sha256)
    assert facts.entry_ids == tuple(e.id for e in loaded.entries)
    for mode in MODES:
        assert facts.rules_for(mode) == loaded.rules_for(mode)
        # the manifest records as_dict(): 1 and 1.0 are equal in Python but not as JSON types
        assert [type(v) for v in facts.rules_for(mode).as_dict().values()] == \
            [type(v) for v in loaded.rules_for(mode).as_dict().values()]
    assert facts.rules_for("turbo") is None


def test_a_suite_that_is_not_shipped_is_refused() -> None:
    with pytest.raises(SuiteError, match="not a shipped suite"):
        shipped_suite("../gigafactory")


def _shipped_bundle(tmp_path: Path, **rule_changes: object) -> tuple[Path, Path]:
    """A signed bundle of the shipped gigafactory suite, one record per entry."""
    key = Ed25519PrivateKey.generate()
    pub = tmp_path / "vendor.pub"
    pub.write_bytes(keys.public_pem(key.public_key()))
    return signed_bundle(tmp_path / "b.tar.gz", run_files(*shipped_run(**rule_changes)), key=key), pub


# Runs the CLI, then names the GPU stack's modules it imported (atexit: after click's SystemExit).
_PROBE = """import atexit, sys
atexit.register(lambda: print('HEAVY', sorted(m for m in ('torch', 'triton') if m in sys.modules)))
from aibench.cli import main
sys.argv = ['aibench', *sys.argv[1:]]
main()
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120)


def test_verifying_and_reporting_a_shipped_suite_bundle_imports_no_torch(tmp_path: Path) -> None:
    # A buyer's machine may have no GPU stack, and torch + triton take seconds to import.
    path, pub = _shipped_bundle(tmp_path)
    out = _cli("bundle", "verify", str(path), "--pubkey", str(pub))
    assert out.returncode == 0 and "VALID" in out.stdout and "division=closed" in out.stdout, out.stdout + out.stderr
    assert "HEAVY []" in out.stdout
    html = tmp_path / "report.html"
    out = _cli("report", str(path), "--pubkey", str(pub), "-o", str(html))
    assert out.returncode == 0 and html.stat().st_size > 0, out.stderr
    assert "HEAVY []" in out.stdout


def test_the_torch_free_check_still_catches_changed_rules(tmp_path: Path) -> None:
    path, pub = _shipped_bundle(tmp_path, min_samples=3)
    out = _cli("bundle", "verify", str(path), "--pubkey", str(pub))
    assert out.returncode == 1 and "suite_modified" in out.stdout and "min_samples = 3" in out.stdout
    assert "HEAVY []" in out.stdout
