"""The serve node: Storage SCP in, analysis workers, sender with retries, health check.

Flow: C-STORE → spool/incoming (acknowledged only once on disk) → bounded queue → N worker
threads sharing one thread-safe Predictor → SR (+ SC) in spool/outgoing (or the outbox) →
sender thread → C-STORE to the destination; a file leaves the spool only when its work is done.
Back-pressure: a C-STORE waits up to `store_timeout_s` for queue space, then answers 0xA700
(out of resources) so the sender retries later; nothing is dropped. A down destination is
retried with a doubling wait; results wait on disk and survive restarts. Shutdown stops
accepting, lets each worker finish the image in hand, tries to deliver what is ready, and leaves
the rest in the spool for the next start.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bmd_edge.errors import BmdEdgeError
from bmd_edge.serve import logs
from bmd_edge.serve.config import ServeConfig
from bmd_edge.serve.sender import Sender, pynetdicom_module
from bmd_edge.serve.spool import Spool
from bmd_edge.sr_template import SRTemplates

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


@dataclass
class Stats:
    received: int = 0
    busy_refusals: int = 0     # C-STOREs answered 0xA700 (queue full)
    analysed: int = 0
    refused: int = 0           # images that gave no result, with a logged reason
    failed: int = 0            # unexpected errors (a bug): logged, image kept out of the way
    delivered: int = 0         # result instances accepted by the destination / outbox
    destination_up: bool | None = None


class ServeNode:
    def __init__(self, config: ServeConfig, predictor: Any = None) -> None:
        self.cfg = config
        self.spool = Spool(config.spool)
        self.stats = Stats()
        self.latencies_ms: deque[float] = deque(maxlen=10000)   # C-STORE in → SR delivered
        self._predictor = predictor
        self._queue: queue.Queue[Path] = queue.Queue(maxsize=config.queue_size)
        self._received_at: dict[str, float] = {}     # incoming ref → monotonic receipt time
        self._sr_received_at: dict[str, float] = {}  # SR file name → receipt time of its source
        self._stop = threading.Event()
        self._sr_templates = SRTemplates()
        self._sender = (Sender(config, self.spool, self._stop, self._delivered,
                               self._destination_state)
                        if config.destination is not None else None)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._server: Any = None
        self._http: ThreadingHTTPServer | None = None

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        pn = pynetdicom_module()
        if self._predictor is None:
            from bmd_edge.runtime.predictor import Predictor

            self._predictor = Predictor.load(self.cfg.model, backend=self.cfg.backend,
                                             threads=self.cfg.threads,
                                             allow_unsigned=self.cfg.allow_unsigned,
                                             trusted_keys=self.cfg.trusted_keys)
        recovered = self.spool.pending_incoming()
        for i in range(self.cfg.workers):
            self._spawn(self._work, f"bmd-worker-{i}")
        if self._sender is not None:
            self._spawn(self._sender.run, "bmd-sender")
        if recovered:
            self._spawn(lambda: self._feed(recovered), "bmd-recover")
        ae = pn.AE(ae_title=self.cfg.ae_title)
        ae.require_called_aet = True
        ae.supported_contexts = pn.AllStoragePresentationContexts
        ae.add_supported_context(pn.sop_class.Verification)
        self._server = ae.start_server((self.cfg.host, self.cfg.port), block=False,
                                       evt_handlers=[(pn.evt.EVT_C_STORE, self._on_store)])
        if self.cfg.health_port is not None:
            self._start_health()
        logs.event("listening", ae_title=self.cfg.ae_title, port=self.cfg.port,
                   health_port=self.cfg.health_port, workers=self.cfg.workers,
                   recovered_images=len(recovered),
                   undelivered_results=len(self.spool.pending_outgoing()),
                   output="c-store" if self.cfg.destination else "outbox")

    def stop(self, drain_s: float = 10.0) -> None:
        """Stop accepting, finish images in hand, deliver what is ready (up to `drain_s`)."""
        logs.event("stopping", queued=self._queue.qsize())
        if self._server is not None:
            self._server.shutdown()
        self._stop.set()
        for t in self._threads:
            if t.name.startswith("bmd-worker") or t.name == "bmd-recover":
                t.join()
        deadline = time.monotonic() + drain_s
        while (self._sender is not None and self.spool.pending_outgoing()
               and self.stats.destination_up and time.monotonic() < deadline):
            self._sender.ready.set()
            time.sleep(0.05)
        if self._sender is not None:
            self._sender.ready.set()
        for t in self._threads:
            if t.name == "bmd-sender":
                t.join(timeout=max(0.0, deadline - time.monotonic()) + 5)
        if self._http is not None:
            self._http.shutdown()
        logs.event("stopped", left_in_spool_images=len(self.spool.pending_incoming()),
                   left_in_spool_results=len(self.spool.pending_outgoing()),
                   **self.health()["counts"])

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # -- receiving ----------------------------------------------------------------------------
    def _on_store(self, event: Any) -> int:
        """C-STORE: on disk first, then queued; a full queue waits, then says 'busy'."""
        if self._stop.is_set():
            return STATUS_OUT_OF_RESOURCES
        try:
            sop = str(event.request.AffectedSOPInstanceUID)
            data = event.encoded_dataset()
        except Exception:  # noqa: BLE001 - a malformed request: tell the sender, keep serving
            logs.event("store_unreadable", logging.WARNING)
            return STATUS_CANNOT_UNDERSTAND
        name = logs.ref(sop)
        now = time.monotonic()
        path = self.spool.put_incoming(name, data)
        try:
            self._queue.put(path, timeout=self.cfg.store_timeout_s)
        except queue.Full:
            path.unlink(missing_ok=True)
            with self._lock:
                self.stats.busy_refusals += 1
            logs.event("busy", logging.WARNING, ref=name, queued=self._queue.qsize())
            return STATUS_OUT_OF_RESOURCES
        with self._lock:
            self.stats.received += 1
            self._received_at[name] = now
        logs.event("received", ref=name, queued=self._queue.qsize())
        return STATUS_SUCCESS

    def _feed(self, paths: list[Path]) -> None:
        """Re-queue images a previous run accepted but did not analyse."""
        for p in paths:
            while not self._stop.is_set():
                try:
                    self._queue.put(p, timeout=0.2)
                    break
                except queue.Full:
                    continue

    # -- analysing ----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                path = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self._analyse(path)
            finally:
                self._queue.task_done()

    def _analyse(self, path: Path) -> None:
        import pydicom

        from bmd_edge.dicom_out import build_result_files, save_results

        name = path.stem
        if not path.exists():       # a duplicate of an image already handled
            return
        started = time.monotonic()
        out = self.cfg.outbox if self.cfg.outbox is not None else self.spool.outgoing
        try:
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception as exc:  # noqa: BLE001 - not parseable: a refusal like any other
                raise _Refusal(f"not a readable DICOM ({type(exc).__name__})") from None
            p = self._predictor
            prepared = p.prepare(path)
            result = p.infer([prepared])[0]
            written = []
            for k, one in enumerate(result.per_hip()):   # one SR (and SC) per hip
                uids, sr, sc = build_result_files(
                    one, header, self._sr_templates, references=p.references,
                    model_input=prepared.images[k] if self.cfg.secondary_capture else None)
                with self._lock:            # before the file exists: the sender may be quick
                    t0 = self._received_at.get(name)
                    if t0 is not None:
                        self._sr_received_at[f"SR_{uids.sr_instance}.dcm"] = t0
                written.append(save_results(uids, sr, sc, out))
        except (BmdEdgeError, _Refusal) as err:
            with self._lock:
                self.stats.refused += 1
            reason = str(err).replace(f"{path.parent}/", "")   # the spool's folder is noise
            logs.event("refused", logging.WARNING, ref=name, reason=reason)
        except Exception as err:  # noqa: BLE001 - a bug must not stop the node
            with self._lock:
                self.stats.failed += 1
            logs.event("failed", logging.ERROR, ref=name, error=type(err).__name__)
        else:
            with self._lock:
                self.stats.analysed += 1
            for res in written:
                logs.event("analysed", ref=name, sr=res.uids.sr_instance,
                           ms=round(1000 * (time.monotonic() - started), 1))
                if self.cfg.outbox is not None:
                    self._delivered(res.sr_path.name, res.uids.sr_instance)
                    if res.sc_path is not None:
                        self._delivered(res.sc_path.name, res.uids.sc_instance)
            if self.cfg.outbox is None and self._sender is not None:
                self._sender.ready.set()
        finally:
            path.unlink(missing_ok=True)
            with self._lock:
                self._received_at.pop(name, None)

    # -- sending ------------------------------------------------------------------------------
    def _delivered(self, file_name: str, uid: str) -> None:
        with self._lock:
            self.stats.delivered += 1
            t0 = self._sr_received_at.pop(file_name, None)
            if t0 is not None:
                self.latencies_ms.append(1000 * (time.monotonic() - t0))
        logs.event("delivered", uid=uid, kind=file_name[:2],
                   latency_ms=None if t0 is None else round(1000 * (time.monotonic() - t0), 1))

    def _destination_state(self, up: bool) -> None:
        with self._lock:
            self.stats.destination_up = up

    # -- health -------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        with self._lock:
            counts = {k: v for k, v in vars(self.stats).items() if k != "destination_up"}
            dest_up = self.stats.destination_up
        dead = sorted(t.name for t in self._threads
                      if t.name.startswith(("bmd-worker", "bmd-sender")) and not t.is_alive())
        status = "stopping" if self._stop.is_set() else "failed" if dead else (
            "degraded" if dest_up is False else "ok")
        return {"status": status, "dead_threads": dead, "ae_title": self.cfg.ae_title, "port": self.cfg.port,
                "queued": self._queue.qsize(), "queue_size": self.cfg.queue_size,
                "undelivered_results": len(self.spool.pending_outgoing()),
                "destination_up": dest_up, "counts": counts}

    def _start_health(self) -> None:
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.rstrip("/") not in ("/health", ""):
                    self.send_error(404)
                    return
                h = node.health()
                body_status = h["status"]
                body = json.dumps(h).encode()
                self.send_response(200 if body_status in ("ok", "degraded") else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        assert self.cfg.health_port is not None
        self._http = _HealthServer((self.cfg.host, self.cfg.health_port), Handler)
        self._spawn(self._http.serve_forever, "bmd-health")


class _HealthServer(ThreadingHTTPServer):
    """The health check's HTTP server; a client that hangs up early (a probe's timeout under
    load: BrokenPipeError on the reply) is one log line, not a traceback on stderr."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        logs.event("health_request_failed", logging.DEBUG,
                   error=type(sys.exc_info()[1]).__name__)


class _Refusal(Exception):
    """An image the node will not analyse; the message is the logged reason (no PHI)."""
