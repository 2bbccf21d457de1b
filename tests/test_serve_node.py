"""`bmd-edge serve` pieces that the DCMTK end-to-end test does not reach cheaply: back-pressure
(a full queue answers 0xA700 and drops nothing), outbox mode, the health check, the TOML/flag
configuration and its errors. Real predictor, real pynetdicom associations, real files."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pydicom
import pytest

from bmd_edge.errors import InputError
from bmd_edge.runtime.predictor import Predictor
from bmd_edge.serve.config import Destination, ServeConfig
from bmd_edge.serve.node import STATUS_OUT_OF_RESOURCES, ServeNode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def hips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from bmd_edge.synth import generate_cohort

    root = tmp_path_factory.mktemp("serve-node-cohort")
    generate_cohort(4, root, seed=29, size=96, dicom=True, workers=1)
    return sorted((root / "dicom").glob("*.dcm"))


class GatedPredictor:
    """The real Predictor, whose `prepare` waits for a gate: holds the one worker busy so the
    queue fills, deterministically (no timing race)."""

    def __init__(self, real: Predictor) -> None:
        self.real, self.gate = real, threading.Event()
        self.references = real.references

    def prepare(self, *args: Any, **kwargs: Any) -> Any:
        assert self.gate.wait(timeout=60)
        return self.real.prepare(*args, **kwargs)

    def infer(self, cases: Any) -> Any:
        return self.real.infer(cases)


def c_store(port: int, path: Path) -> int:
    from pynetdicom import AE

    ds = pydicom.dcmread(path)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="BMDEDGE")
    assert assoc.is_established
    status = assoc.send_c_store(ds)
    assoc.release()
    return int(status.Status)


def test_back_pressure_outbox_and_health(hips: list[Path], tmp_path: Path) -> None:
    gated = GatedPredictor(Predictor.load(None))
    cfg = ServeConfig(port=free_port(), host="127.0.0.1", outbox=tmp_path / "outbox",
                      spool=tmp_path / "spool", workers=1, queue_size=1, store_timeout_s=0.3,
                      health_port=free_port(), secondary_capture=False)
    node = ServeNode(cfg, predictor=gated)
    node.start()
    try:
        statuses = [c_store(cfg.port, p) for p in hips[:3]]
        # One image in the worker's hands, one queued, the third finds no room: busy, not lost.
        assert statuses[:2] == [0, 0] and statuses[2] == STATUS_OUT_OF_RESOURCES
        with urllib.request.urlopen(f"http://127.0.0.1:{cfg.health_port}/health") as r:
            h = json.loads(r.read())
        assert h["status"] == "ok" and h["counts"]["busy_refusals"] == 1
        assert h["counts"]["received"] == 2
        gated.gate.set()
        deadline = time.monotonic() + 120                # the sender retries, as storescu
        while (status := c_store(cfg.port, hips[2])) != 0 and time.monotonic() < deadline:
            assert status == STATUS_OUT_OF_RESOURCES     # would: accepted once there is room
        assert status == 0
        deadline = time.monotonic() + 120
        while node.health()["counts"]["analysed"] < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        gated.gate.set()
        node.stop()
    srs = sorted((tmp_path / "outbox").glob("SR_*.dcm"))
    assert len(srs) == 3 and not list((tmp_path / "outbox").glob("SC_*.dcm"))
    sources = {str(pydicom.dcmread(p).SOPInstanceUID) for p in hips[:3]}
    refs = {str(pydicom.dcmread(p).CurrentRequestedProcedureEvidenceSequence[0]
                .ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            for p in srs}
    assert refs == sources
    assert not list((tmp_path / "spool" / "incoming").iterdir())


def test_config_from_toml_and_flags(tmp_path: Path) -> None:
    toml = tmp_path / "serve.toml"
    toml.write_text('[serve]\nae_title = "HIPNODE"\nport = 4242\n'
                    'destination = "PACS@10.0.0.5:104"\nworkers = 3\n')
    cfg = ServeConfig.load(toml, port=5000, workers=None)
    assert (cfg.ae_title, cfg.port, cfg.workers) == ("HIPNODE", 5000, 3)   # flags win
    assert cfg.destination == Destination("10.0.0.5", 104, "PACS")


@pytest.mark.parametrize("text, flags, message", [
    ('[serve]\nport = 4242\n', {}, "exactly one of --destination"),
    ('[serve]\noutbox = "o"\nport = 70000\n', {}, "port 70000 is invalid"),
    ('[serve]\noutbox = "o"\nae_title = "A\\\\B"\n', {}, "ae_title"),
    ('[serve]\noutbox = "o"\nqueue = 3\n', {}, "unknown serve setting(s) queue"),
    ('[serve]\ndestination = "PACS:104"\n', {}, "is not AE@HOST:PORT"),
    ('[serve\n', {}, "is not valid TOML"),
])
def test_config_errors_name_the_bad_value(tmp_path: Path, text: str, flags: dict,
                                          message: str) -> None:
    toml = tmp_path / "serve.toml"
    toml.write_text(text)
    with pytest.raises(InputError, match=None) as err:
        ServeConfig.load(toml, **flags)
    assert message in str(err.value)


class FlakyDestination:
    """A real pynetdicom Storage SCP that aborts its association right after answering every
    `every`-th C-STORE: the sender finds the association gone between two C-STOREs (pynetdicom
    then raises instead of answering) or mid-request (no answer). This killed the old sender
    thread, so a killed storescp was never reported down (the flaky DCMTK outage test)."""

    def __init__(self, every: int) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage

        self.every, self.stored, self.aborts = every, [], 0
        self.port = free_port()
        self.ae = AE(ae_title="RESULTS")
        for sop in (ComprehensiveSRStorage, SecondaryCaptureImageStorage):
            self.ae.add_supported_context(sop, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        self.handlers = [(evt.EVT_C_STORE, self._store)]
        self.server: Any = None

    def start(self) -> None:
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False,
                                           evt_handlers=self.handlers)

    def _store(self, event: Any) -> int:
        self.stored.append(str(event.request.AffectedSOPInstanceUID))
        if len(self.stored) % self.every == 0:
            self.aborts += 1
            threading.Timer(0.001, event.assoc.abort).start()
        return 0x0000


def test_sender_survives_a_destination_that_drops_associations(hips: list[Path],
                                                               tmp_path: Path) -> None:
    dest = FlakyDestination(every=2)       # down at first: results pile up in the spool
    cfg = ServeConfig(port=free_port(), host="127.0.0.1",
                      destination=Destination("127.0.0.1", dest.port, "RESULTS"),
                      spool=tmp_path / "spool", workers=1, secondary_capture=True,
                      retry_interval_s=0.05, retry_max_interval_s=0.2, send_timeout_s=2.0)
    node = ServeNode(cfg, predictor=Predictor.load(None))
    node.start()
    try:
        for p in hips:
            assert c_store(cfg.port, p) == 0
        deadline = time.monotonic() + 60
        while node.health()["counts"]["analysed"] < len(hips):
            assert time.monotonic() < deadline, node.health()
            time.sleep(0.05)
        assert node.health()["destination_up"] is False
        dest.start()                          # 8 results, an abort after every 2nd C-STORE
        deadline = time.monotonic() + 60
        while node.health()["undelivered_results"]:
            assert node.health()["status"] != "failed", node.health()
            assert time.monotonic() < deadline, node.health()
            time.sleep(0.05)
        h = node.health()
        assert h["status"] in ("ok", "degraded") and h["dead_threads"] == []
        assert h["counts"]["failed"] == 0
    finally:
        node.stop()
        if dest.server is not None:
            dest.server.shutdown()
    # Every result arrived, at least once; a redelivered one has the same UID.
    assert dest.aborts >= 3
    assert len(set(dest.stored)) == 2 * len(hips)
