"""Ed25519 signing keys for bundles: generate, load, fingerprint, sign, check.

The vendor keeps KEY (PEM PKCS8, mode 0600) and hands KEY.pub (PEM SubjectPublicKeyInfo) to the
buyer through a channel the buyer trusts; a key inside a bundle proves nothing by itself.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from aibench.core.errors import BundleError

MAX_KEY_FILE_BYTES = 64 * 1024  # a PEM Ed25519 key is ~120 bytes; refuse to slurp anything huge


def pub_path_for(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".pub")


def keygen(path: str | os.PathLike[str], force: bool = False) -> tuple[Path, Path]:
    """Write a new Ed25519 private key to `path` (0600) and its public key to `path`.pub."""
    priv_path = Path(path)
    pub_path = pub_path_for(priv_path)
    if not force:
        for p in (priv_path, pub_path):
            if p.exists() or p.is_symlink():
                raise BundleError(f"{p} exists; pass force=True (--force) to overwrite it")
    key = Ed25519PrivateKey.generate()
    priv_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        # Created 0600 from the first byte: a chmod after writing would leave a window where
        # the secret is readable by others.
        fd = os.open(priv_path, flags, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # an overwritten file keeps its old mode otherwise
            f.write(priv_pem)
        pub_path.write_bytes(pub_pem)
    except OSError as e:
        raise BundleError(f"cannot write key: {e}") from e
    return priv_path, pub_path


def _read_key_file(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    try:
        if p.stat().st_size > MAX_KEY_FILE_BYTES:
            raise BundleError(f"{p} is too large to be a key file")
        return p.read_bytes()
    except OSError as e:
        raise BundleError(f"cannot read key file {p}: {e.strerror or e}") from e


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise BundleError(f"{path}: encrypted private keys are not supported") from None
    except ValueError as e:
        raise BundleError(f"{path}: not a PEM private key ({e})") from None
    except UnsupportedAlgorithm as e:  # well-formed PEM of an algorithm cryptography does not know
        raise BundleError(f"{path}: not an Ed25519 key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path}: not an Ed25519 key (make one with `aibench bundle keygen`)")
    return key


def parse_public_key(data: bytes, source: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise BundleError(f"{source}: not a PEM public key ({e})") from None
    except UnsupportedAlgorithm as e:  # e.g. bundle.pub of a hostile bundle: must stay a finding, not a crash
        raise BundleError(f"{source}: not an Ed25519 public key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{source}: not an Ed25519 public key")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    return parse_public_key(_read_key_file(path), str(path))


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: Ed25519PublicKey) -> str:
    """`ed25519:sha256:<hex>` of the raw 32-byte public key: short enough to read out on a call."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:sha256:" + hashlib.sha256(raw).hexdigest()


def signature_ok(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
