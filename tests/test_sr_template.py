"""Fast SRs (bmd_edge/sr_template.py): an SR rendered from a template equals, element by element,
the SR highdicom builds for the same prediction and source — over sources with different
patients, character sets, extra and missing patient/study attributes, acquisition equipment, and
predictions with and without Z-score, interval and warnings, one template serving many images.
It validates with dciodvfy and reads back with dsrdump like the slow one."""

from __future__ import annotations

import copy
import dataclasses
import io
import subprocess
from pathlib import Path

import pydicom
import pytest

from bmd_edge.dicom_out import ResultUIDs, build_sr
from bmd_edge.runtime.predictor import Predictor
from bmd_edge.sr_template import SRTemplates

_NOW = ("InstanceCreationDate", "InstanceCreationTime", "ContentDate", "ContentTime")


@pytest.fixture(scope="module")
def hips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from bmd_edge.synth import generate_cohort

    out = tmp_path_factory.mktemp("sr-template-cohort")
    generate_cohort(3, out, seed=41, size=96, dicom=True, workers=1)
    return sorted((out / "dicom").glob("*.dcm"))


def sources(hips: list[Path]) -> list[pydicom.Dataset]:
    """Headers that differ in every way the SR can see."""
    plain = [pydicom.dcmread(p, stop_before_pixels=True) for p in hips]
    latin = copy.deepcopy(plain[0])
    latin.SpecificCharacterSet = "ISO_IR 100"
    latin.PatientName = "Müller^Jörg"
    latin.ReferringPhysicianName = "Ærø^Åse"
    latin.SOPInstanceUID = pydicom.uid.generate_uid()
    extra = copy.deepcopy(plain[1])
    extra.PatientWeight, extra.PatientSize, extra.StudyDescription = 61.5, 1.62, "HIP AP"
    extra.IssuerOfPatientID = "HOSP"
    other = pydicom.Dataset()
    other.PatientID, other.IssuerOfPatientID = "OTHER-1", "OLDHOSP"
    extra.OtherPatientIDsSequence = [other]
    extra.SOPInstanceUID = pydicom.uid.generate_uid()
    sparse = copy.deepcopy(plain[2])
    for kw in ("PatientBirthDate", "StudyTime", "AccessionNumber", "InstanceNumber",
               "ReferringPhysicianName"):
        if kw in sparse:
            delattr(sparse, kw)
    sparse.SOPInstanceUID = pydicom.uid.generate_uid()
    equipment = copy.deepcopy(plain[1])
    equipment.Manufacturer, equipment.ManufacturerModelName = "ACME", "HipRay 3000"
    equipment.StationName, equipment.InstitutionName = "XR2", "General"
    equipment.AcquisitionDate, equipment.AcquisitionTime = "20240102", "101112"
    equipment.SOPInstanceUID = pydicom.uid.generate_uid()
    return [*plain, latin, extra, sparse, equipment]


def predictions(real: object) -> list[object]:
    """The real prediction and variants of it that change values and the tree's shape."""
    r = real
    assert r.interval is not None and r.z_score is not None   # type: ignore[attr-defined]
    return [
        r,
        dataclasses.replace(r, bmd_gcm2=0.61234567891, t_score=-2.71828182, z_score=-1.5,
                            interval=(0.5, 0.72, 0.9), who_category="osteoporosis",
                            screen_positive=True),
        dataclasses.replace(r, z_score=None,
                            warnings=("age 70 given differs from the DICOM age 71",)),
        dataclasses.replace(r, interval=None, warnings=("one", "two ü")),
        dataclasses.replace(r, hip="left"),             # a located hip: SNOMED laterality
        dataclasses.replace(r, hip="right", bmd_gcm2=0.9),
    ]


def normalised(data: bytes) -> pydicom.Dataset:
    """The dataset without what is 'now' (creation/content time, highdicom's contribution)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for kw in _NOW:
        if kw in ds:
            delattr(ds, kw)
    for item in ds.get("ContributingEquipmentSequence", []):
        if "highdicom" in str(item.get("ManufacturerModelName", "")):
            del item.ContributionDateTime
    return ds


def test_template_sr_equals_highdicom_sr(hips: list[Path]) -> None:
    predictor = Predictor.load(None)
    real = predictor.predict(hips[0])
    templates = SRTemplates()
    compared = 0
    for pred in predictions(real):
        for source in sources(hips):
            before = copy.deepcopy(source)
            uids = ResultUIDs.for_result(source, pred)
            fast = templates.render(pred, source, uids)
            assert fast is not None
            assert source == before                   # rendering leaves the source alone
            buf = io.BytesIO()
            build_sr(pred, copy.deepcopy(source), uids).save_as(buf, enforce_file_format=True)
            a, b = normalised(fast), normalised(buf.getvalue())
            assert a.file_meta == b.file_meta
            diff = [e.keyword for e in b if e.tag not in a or a[e.tag] != e]
            diff += [e.keyword for e in a if e.tag not in b]
            assert not diff, f"{diff} differ for {source.PatientName} / {pred.warnings}"
            compared += 1
    assert compared == 6 * 7
    # One template per shape, reused across images: fewer templates than SRs.
    assert 0 < len(templates._by_shape) < compared
    assert all(t is not None for t in templates._by_shape.values())


def test_template_sr_validates_and_reads_back(hips: list[Path], tmp_path: Path) -> None:
    predictor = Predictor.load(None)
    templates = SRTemplates()
    for i, path in enumerate(hips):
        source = pydicom.dcmread(path, stop_before_pixels=True)
        pred = predictor.predict(path)
        data = templates.render(pred, source, ResultUIDs.for_result(source, pred))
        assert data is not None
        f = tmp_path / f"sr{i}.dcm"
        f.write_bytes(data)
        dump = subprocess.run(["dsrdump", str(f)], check=False, capture_output=True)
        assert dump.returncode == 0 and b"Femoral neck BMD" in dump.stdout
        check = subprocess.run(["dciodvfy", str(f)], check=False, capture_output=True)
        report = (check.stdout + check.stderr).decode("latin-1").splitlines()
        assert not [line for line in report if line.startswith("Error")], report
        sr = pydicom.dcmread(f)
        bmd = next(float(it.MeasuredValueSequence[0].NumericValue)
                   for it in sr.ContentSequence[-1].ContentSequence[0].ContentSequence
                   if it.ValueType == "NUM")
        assert round(bmd, 4) == pred.to_dict()["bmd_gcm2"]
        assert str(sr.PatientName) == str(source.PatientName)
