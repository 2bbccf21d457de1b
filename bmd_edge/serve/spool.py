"""The spool: serve's two on-disk queues, so no accepted image and no result is ever lost.

    SPOOL/incoming/<ref>.dcm   an image acknowledged by C-STORE, not yet analysed
    SPOOL/outgoing/SR_<uid>.dcm, SC_<uid>.dcm   results not yet accepted by the destination

Files appear by atomic rename (a crash never leaves half a file under its final name) and are
deleted only when their work is done: analysed (or refused), or stored by the destination. On
start, whatever is there is picked up again — a killed or restarted serve resumes. Result
names carry derived UIDs, so a result re-created or re-sent after a crash is the same instance.
"""

from __future__ import annotations

import os
from pathlib import Path


class Spool:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.outgoing = self.root / "outgoing"
        for d in (self.incoming, self.outgoing):
            d.mkdir(parents=True, exist_ok=True)
        for leftover in [*self.incoming.glob(".*.tmp*"), *self.outgoing.glob(".*.tmp*")]:
            leftover.unlink(missing_ok=True)   # half-written by a killed process

    def put_incoming(self, name: str, data: bytes) -> Path:
        """Write one received image under `name` (atomic); returns its path."""
        path = self.incoming / f"{name}.dcm"
        tmp = self.incoming / f".{name}.tmp-{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return path

    def pending_incoming(self) -> list[Path]:
        return _ready(self.incoming)

    def pending_outgoing(self) -> list[Path]:
        return _ready(self.outgoing)


def _ready(folder: Path) -> list[Path]:
    """Complete files (not dot-temporaries), oldest first; SR before SC of the same age."""
    files = []
    for p in folder.glob("*.dcm"):
        try:
            files.append((p.stat().st_mtime_ns, p.name, p))
        except FileNotFoundError:   # taken by another thread meanwhile
            continue
    return [p for _, _, p in sorted(files, key=lambda t: (t[0], not t[1].startswith("SR_")))]
