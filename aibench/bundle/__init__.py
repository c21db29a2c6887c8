"""Signed result bundles: a vendor packs a run directory, a buyer verifies it offline.

    keygen(path) -> (private key path, public key path)
    pack(run_dir, out_path, key=None) -> bundle path
    verify(path, pubkey=None, limits=Limits()) -> VerifyReport (findings: errors and warnings apart)
"""

from __future__ import annotations

from aibench.bundle.findings import Finding, VerifyReport
from aibench.bundle.keys import fingerprint, keygen, load_private_key, load_public_key
from aibench.bundle.layout import Limits
from aibench.bundle.pack import pack
from aibench.bundle.verify import verify

__all__ = ["Finding", "Limits", "VerifyReport", "fingerprint", "keygen", "load_private_key", "load_public_key",
           "pack", "verify"]
