"""`bmd-edge predict` end to end: torch blocked, JSON schema, DICOM tags, PHI, batch, errors."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from bmd_edge.cli import app
from bmd_edge.runtime.tiny import write_tiny_bundle



def _toy_jpeg() -> Path:
    """A toy hip film (runtime/toy.py) as an 8-bit JPEG: the tiny bundle's locator finds it."""
    import tempfile

    import numpy as np

    from bmd_edge.runtime.toy import toy_hip_film

    path = Path(tempfile.mkdtemp(prefix="bmd-edge-toy-")) / "normal-hip.jpg"
    img = toy_hip_film(217, 256, side="left", seed=3)[0]
    cv2.imwrite(str(path), np.round(img * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


HIP = _toy_jpeg()
PHI = {"PatientName": "Doe^Janet", "PatientID": "MRN-7731942", "PatientBirthDate": "19510304"}
JSON_KEYS = {"schema_version", "source", "bmd_gcm2", "unit", "scale", "interval", "t_score",
             "t_reference", "z_score", "z_reference", "who_category", "screen_positive",
             "threshold_gcm2", "field_attention", "inputs", "model", "intended_use", "warnings"}

BLOCK_TORCH = (
    "import sys\n"
    "class _NoTorch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ImportError('torch is blocked in this test')\n"
    "        return None\n"
    "sys.meta_path.insert(0, _NoTorch())\n"
    "from bmd_edge.cli import main\n"
    "main(sys.argv[1:])\n"
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", size=32)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def dicom_hip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy hip film wrapped as a DICOM with age, sex and identifying tags."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    px = cv2.resize(cv2.imread(str(HIP), cv2.IMREAD_GRAYSCALE), (256, 217),
                    interpolation=cv2.INTER_AREA)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path_factory.mktemp("dcm") / "hip.dcm"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientAge = "072Y"
    ds.PatientSex = "F"
    for k, v in PHI.items():
        setattr(ds, k, v)
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = px.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BMD_EDGE_DEBUG": ""}
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH, *args], check=False,
                          capture_output=True, text=True, env=env, timeout=120)


def test_predict_works_with_torch_blocked(bundle: Path) -> None:
    r = _run("predict", str(HIP), "--age", "70", "--sex", "F", "--weight-kg", "61",
             "--model", str(bundle), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert JSON_KEYS <= set(d) and d["schema_version"] == 1
    assert d["source"] == "normal-hip.jpg" and d["threshold_gcm2"] == 0.899
    assert set(d["interval"]) == {"low", "high", "coverage"}
    assert set(d["model"]) == {"name", "version", "variant", "backend", "precision"}
    assert d["model"]["backend"] == "openvino" and d["model"]["precision"] == "int8+f32"
    assert d["model"]["variant"] == "openvino-int8"
    assert d["who_category"] in ("normal", "osteopenia", "osteoporosis")
    assert d["screen_positive"] == (d["bmd_gcm2"] < 0.899)
    assert {a["field"] for a in d["field_attention"]} == {"age_xray", "age_bmd", "sex",
                                                         "weight_kg"}
    # and the torch block really bites: importing torch in that interpreter fails
    probe = subprocess.run([sys.executable, "-c", BLOCK_TORCH.replace(
        "from bmd_edge.cli import main\nmain(sys.argv[1:])\n", "import torch\n")],
        check=False, capture_output=True, text=True)
    assert probe.returncode != 0 and "torch is blocked" in probe.stderr


def test_human_output_has_the_read_out(bundle: Path) -> None:
    res = CliRunner().invoke(app, ["predict", str(HIP), "--age", "70", "--sex", "F",
                                   "--model", str(bundle), "--backend", "onnxruntime"])
    assert res.exit_code == 0, res.output
    for text in ("Femoral-neck BMD", "g/cm²", "90% interval", "T-score", "NHANES III",
                 "Z-score", "WHO category", "Low-BMD screen", "0.899", "Fields weighed most",
                 "bmd-edge-tiny 0.0.1", "Intended use"):
        assert text in res.output


def test_dicom_tags_fill_age_sex_and_conflict_warns(bundle: Path, dicom_hip: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(dicom_hip), "--model", str(bundle), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["inputs"]["age_xray"] == 72.0 and d["inputs"]["sex"] == "F"
    assert d["warnings"] == []
    res = runner.invoke(app, ["predict", str(dicom_hip), "--model", str(bundle), "--json",
                              "--age", "60", "--sex", "M"])
    d = json.loads(res.stdout)
    assert d["inputs"]["age_xray"] == 60.0 and d["inputs"]["sex"] == "M"  # command line wins
    joined = " ".join(d["warnings"])
    assert "age 60 given differs" in joined and "72" in joined
    assert "sex M given differs" in joined


def test_patient_identifiers_never_leak(bundle: Path, dicom_hip: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.png"
    runs = [
        _run("predict", str(dicom_hip), "--model", str(bundle), "--report", str(report),
             "--age", "50"),
        _run("predict", str(dicom_hip), "--model", str(bundle), "--json"),
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr
        for value in PHI.values():
            for part in value.split("^"):
                assert part not in r.stdout and part not in r.stderr
    data = report.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    for value in PHI.values():
        assert value.encode() not in data
    shown = CliRunner().invoke(app, ["predict", str(dicom_hip), "--model", str(bundle),
                                     "--json", "--include-ids"])
    assert json.loads(shown.stdout)["patient_ids"]["PatientID"] == "MRN-7731942"


def test_batch_folder_with_a_corrupt_file(bundle: Path, tmp_path: Path, dicom_hip: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a_hip.jpg", "c_hip.jpg"):
        (folder / name).write_bytes(HIP.read_bytes())
    (folder / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (folder / "d_hip.dcm").write_bytes(dicom_hip.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "res" / "results.csv"
    r = _run("predict", str(folder), "--age", "70", "--sex", "F", "--model", str(bundle),
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "3 ok, 1 failed" in r.stderr and "b_broken.png" in r.stderr
    rows = list(csv.DictReader(out.open()))
    assert [row["source"] for row in rows] == ["a_hip.jpg", "b_broken.png", "c_hip.jpg",
                                               "d_hip.dcm"]
    assert [row["status"] for row in rows] == ["ok", "failed", "ok", "ok"]
    assert rows[1]["error"] and rows[1]["bmd_gcm2"] == ""
    assert rows[0]["bmd_gcm2"] == rows[2]["bmd_gcm2"]  # same image, same answer
    assert float(rows[3]["age"]) == 70.0  # command-line age applies to the DICOM too
    text = out.read_text()
    assert all(v.split("^")[0] not in text for v in PHI.values())
    assert not list(out.parent.glob(".*tmp*"))
    strict = CliRunner().invoke(app, ["predict", str(folder), "--age", "70", "--sex", "F",
                                      "--model", str(bundle), "--out", str(out), "--strict"])
    assert strict.exit_code == 1 and "3 ok, 1 failed" in strict.stderr


def test_batch_interrupt_leaves_no_results(bundle: Path, tmp_path: Path) -> None:
    from bmd_edge.runtime.batch import items_from_directory, run_batch
    from bmd_edge.runtime.predictor import Predictor

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.jpg").write_bytes(HIP.read_bytes())
    p = Predictor.load(bundle, backend="onnxruntime", threads=1)
    out = tmp_path / "results.csv"

    def interrupt(n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(p, items_from_directory(folder, {"age": 70, "sex": "F"}), out,
                  batch_size=2, progress=interrupt)
    assert list(tmp_path.glob("*results.csv*")) == []
    summary = run_batch(p, items_from_directory(folder, {"age": 70, "sex": "F"}), out,
                        batch_size=2, window=3)
    assert (summary.n_ok, summary.n_failed) == (5, 0)
    assert len(list(csv.DictReader(out.open()))) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [(["/no/such/hip.png", "--age", "70", "--sex", "F"], "does not exist"),
     ([str(HIP), "--age", "70", "--sex", "Q"], "sex = 'Q'"),
     ([str(HIP), "--age", "7", "--sex", "F"], "age_xray = 7"),
     ([str(HIP.parent), "--age", "70", "--sex", "F"], "needs --out")],
)
def test_cli_errors_are_one_line(bundle: Path, args: list[str], message: str) -> None:
    res = CliRunner().invoke(app, ["predict", *args, "--model", str(bundle)])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and message in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.output


def test_not_a_hip_refusal_and_force(bundle: Path, tmp_path: Path) -> None:
    from conftest import write_toy_png

    knee = write_toy_png(tmp_path / "knee.png", "knee", seed=1)
    res = CliRunner().invoke(app, ["predict", str(knee), "--age", "70", "--sex", "F",
                                   "--model", str(bundle)])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert re.match(r"error: no hip found \(hip score 0\.\d\d < 0\.50\); use --force", res.stderr)
    res = CliRunner().invoke(app, ["predict", str(knee), "--age", "70", "--sex", "F",
                                   "--model", str(bundle), "--force", "--json"])
    assert res.exit_code == 0
    assert any("--force" in w and "no hip found" in w
               for w in json.loads(res.stdout)["warnings"])


def test_info_describes_the_bundle(bundle: Path) -> None:
    res = CliRunner().invoke(app, ["info", "--model", str(bundle), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["model"]["name"] == "bmd-edge-tiny" and set(d["variants"]) == {
        "openvino-int8", "onnx-int8", "onnx-fp32"}
    assert d["screening_threshold_gcm2"] == 0.899


def test_batch_manifest_uses_row_metadata(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "h1.jpg").write_bytes(HIP.read_bytes())
    (tmp_path / "img" / "h2.jpg").write_bytes(HIP.read_bytes())
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(
        "image,age_xray,sex,weight_kg,patient_id,side\n"
        "img/h1.jpg,81,F,50,P-SECRET-1,left\n"
        "img/h2.jpg,66,M,,P-SECRET-2,\n"
        "img/h2.jpg,abc,M,,P-SECRET-3,\n"
        "img/missing.jpg,70,F,,P-SECRET-4,\n")
    out = tmp_path / "results.csv"
    res = CliRunner().invoke(app, ["predict", str(manifest), "--model", str(bundle),
                                   "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert (summary["n_ok"], summary["n_failed"]) == (2, 2)
    rows = list(csv.DictReader(out.open()))
    ok = [r for r in rows if r["status"] == "ok"]
    assert [(r["source"], float(r["age"]), r["sex"]) for r in ok] == [
        ("img/h1.jpg", 81.0, "F"), ("img/h2.jpg", 66.0, "M")]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 2 and all(r["error"] for r in failed)
    assert "SECRET" not in out.read_text() + res.output
    CliRunner().invoke(app, ["predict", str(manifest), "--model", str(bundle),
                             "--out", str(out), "--include-ids"])
    assert "P-SECRET-1" in out.read_text()
