"""Keyed hashes for the results folder: stable keys that name no patient.

Archive paths often hold patient names or record numbers (`/pacs/SMITH_JOHN_0042/hip.dcm`), so
no raw path is stored unless `--include-ids` is given. A plain sha256 of a path would not be
enough: anyone could hash a guessed path and find it. An HMAC with a random per-folder salt can
only be recomputed by someone holding that salt, which lives in `OUT/.salt` (mode 0600, never
inside `parts/`): share the parts, keep the salt.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

SALT_BYTES = 32


def _mac(salt: bytes, *parts: str) -> str:
    msg = "\x1f".join(parts).encode("utf-8", "surrogateescape")
    return hmac.new(salt, msg, hashlib.sha256).hexdigest()


def path_key(salt: bytes, path: str) -> str:
    """Names one file location across runs (links an image's old and new rows), not a person."""
    return _mac(salt, "path", path)


def input_key(salt: bytes, path: str, size: int, mtime_ns: int, model: str,
              facts: Mapping[str, object], force: bool = False) -> str:
    """The resume key: what was run (file identity by stat, not by content), with which model.

    The clinical facts and `--force` are part of it because they change the answer: a corrected
    age in the listing is a new input, the same file with the same facts is not.
    """
    facts_text = json.dumps({k: facts[k] for k in sorted(facts)}, sort_keys=True, default=str)
    return _mac(salt, "input", path, str(size), str(mtime_ns), model, facts_text,
                "force" if force else "")


def content_digest(salt: bytes, data: bytes) -> str:
    """Keyed digest of the file's bytes: which exact image gave this row (audit, dedupe)."""
    return hmac.new(salt, data, hashlib.sha256).hexdigest()
