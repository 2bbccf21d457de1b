"""The sender: delivers spool/outgoing to the destination AE by C-STORE, at least once.

Why its own module: it is the part that meets a peer that can vanish at any moment (killed,
rebooted, unplugged). Rules it keeps:
- A result file leaves the spool only after the destination answered success or warning; a
  lost association, a timeout or a refusal leaves it there for the next round.
- Nothing a peer does stops this thread: every failure of a round (refused association,
  an association that died between two C-STOREs — pynetdicom then *raises* instead of
  answering —, no answer within `send_timeout_s`) marks the destination down and waits
  `retry_interval_s`, doubling up to `retry_max_interval_s`.
- Short, configured timeouts (TCP connect, ACSE, DIMSE, network) instead of pynetdicom's
  30-60 s defaults and an unbounded connect, so a dead peer is noticed in seconds.
- One association is kept open while results keep coming (opening one costs more than a
  C-STORE of an SR) and released after `IDLE_RELEASE_S` without work.
- A result is sent as its spool file's bytes (pynetdicom's chunked C-STORE): no parsing and
  no re-encoding per send.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bmd_edge.errors import DependencyError
from bmd_edge.serve import logs
from bmd_edge.serve.config import ServeConfig
from bmd_edge.serve.spool import Spool

DELIVERED = {0x0000, 0xB000, 0xB006, 0xB007}   # success or warning: the destination has it
IDLE_RELEASE_S = 5.0          # release a kept-open association after this long without work
_MAX_OFFERED = 256            # datasets held in memory for sending; beyond, read from disk
_CONTEXTS = ("1.2.840.10008.5.1.4.1.1.88.33",   # Comprehensive SR Storage
             "1.2.840.10008.5.1.4.1.1.7")       # Secondary Capture Image Storage
_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]


class Sender:
    """Runs in one thread (`run`); workers set `ready` when they wrote a result."""

    def __init__(self, cfg: ServeConfig, spool: Spool, stop: threading.Event,
                 on_delivered: Callable[[str, str], None],
                 on_state: Callable[[bool], None]) -> None:
        assert cfg.destination is not None
        self.cfg, self.dest, self.spool, self._stop = cfg, cfg.destination, spool, stop
        self._on_delivered, self._on_state = on_delivered, on_state
        self.ready = threading.Event()
        self._ae: Any = None
        self._assoc: Any = None

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> None:
        self._ae = make_ae(self.cfg)
        wait = self.cfg.retry_interval_s
        idle_since = time.monotonic()
        up: bool | None = None
        while True:
            files = self.spool.pending_outgoing()
            if not files:
                if self._stop.is_set():
                    self._close()
                    return
                if self._assoc is not None and time.monotonic() - idle_since > IDLE_RELEASE_S:
                    self._close()
                self.ready.wait(timeout=0.5)
                self.ready.clear()
                continue
            try:
                ok = self._deliver(files)
            except Exception as err:  # noqa: BLE001 - a peer must never kill the sender
                ok = False
                logs.event("send_error", logging.WARNING, error=type(err).__name__)
            idle_since = time.monotonic()
            if not ok:
                self._abort()
            if up is not ok:
                logs.event("destination_up" if ok else "destination_down",
                           logging.INFO if ok else logging.WARNING, ae_title=self.dest.ae_title,
                           port=self.dest.port, pending=len(self.spool.pending_outgoing()))
                up = ok
            self._on_state(ok)
            if ok:
                wait = self.cfg.retry_interval_s
                continue
            if self._stop.is_set():
                return
            self._stop.wait(timeout=wait)
            wait = min(2 * wait, self.cfg.retry_max_interval_s)

    def _deliver(self, files: list[Path]) -> bool:
        """Send `files` in order over the open association; False at the first failure."""
        assoc = self._association()
        if assoc is None:
            return False
        for f in files:
            if not f.exists():       # gone meanwhile (delivered by an earlier round)
                continue
            if not assoc.is_established:
                logs.event("association_lost", logging.WARNING, file=f.name)
                return False
            try:
                status = self._store(assoc, f)
            except RuntimeError:   # the association ended between the check and the send
                logs.event("association_lost", logging.WARNING, file=f.name)
                return False
            except FileNotFoundError:
                continue
            code = getattr(status, "Status", None) if status else None
            if code not in DELIVERED:
                logs.event("send_failed", logging.WARNING, file=f.name,
                           status=None if code is None else f"0x{code:04X}")
                return False
            f.unlink(missing_ok=True)
            self._on_delivered(f.name, f.stem.split("_", 1)[1])   # SR_<uid>.dcm / SC_<uid>.dcm
        return True

    @staticmethod
    def _store(assoc: Any, f: Path) -> Any:
        """C-STORE one spool file, streamed from disk as written (no decode, no re-encode);
        parsed and converted only when the destination took another transfer syntax."""
        import pydicom

        try:
            return assoc.send_c_store(f)
        except ValueError:        # no accepted context for the file's transfer syntax
            return assoc.send_c_store(pydicom.dcmread(f))

    # -- the association ----------------------------------------------------------------------
    def _association(self) -> Any:
        if self._assoc is not None and self._assoc.is_established:
            return self._assoc
        self._assoc = None
        assoc = self._ae.associate(self.dest.host, self.dest.port, ae_title=self.dest.ae_title)
        if not assoc.is_established:
            return None
        self._assoc = assoc
        return assoc

    def _close(self) -> None:
        if self._assoc is not None:
            with contextlib.suppress(Exception):   # a dead association: nothing to keep
                if self._assoc.is_established:
                    self._assoc.release()
            self._assoc = None

    def _abort(self) -> None:
        if self._assoc is not None:
            with contextlib.suppress(Exception):   # a dead association: nothing to keep
                self._assoc.abort()
            self._assoc = None


def make_ae(cfg: ServeConfig) -> Any:
    """The requesting AE with serve's short timeouts (pynetdicom's defaults are 30-60 s and an
    unbounded TCP connect: a vanished peer would stall delivery that long)."""
    pn = pynetdicom_module()
    pn._config.STORE_SEND_CHUNKED_DATASET = True   # send spool files as they are on disk
    ae = pn.AE(ae_title=cfg.ae_title)
    ae.connection_timeout = cfg.connect_timeout_s
    ae.acse_timeout = cfg.send_timeout_s
    ae.dimse_timeout = cfg.send_timeout_s
    ae.network_timeout = cfg.send_timeout_s
    for sop in _CONTEXTS:
        ae.add_requested_context(sop, _SYNTAXES)
    return ae


def pynetdicom_module() -> Any:
    try:
        import pynetdicom
    except ImportError:
        raise DependencyError("bmd-edge serve needs pynetdicom; run `pip install "
                              "'bmd-edge[node]'`") from None
    return pynetdicom
