"""PHI: patient identifiers in a DICOM never leave bmd-edge unless --include-ids is given.

One DICOM carries name, ID, birth date, other IDs, accession number and institution, and a
manifest carries its own patient_id. Every way out is checked byte for byte: stdout, stderr,
results CSV, JSON, the report PNG (its bytes, and its pixels against a report made from the
same image without identifiers), refusals, log records at DEBUG level and reprs. bmd-edge has no
logging of its own and no --verbose flag (checked: no `logging` use in bmd_edge/ outside
dicom_io, which silences pydicom); BMD_EDGE_DEBUG=1 is set in the subprocess run.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_main
from corpus.make_bad_inputs import dicom, hip_like, u8

from bmd_edge.runtime.tiny import write_tiny_bundle

IDS = {"PatientName": "Zyxwvut^Quentina", "PatientID": "MRN-PHI-998877",
       "PatientBirthDate": "19480229", "OtherPatientIDs": "OTHER-ID-4455",
       "AccessionNumber": "ACC-55443322", "InstitutionName": "Hospital Qwertyuiop"}
MANIFEST_ID = "PID-MANIFEST-4242"
TOKENS = [b"Zyxwvut", b"Quentina", b"998877", b"19480229", b"1948-02-29", b"4455",
          b"55443322", b"Qwertyuiop", MANIFEST_ID.encode()]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny", size=32)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phi")
    px = u8(hip_like(64, 56))
    (root / "with").mkdir()
    (root / "with" / "hip.dcm").write_bytes(dicom(px, PatientAge="072Y", PatientSex="F", **IDS))
    (root / "without").mkdir()  # same pixels and tags, identifiers blanked
    (root / "without" / "hip.dcm").write_bytes(dicom(
        px, PatientAge="072Y", PatientSex="F", **{k: None for k in IDS}))
    (root / "with" / "multi.dcm").write_bytes(dicom(px, frames=2, PatientAge="072Y", **IDS))
    (root / "with" / "manifest.csv").write_text(
        f"image,patient_id,age_xray\nhip.dcm,{MANIFEST_ID},70\n", encoding="utf-8")
    return root


@pytest.fixture(autouse=True)
def _env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg"))


def cli(argv: list[str]) -> tuple[int, bytes]:
    """Run main() in-process; exit code and everything printed (stdout + stderr) as bytes."""
    code, out, err = run_main(argv)
    return code, (out + err).encode("utf-8")


def leaks(blob: bytes) -> list[bytes]:
    return [t for t in TOKENS if t in blob]


def files_blob(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_no_identifier_leaves_by_any_route(data: Path, bundle: Path, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, pydicom's included, at DEBUG
    logging.getLogger("pydicom").setLevel(logging.DEBUG)
    dcm, man = data / "with" / "hip.dcm", data / "with" / "manifest.csv"
    model = ["--model", str(bundle)]
    runs = {
        "human+report": ["predict", str(dcm), *model, "--report", str(tmp_path / "r.png")],
        "json": ["predict", str(dcm), *model, "--json"],
        "ort": ["predict", str(dcm), *model, "--json", "--backend", "onnxruntime"],
        "age_conflict": ["predict", str(dcm), *model, "--age", "60", "--sex", "M"],
        "batch_manifest": ["predict", str(man), *model, "--out", str(tmp_path / "m.csv")],
        "batch_manifest_json": ["predict", str(man), *model, "--json",
                                "--out", str(tmp_path / "mj.csv")],
        "batch_folder": ["predict", str(data / "with"), *model, "--out", str(tmp_path / "f.csv")],
        "refused": ["predict", str(data / "with" / "multi.dcm"), *model, "--sex", "F"],
    }
    for name, argv in runs.items():
        code, printed = cli(argv)
        assert code == (2 if name == "refused" else 0), (name, printed[-400:])
        assert leaks(printed) == [], (name, leaks(printed))
    assert leaks(files_blob(tmp_path)) == []
    logged = "\n".join(r.getMessage() for r in caplog.records).encode()
    assert leaks(logged) == []
    # the batch folder run also failed multi.dcm: its reason names no identifier either
    assert b"multi.dcm" in (tmp_path / "f.csv").read_bytes()


def test_report_pixels_equal_the_report_without_identifiers(data: Path, bundle: Path,
                                                            tmp_path: Path) -> None:
    """Identifiers drawn as text would not show in the bytes: compare the pictures instead."""
    import cv2

    pics = []
    for which in ("with", "without"):
        out = tmp_path / f"{which}.png"
        code, printed = cli(["predict", str(data / which / "hip.dcm"), "--model", str(bundle),
                             "--report", str(out)])
        assert code == 0, printed
        pics.append(cv2.imread(str(out), cv2.IMREAD_UNCHANGED))
    assert pics[0].shape == pics[1].shape and np.array_equal(pics[0], pics[1])


def test_include_ids_shows_them(data: Path, bundle: Path, tmp_path: Path) -> None:
    """Positive control: the same runs with --include-ids do carry the identifiers."""
    code, printed = cli(["predict", str(data / "with" / "hip.dcm"), "--model", str(bundle),
                         "--json", "--include-ids"])
    assert code == 0 and b"Zyxwvut^Quentina" in printed and b"MRN-PHI-998877" in printed
    out = tmp_path / "ids.csv"
    code, _ = cli(["predict", str(data / "with" / "manifest.csv"), "--model", str(bundle),
                   "--out", str(out), "--include-ids"])
    body = out.read_bytes()
    assert code == 0 and MANIFEST_ID.encode() in body and b"MRN-PHI-998877" in body


def test_subprocess_with_debug_env_prints_no_identifier(data: Path, bundle: Path) -> None:
    env = {**os.environ, "BMD_EDGE_DEBUG": "1", "BMD_EDGE_LOG_LEVEL": "DEBUG",
           "PYTHONWARNINGS": "always"}
    for extra in ([], ["--json"]):
        r = subprocess.run([sys.executable, "-m", "bmd_edge.cli", "predict",
                            str(data / "with" / "hip.dcm"), "--model", str(bundle), *extra],
                           capture_output=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr[-500:]
        assert leaks(r.stdout + r.stderr) == []


def test_reprs_and_dicts_hide_identifiers(data: Path, bundle: Path) -> None:
    from bmd_edge.image_io import read_image
    from bmd_edge.runtime import Predictor

    rad = read_image(data / "with" / "hip.dcm")
    assert rad.info.patient_ids["PatientID"] == "MRN-PHI-998877"  # kept, for --include-ids
    pred = Predictor.load(bundle, backend="onnxruntime").predict(data / "with" / "hip.dcm")
    blob = (repr(rad) + repr(rad.info) + repr(pred) + str(pred.to_dict())
            + " ".join(pred.warnings)).encode()
    assert leaks(blob) == []
