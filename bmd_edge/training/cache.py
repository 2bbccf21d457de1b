"""Optional on-disk cache of preprocessed images: decode a large cohort once, reuse it every run.

Why: decoding 16-bit PNG/DICOM dominates small-model epochs, and a cohort too large for RAM
would otherwise be decoded again every epoch. One `.npy` per case and stage, named by a hash of
everything that determines its content — the preprocessing spec dict, the stage (and its
parameters), the image's resolved path, size and mtime, and the case's side/select — so a changed
spec or a rewritten image gives a new key (stale entries are simply never read again).

Writes are atomic (temp file in the same folder + `os.replace`), so several ranks or DataLoader
workers writing the same entry at once leave one complete file, never a torn one.
No torch here.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bmd_edge.errors import InputError

CACHE_VERSION = 1  # bump when the cached content changes meaning (e.g. a new decoder)


class TensorCache:
    """`get(case, stage, compute)`: the cached array for (case, stage) or compute + store it."""

    def __init__(self, root: str | Path, spec: dict[str, Any]) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cache-dir {self.root} cannot be created ({err.strerror}); pass a writable folder") from None
        self._spec = json.dumps(spec, sort_keys=True, default=str)
        self.hits = 0  # entries read back (for logs and tests)
        self.misses = 0  # entries computed and written

    def key(self, case: object, stage: str) -> str:
        """Hex digest of spec + stage + image identity (path, size, mtime) + side/select."""
        path = Path(case.image).resolve()
        try:
            st = path.stat()
        except OSError:
            raise InputError(f"image not found for caching: {path}") from None
        ident = {
            "v": CACHE_VERSION, "spec": self._spec, "stage": stage, "path": str(path),
            "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "side": getattr(case, "side", None), "select": getattr(case, "select", None),
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, case: object, stage: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Read the entry, or compute it and write it atomically; a corrupt entry is recomputed."""
        target = self.path(self.key(case, stage))
        if target.is_file():
            try:
                arr = np.load(target, allow_pickle=False)
                self.hits += 1
                return arr
            except (OSError, ValueError):
                pass  # truncated by a crash before this version wrote atomically, etc.: rewrite
        arr = np.ascontiguousarray(compute())
        self.misses += 1
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return arr
