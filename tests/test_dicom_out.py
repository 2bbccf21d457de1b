"""DICOM results (#17 item 1): `predict --dicom-out` writes a Comprehensive SR and a Secondary
Capture in the source's study, with stable UIDs, valid per dciodvfy and readable by dsrdump."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from bmd_edge import dicom_out
from bmd_edge.cli import app

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def hips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from bmd_edge.synth import generate_cohort

    out = tmp_path_factory.mktemp("dicom-out-cohort")
    generate_cohort(3, out, seed=5, size=128, dicom=True, workers=1)
    return sorted((out / "dicom").glob("*.dcm"))


def sr_numbers(ds: pydicom.Dataset) -> dict[str, float]:
    """Every NUM content item of the SR tree: concept meaning → value."""
    found: dict[str, float] = {}

    def walk(items: pydicom.Sequence) -> None:
        for item in items:
            if item.ValueType == "NUM" and "MeasuredValueSequence" in item:
                meaning = item.ConceptNameCodeSequence[0].CodeMeaning
                found[meaning] = float(item.MeasuredValueSequence[0].NumericValue)
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(ds.ContentSequence)
    return found


def sr_references(ds: pydicom.Dataset) -> set[str]:
    """Referenced SOP Instance UIDs anywhere in the SR (content tree and evidence)."""
    refs: set[str] = set()

    def walk(d: pydicom.Dataset) -> None:
        for elem in d:
            if elem.keyword == "ReferencedSOPInstanceUID":
                refs.add(str(elem.value))
            elif elem.VR == "SQ":
                for item in elem.value:
                    walk(item)

    walk(ds)
    return refs


def run_predict(src: Path, out: Path) -> dict:
    res = CliRunner().invoke(app, ["predict", str(src), "--json", "--dicom-out", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_sr_and_sc_join_the_source_study(hips: list[Path], tmp_path: Path) -> None:
    src = pydicom.dcmread(hips[0])
    result = run_predict(hips[0], tmp_path)
    srs, scs = sorted(tmp_path.glob("SR_*.dcm")), sorted(tmp_path.glob("SC_*.dcm"))
    assert len(srs) == 1 and len(scs) == 1
    sr, sc = pydicom.dcmread(srs[0]), pydicom.dcmread(scs[0])
    assert sr.SOPClassUID == COMPREHENSIVE_SR and sc.SOPClassUID == SECONDARY_CAPTURE
    for ds in (sr, sc):
        assert ds.StudyInstanceUID == src.StudyInstanceUID
        assert ds.PatientID == src.PatientID and ds.PatientName == src.PatientName
        assert ds.SeriesInstanceUID != src.SeriesInstanceUID
        assert ds.SOPInstanceUID.startswith("2.25.")
    assert sr.SeriesInstanceUID != sc.SeriesInstanceUID
    assert src.SOPInstanceUID in sr_references(sr)
    nums = sr_numbers(sr)
    assert abs(nums["Femoral neck BMD (estimated)"] - result["bmd_gcm2"]) < 6e-5
    assert abs(nums["T-score"] - result["t_score"]) < 6e-3
    assert abs(nums["Z-score"] - result["z_score"]) < 6e-3
    lo, hi = result["interval"]["low"], result["interval"]["high"]
    bmd = nums["Femoral neck BMD (estimated)"]
    assert abs(nums["+, range of upper measurement uncertainty"] - (hi - bmd)) < 2e-4
    assert abs(nums["-, range of lower measurement uncertainty"] - (bmd - lo)) < 2e-4
    dump = subprocess.run(["dsrdump", str(srs[0])], check=False, capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    assert result["who_category"] in dump.stdout
    assert ("Positive" if result["screen_positive"] else "Negative") in dump.stdout
    assert "Intended use" in dump.stdout and "xattn-bmd" in dump.stdout
    assert sc.pixel_array.ndim == 3 and sc.pixel_array.shape[2] == 3
    assert sc.pixel_array.std() > 10      # a drawn picture, not a blank frame


def test_sr_and_sc_validate_with_dciodvfy(hips: list[Path], tmp_path: Path) -> None:
    run_predict(hips[1], tmp_path)
    files = sorted(tmp_path.glob("*.dcm"))
    assert len(files) == 2
    for f in files:
        res = subprocess.run(["dciodvfy", str(f)], check=False, capture_output=True)
        report = (res.stdout + res.stderr).decode("latin-1")
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert not errors, f"{f.name}: {errors}"


def test_uids_are_stable_and_per_source(hips: list[Path], tmp_path: Path) -> None:
    run_predict(hips[2], tmp_path / "a")
    run_predict(hips[2], tmp_path / "b")
    run_predict(hips[0], tmp_path / "c")
    names = [sorted(p.name for p in (tmp_path / d).glob("*.dcm")) for d in "abc"]
    assert names[0] == names[1]                       # redelivery: same SOP Instance UIDs
    assert not set(names[0]) & set(names[2])          # another image: other UIDs
    a = pydicom.dcmread(next((tmp_path / "a").glob("SR_*.dcm")))
    c = pydicom.dcmread(next((tmp_path / "c").glob("SR_*.dcm")))
    if pydicom.dcmread(hips[2]).SeriesInstanceUID == pydicom.dcmread(hips[0]).SeriesInstanceUID:
        assert a.SeriesInstanceUID == c.SeriesInstanceUID
    assert dicom_out.derived_uid("sr", "1.2.3", "m", "1") != dicom_out.derived_uid("sr", "1.2.3",
                                                                                    "m", "2")


def test_refused_image_writes_nothing(hips: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "truncated.dcm"
    bad.write_bytes(hips[0].read_bytes()[:2000])
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["predict", str(bad), "--dicom-out", str(out)])
    assert res.exit_code == 2
    assert res.output.startswith("error: ")
    assert not out.exists() or not list(out.iterdir())


def test_non_dicom_source_is_refused(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    png = tmp_path / "hip.png"
    cv2.imwrite(str(png), (np.random.default_rng(0).random((64, 64)) * 65535).astype(np.uint16))
    res = CliRunner().invoke(app, ["predict", str(png), "--age", "70", "--sex", "F",
                                   "--dicom-out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "--dicom-out needs a DICOM source" in res.output


def test_no_phi_in_logs(hips: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = pydicom.dcmread(hips[0])
    with caplog.at_level(logging.DEBUG):
        result = CliRunner().invoke(app, ["predict", str(hips[0]), "--dicom-out",
                                          str(tmp_path)])
    assert result.exit_code == 0
    text = caplog.text + result.output
    assert "dicom results written" in caplog.text
    for value in (str(src.PatientName), str(src.PatientID)):
        assert value not in text
