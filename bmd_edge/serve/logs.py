"""Structured logs for serve: one JSON object per line on stderr, never PHI.

A source image is named by `ref`, the first 16 hex digits of the sha256 of its SOP Instance UID:
stable (the same image always has the same ref, so an operator can follow it through the log
and find it in the spool) but not an identifier anyone outside can look up. Messages from
bmd-edge's errors never contain tag values (dicom_io keeps identifying tags apart).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from typing import Any

log = logging.getLogger("bmd_edge.serve")


def ref(sop_instance_uid: str) -> str:
    """A log-safe, stable name for one source image."""
    return hashlib.sha256(sop_instance_uid.encode("ascii", "replace")).hexdigest()[:16]


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with its fields (JSON-able values only)."""
    log.log(level, name, extra={"fields": fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                   + f".{int(record.msecs):03d}Z", "level": record.levelname.lower(),
                   "event": record.getMessage()}
        payload.update(getattr(record, "fields", {}))
        return json.dumps(payload, ensure_ascii=False, default=str)


def setup(level: int = logging.INFO) -> None:
    """JSON lines on stderr for bmd_edge.*; pynetdicom kept to warnings (its debug dumps
    datasets, which hold PHI)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("bmd_edge")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    for name in ("pynetdicom", "pydicom", "highdicom"):
        logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger(name).handlers[:] = []
    logging.getLogger("highdicom").disabled = True
