"""Who vouches for a bundle: a digest pinned in this source, an Ed25519 key you trust, or you.

Why: a sha256 stored beside the data only catches accidents — anyone who edits bundle.json can
recompute it. So trust comes from outside the bundle:
- the shipped default bundle is *pinned*: `PINNED_DIGESTS` below holds the digest of its
  canonical bundle.json (which lists every model file's sha256), so no private key exists anywhere;
- any other bundle must carry an Ed25519 signature (`bmd-edge export --sign-key KEY`) by a public
  key the user trusts: files named in $BMD_EDGE_TRUSTED_KEYS (paths separated by ':'; a folder
  means every *.pub in it) or in ~/.config/bmd-edge/trusted_keys/*.pub;
- otherwise it is refused, unless the caller passes `allow_unsigned` (CLI: --allow-unsigned),
  which then adds a warning to every result.
A signature that does not verify is refused even with `allow_unsigned`: that is tampering.
Keys: `openssl genpkey -algorithm ed25519 -out key.pem` and
`openssl pkey -in key.pem -pubout -out key.pub` (PEM); a .pub may also hold 64 hex digits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bmd_edge.errors import BundleError, DependencyError
from bmd_edge.warn import Warn

# sha256 of the shipped export/bundle.json's signed bytes (`BundleMeta.digest()`); a rebuild of
# the default bundle updates this line (export/build_default.py prints the new value).
PINNED_DIGESTS: frozenset[str] = frozenset({
    "18cb05a5eac6f278f6db43750b7cee8eeb128bf27f3da50908bcee57a1e037ae",
})
TRUSTED_KEYS_ENV = "BMD_EDGE_TRUSTED_KEYS"


@dataclass(frozen=True)
class Trust:
    """How a loaded bundle was trusted, for `info` and for every result's warnings."""

    kind: str                        # pinned | signed | unsigned
    key_id: str = ""                 # first 16 hex digits of the signer's public key
    warning: Warn | None = None      # set when trust was waived (allow_unsigned)

    def describe(self) -> str:
        if self.kind == "pinned":
            return "pinned (the shipped default bundle; digest in bmd_edge/bundle_trust.py)"
        if self.kind == "signed":
            return f"signed by trusted key {self.key_id}"
        return "NOT verified (loaded with --allow-unsigned)"


def config_keys_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "bmd-edge" / "trusted_keys"


def key_id(public_hex: str) -> str:
    return public_hex[:16]


def _key_files(extra: tuple[str | Path, ...]) -> list[Path]:
    entries: list[Path] = [Path(p) for p in extra]
    entries += [Path(p) for p in os.environ.get(TRUSTED_KEYS_ENV, "").split(os.pathsep) if p]
    entries.append(config_keys_dir())
    out: list[Path] = []
    for e in entries:
        if e.is_dir():
            out += sorted(e.glob("*.pub"))
        elif e.is_file():
            out.append(e)
        elif e != config_keys_dir():
            raise BundleError(f"trusted key file {e} does not exist (from --trusted-key or "
                              f"${TRUSTED_KEYS_ENV})")
    return out


def public_key_hex(text: str, where: str) -> str:
    """64 hex digits from a PEM public key or a line of hex."""
    s = text.strip()
    if len(s) == 64 and all(c in "0123456789abcdefABCDEF" for c in s):
        return s.lower()
    ser, ed = _crypto()
    try:
        key = ser.load_pem_public_key(s.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise BundleError(f"trusted key {where} is neither a PEM public key nor 64 hex digits") \
            from None
    if not isinstance(key, ed.Ed25519PublicKey):
        raise BundleError(f"trusted key {where} is not an Ed25519 key")
    raw = key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return raw.hex()


def trusted_keys(extra: tuple[str | Path, ...] = ()) -> set[str]:
    """Hex public keys the user trusts (explicit files, $BMD_EDGE_TRUSTED_KEYS, config dir)."""
    out = set()
    for f in _key_files(extra):
        try:
            out.add(public_key_hex(f.read_text(encoding="utf-8", errors="replace"), str(f)))
        except OSError as err:
            raise BundleError(f"cannot read trusted key {f}: {err.strerror}") from None
    return out


def check_trust(meta: Any, *, allow_unsigned: bool = False,
                trusted_keys: tuple[str | Path, ...] = ()) -> Trust:
    """Pinned, or a valid signature by a trusted key, or waived; BundleError otherwise."""
    if meta.signature is None:
        if meta.digest() in PINNED_DIGESTS:
            return Trust("pinned")
        return _waive(allow_unsigned, "is not signed and is not the shipped default bundle "
                      "(or it was edited)")
    sig = meta.signature
    if not _verifies(sig.public_key, sig.value, meta.signed_bytes()):
        raise BundleError("bundle.json's signature does not match its content: the bundle was "
                          "edited after signing; refusing it")
    if sig.public_key in _trusted(trusted_keys):
        return Trust("signed", key_id(sig.public_key))
    return _waive(allow_unsigned, f"is signed by key {key_id(sig.public_key)}, which you do not "
                  f"trust (add its public key to ${TRUSTED_KEYS_ENV} or {config_keys_dir()})")


def _trusted(extra: tuple[str | Path, ...]) -> set[str]:
    return trusted_keys(extra)


def _waive(allow: bool, why: str) -> Trust:
    if not allow:
        raise BundleError(f"bundle {why}; refusing an unverified model — sign it "
                          "(`bmd-edge export --sign-key`), trust its key, or pass "
                          "--allow-unsigned at your own risk")
    return Trust("unsigned", warning=Warn("unsigned-bundle", "bundle",
                                          why.split(" (")[0], "results come from a model "
                                          "whose origin was not verified (--allow-unsigned)"))


def _verifies(public_hex: str, sig_hex: str, message: bytes) -> bool:
    _, ed = _crypto()
    from cryptography.exceptions import InvalidSignature

    try:
        ed.Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
            bytes.fromhex(sig_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def sign(meta: Any, private_key: str | Path) -> Any:
    """A `bundle.Signature` over `meta.signed_bytes()` with the PEM Ed25519 key at the path."""
    from bmd_edge.bundle import Signature

    ser, ed = _crypto()
    path = Path(private_key)
    try:
        key = ser.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as err:
        raise BundleError(f"cannot read signing key {path}: {err.strerror}") from None
    except (ValueError, TypeError):
        raise BundleError(f"signing key {path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ed.Ed25519PrivateKey):
        raise BundleError(f"signing key {path} is not an Ed25519 key; make one with "
                          "`openssl genpkey -algorithm ed25519 -out key.pem`")
    pub = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw).hex()
    return Signature("ed25519", pub, key.sign(meta.signed_bytes()).hex())


def write_keypair(private_path: str | Path, public_path: str | Path,
                  seed: bytes | None = None) -> str:
    """A new Ed25519 key pair as PEM files (tests; `openssl genpkey` does the same)."""
    ser, ed = _crypto()
    key = ed.Ed25519PrivateKey.from_private_bytes(seed) if seed else ed.Ed25519PrivateKey.generate()
    Path(private_path).write_bytes(key.private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    Path(public_path).write_bytes(key.public_key().public_bytes(
        ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))
    return key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw).hex()


def _crypto() -> tuple[Any, Any]:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise DependencyError("signed bundles need the `cryptography` package; run "
                              "`pip install cryptography`") from None
    return serialization, ed25519
